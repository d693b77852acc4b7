"""Results of one campaign: the report of `newsletter stats`, its chart and its CSV tables.

Every number comes from ``reports.campaign_report``; this module only lays it out.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter import reports
from newsletter.errors import NotFound
from newsletter.status import CampaignStatus
from newsletter.store import Store
from newsletter.web.pages import NO_STORE, download_headers

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

STOP_POLLING = 286  # htmx's status for "swap this, then stop polling"


def window(report: dict[str, Any], now: dt.datetime | None) -> list[dict[str, Any]]:
    """The hours of the series the chart shows: from the first send to the last event.

    While the campaign is sending, to the hour it is now (the hours to come are not
    drawn as hours without events). Empty when no open or click fell in the series.
    """
    hourly = report["hourly"]
    busy = [row["hour"] for row in reports.busy_hours(report)]
    if not busy:
        return []
    last = busy[-1]
    if report["status"] == CampaignStatus.SENDING and now is not None:
        elapsed = (now - dt.datetime.fromisoformat(hourly[0]["start"])) // dt.timedelta(hours=1)
        last = max(last, min(int(elapsed), len(hourly) - 1))
    return hourly[: last + 1]


def local_hour(start: str, zone: ZoneInfo) -> dt.datetime:
    """An hour of the series (an ISO time) in the workspace's zone."""
    return dt.datetime.fromisoformat(start).astimezone(zone)


def hour_label(start: str, zone: ZoneInfo) -> str:
    """An hour of the series as the chart names it, in the workspace's zone: "Mon 7 Dec 09:30"."""
    local = local_hour(start, zone)
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def tick_labels(starts: list[str], zone: ZoneInfo) -> list[str]:
    """The x axis's words: the time, with the day where the series starts or a day begins."""
    ticks, day = [], None
    for start in starts:
        local = local_hour(start, zone)
        ticks.append(f"{local:%H:%M}" if local.date() == day else f"{local:%a} {local:%H:%M}")
        day = local.date()
    return ticks


def chart(
    report: dict[str, Any], zone: str = "UTC", now: dt.datetime | None = None
) -> dict[str, Any]:
    """The series as the chart draws it: the window's hours (UTC seconds, with their
    names in the workspace's zone) and one line per kind and class.

    Empty when no open or click fell in the series' hours, so the page says so
    instead of drawing flat lines.
    """
    hours = window(report, now)
    if not hours:
        return {"x": [], "labels": [], "ticks": [], "series": [], "zone": zone}
    tz = ZoneInfo(zone)
    starts = [row["start"] for row in hours]
    # Pairs, not a mapping: the page's JSON sorts mapping keys, and opens go first.
    return {
        "x": [int(dt.datetime.fromisoformat(start).timestamp()) for start in starts],
        "labels": [hour_label(start, tz) for start in starts],
        "ticks": tick_labels(starts, tz),
        "series": [
            [name.replace("_", " "), [row[name] for row in hours]] for name in reports.SERIES_COUNTS
        ],
        "zone": zone,
    }


def chart_summary(drawn: dict[str, Any]) -> str:
    """The chart in one sentence, for those who do not see it: its span and busiest hours."""
    if not drawn["x"]:
        return ""
    said = [f"From {drawn['labels'][0]} to the hour from {drawn['labels'][-1]} ({drawn['zone']})."]
    for name, values in drawn["series"]:
        total = sum(values)
        if total:
            top = max(range(len(values)), key=values.__getitem__)
            said.append(
                f"{name.capitalize()}: {total}, most in the hour from {drawn['labels'][top]} "
                f"({values[top]})."
            )
    return " ".join(said)


def plain_reason(reason: str | None) -> str:
    """Why an event counted as a machine's, in words for people who do not know the rules."""
    text = reason or ""
    if text == "HEAD request":
        return "The link was checked without being opened, as link checkers do"
    if text.startswith("user agent: "):
        return f"Fetched by {text.removeprefix('user agent: ')}, recognised by its name"
    if text.startswith("network: "):
        return f"Came from the network of {text.removeprefix('network: ')}"
    if re.fullmatch(r"open \d+ s after delivery", text):
        return "Opened seconds after delivery, before anyone could read it (images fetched ahead)"
    if re.fullmatch(r"click \d+ s after delivery", text):
        return "Clicked seconds after delivery, before anyone could read it (a link scanner)"
    if text.startswith("every link clicked within"):
        return "Every link of the email clicked at once (a link scanner)"
    return text or "Counted as a machine's before reasons were recorded"


