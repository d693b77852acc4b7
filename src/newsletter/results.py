"""Campaign results: the numbers of `newsletter stats`, their rates, CSV and a timeline.

One place for what a campaign's report holds, so the CLI and the dashboard
show the same numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from newsletter.store import Store
from newsletter.subscribers import csv_cell

STAT_FIELDS = [
    "campaign_id",
    "recipients",
    "sent",
    "failed",
    "in_doubt",
    "pending",
    "bounces_total",
    "unsubscribes_total",
    "opens_total",
    "opens_unique",
    "clicks_total",
    "clicks_unique",
    "views_total",
    "open_rate",
    "click_rate",
    "click_to_open_rate",
]


def rates(stats: dict[str, Any]) -> dict[str, Any]:
    """Add open, click and click-to-open rates (of messages sent, unique subscribers)."""
    delivered = stats["sent"]
    opens, clicks = stats["opens_unique"], stats["clicks_unique"]
    stats["open_rate"] = round(opens / delivered, 4) if delivered else 0.0
    stats["click_rate"] = round(clicks / delivered, 4) if delivered else 0.0
    stats["click_to_open_rate"] = round(clicks / opens, 4) if opens else 0.0
    return stats


def campaign_stats(store: Store, campaign_id: int) -> dict[str, Any]:
    """The counts of one campaign with its rates; NotFound for an unknown id."""
    store.campaign(campaign_id)
    return rates(store.campaign_stats(campaign_id))


def stats_csv(rows: list[dict[str, Any]]) -> str:
    """One CSV row per campaign; cells a spreadsheet would run as formulas are defused."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(STAT_FIELDS)
    for row in rows:
        writer.writerow([csv_cell(row[f]) for f in STAT_FIELDS])
    return out.getvalue()


def links_csv(stats: dict[str, Any], titles: dict[int, str]) -> str:
    """The per-link table of one campaign as CSV."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["link_id", "url", "article_id", "article", "clicks", "unique_clicks"])
    for link in stats["links"]:
        writer.writerow(
            [
                csv_cell(v)
                for v in (
                    link["id"],
                    link["url"],
                    link["article_id"] or "",
                    titles.get(link["article_id"], ""),
                    link["clicks"],
                    link["unique_clicks"],
                )
            ]
        )
    return out.getvalue()


def per_article(stats: dict[str, Any], articles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clicks per article of the campaign, in the campaign's order."""
    rows = []
    for article in articles:
        links = [link for link in stats["links"] if link["article_id"] == article["id"]]
        rows.append(
            {
                "id": article["id"],
                "title": article["title"],
                "url": article["url"],
                "clicks": sum(link["clicks"] for link in links),
                "unique_clicks": sum(link["unique_clicks"] for link in links),
            }
        )
    return rows


def timeline(store: Store, campaign_id: int) -> dict[str, Any]:
    """Opens and clicks per hour since the campaign started, one series per kind and class.

    Events without a classification form one series per kind; once events
    are told apart (human, machine), each class gets its own line.
    """
    rows = store.event_timeline(campaign_id, ("open", "click"))
    hours = _hour_range(sorted({r["hour"] for r in rows}))
    if len(hours) == 1:
        # One point alone is no line: the hour before it (no events yet) goes first.
        before = dt.datetime.fromisoformat(hours[0]) - dt.timedelta(hours=1)
        hours.insert(0, before.strftime("%Y-%m-%dT%H:00"))
    index = {h: i for i, h in enumerate(hours)}
    series: dict[str, list[int]] = {}
    for r in rows:
        name = r["kind"] + "s" + (f" ({r['classification']})" if r["classification"] else "")
        values = series.setdefault(name, [0] * len(hours))
        values[index[r["hour"]]] = r["count"]
    return {"hours": hours, "series": series}


# A chart of a campaign read for months still gets hourly buckets, but only
# the hours that had events beyond this many.
MAX_HOURS = 24 * 31


def _hour_range(hours: list[str]) -> list[str]:
    """Every hour from the first to the last event (zeros in between draw a true line)."""
    if not hours:
        return []
    first = dt.datetime.fromisoformat(hours[0])
    last = dt.datetime.fromisoformat(hours[-1])
    span = int((last - first).total_seconds() // 3600) + 1
    if span > MAX_HOURS:
        return hours
    return [(first + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H:00") for i in range(span)]
