"""Engagement segments: "opened or clicked in the last N days" and "did not", as staff pick
them. Only people's opens and clicks count (never a scanner's or a machine open), the days
count back from the now the caller gives, and someone who got no campaign in those days is
neither engaged nor "not engaged"."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from clocks import NOW
from conftest import Cli, dump, one_line_error
from newsletter import campaigns
from newsletter.classify import HUMAN, MACHINE, UNKNOWN
from newsletter.errors import InputError
from newsletter.status import DeliveryStatus, SubscriberStatus
from newsletter.store import Store
from newsletter.subscribers import parse_segment
from newsletter.web.wording import for_people
from workspaces import workspace_with_articles_and_subscribers

DAY = dt.timedelta(days=1)


def _add(store: Store, address: str, at: dt.datetime) -> int:
    store.add_subscribers([{"email": address, "status": "confirmed"}], None, "t", "t", at)
    return store.subscriber_by_email(address)["id"]


def _send(store: Store, at: dt.datetime, to: set[int] | None = None) -> int:
    """A campaign sent at ``at`` to everyone confirmed then (``to``: only these get it)."""
    campaign_id = store.create_campaign("Hi", "", "digest", [], None, True, at, [])
    assert store.start_campaign(campaign_id, None, at)
    rows = store.next_pending(campaign_id, 0, 1000)
    claims = [(r["id"], f"<{r['id']}@x>") for r in rows if to is None or r["subscriber_id"] in to]
    claimed, _skipped = store.claim_deliveries(claims, at)
    store.record_outcomes([{"id": i, "status": DeliveryStatus.SENT} for i in claimed], at)
    return campaign_id


def _event(
    store: Store, kind: str, cls: str, campaign_id: int, subscriber_id: int, at: dt.datetime
) -> None:
    store.insert_events(
        [
            {
                "at": at.isoformat(timespec="seconds"),
                "kind": kind,
                "campaign_id": campaign_id,
                "subscriber_id": subscriber_id,
                "classification": cls,
                "reason": "test",
            }
        ]
    )


def _who(store: Store, rule: str, now: dt.datetime) -> list[str]:
    """The addresses a campaign with this one rule goes to at ``now``: planned and counted."""
    segment = [parse_segment(rule)]
    campaign_id = store.create_campaign("S", "", "digest", [], None, True, now, segment)
    assert store.start_campaign(campaign_id, None, now)
    rows = store._rows(
        "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
        "WHERE d.campaign_id = ? ORDER BY s.email",
        [campaign_id],
    )
    # The count the dashboard asks "Send to N" with is the number the send plans.
    assert store.count_recipients(None, segment, now) == len(rows)
    store.conn.execute("DELETE FROM campaigns WHERE id = ?", [campaign_id])
    return [r["email"].split("@")[0] for r in rows]


@pytest.fixture
def people(store: Store) -> Store:
    """Subscribers with campaigns and events dated back from NOW (handed to the code)."""
    long_ago, lately = NOW - 200 * DAY, NOW - 10 * DAY
    ids = {name: _add(store, f"{name}@example.com", long_ago) for name in ("cat", "eve")}
    old = _send(store, long_ago)
    for name in ("ann", "ben", "fay", "gus"):
        ids[name] = _add(store, f"{name}@example.com", lately - DAY)
    recent = _send(store, lately, to={ids[n] for n in ("ann", "ben", "cat", "fay", "gus")})
    ids["dan"] = _add(store, "dan@example.com", NOW - 2 * DAY)  # joined since: got nothing

    _event(store, "open", HUMAN, recent, ids["ann"], NOW - 5 * DAY)
    # A link scanner opens and clicks everything at once; a machine open is no reader.
    _event(store, "open", MACHINE, recent, ids["ben"], lately + dt.timedelta(seconds=3))
    _event(store, "click", MACHINE, recent, ids["ben"], lately + dt.timedelta(seconds=3))
    # cat read the old campaign, long ago, and nothing since.
    _event(store, "click", HUMAN, old, ids["cat"], NOW - 150 * DAY)
    _event(store, "open", HUMAN, old, ids["eve"], NOW - 199 * DAY)
    _event(store, "click", HUMAN, recent, ids["fay"], NOW - 3 * DAY)
    # An image proxy fetched the pixel: an open, but no sign of a person by itself.
    _event(store, "open", UNKNOWN, recent, ids["gus"], NOW - 9 * DAY)
    return store


def test_engaged_counts_only_peoples_opens_and_clicks_within_the_days(people: Store) -> None:
    assert _who(people, "engaged:90", NOW) == ["ann", "fay"]
    assert _who(people, "engaged:180", NOW) == ["ann", "cat", "fay"]
    assert _who(people, "engaged:365", NOW) == ["ann", "cat", "eve", "fay"]
    assert _who(people, "clicked:30", NOW) == ["fay"]
    # The days count back from the now the caller gives: 86 days on, ann's open is too old.
    assert _who(people, "engaged:90", NOW + 86 * DAY) == ["fay"]
    assert _who(people, "engaged:90", NOW + 100 * DAY) == []


def test_not_engaged_is_who_got_a_campaign_in_the_days_and_read_none(people: Store) -> None:
    # ben (scanner only), cat (read long ago), gus (image proxy): sent to, no person read it.
    # dan joined since and eve got nothing in the 90 days: neither is "not engaged".
    assert _who(people, "!engaged:90", NOW) == ["ben", "cat", "gus"]
    assert _who(people, "!clicked:30", NOW) == ["ann", "ben", "cat", "gus"]
    # On a window wide enough to hold eve's campaign, she read it: still not "not engaged".
    assert _who(people, "!engaged:365", NOW) == ["ben", "gus"]
    # Once the last campaign is out of the window, nobody is "not engaged".
    assert _who(people, "!engaged:30", NOW + 60 * DAY) == []


def test_an_engagement_rule_is_never_counted_without_a_now(people: Store) -> None:
    with pytest.raises(ValueError, match="needs the time"):
        people.count_recipients(None, [parse_segment("engaged:90")])


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("engaged:90", {"kind": "engaged", "days": 90, "negate": False}),
        ("!engaged:30", {"kind": "engaged", "days": 30, "negate": True}),
        (" clicked: 180 ", {"kind": "clicked", "days": 180, "negate": False}),
    ],
)
def test_engagement_rules_read_and_write_back(text: str, rule: dict) -> None:
    assert parse_segment(text) == rule
    assert parse_segment(campaigns.segment_text(rule)) == rule


@pytest.mark.parametrize("text", ["engaged:abc", "engaged:", "engaged:0", "!clicked:9999"])
def test_a_bad_number_of_days_is_named_with_the_form_expected(text: str) -> None:
    with pytest.raises(InputError) as excinfo:
        parse_segment(text)
    message = str(excinfo.value)
    kind = text.lstrip("!").split(":")[0]
    assert message.startswith(f"--segment {text!r}: ")
    assert f"{kind}:DAYS" in message and "\n" not in message
    # The dashboard says it in its own words, by the segment field, with no flag.
    said = for_people(message)
    assert said.field == "segment"
    assert f"{text!r} is not a rule" in said.text and "--" not in said.text


def test_the_cli_refuses_a_bad_engagement_rule_in_one_line_and_stores_nothing(
    cli: Cli, ws_dir: Path
) -> None:
    cli("fetch")  # new articles, so the segment is the only thing wrong
    before = dump(ws_dir / "newsletter.db")
    result = cli("campaign", "create", "--subject", "Hi", "--segment", "engaged:abc", check=False)
    one_line_error(result, "'engaged:abc'", "'abc' is not a number of days", "engaged:DAYS")
    assert dump(ws_dir / "newsletter.db") == before


# -- the dashboard's segment builder, in Chromium ------------------------------------------


def test_staff_pick_the_quiet_ones_by_engagement_and_send_now_names_their_count(
    admin_page, dashboard
) -> None:
    """The builder's "Engagement" choice makes the rule, comes back chosen when the draft
    is edited, and the counts the page shows (and the send) follow it. The server runs on
    the real clock, so the campaign and events are dated back from the real now."""
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    store = ws.store
    now = dt.datetime.now(dt.UTC)
    workspace_with_articles_and_subscribers(ws, now - 30 * DAY)
    got = [s["id"] for s in store.subscribers(SubscriberStatus.CONFIRMED)]
    assert len(got) >= 3
    last = _send(store, now - 10 * DAY)
    reader, scanned, long_ago = got[:3]
    _event(store, "open", HUMAN, last, reader, now - 5 * DAY)
    _event(store, "open", MACHINE, last, scanned, now - 10 * DAY + dt.timedelta(seconds=2))
    _event(store, "click", HUMAN, last, long_ago, now - 120 * DAY)
    _add(store, "new-here@example.com", now - DAY)  # joined since: had nothing to open
    quiet = len(got) - 1  # everyone who got the campaign but the one who read it

    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("We miss you")
    expect(page.get_by_label("in the last")).to_have_value("90")
    page.get_by_label("Engagement").select_option(label="did not open or click")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    expect(page.get_by_text(f"{quiet} subscribers match now")).to_be_visible()
    cid = store.campaigns()[-1]["id"]
    assert json.loads(store.campaign(cid)["segment"]) == [
        {"kind": "engaged", "days": 90, "negate": True}
    ]
    expect(page.locator("form[data-sending]")).to_have_attribute(
        "data-confirm", f"Send to {quiet} confirmed subscribers now?"
    )

    # Edited, the draft shows its choice; the people who read it are a choice away.
    page.get_by_role("link", name="Edit draft").click()
    expect(page.get_by_label("Engagement")).to_have_value("!engaged")
    expect(page.get_by_label("in the last")).to_have_value("90")
    expect(page.get_by_label("Segment rules")).to_have_value("")
    page.get_by_label("Engagement").select_option(label="opened or clicked")
    page.get_by_label("in the last").select_option(label="30 days")
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(re.compile(rf".*/campaigns/{cid}$"))
    expect(page.get_by_text("1 subscriber matches now")).to_be_visible()

    # A typed rule with a bad number of days is refused by the field, in the page's words.
    page.get_by_role("link", name="Edit draft").click()
    expect(page.get_by_label("Engagement")).to_have_value("engaged")
    expect(page.get_by_label("in the last")).to_have_value("30")
    page.locator("details summary", has_text="More rules, typed").click()
    page.get_by_label("Segment rules").fill("clicked:abc")
    page.get_by_role("button", name="Save changes").click()
    error = page.locator("#segment-error")
    expect(error).to_contain_text("'clicked:abc' is not a rule")
    assert "--" not in error.inner_text()
    expect(page.get_by_label("Segment rules")).to_have_value("clicked:abc")
    assert json.loads(store.campaign(cid)["segment"])[0]["days"] == 30

    # Send now asks with the count of the rule, and only the reader gets it.
    page.goto(f"{url}/campaigns/{cid}")
    asked: list[str] = []
    page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    page.get_by_role("button", name="Send now").click()
    expect(page.locator("[data-status]")).to_have_text("sent", timeout=30_000)
    assert asked == ["Send to 1 confirmed subscriber now?"]
    (sent,) = store._rows(
        "SELECT subscriber_id FROM deliveries WHERE campaign_id = ? AND status = 'sent'", [cid]
    )
    assert sent["subscriber_id"] == reader