def plain_reasons(report: dict[str, Any]) -> list[tuple[str, int]]:
    """The machine events of a report by reason in plain words, most first."""
    counts: dict[str, int] = {}
    for reason, count in report["machine_reasons"].items():
        words = plain_reason(reason)
        counts[words] = counts.get(words, 0) + count
    return sorted(counts.items(), key=lambda item: -item[1])


def people(count: int) -> str:
    return f"{count} person" if count == 1 else f"{count} people"


def context(
    store: Store,
    campaign_id: int,
    cache: reports.KeptReports | None = None,
    now: dt.datetime | None = None,
    zone: str = "UTC",
) -> dict[str, Any]:
    """The report with what the page needs beside it: the chart and the hours with events.

    ``live``: whether the page asks for new numbers every few seconds: while the
    campaign is sending, and in the hours of the chart after its first message,
    when most people read. Later the numbers change rarely and a reload shows them.
    """
    report = reports.campaign_report(store, campaign_id, cache)
    live = report["status"] == CampaignStatus.SENDING
    start = report["first_sent_at"]
    if not live and start is not None and now is not None:
        first = dt.datetime.fromisoformat(start)
        live = now < first + dt.timedelta(hours=reports.SERIES_HOURS)
    drawn = chart(report, zone, now)
    return {
        "r": report,
        "live": live,
        "chart": drawn,
        "chart_summary": chart_summary(drawn),
        "busy_hours": reports.busy_hours(report),
        "series_names": reports.SERIES_COUNTS,
        "series_hours": reports.SERIES_HOURS,
        "titles": {a["article_id"]: a["title"] for a in report["articles"]},
        "reasons": plain_reasons(report),
        "people": people,
        # The blog's own view counts, when its source publishes them.
        "blog_views": any(
            a["blog_views_before"] is not None or a["blog_views_after"] is not None
            for a in report["articles"]
        ),
    }


class ResultsView:
    """A campaign's results page, its numbers polled by htmx, and its CSV tables."""

    def __init__(self, d: Dashboard):
        self.d = d

    @property
    def routes(self) -> list[Route]:
        d = self.d
        return [
            d.route("/campaigns/{id:int}/results", self.page),
            d.route("/campaigns/{id:int}/results/numbers", self.numbers),
            d.route("/campaigns/{id:int}/results/chart.json", self.chart_data),
            d.route("/campaigns/{id:int}/{table}.csv", self.table_csv),
        ]

    def data(self, request: Request) -> dict[str, Any]:
        d = self.d
        zone = d.ws.settings.schedule.timezone
        return context(d.store, request.path_params["id"], d.report_cache, d.clock(), zone)

    def page(self, request: Request) -> Response:
        data = self.data(request)
        return self.d.render(
            request,
            "results.html",
            active="campaigns",
            timezone=self.d.ws.settings.schedule.timezone,
            tables=list(reports.TABLES),
            **data,
        )

    def numbers(self, request: Request) -> Response:
        data = self.data(request)
        # 286 tells htmx to stop asking once the numbers no longer move (the page stays).
        return self.d.render(
            request,
            "_results_numbers.html",
            200 if data["live"] else STOP_POLLING,
            timezone=self.d.ws.settings.schedule.timezone,
            **data,
        )

    def chart_data(self, request: Request) -> Response:
        """The chart's series as the page draws them: its hours, their names, the lines."""
        return JSONResponse(self.data(request)["chart"], headers=NO_STORE)

    def table_csv(self, request: Request) -> Response:
        # The same tables as `newsletter stats ID --csv --table TABLE`.
        cid, table = request.path_params["id"], request.path_params["table"]
        if table in reports.PEOPLE_TABLES:
            # Who opened or clicked: the people of the headline, or everyone (?who=all).
            machines = request.query_params.get("who") == "all"
            people = reports.people_csv(reports.recipients(self.d.store, cid, machines))
            who = "everyone" if machines else "people"
            name = f"campaign-{cid}-{who}-who-opened-or-clicked.csv"
            return Response(
                people, media_type="text/csv; charset=utf-8", headers=download_headers(name)
            )
        if table not in reports.TABLES:
            raise NotFound(f"no table {table!r}; there are {', '.join(sorted(reports.TABLES))}")
        body = reports.table_csv(reports.reports(self.d.store, cid, self.d.report_cache), table)
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers=download_headers(f"campaign-{cid}-{table}.csv"),
        )
