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
import json
from typing import Any

from newsletter.classify import HUMAN, MACHINE, UNKNOWN
from newsletter.status import CampaignStatus, DeliveryStatus
from newsletter.store import Store
from newsletter.subscribers import csv_cell

SERIES_HOURS = 48
KEPT_VERSION = 1  # of the numbers KeptReports keeps; see _mark

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
# Who opened or clicked one campaign: a row per person (see ``recipients``).
RECIPIENT_FIELDS = ["campaign_id", "subscriber_id", "email", "first_name", "last_name"]
RECIPIENT_FIELDS += ["opened", "opened_human", "clicked", "clicked_human", "opens", "clicks"]
RECIPIENT_FIELDS += ["machine_opens", "machine_clicks", "first_opened_at", "first_clicked_at"]
# The tables a report exports: one row per campaign, or the rows of its lists.
TABLES = {
    "campaigns": SUMMARY_FIELDS,
    "links": LINK_FIELDS,
    "articles": ARTICLE_FIELDS,
    "hourly": SERIES_FIELDS,
}
# The tables of one campaign's people rather than of its report.
PEOPLE_TABLES = {"recipients": RECIPIENT_FIELDS}


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


# The counts of Store.event_summaries a report shows as they are: the summary's columns
# from the opens to the views, and the events nobody can be named for.
_SHOWN_COUNTS = [
    *SUMMARY_FIELDS[SUMMARY_FIELDS.index("opens_total") : SUMMARY_FIELDS.index("open_rate")],
    "anonymous_events",
]
# ... and those it shows under other names.
_EVENT_COUNTS = [*_SHOWN_COUNTS, "unsubscribes_unique", "bounces_unique", "complaints_unique"]
_CLICK_COUNTS = LINK_FIELDS[LINK_FIELDS.index("clicks_total") :]


def summary(
    campaign: dict[str, Any], deliveries: dict[str, int], events: dict[str, int]
) -> dict[str, Any]:
    """A campaign's numbers from its deliveries by status and its event counts.

    ``events`` holds what ``Store.event_summaries`` counts (missing counts are 0).
    """
    status = {s: deliveries.get(s, 0) for s in DeliveryStatus}
    got = {name: events.get(name) or 0 for name in _EVENT_COUNTS}
    bounced = got["bounces_unique"]
    delivered = max(status[DeliveryStatus.SENT] - bounced, 0)
    report: dict[str, Any] = {
        "campaign_id": campaign["id"],
        "subject": campaign["subject"],
        "status": campaign["status"],
        "tracking": bool(campaign["tracking"]),
        "recipients": sum(deliveries.values()),
        "sent": status[DeliveryStatus.SENT],
        "failed": status[DeliveryStatus.FAILED],
        "in_doubt": status[DeliveryStatus.IN_DOUBT],
        "pending": sum(
            status[s]
            for s in (DeliveryStatus.PENDING, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
        ),
        "delivered": delivered,
        "bounced": bounced,
        "complaints": got["complaints_unique"],
        "unsubscribes": got["unsubscribes_unique"],
        **{name: got[name] for name in _SHOWN_COUNTS},
    }
    report["open_rate"] = _rate(report["opens_unique"], delivered)
    report["human_open_rate"] = _rate(report["opens_human_unique"], delivered)
    report["click_rate"] = _rate(report["clicks_unique"], delivered)
    report["human_click_rate"] = _rate(report["clicks_human_unique"], delivered)
    report["click_to_open_rate"] = _rate(report["clicks_unique"], report["opens_unique"])
    report["human_click_to_open_rate"] = _rate(
        report["clicks_human_unique"], report["opens_human_unique"]
    )
    return report


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
    counts: list[tuple[int, str, str, int]], start: str | None, campaign_id: int
) -> list[dict[str, Any]]:
    """Opens and clicks per hour for the first 48 hours after the first message went out."""
    if start is None:
        return []
    origin = dt.datetime.fromisoformat(start)
    by_hour = {(hour, f"{kind}s_{cls}"): n for hour, kind, cls, n in counts}
    rows = []
    for hour in range(SERIES_HOURS):
        row: dict[str, Any] = {
            "campaign_id": campaign_id,
            "hour": hour,
            "start": (origin + dt.timedelta(hours=hour)).isoformat(timespec="seconds"),
        }
        for name in SERIES_COUNTS:
            row[name] = by_hour.get((hour, name), 0)
        rows.append(row)
    return rows


