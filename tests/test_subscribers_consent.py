"""Consent, suppression, lists, segments and erasure against a real store; tokens with a clock."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timedelta

import pytest

from clocks import IMPORT_NOW as NOW
from newsletter import consent
from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.render import TemplateSet
from newsletter.store import Store, erased_key
from newsletter.subscribers import parse_segment
from newsletter.tracking import Signer
from newsletter.transports.outbox import OutboxTransport

SETTINGS = Settings()


def add(store: Store, address: str, status: str = "confirmed", **fields) -> int:
    store.add_subscribers([{"email": address, "status": status, **fields}], None, "t", "t", NOW)
    return store.subscriber_by_email(address)["id"]


def ask(store: Store, address: str, at: datetime = NOW, **kwargs) -> int | None:
    kwargs.setdefault("source", "form")
    return consent.request(store, SETTINGS, address, now=at, **kwargs)


# -- signed, expiring confirmation links --------------------------------------------------


def test_a_confirmation_token_carries_its_issue_time_and_expires() -> None:
    signer = Signer("k" * 32)
    token = consent.confirm_token(signer, 41, 7, NOW)
    link = consent.read_confirm_token(signer, token)
    assert link == consent.ConfirmLink(41, 7, NOW)
    days = 7
    assert consent.link_state(link, NOW + timedelta(days=days) - timedelta(seconds=1), days) == (
        "valid"
    )
    assert consent.link_state(link, NOW + timedelta(days=days, seconds=1), days) == "expired"
    # Issued in the future: not a link we made.
    assert consent.link_state(link, NOW - timedelta(hours=1), days) == "invalid"


def test_confirmation_tokens_cannot_be_forged_or_reused_for_another_purpose() -> None:
    signer = Signer("k" * 32)
    token = consent.confirm_token(signer, 41, 7, NOW)
    assert consent.read_confirm_token(Signer("other key"), token) is None
    assert consent.read_confirm_token(signer, signer.make("unsubscribe", 41, 7, 0)) is None
    assert signer.read(token, "unsubscribe") is None
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert consent.read_confirm_token(signer, tampered) is None


# -- double opt-in in the store -----------------------------------------------------------


def test_a_request_records_consent_and_changes_nothing_until_confirmed(store: Store) -> None:
    consent_id = ask(
        store,
        "  Ann@Example.COM ",
        name="Ann  Lee\x07",
        lists=["news"],
        ip="203.0.113.0",
        user_agent="Browser/1.0",
        detail={"url": "https://news.example.com/subscribe"},
    )
    record = store.consent(consent_id)
    assert record["email"] == "Ann@example.com"
    assert (record["at"], record["source"]) == (NOW.isoformat(timespec="seconds"), "form")
    assert (record["text"], record["text_version"]) == (
        SETTINGS.consent.text,
        SETTINGS.consent.version,
    )
    assert (record["ip"], record["user_agent"], record["lists"]) == (
        "203.0.113.0",
        "Browser/1.0",
        ["news"],
    )
    assert record["detail"]["first_name"] == "Ann" and record["detail"]["last_name"] == "Lee"
    assert record["confirmed_at"] is None
    subscriber = store.subscriber(record["subscriber_id"])
    assert subscriber["status"] == "unconfirmed"
    # The name someone typed is not applied before the address owner confirms.
    assert subscriber["first_name"] is None


def test_an_invalid_address_is_refused(store: Store) -> None:
    with pytest.raises(InputError, match="not a valid email address"):
        ask(store, "not-an-address")
    assert store.subscribers() == []


def test_confirming_records_time_and_ip_applies_names_and_joins_lists(store: Store) -> None:
    store.create_list("news", "", True, NOW)
    consent_id = ask(store, "ann@example.com", name="Ann Lee", lists=["news"])
    sid = store.consent(consent_id)["subscriber_id"]
    later = NOW + timedelta(hours=2)

    assert store.confirm_opt_in(consent_id, sid, later, "198.51.100.0") == "confirmed"

    record = store.consent(consent_id)
    assert (record["confirmed_at"], record["confirm_ip"]) == (
        later.isoformat(timespec="seconds"),
        "198.51.100.0",
    )
    subscriber = store.subscriber(sid)
    assert (subscriber["status"], subscriber["first_name"], subscriber["last_name"]) == (
        "confirmed",
        "Ann",
        "Lee",
    )
    assert [m["name"] for m in store.memberships(sid)] == ["news"]
    assert store.confirm_opt_in(consent_id, sid, later, "198.51.100.0") == "already"
    assert store.confirm_opt_in(consent_id, sid + 1, later, None) == "unknown"


def test_names_from_a_form_never_overwrite_the_ones_on_record(store: Store) -> None:
    sid = add(store, "ann@example.com", "unconfirmed", first_name="Ann", last_name="Lee")
    consent_id = ask(store, "ann@example.com", name="Mallory Evil")
    store.confirm_opt_in(consent_id, sid, NOW, None)
    assert store.subscriber(sid)["first_name"] == "Ann"


def test_only_a_confirmed_opt_in_lifts_a_suppression(store: Store) -> None:
    sid = add(store, "ann@example.com")
    store.unsubscribe(sid, None, NOW, "link")
    assert store.is_suppressed("ann@example.com")

    consent_id = ask(store, "ann@example.com", at=NOW + timedelta(days=1))
    # Asking is not enough: still unsubscribed, still suppressed.
    assert store.subscriber(sid)["status"] == "unsubscribed"
    assert store.is_suppressed("ann@example.com")

    assert store.confirm_opt_in(consent_id, sid, NOW + timedelta(days=1, hours=1), None) == (
        "confirmed"
    )
    assert store.subscriber(sid)["status"] == "confirmed"
    assert not store.is_suppressed("ann@example.com")
    assert store.subscriber(sid)["unsubscribed_at"] is None


def test_a_link_older_than_a_later_unsubscribe_cannot_undo_it(store: Store) -> None:
    consent_id = ask(store, "ann@example.com")
    sid = store.consent(consent_id)["subscriber_id"]
    store.confirm_opt_in(consent_id, sid, NOW, None)
    second = ask(store, "ann@example.com", at=NOW + timedelta(minutes=30))
    store.unsubscribe(sid, None, NOW + timedelta(hours=1), "link")

    assert store.confirm_opt_in(second, sid, NOW + timedelta(hours=2), None) == "stale"
    assert store.subscriber(sid)["status"] == "unsubscribed"
    assert store.is_suppressed("ann@example.com")


def test_one_confirmation_email_per_address_per_quiet_period(store: Store) -> None:
    first = ask(store, "ann@example.com")
    store.mark_confirmation_sent(first, NOW)
    assert ask(store, "ann@example.com", at=NOW + timedelta(minutes=5)) is None
    assert ask(store, "ann@example.com", at=NOW + timedelta(minutes=11)) is not None


def test_a_suppressed_address_that_was_erased_can_opt_in_again(store: Store) -> None:
    sid = add(store, "ann@example.com")
    store.unsubscribe(sid, None, NOW, "link")
    store.delete_subscriber(sid, NOW)
    assert store.is_suppressed("ann@example.com")

    consent_id = ask(store, "ann@example.com", at=NOW + timedelta(days=1))
    new_sid = store.consent(consent_id)["subscriber_id"]
    assert store.subscriber(new_sid)["status"] == "unconfirmed"
    assert store.confirm_opt_in(consent_id, new_sid, NOW + timedelta(days=1), None) == ("confirmed")
    assert store.suppressions() == []


# -- the emails -------------------------------------------------------------------------


def test_the_confirmation_email_carries_a_working_link_and_the_consent(store, tmp_path) -> None:
    settings = Settings()
    signer = Signer("k" * 32)
    transport = OutboxTransport(tmp_path / "outbox")
    consent_id = ask(store, "ann@example.com", name="<b>Mallory</b>", lists=["news"])

    sent_to = consent.send_confirmation(
        store, transport, settings, signer, TemplateSet("confirm"), consent_id, NOW
    )

    assert sent_to == "ann@example.com"
    (path,) = (tmp_path / "outbox").glob("confirm-*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "ann@example.com"
    assert "List-Unsubscribe" not in message  # not subscribed yet: nothing to leave
    text = message.get_body(("plain",)).get_content()
    token = re.search(r"/confirm/([\w-]+)", text).group(1)
    assert consent.read_confirm_token(signer, token) == consent.ConfirmLink(
        consent_id, store.consent(consent_id)["subscriber_id"], NOW
    )
    # The text part is wrapped at 78 columns: compare the words.
    assert settings.consent.text in " ".join(text.split()) and "news" in text
    # A name typed into a public form is never echoed into mail we send.
    assert "Mallory" not in path.read_text(errors="replace")
    assert store.consent(consent_id)["confirm_sent_at"] == NOW.isoformat(timespec="seconds")


# -- lists and segments -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("tag:back-pain", {"kind": "tag", "value": "back-pain", "negate": False}),
        ("!tag:running", {"kind": "tag", "value": "running", "negate": True}),
        (
            "attribute:city=Springfield",
            {"kind": "attribute", "key": "city", "value": "Springfield", "negate": False},
        ),
        ("attr:plan", {"kind": "attribute", "key": "plan", "value": None, "negate": False}),
    ],
)
def test_segment_rules(text: str, rule: dict) -> None:
    assert parse_segment(text) == rule


@pytest.mark.parametrize("text", ["", "tag:", "back-pain", "city=Springfield", "attribute:=x"])
def test_bad_segment_rules_are_named(text: str) -> None:
    with pytest.raises(InputError) as excinfo:
        parse_segment(text)
    assert str(excinfo.value).startswith(f"--segment {text!r}")


def _recipients(store: Store, list_id: int | None, segment: list[dict]) -> list[str]:
    campaign_id = store.create_campaign("S", "", "digest", [], list_id, True, NOW, segment)
    assert store.start_campaign(campaign_id, list_id, NOW)
    rows = store._rows(
        "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
        "WHERE d.campaign_id = ? ORDER BY s.email",
        [campaign_id],
    )
    assert store.count_recipients(list_id, segment) == len(rows)
    return [r["email"] for r in rows]


def test_a_campaign_goes_to_its_segment_only(store: Store) -> None:
    people = [
        ("ann@example.com", "confirmed", ["back-pain", "posture"], {"city": "Springfield"}),
        ("bo@example.org", "confirmed", ["Back-Pain"], {"city": "Eugene", "plan": "gold"}),
        ("cy@example.net", "confirmed", ["running"], {"city": "springfield"}),
        ("dee@example.com", "unconfirmed", ["back-pain"], {}),
        ("eli@example.com", "unsubscribed", ["back-pain"], {}),
    ]
    for address, status, tags, attributes in people:
        add(store, address, status, tags=tags, attributes=attributes)
    tag = parse_segment("tag:back-pain")

    assert _recipients(store, None, [tag]) == ["ann@example.com", "bo@example.org"]
    assert _recipients(store, None, [parse_segment("attribute:City=Springfield")]) == [
        "ann@example.com",
        "cy@example.net",
    ]
    assert _recipients(store, None, [tag, parse_segment("!attribute:city=eugene")]) == [
        "ann@example.com"
    ]
    assert _recipients(store, None, [parse_segment("attribute:plan")]) == ["bo@example.org"]
    # A value that looks like SQL is only ever a value.
    assert _recipients(store, None, [parse_segment("tag:x') OR 1=1 --")]) == []


def test_a_list_campaign_skips_members_who_left_and_suppressed_addresses(store: Store) -> None:
    store.add_subscribers(
        [
            {"email": e, "status": "confirmed"}
            for e in ("ann@example.com", "bo@example.org", "cy@example.net")
        ],
        "news",
        "t",
        "t",
        NOW,
    )
    news = store.list_id("news")
    people = {s["email"]: s["id"] for s in store.subscribers()}
    assert store.leave_list(people["bo@example.org"], news, None, NOW)
    store.unsubscribe(people["cy@example.net"], None, NOW, "link")

    assert _recipients(store, news, []) == ["ann@example.com"]


def test_leaving_a_list_stops_its_campaign_already_sending(store: Store) -> None:
    store.add_subscribers(
        [{"email": e, "status": "confirmed"} for e in ("ann@example.com", "bo@example.org")],
        "news",
        "t",
        "t",
        NOW,
    )
    news = store.list_id("news")
    campaign_id = store.create_campaign("S", "", "digest", [], news, True, NOW)
    store.start_campaign(campaign_id, news, NOW)
    bo = store.subscriber_by_email("bo@example.org")["id"]

    assert store.leave_list(bo, news, campaign_id, NOW, "203.0.113.0", "UA")
    assert not store.leave_list(bo, news, campaign_id, NOW)  # already off it

    assert store.delivery(campaign_id, bo)["status"] == "skipped"
    ann = store.subscriber_by_email("ann@example.com")["id"]
    assert store.delivery(campaign_id, ann)["status"] == "pending"
    # Rejoining is a consent of its own.
    assert store.join_list(bo, news, NOW, "preferences", "text", "1", "203.0.113.0", "UA")
    record = store.subscriber_record(bo)
    assert record["lists"][0]["left_at"] is None
    assert record["consents"][-1]["lists"] == ["news"]
    assert record["consents"][-1]["confirmed_at"] is not None


# -- privacy ----------------------------------------------------------------------------


def test_the_record_of_one_person_holds_everything(store: Store) -> None:
    store.create_list("news", "", True, NOW)
    consent_id = ask(
        store, "ann@example.com", lists=["news"], ip="203.0.113.0", user_agent="Browser/1.0"
    )
    sid = store.consent(consent_id)["subscriber_id"]
    store.confirm_opt_in(consent_id, sid, NOW, "203.0.113.0")
    store.conn.execute(
        'UPDATE subscribers SET attributes = \'{"city": "Oslo"}\' WHERE id = ?', [sid]
    )
    store.insert_events(
        [{"at": NOW.isoformat(), "kind": "open", "campaign_id": 1, "subscriber_id": sid}]
    )
    store.unsubscribe(sid, None, NOW + timedelta(days=1), "page", "203.0.113.0", "Browser/1.0")

    record = store.subscriber_record(sid)

    assert record["subscriber"]["attributes"] == {"city": "Oslo"}
    assert record["lists"] == [
        {"name": "news", "joined_at": NOW.isoformat(timespec="seconds"), "left_at": None}
    ]
    assert record["suppression"]["reason"] == "unsubscribed"
    (kept,) = record["consents"]  # consent records survive the unsubscribe
    assert (kept["text"], kept["ip"], kept["confirm_ip"]) == (
        SETTINGS.consent.text,
        "203.0.113.0",
        "203.0.113.0",
    )
    assert [e["kind"] for e in record["events"]] == ["confirm", "open", "unsubscribe"]


def test_erasure_keeps_anonymous_consent_events_and_a_hashed_suppression(store) -> None:
    consent_id = ask(store, "ann@example.com", ip="203.0.113.0", user_agent="Browser/1.0")
    sid = store.consent(consent_id)["subscriber_id"]
    store.confirm_opt_in(consent_id, sid, NOW, "203.0.113.0")
    store.insert_events(
        [
            {
                "at": NOW.isoformat(),
                "kind": "click",
                "campaign_id": 1,
                "subscriber_id": sid,
                "ip": "203.0.113.0",
                "user_agent": "Browser/1.0",
            }
        ]
    )

    store.delete_subscriber(sid, NOW + timedelta(days=2))

    assert store.subscriber(sid) is None
    (kept,) = store._rows("SELECT * FROM consents")
    assert (kept["email"], kept["subscriber_id"], kept["ip"], kept["user_agent"]) == (
        "(deleted)",
        None,
        None,
        None,
    )
    assert (kept["text"], kept["confirmed_at"]) == (
        SETTINGS.consent.text,
        NOW.isoformat(timespec="seconds"),
    )
    clicks = store._rows("SELECT * FROM events WHERE kind = 'click'")
    assert [(e["campaign_id"], e["subscriber_id"], e["ip"]) for e in clicks] == [(1, None, None)]
    assert store.suppressions() == [
        {
            "email": erased_key("ann@example.com"),
            "reason": "erased",
            "at": "2026-11-04T09:30:00+00:00",
        }
    ]
    everything = "\n".join(store.conn.iterdump())
    assert "ann@example.com" not in everything and "203.0.113.0" not in everything
