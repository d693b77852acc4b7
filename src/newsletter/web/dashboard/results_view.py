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


def _csv(body: str, name: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def routes(d: Dashboard) -> list[Route]:
    @d.page()
    def page(request: Request) -> Response:
        data = context(d.store, request.path_params["id"])
        return d.render(
            request,
            "results.html",
            active="campaigns",
            timezone=d.ws.settings.schedule.timezone,
            tables=list(reports.TABLES),
            **data,
        )

    @d.page()
    def numbers(request: Request) -> Response:
        data = context(d.store, request.path_params["id"])
        return d.render(
            request, "_results_numbers.html", timezone=d.ws.settings.schedule.timezone, **data
        )

    @d.page()
    def table_csv(request: Request) -> Response:
        # The same tables as `newsletter stats ID --csv --table TABLE`.
        cid, table = request.path_params["id"], request.path_params["table"]
        if table not in reports.TABLES:
            raise NotFound(f"no table {table!r}; there are {', '.join(sorted(reports.TABLES))}")
        body = reports.table_csv(reports.reports(d.store, cid), table)
        return _csv(body, f"campaign-{cid}-{table}.csv")

    return [
        Route("/campaigns/{id:int}/results", page),
        Route("/campaigns/{id:int}/results/numbers", numbers),
        Route("/campaigns/{id:int}/{table}.csv", table_csv),
    ]
