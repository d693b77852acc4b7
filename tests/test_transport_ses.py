"""The SES transport against moto's SES v2 server on loopback."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer
from moto.ses.models import ses_backends

from conftest import free_port
from mail_api import SENDER, envelope
from newsletter.config import Secrets, collect, transport_problems
from newsletter.errors import AccountError
from newsletter.transports import SENT, TRANSIENT, UNUSABLE, open_transport
from newsletter.transports.ses import SesTransport, tag_value

REGION = "eu-west-1"
CREDENTIALS = {"access_key_id": "AKIDTESTING", "secret_access_key": "testing-secret"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def ses(moto_url: str) -> Iterator[SesTransport]:
    transport = SesTransport(region=REGION, endpoint_url=moto_url, **CREDENTIALS)
    yield transport
    transport.close()


def _sent() -> list:
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def _verify_sender(moto_url: str) -> None:
    # SES sends only from a verified identity, and so does moto.
    client = boto3.session.Session(
        aws_access_key_id="AKIDTESTING", aws_secret_access_key="testing-secret"
    ).client("sesv2", region_name=REGION, endpoint_url=moto_url)
    client.create_email_identity(EmailIdentity=SENDER)
    client.close()


def test_an_unverified_sender_stops_the_send_without_blaming_the_recipient(ses) -> None:
    before = len(_sent())
    unverified = dataclasses.replace(envelope("c9-d1"), sender="someone@unverified.example.com")
    with pytest.raises(AccountError, match="sender identity"):
        ses.send_batch([unverified])
    assert len(_sent()) == before


def test_the_raw_message_is_sent_with_the_delivery_tag(ses, moto_url: str) -> None:
    _verify_sender(moto_url)
    requests_made: list[dict] = []

    def capture(params, **_):  # botocore hands every request's body here before it goes
        requests_made.append(json.loads(params["body"]))

    ses.client.meta.events.register("before-call.sesv2.SendEmail", capture)
    message = envelope("c4-d10", "dee@example.com", "Dee")
    before = len(_sent())
    (outcome,) = ses.send_batch([message])

    assert outcome.status == SENT and outcome.provider_id
    (stored,) = _sent()[before:]
    assert stored.id == outcome.provider_id
    assert "dee@example.com" in stored.destinations
    assert stored.raw_data == message.data.decode()  # byte for byte as rendered
    (request,) = requests_made
    assert request["EmailTags"] == [{"Name": "newsletter_delivery", "Value": "c4-d10"}]
    assert request["FromEmailAddress"] == SENDER
    assert request["Destination"] == {"ToAddresses": ["dee@example.com"]}


def test_ses_gets_punycode_domains_and_no_internationalised_mailbox(ses, moto_url: str) -> None:
    # The SES Destination reference: SMTPUTF8 is not supported, so a local part must be
    # 7-bit ASCII, and a domain in Unicode must be sent in Punycode.
    _verify_sender(moto_url)
    requests_made: list[dict] = []

    def capture(params, **_):
        requests_made.append(json.loads(params["body"]))

    ses.client.meta.events.register("before-call.sesv2.SendEmail", capture)
    idn = envelope("c5-d1", "juergen@bücher.example")
    # The MIME header is already Punycode (the mime module writes it so); the envelope
    # keeps the address as the subscriber gave it.
    idn = dataclasses.replace(idn, data=idn.data.replace("bücher".encode(), b"xn--bcher-kva"))
    outcomes = ses.send_batch([idn, envelope("c5-d2", "jürgen@example.com")])
    assert [o.status for o in outcomes] == [SENT, UNUSABLE], outcomes
    assert "needs SMTPUTF8" in outcomes[1].error and "SES" in outcomes[1].error
    (request,) = requests_made  # the internationalised mailbox never reached SES
    assert request["Destination"] == {"ToAddresses": ["juergen@xn--bcher-kva.example"]}


def test_ses_names_a_unicode_sender_domain_in_punycode(ses, moto_url: str) -> None:
    client = boto3.session.Session(
        aws_access_key_id="AKIDTESTING", aws_secret_access_key="testing-secret"
    ).client("sesv2", region_name=REGION, endpoint_url=moto_url)
    client.create_email_identity(EmailIdentity="news@xn--bcher-kva.example")
    client.close()
    requests_made: list[dict] = []

    def capture(params, **_):
        requests_made.append(json.loads(params["body"]))

    ses.client.meta.events.register("before-call.sesv2.SendEmail", capture)
    message = dataclasses.replace(envelope("c6-d1"), sender="news@bücher.example")
    (outcome,) = ses.send_batch([message])
    assert outcome.status == SENT, outcome.error
    (request,) = requests_made
    assert request["FromEmailAddress"] == "news@xn--bcher-kva.example"


def test_tag_values_keep_only_the_characters_ses_allows() -> None:
    assert tag_value("c3-d41") == "c3-d41"
    assert tag_value("test-c1-2026 11:00.5") == "test-c1-2026_11_00_5"


def test_an_unreachable_endpoint_is_transient() -> None:
    transport = SesTransport(
        region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", timeout=2, **CREDENTIALS
    )
    (outcome,) = transport.send_batch([envelope()])
    transport.close()
    assert outcome.status == TRANSIENT and "cannot connect" in outcome.error


def test_credentials_come_only_from_the_aws_variables(tmp_path: Path, moto_url: str) -> None:
    settings, problems = collect(
        {"delivery": {"transport": "ses"}, "ses": {"region": REGION, "endpoint_url": moto_url}},
        {},
        "test",
    )
    assert not [p for p in problems if p.startswith("ses.")]
    missing = transport_problems(settings, Secrets())
    assert any(p.startswith("AWS_ACCESS_KEY_ID: not set") for p in missing)
    assert any(p.startswith("AWS_SECRET_ACCESS_KEY: not set") for p in missing)
    secrets = Secrets.from_env(
        {"AWS_ACCESS_KEY_ID": "AKIDTESTING", "AWS_SECRET_ACCESS_KEY": "testing-secret"}
    )
    assert transport_problems(settings, secrets) == []
    transport = open_transport(settings, secrets, tmp_path)
    assert transport.client.meta.region_name == REGION
    assert transport.client.meta.endpoint_url == moto_url
    transport.close()
