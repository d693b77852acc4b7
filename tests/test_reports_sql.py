"""The reports counted in SQL give exactly the numbers of the former count in Python.

The reference below is the former ``reports.campaign_report``, which read every event of a
campaign into Python; the data set mixes every class (and none), people and no one, links
with and without an article, times around the series' hour boundaries, bounces,
complaints and unsubscribes, over several campaigns.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict
from typing import Any

import pytest

from clocks import NOW
from conftest import database_before
from newsletter import campaigns, jobs, reports
from newsletter.classify import HUMAN, MACHINE, UNKNOWN
from newsletter.store import Store
from newsletter.workspace import Workspace
from workspaces import new_campaign

MORE_READERS = 30
CAMPAIGNS = 3
EVENTS = 900


def _class(event: dict[str, Any]) -> str:
    return event["classification"] or UNKNOWN


def _clicks(clicks: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "clicks_total": len(clicks),
        "clicks_unique": len({c["subscriber_id"] for c in clicks} - {None}),
        "clicks_human_unique": len(
            {c["subscriber_id"] for c in clicks if _class(c) == HUMAN} - {None}
        ),
        "clicks_machine": sum(1 for c in clicks if _class(c) == MACHINE),
    }


def python_report(store: Store, campaign_id: int) -> dict[str, Any]:
    """The numbers of one campaign as the former Python count made them."""
    stats = store.campaign_stats(campaign_id)
    events = store._rows(
        "SELECT id, at, kind, subscriber_id, link_id, article_id, classification, reason "
        "FROM events WHERE campaign_id = ? AND kind IN ('open', 'click', 'view') ORDER BY id",
        [campaign_id],
    )
    opens = [e for e in events if e["kind"] == "open"]
    clicks = [e for e in events if e["kind"] == "click"]
    human_clickers = {c["subscriber_id"] for c in clicks if _class(c) == HUMAN}
    openers = {o["subscriber_id"] for o in opens} - {None}
    human_openers = {o["subscriber_id"] for o in opens if _class(o) == HUMAN} | human_clickers
    bounced = stats["bounces_unique"]
    delivered = max(stats["sent"] - bounced, 0)
    rate = reports._rate
    report: dict[str, Any] = {
        "recipients": stats["recipients"],
        "sent": stats["sent"],
        "failed": stats["failed"],
        "in_doubt": stats["in_doubt"],
        "pending": stats["pending"] + stats["deferred"] + stats["sending"],
        "delivered": delivered,
        "bounced": bounced,
        "complaints": stats["complaints_unique"],
        "unsubscribes": stats["unsubscribes_unique"],
        "opens_total": len(opens),
        "opens_unique": len(openers),
        "opens_human_unique": len(openers & human_openers),
        "opens_machine": sum(1 for o in opens if _class(o) == MACHINE),
        "opens_unknown": sum(1 for o in opens if _class(o) == UNKNOWN),
        **_clicks(clicks),
        "views_total": sum(1 for e in events if e["kind"] == "view"),
        "anonymous_events": sum(1 for e in events if e["subscriber_id"] is None),
        "machine_reasons": dict(
            Counter(e["reason"] for e in opens + clicks if _class(e) == MACHINE).most_common()
        ),
    }
    report["open_rate"] = rate(report["opens_unique"], delivered)
    report["human_open_rate"] = rate(report["opens_human_unique"], delivered)
    report["click_rate"] = rate(report["clicks_unique"], delivered)
    report["human_click_rate"] = rate(report["clicks_human_unique"], delivered)
    report["click_to_open_rate"] = rate(report["clicks_unique"], report["opens_unique"])
    report["human_click_to_open_rate"] = rate(
        report["clicks_human_unique"], report["opens_human_unique"]
    )
    by_link: dict[int, list[dict[str, Any]]] = defaultdict(list)
    by_article: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for click in clicks:
        by_link[click["link_id"]].append(click)
        if click["article_id"] is not None:
            by_article[click["article_id"]].append(click)
    report["links"] = {
        link["id"]: _clicks(by_link.get(link["id"], []))
        for link in store.campaign_links(campaign_id)
    }
    campaign = store.campaign(campaign_id)
    report["articles"] = {a: _clicks(by_article.get(a, [])) for a in campaign["article_ids"]}
    start = store.first_sent_at(campaign_id) or campaign["started_at"]
    counts: Counter[tuple[int, str]] = Counter()
    if start is not None:
        origin = dt.datetime.fromisoformat(start)
        for event in opens + clicks:
            hour = int((dt.datetime.fromisoformat(event["at"]) - origin).total_seconds() // 3600)
            if 0 <= hour < reports.SERIES_HOURS:
                counts[(hour, f"{event['kind']}s_{_class(event)}")] += 1
    report["hourly"] = (
        [
            {name: counts[(hour, name)] for name in reports.SERIES_COUNTS}
            for hour in range(reports.SERIES_HOURS)
        ]
        if start is not None
        else []
    )
    return report


def sql_numbers(report: dict[str, Any]) -> dict[str, Any]:
    """A report of ``reports`` in the reference's shape."""
    shaped = {k: report[k] for k in report if k not in ("links", "articles", "hourly")}
    shaped["links"] = {
        x["link_id"]: {k: x[k] for k in reports._CLICK_COUNTS} for x in report["links"]
    }
    shaped["articles"] = {
        x["article_id"]: {k: x[k] for k in reports._CLICK_COUNTS} for x in report["articles"]
    }
    shaped["hourly"] = [{n: h[n] for n in reports.SERIES_COUNTS} for h in report["hourly"]]
    return shaped