class KeptReports:
    """The counted part of finished campaigns' reports, kept in the database while their
    events stay the same.

    A sent or cancelled campaign's deliveries no longer change (a retry makes it
    sending again), so its numbers change only with its events: kept under the
    campaign's status and ``Store.event_marks``, they are counted again only when
    an event arrives, is purged or loses its person. The blog's view counters are
    read fresh each time. Kept in the database, so `newsletter stats` and a web
    server that just started find them too.
    """

    def __init__(self, store: Store):
        self.store = store

    def get(self, part: str, campaign_id: int, mark: str | None) -> dict[str, Any] | None:
        if mark is None:
            return None
        kept = self.store.kept_report(campaign_id, part, mark)
        return json.loads(kept) if kept is not None else None

    def put(self, part: str, campaign_id: int, mark: str | None, value: dict[str, Any]) -> None:
        if mark is not None:
            self.store.keep_report(campaign_id, part, mark, json.dumps(value))


def _mark(campaign: dict[str, Any], events: tuple[int, int, int] | None) -> str | None:
    """What a sent campaign's kept numbers are valid for; None: do not keep them.

    Only a sent campaign's deliveries stay as they are (a retry makes it sending
    again, which changes the mark). A cancelled one keeps rows that a list change
    or a retry can still move, so its numbers are always counted. The version
    counts changes to what is kept or how it is counted: a new one makes every
    kept report count again.
    """
    if campaign["status"] != CampaignStatus.SENT:
        return None
    return json.dumps([KEPT_VERSION, campaign["status"], campaign["finished_at"], events])


def _fresh(campaign: dict[str, Any], numbers: dict[str, Any]) -> dict[str, Any]:
    """Kept numbers with the campaign's own fields as they are now."""
    return {
        **numbers,
        "campaign_id": campaign["id"],
        "subject": campaign["subject"],
        "status": campaign["status"],
        "tracking": bool(campaign["tracking"]),
    }


def _counted(store: Store, campaign: dict[str, Any]) -> dict[str, Any]:
    """Every number of a campaign's report that comes from its deliveries and events."""
    campaign_id = campaign["id"]
    first_sent_at = store.first_sent_at(campaign_id)
    sent_from = first_sent_at or campaign["started_at"]
    return {
        "summary": summary(
            campaign,
            store.delivery_summaries(campaign_id).get(campaign_id, {}),
            store.event_summaries(campaign_id).get(campaign_id, {}),
        ),
        "first_sent_at": first_sent_at,
        # Pairs, not mappings: kept as JSON, whose keys are strings only.
        "machine_reasons": list(store.machine_reasons(campaign_id).items()),
        "link_clicks": list(store.click_summaries(campaign_id, "link_id").items()),
        "article_clicks": list(store.click_summaries(campaign_id, "article_id").items()),
        "hourly": _series(
            store.hourly_counts(campaign_id, sent_from, SERIES_HOURS) if sent_from else [],
            sent_from,
            campaign_id,
        ),
    }


def campaign_report(
    store: Store, campaign_id: int, cache: KeptReports | None = None
) -> dict[str, Any]:
    """Everything known about how one campaign did; NotFound if there is no such campaign."""
    campaign = store.campaign(campaign_id)
    mark = None
    if cache is not None:
        mark = _mark(campaign, store.event_marks(campaign_id).get(campaign_id))
    counted = cache.get("report", campaign_id, mark) if cache is not None else None
    if counted is None:
        counted = _counted(store, campaign)
        if cache is not None:
            cache.put("report", campaign_id, mark, counted)
    numbers = _fresh(campaign, counted["summary"])
    sent_from = counted["first_sent_at"] or campaign["started_at"]
    # The keys in the order `newsletter stats --json` has always printed them.
    report: dict[str, Any] = {
        name: numbers[name] for name in ("campaign_id", "subject", "status", "tracking")
    }
    report["first_sent_at"] = counted["first_sent_at"]
    rates = [name for name in numbers if name.endswith("_rate")]
    report.update((k, v) for k, v in numbers.items() if k not in report and k not in rates)
    report["machine_reasons"] = dict(counted["machine_reasons"])
    report.update((name, numbers[name]) for name in rates)
    no_clicks = dict.fromkeys(_CLICK_COUNTS, 0)
    link_clicks, article_clicks = dict(counted["link_clicks"]), dict(counted["article_clicks"])
    report["links"] = [
        {
            "campaign_id": campaign_id,
            "link_id": link["id"],
            "url": link["url"],
            "article_id": link["article_id"],
            **link_clicks.get(link["id"], no_clicks),
        }
        for link in store.campaign_links(campaign_id)
    ]
    report["articles"] = [
        {
            "campaign_id": campaign_id,
            "article_id": article["id"],
            "title": article["title"],
            "url": article["url"],
            **article_clicks.get(article["id"], no_clicks),
            **_blog_views(store.article_stats(article["id"]), sent_from),
        }
        for article in store.articles_by_id(campaign["article_ids"])
    ]
    report["hourly"] = [dict(row) for row in counted["hourly"]]
    return report


