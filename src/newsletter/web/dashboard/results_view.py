"""Results of one campaign: the report of `newsletter stats`, its chart and its CSV tables.

Every number comes from ``reports.campaign_report``; this module only lays it out.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import reports
from newsletter.errors import NotFound
from newsletter.store import Store
from newsletter.web.pages import download_headers

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard


def chart(report: dict[str, Any]) -> dict[str, Any]:
    """The hourly series as the chart draws it: UTC seconds and one line per kind and class.

    Empty when no open or click fell in the series' hours, so the page says so
    instead of drawing flat lines.
    """
    if not reports.busy_hours(report):
        return {"x": [], "series": []}
    hourly = report["hourly"]
    # Pairs, not a mapping: the page's JSON sorts mapping keys, and opens go first.
    return {
        "x": [int(dt.datetime.fromisoformat(row["start"]).timestamp()) for row in hourly],
        "series": [
            [name.replace("_", " "), [row[name] for row in hourly]]
            for name in reports.SERIES_COUNTS
        ],
    }


def context(store: Store, campaign_id: int) -> dict[str, Any]:
    """The report with what the page needs beside it: the chart and the hours with events."""
    report = reports.campaign_report(store, campaign_id)
    return {
        "r": report,
        "chart": chart(report),
        "busy_hours": reports.busy_hours(report),
        "series_names": reports.SERIES_COUNTS,
        "series_hours": reports.SERIES_HOURS,
        "titles": {a["article_id"]: a["title"] for a in report["articles"]},
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
            d.route("/campaigns/{id:int}/{table}.csv", self.table_csv),
        ]

    def page(self, request: Request) -> Response:
        data = context(self.d.store, request.path_params["id"])
        return self.d.render(
            request,
            "results.html",
            active="campaigns",
            timezone=self.d.ws.settings.schedule.timezone,
            tables=list(reports.TABLES),
            **data,
        )

    def numbers(self, request: Request) -> Response:
        data = context(self.d.store, request.path_params["id"])
        return self.d.render(
            request, "_results_numbers.html", timezone=self.d.ws.settings.schedule.timezone, **data
        )

    def table_csv(self, request: Request) -> Response:
        # The same tables as `newsletter stats ID --csv --table TABLE`.
        cid, table = request.path_params["id"], request.path_params["table"]
        if table not in reports.TABLES:
            raise NotFound(f"no table {table!r}; there are {', '.join(sorted(reports.TABLES))}")
        body = reports.table_csv(reports.reports(self.d.store, cid), table)
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers=download_headers(f"campaign-{cid}-{table}.csv"),
        )
