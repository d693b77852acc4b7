"""SES through SNS below the web: SNS hosts, signatures and certificates, the SES event."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from newsletter import delivery_key
from newsletter.feedback import ses

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-events"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(key: rsa.RSAPrivateKey, now: dt.datetime, days: int = 1) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=days))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


def notification(message: str, version: str, key: rsa.RSAPrivateKey) -> dict:
    sns = {
        "Type": "Notification",
        "MessageId": "sns-1",
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": "2026-03-01T10:00:00.000Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
    }
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(ses.string_to_sign(sns), padding.PKCS1v15(), algorithm)
    sns["Signature"] = base64.b64encode(signature).decode()
    return sns


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        (CERT_URL, True),
        ("https://sns.us-east-1.amazonaws.com:443/x.pem", True),
        ("http://sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com.example.com/x.pem", False),
        ("https://user:pw@sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com:8443/x.pem", False),
        ("https://[::1/x.pem", False),
        (None, False),
    ],
)
def test_only_https_urls_on_sns_hosts_are_fetched(url, ok: bool) -> None:
    assert ses.sns_url_ok(url) is ok


@pytest.mark.parametrize("version", ["1", "2"])
def test_signatures_are_checked_with_the_certificate_fetched_once(private_key, version) -> None:
    now = dt.datetime.now(dt.UTC)
    served = {CERT_URL: certificate(private_key, now)}
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return served[url]

    verifier = ses.SnsVerifier(fetch, lambda: now)
    message = notification("{}", version, private_key)
    key = verifier.public_key(CERT_URL)
    assert verifier.signature_ok(key, message)
    assert verifier.signature_ok(verifier.public_key(CERT_URL), message)
    assert fetched == [CERT_URL]
    assert not verifier.signature_ok(key, {**message, "Message": '{"x": 1}'})
    assert not verifier.signature_ok(key, {**message, "SignatureVersion": "3"})
    later = ses.SnsVerifier(fetch, lambda: now + dt.timedelta(days=2))
    with pytest.raises(ValueError, match="not valid now"):
        later.public_key(CERT_URL)


def test_a_post_that_is_not_an_sns_message_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="the body is not JSON"):
        ses.sns_message(b"\xff")
    with pytest.raises(ValueError, match="expected an SNS message"):
        ses.sns_message(b"[]")
    with pytest.raises(ValueError, match="Type: not an SNS message type"):
        ses.sns_message(b'{"Type": "Other"}')
    with pytest.raises(ValueError, match="MessageId: missing"):
        ses.sns_message(json.dumps({"Type": "Notification", "Message": "{}"}).encode())


def test_a_bounce_is_one_event_per_recipient_and_other_messages_are_kept_raw(
    private_key,
) -> None:
    key = delivery_key.build(4, 10)
    inner = {
        "eventType": "Bounce",
        "mail": {
            "messageId": "ses-1",
            "timestamp": "2026-03-01T10:00:00.000Z",
            "tags": {delivery_key.FIELD: [key]},
            "commonHeaders": {"messageId": "<m@example.com>"},
        },
        "bounce": {
            "bounceType": "Permanent",
            "timestamp": "2026-03-01T10:00:05.123Z",
            "bouncedRecipients": [
                {"emailAddress": "a@example.com", "diagnosticCode": "550 5.1.1 unknown"},
                {"emailAddress": "b@example.com"},
            ],
        },
    }
    events = ses.notification_events(notification(json.dumps(inner), "2", private_key))
    assert [(e["event_id"], e["email"], e["kind"]) for e in events] == [
        ("sns-1", "a@example.com", "bounce"),
        ("sns-1#1", "b@example.com", "bounce"),
    ]
    assert {e["key"] for e in events} == {key}
    assert events[0]["at"] == "2026-03-01T10:00:05+00:00"
    assert events[0]["detail"] == "550 5.1.1 unknown"
    assert (events[0]["provider_id"], events[0]["message_id"]) == ("ses-1", "<m@example.com>")
    test_message = notification("Successfully validated", "2", private_key)
    assert ses.notification_events(test_message) == [
        {"provider": "ses", "event_id": "sns-1", "kind": "other", "raw": "Successfully validated"}
    ]
