"""Provider webhooks over loopback HTTP, with signatures made here by real keys.

A campaign is sent through the outbox first, so the events name real
delivery rows by the key the transports send along.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pytest_httpserver import HTTPServer

from clocks import NOW, clock
from conftest import wait_for_http
from newsletter.status import DeliveryStatus
from newsletter.web.app import create_app
from newsletter.web.server import listen, make_server
from newsletter.workspace import Workspace
from workspaces import campaign_urls, sent_campaign

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789.pem"
MAILGUN_KEY = "mailgun-signing-key-0123"
POSTMARK_AUTH = ("postmark-hook", "a long webhook password")


class Keys:
    """Every secret the providers would hold, made fresh for the test."""

    def __init__(self) -> None:
        self.sendgrid = ec.generate_private_key(ec.SECP256R1())
        self.sns = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        self.sns_certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.sns.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=1))
            .sign(self.sns, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def env(self) -> dict[str, str]:
        der = self.sendgrid.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(der).decode(),
            "NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
            "NEWSLETTER_POSTMARK_WEBHOOK_USER": POSTMARK_AUTH[0],
            "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD": POSTMARK_AUTH[1],
            "NEWSLETTER_SES__TOPIC_ARNS": TOPIC,
        }


class Hooks:
    """The web app on loopback, a sent campaign, and what SNS's certificate host served."""

    def __init__(self, ws: Workspace, keys: Keys, cert_server: HTTPServer):
        self.ws, self.keys, self.cert_server = ws, keys, cert_server
        self.fetched: list[str] = []
        self.campaign_id = sent_campaign(ws, NOW, "Hello", clock)
        self.subscribers = ws.store.subscribers("confirmed")
        app = create_app(ws, clock=clock, sns_fetch=self.fetch)
        self.sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = make_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        wait_for_http(self.url + "/healthz")

    def fetch(self, url: str) -> bytes:
        """Stands in for the SNS host: the same path, served by the test's own server."""
        self.fetched.append(url)
        parts = urlsplit(url)
        local = self.cert_server.url_for(parts.path) + (f"?{parts.query}" if parts.query else "")
        response = requests.get(local, timeout=5)
        response.raise_for_status()
        return response.content

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def key(self, n: int) -> str:
        """The delivery key of the n-th confirmed subscriber's message."""
        row = self.ws.store.delivery(self.campaign_id, self.subscribers[n]["id"])
        return f"c{self.campaign_id}-d{row['id']}"

    def email(self, n: int) -> str:
        return self.subscribers[n]["email"]

    def status(self, n: int) -> str:
        return self.ws.store.subscriber(self.subscribers[n]["id"])["status"]

    def delivery(self, n: int) -> dict[str, Any]:
        return self.ws.store.delivery(self.campaign_id, self.subscribers[n]["id"])

    def events(self, provider: str) -> list[dict[str, Any]]:
        return self.ws.store.provider_events(provider)

    # -- signing as each provider does -------------------------------------------

    def post_sendgrid(
        self, body: bytes, sign: bytes | None = None, key=None, timestamp: str | None = None
    ) -> requests.Response:
        timestamp = str(int(NOW.timestamp())) if timestamp is None else timestamp
        signature = (key or self.keys.sendgrid).sign(
            timestamp.encode() + (body if sign is None else sign), ec.ECDSA(hashes.SHA256())
        )
        return requests.post(
            self.url + "/webhooks/sendgrid",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            },
            timeout=10,
        )

    def post_mailgun(
        self, event: dict, token: str, timestamp: int | None = None, key: str = MAILGUN_KEY
    ) -> requests.Response:
        stamp = str(int(NOW.timestamp()) if timestamp is None else timestamp)
        signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
        body = {
            "signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": event,
        }
        return requests.post(self.url + "/webhooks/mailgun", json=body, timeout=10)

    def post_postmark(self, event: dict, auth: tuple[str, str] | None = POSTMARK_AUTH):
        return requests.post(self.url + "/webhooks/postmark", json=event, auth=auth, timeout=10)

    def sns(self, kind: str, message_id: str, version: str = "2", **fields: str) -> dict[str, str]:
        """An SNS message signed the way SNS signs it (canonical fields, RSA PKCS#1 v1.5)."""
        message = {
            "Type": kind,
            "MessageId": message_id,
            "TopicArn": fields.pop("TopicArn", TOPIC),
            "Timestamp": "2026-11-27T09:00:00.000Z",
            "SignatureVersion": version,
            "SigningCertURL": fields.pop("SigningCertURL", CERT_URL),
            **fields,
        }
        if kind == "Notification":
            signed = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            signed = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token"]
            signed += ["TopicArn", "Type"]
        text = "".join(f"{n}\n{message[n]}\n" for n in signed if n in message)
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.keys.sns.sign(text.encode(), padding.PKCS1v15(), digest)
        message["Signature"] = base64.b64encode(signature).decode()
        return message

    def post_sns(self, message: dict[str, str]) -> requests.Response:
        # SNS posts JSON labelled as plain text.
        return requests.post(
            self.url + "/webhooks/ses",
            data=json.dumps(message),
            headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": ""},
            timeout=10,
        )


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def hooks(ws_dir: Path, keys: Keys, httpserver: HTTPServer) -> Iterator[Hooks]:
    httpserver.expect_request(urlsplit(CERT_URL).path).respond_with_data(keys.sns_certificate)
    ws = Workspace.open(ws_dir, env=keys.env())
    hooks = Hooks(ws, keys, httpserver)
    yield hooks
    hooks.stop()
    ws.close()