def reports(
    store: Store, campaign_id: int | None = None, cache: KeptReports | None = None
) -> list[dict[str, Any]]:
    """One campaign's report, or every campaign's, oldest first."""
    if campaign_id is not None:
        return [campaign_report(store, campaign_id, cache)]
    return [campaign_report(store, c["id"], cache) for c in store.report_campaigns()]


def summaries(
    store: Store,
    cache: KeptReports | None = None,
    campaigns: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every campaign (or those of ``campaigns``, rows of ``store.report_campaigns``), in
    their order, as {"campaign": row, "report": its numbers}.

    The numbers of the campaigns list and home: those of ``summary``, counted
    for all campaigns in one query over the deliveries and one over the events,
    or kept in ``cache`` for finished campaigns whose events did not change.
    """
    everyone = campaigns is None
    if campaigns is None:
        campaigns = store.report_campaigns()
    marks = store.event_marks() if cache is not None else {}
    found: dict[int, dict[str, Any]] = {}
    wanted: dict[int, str | None] = {}
    for c in campaigns:
        if cache is None:
            continue
        mark = wanted[c["id"]] = _mark(c, marks.get(c["id"]))
        kept = cache.get("summary", c["id"], mark)
        if kept is None:
            report = cache.get("report", c["id"], mark)
            kept = report["summary"] if report is not None else None
        if kept is not None:
            found[c["id"]] = _fresh(c, kept)
    missing = [c for c in campaigns if c["id"] not in found]
    if everyone and len(missing) * 2 > len(campaigns):
        # Most need counting: one pass over all deliveries and one over all events.
        deliveries, events = store.delivery_summaries(), store.event_summaries()
    else:
        # A few (the campaign sending now, one that just had a reader): those alone.
        deliveries, events = {}, {}
        for c in missing:
            deliveries.update(store.delivery_summaries(c["id"]))
            events.update(store.event_summaries(c["id"]))
    for c in missing:
        found[c["id"]] = summary(c, deliveries.get(c["id"], {}), events.get(c["id"], {}))
        if cache is not None:
            cache.put("summary", c["id"], wanted[c["id"]], found[c["id"]])
    return [{"campaign": c, "report": found[c["id"]]} for c in campaigns]


def keep_counts(store: Store, cache: KeptReports) -> int:
    """Count and keep the numbers of every finished campaign that has none kept; how many.

    Run when the dashboard starts, before it answers: after an upgrade (or events
    since the last count) the campaigns are counted here, in one pass over the
    deliveries and one over the events, and the first campaigns list reads kept
    numbers instead of counting while staff wait. When all are kept, this reads
    their marks only.
    """
    campaigns = store.report_campaigns()
    marks = store.event_marks()
    missing = 0
    for c in campaigns:
        mark = _mark(c, marks.get(c["id"]))
        kept = cache.get("summary", c["id"], mark) or cache.get("report", c["id"], mark)
        if mark is not None and kept is None:
            missing += 1
    if missing:
        summaries(store, cache, None)
    return missing


def busy_hours(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a report's hourly series that had an open or a click."""
    return [h for h in report["hourly"] if any(h[name] for name in SERIES_COUNTS)]


def recipients(store: Store, campaign_id: int, machines: bool = False) -> list[dict[str, Any]]:
    """Who opened or clicked a campaign, one row each, by address; NotFound for no campaign.

    By default the people of the headline: those counted in the human-unique opens
    or clicks. ``machines``: also those whose every open and click was a machine's
    or unknown. 1 and 0 say which they did; people erased since are not listed.
    """
    store.campaign(campaign_id)
    rows = []
    for person in store.campaign_people(campaign_id):
        if machines or person["opened_human"] or person["clicked_human"]:
            rows.append({"campaign_id": campaign_id, **person})
    return rows


def people_csv(rows: list[dict[str, Any]]) -> str:
    """``recipients`` as CSV, cells a spreadsheet would run as formulas defused."""
    return _csv(rows, RECIPIENT_FIELDS)


def table_csv(rows: list[dict[str, Any]], table: str) -> str:
    """One table of these reports as CSV; cells a spreadsheet would run as formulas are defused."""
    lines = rows if table == "campaigns" else [x for r in rows for x in r[table]]
    return _csv(lines, TABLES[table])


def _csv(lines: list[dict[str, Any]], fields: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(fields)
    for line in lines:
        writer.writerow([csv_cell(line[f]) for f in fields])
    return out.getvalue()
