"""The store queries behind the dashboard: subscriber search and growth per week."""

from __future__ import annotations

import datetime as dt

from newsletter import subscribers

MONDAY = dt.datetime(2026, 11, 16, 9, 0, tzinfo=dt.UTC)
CSV = (
    "email,first_name,last_name,status,tags\n"
    "ann_100%@example.com,Ann,Lee,confirmed,running\n"
    "annex@example.com,Bo,Annex,confirmed,knee;running\n"
    "carl@example.com,Carl,Diaz,unconfirmed,\n"
)


def _load(store) -> None:
    parsed = subscribers.parse_csv(CSV.encode(), "list.csv", False)
    subscribers.save(store, parsed, MONDAY)


def test_search_matches_address_or_name_and_wildcards_are_literal(store) -> None:
    _load(store)

    def emails(**kw) -> list[str]:
        rows, total = store.search_subscribers(**kw)
        assert total == len(rows)
        return [r["email"] for r in rows]

    assert emails(query="ann") == ["ann_100%@example.com", "annex@example.com"]
    assert emails(query="100%") == ["ann_100%@example.com"]
    assert emails(query="n_1") == ["ann_100%@example.com"]
    assert emails(query="%") == ["ann_100%@example.com"]
    assert emails(query="Diaz") == ["carl@example.com"]
    assert emails(tag="running", status="confirmed") == [
        "ann_100%@example.com",
        "annex@example.com",
    ]
    assert emails(tag="knee") == ["annex@example.com"]
    rows, total = store.search_subscribers(limit=1, offset=1)
    assert ([r["email"] for r in rows], total) == (["annex@example.com"], 3)


def test_growth_counts_confirmations_and_departures_per_week(store) -> None:
    _load(store)
    carl = store.subscriber_by_email("carl@example.com")
    ann = store.subscriber_by_email("ann_100%@example.com")
    store.unsubscribe(ann["id"], None, MONDAY + dt.timedelta(days=8), "staff")
    growth = store.subscriber_growth(MONDAY - dt.timedelta(days=1))
    assert growth == [
        {"week": "2026-11-16", "joined": 2, "left": 0},
        {"week": "2026-11-23", "joined": 0, "left": 1},
    ]
    assert store.subscriber_counts() == {"confirmed": 1, "unsubscribed": 1, "unconfirmed": 1}
    assert carl["confirmed_at"] is None