# -- SendGrid -------------------------------------------------------------------


def test_sendgrid_signed_events_are_stored_once_and_a_hard_bounce_suppresses(hooks) -> None:
    stamp = int(NOW.timestamp())
    a, b, c = hooks.key(0), hooks.key(1), hooks.key(2)
    batch = [
        {"event": "processed", "sg_event_id": "ev-1", "newsletter_delivery": a},
        {"event": "delivered", "sg_event_id": "ev-2", "newsletter_delivery": a, "response": "250"},
        {
            "event": "bounce",
            "type": "bounce",
            "sg_event_id": "ev-3",
            "newsletter_delivery": b,
            "reason": "550 5.1.1 The email account that you tried to reach does not exist",
            "status": "5.1.1",
        },
        {"event": "bounce", "type": "blocked", "sg_event_id": "ev-4", "newsletter_delivery": c},
    ]
    for event, n in zip(batch, (0, 0, 1, 2), strict=True):
        event.update(email=hooks.email(n), timestamp=stamp, sg_message_id=f"msg{n}.filter0001.1")
    body = json.dumps(batch).encode()
    answer = hooks.post_sendgrid(body)
    assert answer.status_code == 200, answer.text

    assert hooks.status(1) == "bounced"
    assert hooks.status(0) == hooks.status(2) == "confirmed"  # "blocked" is temporary
    assert hooks.delivery(0)["provider_status"] == "delivered"
    assert hooks.delivery(1)["provider_status"] == "bounce"
    assert hooks.delivery(2)["provider_status"] == "soft_bounce"
    events = hooks.events("sendgrid")
    assert [e["provider_event_id"] for e in events] == ["ev-1", "ev-2", "ev-3", "ev-4"]
    assert [e["kind"] for e in events] == ["accepted", "delivered", "bounce", "soft_bounce"]
    assert json.loads(events[2]["raw"]) == batch[2]  # kept as it came
    assert events[2]["subscriber_id"] == hooks.subscribers[1]["id"]
    assert hooks.ws.store.campaign_stats(hooks.campaign_id)["bounces_unique"] == 1

    # SendGrid retries a batch it thinks failed: nothing is stored twice.
    assert hooks.post_sendgrid(body).status_code == 200
    assert len(hooks.events("sendgrid")) == 4