@pytest.fixture
def varied(workspace: Workspace) -> list[int]:
    """Campaigns sent to a few dozen readers, with a random mix of every kind of event."""
    rows = "\n".join(f"reader{i}@example.com,confirmed" for i in range(MORE_READERS))
    (workspace.root / "subscribers" / "more.csv").write_text(f"email,status\n{rows}\n")
    store = workspace.store
    ids = []
    for n in range(CAMPAIGNS):
        when = NOW + dt.timedelta(days=3 * n)
        if n == 0:
            campaign_id = new_campaign(workspace, when, "Campaign 0")
        else:
            articles = ",".join(str(a) for a in store.campaign(ids[0])["article_ids"][:n])
            campaign_id = campaigns.create(
                store, workspace.settings, f"Campaign {n}", articles, None, None, when
            )
        jobs.send_campaign(workspace, store, campaign_id, lambda when=when: when)
        ids.append(campaign_id)
    rng = random.Random(18)
    readers = [s["id"] for s in store.subscribers("confirmed")]
    classes = [HUMAN, MACHINE, UNKNOWN, None, ""]
    reasons = ["image proxy", "link scanner", "prefetch", None]
    events = []
    for _ in range(EVENTS):
        campaign_id = rng.choice(ids)
        origin = dt.datetime.fromisoformat(store.first_sent_at(campaign_id))
        links = store.campaign_links(campaign_id)
        kind = rng.choice(["open", "open", "click", "click", "view", "unsubscribe", "bounce"])
        # Around the hour boundaries, before the send and past the 48 hours.
        seconds = rng.choice([-1, 0, 1, 3599, 3600, 3601, 47 * 3600 + 3599, 48 * 3600])
        seconds += 3600 * rng.randint(0, 3) if rng.random() < 0.5 else 0
        link = rng.choice(links) if kind == "click" and links else None
        cls = rng.choice(classes) if kind in ("open", "click", "view") else None
        events.append(
            {
                "at": (origin + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds"),
                "kind": kind if rng.random() > 0.02 else "complaint",
                "campaign_id": campaign_id,
                "subscriber_id": rng.choice(readers) if rng.random() > 0.1 else None,
                "link_id": link["id"] if link else None,
                "article_id": link["article_id"] if link else None,
                "method": "GET",
                "classification": cls,
                "reason": rng.choice(reasons) if cls == MACHINE else None,
            }
        )
    store.insert_events(events)
    return ids


def test_sql_counts_equal_the_former_python_count(workspace: Workspace, varied: list[int]) -> None:
    store = workspace.store
    cache = reports.KeptReports(store)
    listed = {row["campaign"]["id"]: row["report"] for row in reports.summaries(store)}
    for campaign_id in varied:
        expected = python_report(store, campaign_id)
        assert expected["opens_human_unique"] and expected["anonymous_events"]
        assert len(expected["machine_reasons"]) > 1
        got = sql_numbers(reports.campaign_report(store, campaign_id))
        assert {k: got[k] for k in expected} == expected
        # The campaigns list and home show the same numbers, counted for all at once.
        summary = {k: v for k, v in expected.items() if k in listed[campaign_id]}
        assert {k: listed[campaign_id][k] for k in summary} == summary
        assert len(summary) == len(reports.SUMMARY_FIELDS) - 3  # all but id, subject, status
        # Kept or not, the same numbers.
        for _ in range(2):
            kept = sql_numbers(reports.campaign_report(store, campaign_id, cache))
            assert {k: kept[k] for k in expected} == expected


def test_a_kept_report_follows_new_events_erasure_and_purge(
    workspace: Workspace, varied: list[int]
) -> None:
    store = workspace.store
    cache = reports.KeptReports(store)
    campaign_id = varied[0]

    def both() -> tuple[dict[str, Any], dict[str, Any]]:
        kept = reports.campaign_report(store, campaign_id, cache)
        listed = reports.summaries(store, cache)[varied.index(campaign_id)]["report"]
        assert {k: kept[k] for k in listed} == listed
        return kept, python_report(store, campaign_id)

    first, _ = both()
    reader = store.subscribers("confirmed")[0]["id"]
    origin = dt.datetime.fromisoformat(store.first_sent_at(campaign_id))
    store.insert_events(
        [
            {
                "at": (origin + dt.timedelta(minutes=3)).isoformat(timespec="seconds"),
                "kind": "open",
                "campaign_id": campaign_id,
                "subscriber_id": reader,
                "classification": HUMAN,
            }
        ]
    )
    after_open, expected = both()
    assert after_open["opens_total"] == first["opens_total"] + 1
    assert sql_numbers(after_open)["opens_unique"] == expected["opens_unique"]

    # An erased person's events lose their subscriber: the unique counts go down.
    store.conn.execute("UPDATE events SET subscriber_id = NULL WHERE subscriber_id = ?", [reader])
    store.conn.commit()
    after_erasure, expected = both()
    assert after_erasure["anonymous_events"] > after_open["anonymous_events"]
    assert sql_numbers(after_erasure)["opens_unique"] == expected["opens_unique"]

    # A purge of old events.
    store.purge_events(origin + dt.timedelta(hours=2))
    after_purge, expected = both()
    assert after_purge["opens_total"] < after_erasure["opens_total"]
    assert {k: sql_numbers(after_purge)[k] for k in expected} == expected


def test_a_finished_campaigns_numbers_are_kept_and_used_until_an_event_arrives(
    workspace: Workspace, varied: list[int]
) -> None:
    store = workspace.store
    kept = reports.KeptReports(store)
    campaign_id = varied[0]
    counted = reports.campaign_report(store, campaign_id, kept)
    reports.summaries(store, kept)
    # The whole report of the one shown, the list's numbers of the others.
    parts = store.conn.execute("SELECT campaign_id, part FROM kept_reports").fetchall()
    assert sorted(parts) == [(campaign_id, "report")] + [(c, "summary") for c in varied[1:]]
    # What is kept is what the page shows: marked here so the page can be seen reading it.
    store.conn.execute(
        "UPDATE kept_reports SET numbers = json_set(numbers, '$.summary.opens_total', 999) "
        "WHERE campaign_id = ? AND part = 'report'",
        [campaign_id],
    )
    assert reports.campaign_report(store, campaign_id, kept)["opens_total"] == 999
    # A new event: counted again, from the events.
    origin = store.first_sent_at(campaign_id)
    store.insert_events(
        [{"at": origin, "kind": "open", "campaign_id": campaign_id, "classification": MACHINE}]
    )
    again = reports.campaign_report(store, campaign_id, kept)
    assert again["opens_total"] == counted["opens_total"] + 1
    assert again["anonymous_events"] == counted["anonymous_events"] + 1


def test_keeping_numbers_never_waits_for_another_writer(
    workspace: Workspace, varied: list[int]
) -> None:
    store = workspace.store
    other = Store(store.path)
    try:
        other.conn.execute("BEGIN IMMEDIATE")
        assert store.keep_report(varied[0], "report", "[]", "{}") is False
        other.conn.execute("ROLLBACK")
        assert store.keep_report(varied[0], "report", "[]", "{}") is True
        assert store.kept_report(varied[0], "report", "[]") == "{}"
        # The connection waits for the lock again as it did before.
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    finally:
        other.close()


def test_m015_adds_the_report_indexes_and_keeps_what_was_stored(tmp_path) -> None:
    store = database_before(tmp_path / "old.db", "m015")
    store.conn.execute(
        "INSERT INTO events (at, kind, campaign_id, subscriber_id, classification) "
        "VALUES ('2026-11-01T09:00:00+00:00', 'open', 1, 1, 'human')"
    )
    store.conn.commit()
    assert "m015_report_indexes" in store.migrate()
    indexes = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
    assert {"events_campaign_subscriber", "deliveries_subscriber", "kept_reports"} <= indexes
    assert "deliveries_campaign_status" not in indexes  # the new index's prefix does its work
    assert store.event_summaries()[1]["opens_human_unique"] == 1
    store.close()


def test_a_cancelled_campaigns_numbers_follow_its_deliveries(workspace: Workspace) -> None:
    """A cancelled campaign's rows can still change without an event (a person leaving
    its list settles their waiting rows): its numbers are counted each time, never kept."""
    store = workspace.store
    kept = reports.KeptReports(store)
    campaign_id = new_campaign(workspace, NOW, "Stopped")
    campaigns.start(store, campaign_id, NOW)
    store.conn.execute(
        "UPDATE deliveries SET status = 'failed' WHERE id = "
        "(SELECT MIN(id) FROM deliveries WHERE campaign_id = ?)",
        [campaign_id],
    )
    campaigns.cancel(store, campaign_id, NOW)
    before = reports.campaign_report(store, campaign_id, kept)
    assert before["failed"] == 1
    with store.transaction():  # one waiting row settled, as leaving a list does
        store.conn.execute(
            "UPDATE deliveries SET status = 'skipped' WHERE id = "
            "(SELECT MIN(id) FROM deliveries WHERE campaign_id = ? AND status = 'pending')",
            [campaign_id],
        )
    after = reports.campaign_report(store, campaign_id, kept)
    assert after["pending"] == before["pending"] - 1
