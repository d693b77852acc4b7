"""Mailgun's webhook below the web: its HMAC signature and its one event per POST."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from newsletter import delivery_key
from newsletter.feedback import mailgun

KEY = "mailgun-signing-key"


def signed(timestamp: str, token: str, key: str = KEY) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def payload(**data) -> dict:
    return {
        "signature": {"timestamp": "1700000000", "token": "tok-1", "signature": "ab"},
        "event-data": {"event": "failed", "severity": "permanent", **data},
    }


def test_the_signature_covers_timestamp_and_token_with_the_signing_key() -> None:
    good = signed("1700000000", "tok-1")
    assert mailgun.signature_ok(KEY, "1700000000", "tok-1", good)
    assert not mailgun.signature_ok(KEY, "1700000001", "tok-1", good)
    assert not mailgun.signature_ok(KEY, "1700000000", "tok-2", good)
    assert not mailgun.signature_ok("another key", "1700000000", "tok-1", good)


def test_a_failure_is_a_bounce_or_what_the_person_did() -> None:
    key = delivery_key.build(2, 7)
    fields, event = mailgun.event_of(
        payload(
            recipient="bob@example.com",
            timestamp=1700000000.5,
            **{
                "user-variables": {delivery_key.FIELD: key},
                "delivery-status": {"description": "mailbox does not exist"},
                "message": {"headers": {"message-id": "m1@example.com"}},
            },
        )
    )
    assert fields == {"timestamp": "1700000000", "token": "tok-1", "signature": "ab"}
    assert (event["kind"], event["event_id"], event["key"]) == ("bounce", "tok-1", key)
    assert (event["email"], event["detail"]) == ("bob@example.com", "mailbox does not exist")
    assert event["provider_id"] == event["message_id"] == "m1@example.com"
    assert mailgun.event_of(payload(severity="temporary"))[1]["kind"] == "soft_bounce"
    for reason, kind in mailgun.SUPPRESSED.items():
        assert mailgun.event_of(payload(reason=reason))[1]["kind"] == kind
    opened = payload()
    opened["event-data"] = {"event": "opened"}
    assert mailgun.event_of(opened)[1]["kind"] == "provider_open"


@pytest.mark.parametrize("name", ["timestamp", "token", "signature"])
def test_a_missing_signature_field_is_named(name: str) -> None:
    body = payload()
    del body["signature"][name]
    with pytest.raises(ValueError, match=f"signature.{name}: missing"):
        mailgun.event_of(body)
    body = payload()
    body["signature"][name] = True
    with pytest.raises(ValueError, match=f"signature.{name}: missing"):
        mailgun.event_of(body)


def test_a_body_without_event_data_is_refused() -> None:
    with pytest.raises(ValueError, match="event-data: expected a JSON object"):
        mailgun.event_of({"signature": payload()["signature"]})
    with pytest.raises(ValueError, match="event-data.event: missing"):
        mailgun.event_of({"signature": payload()["signature"], "event-data": {}})