def test_sendgrid_refuses_tampered_unsigned_and_foreign_signatures(hooks) -> None:
    event = [{"email": hooks.email(0), "timestamp": 1, "event": "spamreport", "sg_event_id": "x"}]
    body = json.dumps(event).encode()
    tampered = hooks.post_sendgrid(body, sign=body.replace(b"spamreport", b"delivered"))
    assert tampered.status_code == 403
    foreign = hooks.post_sendgrid(body, key=ec.generate_private_key(ec.SECP256R1()))
    assert foreign.status_code == 403
    unsigned = requests.post(hooks.url + "/webhooks/sendgrid", data=body, timeout=10)
    assert unsigned.status_code == 403
    assert hooks.events("sendgrid") == [] and hooks.status(0) == "confirmed"


def test_sendgrid_refuses_a_correctly_signed_request_replayed_later(hooks) -> None:
    """A captured, validly signed bounce replayed later must not suppress anyone."""
    now = int(NOW.timestamp())
    event = {
        "email": hooks.email(1),
        "timestamp": now,
        "event": "bounce",
        "type": "bounce",
        "sg_event_id": "replayed",
        "newsletter_delivery": hooks.key(1),
    }
    body = json.dumps([event]).encode()
    for stamp in (str(now - 301), str(now + 301), "yesterday", "nan"):
        answer = hooks.post_sendgrid(body, timestamp=stamp)
        assert (answer.status_code, answer.text) == (403, "stale timestamp\n"), stamp
    assert hooks.events("sendgrid") == [] and hooks.status(1) == "confirmed"
    # The same window as Mailgun's: five minutes either way is still fresh.
    assert hooks.post_sendgrid(body, timestamp=str(now - 299)).status_code == 200
    assert hooks.status(1) == "bounced"


def test_sendgrid_malformed_bodies_are_400_not_500(hooks) -> None:
    for body in (b"not json", b'{"event": "bounce"}', b'[{"email": "a@b.c"}]', b"[1, 2]"):
        answer = hooks.post_sendgrid(body)
        assert answer.status_code == 400, (body, answer.status_code)


# -- Mailgun ----------------------------------------------------------------------


def mailgun_failure(hooks: Hooks, n: int, severity: str = "permanent") -> dict:
    return {
        "event": "failed",
        "severity": severity,
        "id": f"mg-event-{n}-{severity}",
        "timestamp": NOW.timestamp(),
        "recipient": hooks.email(n),
        "reason": "bounce",
        "delivery-status": {"code": 550, "message": "5.1.1 mailbox does not exist"},
        "message": {"headers": {"message-id": f"{hooks.key(n)}@mg.example.com"}},
        "user-variables": {"newsletter_delivery": hooks.key(n)},
    }


def test_mailgun_permanent_failure_suppresses_and_a_retry_is_not_stored_twice(hooks) -> None:
    event = mailgun_failure(hooks, 0)
    assert hooks.post_mailgun(event, token="t" * 50).status_code == 200
    assert hooks.status(0) == "bounced"
    assert hooks.delivery(0)["provider_status"] == "bounce"
    (stored,) = hooks.events("mailgun")
    assert stored["provider_event_id"] == "t" * 50 and stored["detail"] == (
        "5.1.1 mailbox does not exist"
    )
    # Mailgun retrying the same POST: accepted, nothing new.
    assert hooks.post_mailgun(event, token="t" * 50).status_code == 200
    assert len(hooks.events("mailgun")) == 1
    temporary = mailgun_failure(hooks, 1, severity="temporary")
    assert hooks.post_mailgun(temporary, token="u" * 50).status_code == 200
    assert hooks.status(1) == "confirmed"


def test_mailgun_refuses_replayed_tokens_stale_timestamps_and_bad_signatures(hooks) -> None:
    assert (
        hooks.post_mailgun(mailgun_failure(hooks, 0, "temporary"), token="r" * 50).status_code
        == 200
    )
    # The signature covers only timestamp and token: the same pair with another event is a replay.
    replay = hooks.post_mailgun(mailgun_failure(hooks, 1), token="r" * 50)
    assert replay.status_code == 403
    stale = hooks.post_mailgun(
        mailgun_failure(hooks, 1), token="s" * 50, timestamp=int(NOW.timestamp()) - 301
    )
    assert stale.status_code == 403
    forged = hooks.post_mailgun(mailgun_failure(hooks, 1), token="f" * 50, key="guessed")
    assert forged.status_code == 403
    assert hooks.status(1) == "confirmed"
    assert len(hooks.events("mailgun")) == 1
    malformed = requests.post(hooks.url + "/webhooks/mailgun", json={"event-data": {}}, timeout=10)
    assert malformed.status_code == 400


