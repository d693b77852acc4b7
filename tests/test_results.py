"""Campaign results: rates, the hourly timeline with its classes, CSV cells, per article."""

from __future__ import annotations

import datetime as dt

from newsletter import results

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)


def _campaign(store) -> int:
    return store.create_campaign("Subject", "", "digest", [], None, True, NOW)


def _event(kind: str, hour: int, minute: int, subscriber: int, cls: str | None = None) -> dict:
    at = NOW.replace(hour=hour, minute=minute).isoformat(timespec="seconds")
    return {"at": at, "kind": kind, "campaign_id": 1, "subscriber_id": subscriber,
            "classification": cls}  # fmt: skip


def test_timeline_counts_per_hour_with_every_hour_between(store) -> None:
    _campaign(store)
    store.insert_events(
        [
            _event("open", 9, 5, 1),
            _event("open", 9, 50, 2),
            _event("click", 9, 51, 2),
            _event("open", 12, 1, 3),
            _event("unsubscribe", 10, 0, 3),
        ]
    )
    timeline = results.timeline(store, 1)
    assert timeline["hours"] == [
        "2026-11-27T09:00",
        "2026-11-27T10:00",
        "2026-11-27T11:00",
        "2026-11-27T12:00",
    ]
    assert timeline["series"] == {"opens": [2, 0, 0, 1], "clicks": [1, 0, 0, 0]}


def test_timeline_keeps_human_and_machine_apart(store) -> None:
    _campaign(store)
    store.insert_events(
        [
            _event("open", 9, 1, 1, "machine"),
            _event("open", 9, 2, 2, "human"),
            _event("open", 10, 2, 3, "human"),
        ]
    )
    assert results.timeline(store, 1)["series"] == {
        "opens (machine)": [1, 0],
        "opens (human)": [1, 1],
    }


def test_no_events_no_hours_and_one_hour_gets_the_one_before(store) -> None:
    _campaign(store)
    assert results.timeline(store, 1) == {"hours": [], "series": {}}
    store.insert_events([_event("click", 9, 30, 1)])
    assert results.timeline(store, 1) == {
        "hours": ["2026-11-27T08:00", "2026-11-27T09:00"],
        "series": {"clicks": [0, 1]},
    }


def test_rates_and_spreadsheet_safe_csv(store) -> None:
    _campaign(store)
    stats = results.campaign_stats(store, 1)
    assert (stats["open_rate"], stats["click_rate"], stats["click_to_open_rate"]) == (0, 0, 0)
    stats = results.rates({**stats, "sent": 4, "opens_unique": 2, "clicks_unique": 1})
    assert (stats["open_rate"], stats["click_rate"], stats["click_to_open_rate"]) == (
        0.5,
        0.25,
        0.5,
    )
    links = {
        "links": [
            {"id": 1, "url": "=cmd|' /C calc'!A0", "article_id": 7, "clicks": 3,
             "unique_clicks": 2},
        ]
    }  # fmt: skip
    text = results.links_csv(links, {7: "@SUM(A1:A9) tips"})
    assert text.splitlines()[1] == "1,'=cmd|' /C calc'!A0,7,'@SUM(A1:A9) tips,3,2"
    header, row = results.stats_csv([stats]).splitlines()
    assert header.split(",") == results.STAT_FIELDS
    assert row.split(",")[0] == "1"
