"""International addresses through every email API, checked as each provider's spec asks.

Domains in Unicode go as A-labels (Punycode) in every body; an internationalised
mailbox (non-ASCII local part) goes only to a provider that takes one (Mailgun),
and fails alone, with "needs SMTPUTF8", at the others.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from mail_api import SENDER, envelope
from newsletter.transports import SENT, UNUSABLE, Envelope
from newsletter.transports.mailgun import MailgunTransport
from newsletter.transports.postmark import PostmarkTransport
from newsletter.transports.sendgrid import SendGridTransport

IDN = "juergen@bücher.example"
IDN_ASCII = "juergen@xn--bcher-kva.example"
EAI = "jürgen@example.com"
REPLY = "Front Desk <frontdesk@bücher.example>"
ADDRESS = re.compile(r"[^\s<>\"']+@[^\s<>\"']+")


def _with_reply_to(message: Envelope, reply_to: str) -> Envelope:
    assert message.content is not None
    headers = {**message.content.headers, "Reply-To": reply_to}
    return dataclasses.replace(
        message, content=dataclasses.replace(message.content, headers=headers)
    )


def _ascii_addresses(value: object) -> bool:
    """Every string that looks like an address is ASCII, as the specs require."""
    if isinstance(value, dict):
        return all(_ascii_addresses(v) for v in value.values())
    if isinstance(value, list):
        return all(_ascii_addresses(v) for v in value)
    return not isinstance(value, str) or all(a.isascii() for a in ADDRESS.findall(value))


@pytest.fixture
def requests_seen() -> Iterator[list[Request]]:
    yield []


def test_sendgrid_gets_a_labels_and_a_reply_to_object(
    httpserver: HTTPServer, requests_seen: list[Request]
) -> None:
    def mail_send(request: Request) -> Response:
        requests_seen.append(request)
        body = json.loads(request.get_data())
        # What the v3 schema refuses: a non-ASCII address, reply_to as a string.
        if not _ascii_addresses(body) or not isinstance(body.get("reply_to"), dict):
            return Response(json.dumps({"errors": [{"message": "invalid"}]}), status=400)
        return Response(status=202, headers={"X-Message-Id": f"id{len(requests_seen)}"})

    httpserver.expect_request("/v3/mail/send", method="POST").respond_with_handler(mail_send)
    sender = SendGridTransport("SG.key", api_base=httpserver.url_for("/").rstrip("/"))
    try:
        outcomes = sender.send_batch(
            [
                _with_reply_to(envelope("c1-d1", IDN, "Jürgen"), REPLY),
                _with_reply_to(envelope("c1-d2", EAI, "Jürgen"), REPLY),
            ]
        )
    finally:
        sender.close()
    assert [o.status for o in outcomes] == [SENT, UNUSABLE]
    assert "needs SMTPUTF8" in outcomes[1].error and "SendGrid" in outcomes[1].error
    (request,) = requests_seen  # the internationalised mailbox was never posted
    body = json.loads(request.get_data())
    assert body["personalizations"][0]["to"] == [{"email": IDN_ASCII, "name": "Jürgen"}]
    assert body["reply_to"] == {"email": "frontdesk@xn--bcher-kva.example", "name": "Front Desk"}


def test_mailgun_gets_a_labels_and_takes_an_internationalised_mailbox(
    httpserver: HTTPServer,
) -> None:
    recipients: list[str] = []

    def messages(request: Request) -> Response:
        recipients.append(request.form["to"])
        request.close()  # its uploaded message part is a temporary file
        return Response(json.dumps({"id": "<m@mg>", "message": "Queued"}), status=200)

    httpserver.expect_request("/v3/mg.example.com/messages.mime").respond_with_handler(messages)
    sender = MailgunTransport("key", "mg.example.com", api_base=httpserver.url_for("/").rstrip("/"))
    try:
        outcomes = sender.send_batch([envelope("c1-d1", IDN), envelope("c1-d2", EAI)])
    finally:
        sender.close()
    assert [o.status for o in outcomes] == [SENT, SENT]
    assert recipients == [IDN_ASCII, EAI]


def test_postmark_gets_a_labels_and_fails_only_the_internationalised_mailbox(
    httpserver: HTTPServer, requests_seen: list[Request]
) -> None:
    def batch(request: Request) -> Response:
        requests_seen.append(request)
        items = json.loads(request.get_data())
        results = [
            {"ErrorCode": 0 if _ascii_addresses(item) else 300, "MessageID": f"pm-{n}"}
            for n, item in enumerate(items)
        ]
        return Response(json.dumps(results), status=200, content_type="application/json")

    httpserver.expect_request("/email/batch", method="POST").respond_with_handler(batch)
    sender = PostmarkTransport("token", api_base=httpserver.url_for("/").rstrip("/"))
    try:
        outcomes = sender.send_batch(
            [
                _with_reply_to(envelope("c1-d1", "ann@example.com", "Ann"), REPLY),
                envelope("c1-d2", EAI, "Jürgen"),
                envelope("c1-d3", IDN, "Jürgen"),
            ]
        )
    finally:
        sender.close()
    assert [(o.key, o.status) for o in outcomes] == [
        ("c1-d1", SENT),
        ("c1-d2", UNUSABLE),
        ("c1-d3", SENT),
    ]
    assert "needs SMTPUTF8" in outcomes[1].error
    (request,) = requests_seen
    items = json.loads(request.get_data())
    assert [item["To"] for item in items] == ['"Ann" <ann@example.com>', f'"Jürgen" <{IDN_ASCII}>']
    assert items[0]["ReplyTo"] == '"Front Desk" <frontdesk@xn--bcher-kva.example>'
    assert items[0]["From"].endswith(f"<{SENDER}>")


def test_commands_that_send_nothing_do_not_demand_the_providers_key(cli) -> None:
    cli.env = {
        **cli.env,
        "NEWSLETTER_DELIVERY__TRANSPORT": "sendgrid",
        # Links that work from a reader's mailbox, so the key is all that sending lacks.
        "NEWSLETTER_SITE__BASE_URL": "https://news.clinic.example.com",
    }
    assert "3 new" in cli("fetch").stdout
    cli("subscribers", "import", "subscribers/example.csv")
    cli("campaign", "create", "--subject", "Hello")
    # What sends stops, naming the variable it lacks; the campaign is left as it was.
    send = cli("campaign", "send", "1", check=False)
    assert send.returncode == 1
    assert "NEWSLETTER_SENDGRID_API_KEY: not set" in send.stderr.strip().splitlines()[-1]
    assert "draft" in cli("campaign", "list").stdout
    run = cli("run", check=False)
    assert run.returncode == 1 and "NEWSLETTER_SENDGRID_API_KEY: not set" in run.stderr
    check = cli("config", "check", check=False)
    assert check.returncode == 1 and "NEWSLETTER_SENDGRID_API_KEY: not set" in check.stderr


def _from_unicode_domain(message: Envelope) -> Envelope:
    """The same message from a sender whose domain is written in Unicode."""
    assert message.content is not None
    content = dataclasses.replace(message.content, from_address="news@bücher.example")
    return dataclasses.replace(message, sender="news@bücher.example", content=content)


def test_sendgrid_and_postmark_name_a_unicode_sender_domain_in_a_labels(
    httpserver: HTTPServer, requests_seen: list[Request]
) -> None:
    def record(request: Request) -> Response:
        requests_seen.append(request)
        if request.path == "/v3/mail/send":
            return Response(status=202, headers={"X-Message-Id": "sg-1"})
        return Response(
            json.dumps([{"ErrorCode": 0, "MessageID": "pm-1"}]),
            status=200,
            content_type="application/json",
        )

    httpserver.expect_request("/v3/mail/send", method="POST").respond_with_handler(record)
    httpserver.expect_request("/email/batch", method="POST").respond_with_handler(record)
    base = httpserver.url_for("/").rstrip("/")
    for transport in (
        SendGridTransport("SG.key", api_base=base),
        PostmarkTransport("t", api_base=base),
    ):
        try:
            (outcome,) = transport.send_batch([_from_unicode_domain(envelope("c1-d1"))])
        finally:
            transport.close()
        assert outcome.status == SENT, outcome.error
    sendgrid, postmark = (json.loads(r.get_data()) for r in requests_seen)
    assert sendgrid["from"]["email"] == "news@xn--bcher-kva.example"
    assert postmark[0]["From"].endswith("<news@xn--bcher-kva.example>")