def test_mailgun_suppression_reasons_are_what_the_person_did_not_bounces(hooks) -> None:
    # Mailgun refuses to send to an address on its own lists and says which list:
    # someone who complained or unsubscribed there did not bounce.
    for n, reason, token in ((0, "suppress-complaint", "c"), (1, "suppress-unsubscribe", "u")):
        event = {**mailgun_failure(hooks, n), "reason": reason, "delivery-status": {}}
        assert hooks.post_mailgun(event, token=token * 50).status_code == 200
    assert hooks.status(0) == "complained" and hooks.status(1) == "unsubscribed"
    assert [e["kind"] for e in hooks.events("mailgun")] == ["complaint", "unsubscribe"]


# -- Postmark ----------------------------------------------------------------------


def test_postmark_needs_basic_auth(hooks) -> None:
    complaint = {"RecordType": "SpamComplaint", "ID": 42, "Email": hooks.email(0)}
    missing = hooks.post_postmark(complaint, auth=None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Basic"
    assert hooks.post_postmark(complaint, auth=(POSTMARK_AUTH[0], "wrong")).status_code == 401
    assert hooks.post_postmark(complaint, auth=("wrong", POSTMARK_AUTH[1])).status_code == 401
    assert hooks.events("postmark") == [] and hooks.status(0) == "confirmed"


def test_postmark_events_match_by_metadata_and_are_deduplicated(hooks) -> None:
    complaint = {
        "RecordType": "SpamComplaint",
        "ID": 42,
        "Type": "SpamComplaint",
        "Email": hooks.email(0),
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "BouncedAt": "2026-11-27T09:10:00.1234567Z",
        "Metadata": {"newsletter_delivery": hooks.key(0)},
    }
    delivery = {
        "RecordType": "Delivery",
        "MessageID": "00000000-6105-42a2-a16a-77a8eac79483",
        "Recipient": hooks.email(1),
        "DeliveredAt": "2026-11-27T09:01:00Z",
        "Details": "Test delivery webhook details",
        "Metadata": {"newsletter_delivery": hooks.key(1)},
    }
    for event in (complaint, delivery, complaint, delivery):
        assert hooks.post_postmark(event).status_code == 200
    assert hooks.status(0) == "complained"
    assert hooks.delivery(0)["provider_status"] == "complaint"
    assert hooks.delivery(1)["provider_status"] == "delivered"
    events = hooks.events("postmark")
    assert [(e["kind"], e["at"]) for e in events] == [
        ("complaint", "2026-11-27T09:10:00+00:00"),
        ("delivered", "2026-11-27T09:01:00+00:00"),
    ]
    assert hooks.ws.store.is_suppressed(hooks.email(0))
    assert hooks.post_postmark({"Email": "x"}).status_code == 400


def test_postmark_inactive_addresses_and_spam_notifications_suppress(hooks) -> None:
    # A soft bounce after which Postmark deactivated the address: it will refuse
    # every further message, so the address is suppressed here as well.
    inactive = {
        "RecordType": "Bounce",
        "ID": 7,
        "Type": "SoftBounce",
        "Inactive": True,
        "Email": hooks.email(0),
        "BouncedAt": "2026-11-27T09:10:00Z",
        "Metadata": {"newsletter_delivery": hooks.key(0)},
    }
    spam = {
        "RecordType": "Bounce",
        "ID": 8,
        "Type": "SpamNotification",
        "Inactive": False,
        "Email": hooks.email(1),
        "BouncedAt": "2026-11-27T09:11:00Z",
        "Metadata": {"newsletter_delivery": hooks.key(1)},
    }
    active = {**inactive, "ID": 9, "Inactive": False, "Email": hooks.email(2)}
    active["Metadata"] = {"newsletter_delivery": hooks.key(2)}
    for event in (inactive, spam, active):
        assert hooks.post_postmark(event).status_code == 200
    assert hooks.status(0) == "bounced" and hooks.ws.store.is_suppressed(hooks.email(0))
    assert hooks.status(1) == "complained" and hooks.ws.store.is_suppressed(hooks.email(1))
    assert hooks.status(2) == "confirmed"  # a soft bounce alone suppresses nobody


# -- SES through SNS ---------------------------------------------------------------


def ses_event(hooks: Hooks, n: int, event_type: str, **part: Any) -> str:
    """The Message of an SES event notification, with our tag."""
    body: dict[str, Any] = {
        "eventType": event_type,
        "mail": {
            "timestamp": "2026-11-27T09:00:00.000Z",
            "messageId": f"ses-{n}",
            "destination": [hooks.email(n)],
            "tags": {"newsletter_delivery": [hooks.key(n)]},
        },
    }
    if part:
        body[event_type[0].lower() + event_type[1:]] = part
    return json.dumps(body)


def test_ses_confirms_a_subscription_only_for_an_allowed_topic(hooks) -> None:
    subscribe = (
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=abc"
    )
    confirm = {"Action": "ConfirmSubscription", "TopicArn": "x", "Token": "abc"}
    hooks.cert_server.expect_request("/", query_string=confirm).respond_with_data(
        "<ConfirmSubscriptionResponse/>"
    )
    other = "arn:aws:sns:eu-west-1:999999999999:someone-else"
    fields = {"Message": "You have chosen to subscribe", "SubscribeURL": subscribe, "Token": "abc"}
    refused = hooks.post_sns(hooks.sns("SubscriptionConfirmation", "m-0", TopicArn=other, **fields))
    assert refused.status_code == 403
    assert hooks.fetched == []  # nothing fetched for a topic we do not take
    accepted = hooks.post_sns(hooks.sns("SubscriptionConfirmation", "m-1", **fields))
    assert accepted.status_code == 200, accepted.text
    assert hooks.fetched == [CERT_URL, subscribe]


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounces_and_complaints_suppress_once(hooks, version: str) -> None:
    bounce = ses_event(
        hooks,
        0,
        "Bounce",
        bounceType="Permanent",
        bounceSubType="General",
        bouncedRecipients=[{"emailAddress": hooks.email(0), "diagnosticCode": "smtp; 550 5.1.1"}],
        timestamp="2026-11-27T09:05:00.000Z",
    )
    complaint = ses_event(
        hooks, 1, "Complaint", complainedRecipients=[{"emailAddress": hooks.email(1)}]
    )
    soft = ses_event(
        hooks,
        2,
        "Bounce",
        bounceType="Transient",
        bouncedRecipients=[{"emailAddress": hooks.email(2)}],
    )
    for message_id, text in (("m-b", bounce), ("m-c", complaint), ("m-s", soft), ("m-b", bounce)):
        answer = hooks.post_sns(hooks.sns("Notification", message_id, version, Message=text))
        assert answer.status_code == 200, answer.text
    assert [hooks.status(n) for n in range(3)] == ["bounced", "complained", "confirmed"]
    events = hooks.events("ses")
    assert [(e["provider_event_id"], e["kind"]) for e in events] == [
        ("m-b", "bounce"),
        ("m-c", "complaint"),
        ("m-s", "soft_bounce"),
    ]
    assert events[0]["detail"] == "smtp; 550 5.1.1"
    assert hooks.fetched == [CERT_URL]  # fetched once, then kept


def test_ses_refuses_tampered_messages_and_certificates_off_sns_hosts(hooks) -> None:
    message = hooks.sns("Notification", "m-t", Message=ses_event(hooks, 0, "Complaint"))
    tampered = dict(message, Message=ses_event(hooks, 1, "Complaint"))
    assert hooks.post_sns(tampered).status_code == 403
    for url in (
        "http://sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
    ):
        forged = hooks.sns("Notification", "m-u", Message="{}", SigningCertURL=url)
        assert hooks.post_sns(forged).status_code == 403, url
    unknown_version = hooks.sns("Notification", "m-v", Message="{}")
    unknown_version["SignatureVersion"] = "3"
    assert hooks.post_sns(unknown_version).status_code == 403
    assert hooks.fetched == [CERT_URL]  # only for the well-placed one
    assert hooks.events("ses") == []
    assert [hooks.status(n) for n in range(2)] == ["confirmed", "confirmed"]
    assert hooks.post_sns({"Type": "Notification"}).status_code == 400
    bad_json = requests.post(hooks.url + "/webhooks/ses", data=b"\xff{", timeout=10)
    assert bad_json.status_code == 400


def test_a_provider_event_settles_an_in_doubt_delivery_as_sent(hooks) -> None:
    store = hooks.ws.store
    row = hooks.delivery(3)
    store.finish_delivery(
        row["id"], DeliveryStatus.IN_DOUBT, NOW, error="in flight when the sender stopped"
    )
    delivered = ses_event(
        hooks, 3, "Delivery", recipients=[hooks.email(3)], smtpResponse="250 2.0.0 OK"
    )
    answer = hooks.post_sns(hooks.sns("Notification", "m-d", Message=delivered))
    assert answer.status_code == 200
    settled = hooks.delivery(3)
    assert settled["status"] == "sent" and settled["provider_status"] == "delivered"
    assert store.delivery_counts(hooks.campaign_id)["in_doubt"] == 0


def test_erasing_a_person_blanks_their_raw_provider_events(hooks) -> None:
    recipients = [{"emailAddress": hooks.email(0)}]
    bounce = ses_event(hooks, 0, "Bounce", bounceType="Permanent", bouncedRecipients=recipients)
    assert hooks.post_sns(hooks.sns("Notification", "m-e", Message=bounce)).status_code == 200
    (event,) = hooks.events("ses")
    assert hooks.email(0) in event["raw"]
    hooks.ws.store.delete_subscriber(hooks.subscribers[0]["id"], NOW)
    (event,) = hooks.events("ses")
    assert event["raw"] is None and event["recipient"] is None and event["subscriber_id"] is None


def test_webhooks_without_their_secrets_are_not_there(live_server) -> None:
    for provider in ("sendgrid", "mailgun", "postmark"):
        answer = requests.post(f"{live_server.url}/webhooks/{provider}", data=b"[]", timeout=10)
        assert answer.status_code == 404, provider
    # No topic is allowed until ses.topic_arns names one.
    message = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": TOPIC,
        "Message": "{}",
        "Timestamp": "2026-11-27T09:00:00.000Z",
        "SignatureVersion": "2",
        "Signature": "AAAA",
        "SigningCertURL": CERT_URL,
    }
    answer = requests.post(f"{live_server.url}/webhooks/ses", json=message, timeout=10)
    assert answer.status_code == 403


