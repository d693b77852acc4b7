"""Campaign reports: the numbers `newsletter stats` prints and the dashboard shows.

Definitions (docs/deliverability-and-privacy.md repeats them):

- **unique** means distinct subscribers, everywhere: unique opens are the
  subscribers with at least one open event for the campaign; unique clicks,
  per campaign, per link or per article, the subscribers with at least one
  click there. Events that carry no subscriber (anonymous mode, erased
  people) count in totals only.
- **human-unique opens** are the subscribers with an open event and a human
  signal of reading: a human open, or a human click (a click proves the open
  a proxy or a prefetch hid). **Human-unique clicks** are the subscribers
  with a human click.
- **delivered** is sent minus bounced; every rate is over delivered, and
  click-to-open is unique clicks over unique opens (human over human).
- events stored before they were classified count as ``unknown``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from typing import Any

from newsletter.classify import HUMAN, MACHINE, UNKNOWN
from newsletter.store import Store
from newsletter.subscribers import csv_cell

SERIES_HOURS = 48

SUMMARY_FIELDS = [
    "campaign_id",
    "subject",
    "status",
    "recipients",
    "sent",
    "failed",
    "in_doubt",
    "pending",
    "delivered",
    "bounced",
    "complaints",
    "unsubscribes",
    "opens_total",
    "opens_unique",
    "opens_human_unique",
    "opens_machine",
    "opens_unknown",
    "clicks_total",
    "clicks_unique",
    "clicks_human_unique",
    "clicks_machine",
    "views_total",
    "open_rate",
    "human_open_rate",
    "click_rate",
    "human_click_rate",
    "click_to_open_rate",
    "human_click_to_open_rate",
    "anonymous_events",
]
LINK_FIELDS = ["campaign_id", "link_id", "url", "article_id", "clicks_total"]
LINK_FIELDS += ["clicks_unique", "clicks_human_unique", "clicks_machine"]
ARTICLE_FIELDS = ["campaign_id", "article_id", "title", "url", "clicks_total", "clicks_unique"]
ARTICLE_FIELDS += ["clicks_human_unique", "blog_views_before", "blog_views_before_at"]
ARTICLE_FIELDS += ["blog_views_after", "blog_views_after_at", "blog_views_gained"]
SERIES_FIELDS = ["campaign_id", "hour", "start"] + [
    f"{kind}_{cls}" for kind in ("opens", "clicks") for cls in (HUMAN, MACHINE, UNKNOWN)
]
# The counting columns of the hourly series: opens and clicks, per class.
SERIES_COUNTS = SERIES_FIELDS[3:]
# The tables a report exports: one row per campaign, or the rows of its lists.
TABLES = {
    "campaigns": SUMMARY_FIELDS,
    "links": LINK_FIELDS,
    "articles": ARTICLE_FIELDS,
    "hourly": SERIES_FIELDS,
}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _class(event: dict[str, Any]) -> str:
    return event["classification"] or UNKNOWN


def _click_counts(clicks: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "clicks_total": len(clicks),
        "clicks_unique": len({c["subscriber_id"] for c in clicks} - {None}),
        "clicks_human_unique": len(
            {c["subscriber_id"] for c in clicks if _class(c) == HUMAN} - {None}
        ),
        "clicks_machine": sum(1 for c in clicks if _class(c) == MACHINE),
    }


def _blog_views(
    snapshots: list[dict[str, Any]], sent_at: str | None
) -> dict[str, int | str | None]:
    """The blog's own view counter just before the send and at its latest snapshot since."""
    before = after = None
    for snap in snapshots:
        if snap["views"] is None:
            continue
        if sent_at is not None and snap["observed_at"] <= sent_at:
            before = snap
        elif sent_at is not None:
            after = snap
    gained = None
    if before is not None and after is not None:
        gained = after["views"] - before["views"]
    return {
        "blog_views_before": before["views"] if before else None,
        "blog_views_before_at": before["observed_at"] if before else None,
        "blog_views_after": after["views"] if after else None,
        "blog_views_after_at": after["observed_at"] if after else None,
        "blog_views_gained": gained,
    }


