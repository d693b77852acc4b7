"""Postmark's webhook below the web: Basic auth, and the one record per POST."""

from __future__ import annotations

import base64

import pytest

from newsletter import delivery_key
from newsletter.feedback import postmark

USER, PASSWORD = "hook", "a long webhook password"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_needs_both_the_user_and_the_password() -> None:
    assert postmark.basic_auth_ok(basic(USER, PASSWORD), USER, PASSWORD)
    assert postmark.basic_auth_ok("basic " + basic(USER, PASSWORD)[6:], USER, PASSWORD)
    assert not postmark.basic_auth_ok(basic(USER, "wrong"), USER, PASSWORD)
    assert not postmark.basic_auth_ok(basic("other", PASSWORD), USER, PASSWORD)
    assert not postmark.basic_auth_ok("Bearer " + basic(USER, PASSWORD)[6:], USER, PASSWORD)
    assert not postmark.basic_auth_ok("Basic not-base64!", USER, PASSWORD)
    assert not postmark.basic_auth_ok("", USER, PASSWORD)


def bounce(kind: object, **fields) -> dict:
    return {"RecordType": "Bounce", "Type": kind, "ID": 42, "Email": "c@example.com", **fields}


def test_bounces_suppress_when_postmark_will_not_mail_the_address_again() -> None:
    key = delivery_key.build(1, 9)
    event = postmark.event_of(
        bounce(
            "HardBounce",
            BouncedAt="2026-03-01T10:00:00.1234567Z",
            Details="smtp;550 no such user",
            MessageID="pm-1",
            Metadata={delivery_key.FIELD: key},
        )
    )
    assert (event["kind"], event["event_id"], event["key"]) == ("bounce", "Bounce:42", key)
    assert (event["at"], event["provider_id"]) == ("2026-03-01T10:00:00+00:00", "pm-1")
    assert event["detail"] == "smtp;550 no such user"
    assert postmark.event_of(bounce("SoftBounce"))["kind"] == "soft_bounce"
    assert postmark.event_of(bounce("SoftBounce", Inactive=True))["kind"] == "bounce"
    assert postmark.event_of(bounce("SpamNotification"))["kind"] == "complaint"
    assert postmark.event_of(bounce("Unsubscribe", Inactive=True))["kind"] == "unsubscribe"


def test_records_without_an_id_are_told_apart_by_message_and_time() -> None:
    first = {"RecordType": "Open", "MessageID": "pm-2", "ReceivedAt": "2026-03-01T10:00:00Z"}
    second = {**first, "ReceivedAt": "2026-03-01T11:00:00Z"}
    ids = {postmark.event_of(first)["event_id"], postmark.event_of(second)["event_id"]}
    assert ids == {"Open:pm-2:2026-03-01T10:00:00Z", "Open:pm-2:2026-03-01T11:00:00Z"}
    assert postmark.event_of(first)["kind"] == "provider_open"
    change = {"RecordType": "SubscriptionChange", "SuppressSending": True}
    assert postmark.event_of({**change, "SuppressionReason": "ManualSuppression"})["kind"] == (
        "unsubscribe"
    )
    assert postmark.event_of({**change, "SuppressSending": False})["kind"] == "other"


def test_a_type_or_reason_that_is_not_a_string_is_no_known_kind() -> None:
    assert postmark.event_of(bounce(["HardBounce"]))["kind"] == "other"
    change = {"RecordType": "SubscriptionChange", "SuppressSending": True}
    assert postmark.event_of({**change, "SuppressionReason": ["HardBounce"]})["kind"] == "other"


def test_a_body_without_a_record_type_is_refused() -> None:
    with pytest.raises(ValueError, match="RecordType: missing"):
        postmark.event_of({"Type": "HardBounce"})
    with pytest.raises(ValueError, match="body: expected a JSON object"):
        postmark.event_of([bounce("HardBounce")])