# -- bodies built to hurt the server -------------------------------------------------

DEEP = b"[" * 100_000  # nested deeper than Python's recursion limit


def test_deeply_nested_bodies_are_400_not_json_for_every_provider(hooks) -> None:
    answers = {
        "ses": requests.post(hooks.url + "/webhooks/ses", data=DEEP, timeout=10),
        "sendgrid": hooks.post_sendgrid(DEEP),
        "mailgun": requests.post(hooks.url + "/webhooks/mailgun", data=DEEP, timeout=10),
        "postmark": requests.post(
            hooks.url + "/webhooks/postmark", data=DEEP, auth=POSTMARK_AUTH, timeout=10
        ),
    }
    for provider, answer in answers.items():
        assert answer.status_code == 400, (provider, answer.status_code, answer.text[:300])
        assert "not JSON" in answer.text, (provider, answer.text)
        assert "Traceback" not in answer.text and "RecursionError" not in answer.text
    # Signed by SNS, with a Message nested too deep: kept raw as something else, not a 500.
    # (Deeper than the parser's recursion limit, within the bound on nested parts.)
    deep_message = hooks.sns("Notification", "m-deep", Message="[" * 5_000)
    answer = hooks.post_sns(deep_message)
    assert answer.status_code == 200, answer.text[:300]
    (kept,) = hooks.events("ses")
    assert kept["kind"] == "other"
    assert hooks.status(0) == "confirmed"