def _series(
    events: list[dict[str, Any]], start: str | None, campaign_id: int
) -> list[dict[str, Any]]:
    """Opens and clicks per hour for the first 48 hours after the first message went out."""
    if start is None:
        return []
    origin = dt.datetime.fromisoformat(start)
    counts: Counter[tuple[int, str]] = Counter()
    for event in events:
        if event["kind"] not in ("open", "click"):
            continue
        hour = int((dt.datetime.fromisoformat(event["at"]) - origin).total_seconds() // 3600)
        if 0 <= hour < SERIES_HOURS:
            counts[(hour, f"{event['kind']}s_{_class(event)}")] += 1
    rows = []
    for hour in range(SERIES_HOURS):
        row: dict[str, Any] = {
            "campaign_id": campaign_id,
            "hour": hour,
            "start": (origin + dt.timedelta(hours=hour)).isoformat(timespec="seconds"),
        }
        for name in SERIES_COUNTS:
            row[name] = counts[(hour, name)]
        rows.append(row)
    return rows


def campaign_report(store: Store, campaign_id: int) -> dict[str, Any]:
    """Everything known about how one campaign did; NotFound if there is no such campaign."""
    campaign = store.campaign(campaign_id)
    stats = store.campaign_stats(campaign_id)
    events = store.reader_events(campaign_id)
    opens = [e for e in events if e["kind"] == "open"]
    clicks = [e for e in events if e["kind"] == "click"]
    human_clickers = {c["subscriber_id"] for c in clicks if _class(c) == HUMAN}
    openers = {o["subscriber_id"] for o in opens} - {None}
    human_openers = {o["subscriber_id"] for o in opens if _class(o) == HUMAN} | human_clickers
    bounced = stats["bounces_unique"]
    delivered = max(stats["sent"] - bounced, 0)
    report: dict[str, Any] = {
        "campaign_id": campaign_id,
        "subject": campaign["subject"],
        "status": campaign["status"],
        "tracking": campaign["tracking"],
        "first_sent_at": store.first_sent_at(campaign_id),
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
        **_click_counts(clicks),
        "views_total": sum(1 for e in events if e["kind"] == "view"),
        "anonymous_events": sum(1 for e in events if e["subscriber_id"] is None),
        "machine_reasons": dict(
            Counter(e["reason"] for e in opens + clicks if _class(e) == MACHINE).most_common()
        ),
    }
    report["open_rate"] = _rate(report["opens_unique"], delivered)
    report["human_open_rate"] = _rate(report["opens_human_unique"], delivered)
    report["click_rate"] = _rate(report["clicks_unique"], delivered)
    report["human_click_rate"] = _rate(report["clicks_human_unique"], delivered)
    report["click_to_open_rate"] = _rate(report["clicks_unique"], report["opens_unique"])
    report["human_click_to_open_rate"] = _rate(
        report["clicks_human_unique"], report["opens_human_unique"]
    )

    by_link: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for click in clicks:
        by_link[click["link_id"]].append(click)
    report["links"] = [
        {
            "campaign_id": campaign_id,
            "link_id": link["id"],
            "url": link["url"],
            "article_id": link["article_id"],
            **_click_counts(by_link.get(link["id"], [])),
        }
        for link in store.campaign_links(campaign_id)
    ]

    by_article: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for click in clicks:
        if click["article_id"] is not None:
            by_article[click["article_id"]].append(click)
    sent_from = report["first_sent_at"] or campaign["started_at"]
    report["articles"] = [
        {
            "campaign_id": campaign_id,
            "article_id": article["id"],
            "title": article["title"],
            "url": article["url"],
            **{k: v for k, v in _click_counts(by_article.get(article["id"], [])).items()},
            **_blog_views(store.article_stats(article["id"]), sent_from),
        }
        for article in store.articles_by_id(campaign["article_ids"])
    ]
    report["hourly"] = _series(events, sent_from, campaign_id)
    return report


def reports(store: Store, campaign_id: int | None = None) -> list[dict[str, Any]]:
    """One campaign's report, or every campaign's, oldest first."""
    ids = [campaign_id] if campaign_id is not None else [c["id"] for c in store.campaigns()]
    return [campaign_report(store, i) for i in ids]


def busy_hours(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a report's hourly series that had an open or a click."""
    return [h for h in report["hourly"] if any(h[name] for name in SERIES_COUNTS)]


def table_csv(rows: list[dict[str, Any]], table: str) -> str:
    """One table of these reports as CSV; cells a spreadsheet would run as formulas are defused."""
    fields = TABLES[table]
    lines = rows if table == "campaigns" else [x for r in rows for x in r[table]]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(fields)
    for line in lines:
        writer.writerow([csv_cell(line[f]) for f in fields])
    return out.getvalue()