def nested_arrays(size: int) -> bytes:
    """A JSON array of small nested arrays: the most parser work per byte."""
    return ("[" + ",".join(["[[[1]]]"] * (size // 8)) + "]").encode()


def test_large_ses_bodies_do_not_stall_the_pixel_or_healthz(hooks) -> None:
    # /webhooks/ses takes anyone's POST. A 7 MB array of small nested arrays takes
    # the JSON parser seconds, during which no other request would be answered.
    huge, largest = nested_arrays(7_000_000), nested_arrays(990_000)
    assert len(huge) > 7_000_000 and len(largest) < 1_000_000
    urls = campaign_urls(hooks.ws)
    pixel = hooks.url + urlsplit(urls.open(hooks.campaign_id, hooks.subscribers[0]["id"])).path
    opens_before = len(pixel_opens(hooks))
    posts: list[tuple[int, int, float]] = []

    def poster() -> None:
        for body in (huge, largest, huge, largest, huge, largest):
            started = time.monotonic()
            answer = requests.post(hooks.url + "/webhooks/ses", data=body, timeout=120)
            posts.append((len(body), answer.status_code, time.monotonic() - started))

    workers = [threading.Thread(target=poster) for _ in range(2)]
    probe = requests.Session()
    probe.get(hooks.url + "/healthz", timeout=5)  # the connection is open before the posts
    latencies: list[float] = []
    for worker in workers:
        worker.start()
    pixels = 0
    while any(worker.is_alive() for worker in workers) or len(latencies) < 40:
        for url in (hooks.url + "/healthz", pixel):
            started = time.monotonic()
            answer = probe.get(url, timeout=60)
            latencies.append(time.monotonic() - started)
            assert answer.status_code == 200
            pixels += url == pixel
        time.sleep(0.02)
    for worker in workers:
        worker.join()

    # Larger than SNS ever sends: refused unread. Within the size, more nested
    # parts than SNS ever sends: refused before it is parsed.
    assert sorted((size, status) for size, status, _ in posts) == sorted(
        [(len(huge), 413)] * 6 + [(len(largest), 400)] * 6
    )
    assert statistics.median(latencies) < 0.1, latencies
    # A busy two-core machine may delay one answer now and then; never by a parse
    # of a 7 MB body (seconds), nor by the whole of a post.
    worst = max(latencies)
    assert worst < 0.5, f"worst {worst:.2f} s; posts {posts}"
    # The pixel was the real one: every request of it counted an open.
    wait_until(lambda: len(pixel_opens(hooks)) == opens_before + pixels)


def pixel_opens(hooks: Hooks) -> list[dict[str, Any]]:
    return hooks.ws.store._rows("SELECT * FROM events WHERE kind = 'open'", [])


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def test_many_nested_parts_within_the_size_are_refused_before_parsing(hooks) -> None:
    # Under a megabyte, yet a second of parser work that no thread could share.
    for path in ("/webhooks/ses", "/webhooks/mailgun"):
        answer = requests.post(hooks.url + path, data=nested_arrays(990_000), timeout=30)
        assert answer.status_code == 400, (path, answer.text)
        assert "objects and arrays" in answer.text
    # A real SES notification is far below the bound, and still taken.
    bounce = ses_event(
        hooks,
        0,
        "Bounce",
        bounceType="Permanent",
        bouncedRecipients=[{"emailAddress": hooks.email(0)}] * 50,
    )
    answer = hooks.post_sns(hooks.sns("Notification", "m-many", Message=bounce))
    assert answer.status_code == 200, answer.text
    assert hooks.status(0) == "bounced"
