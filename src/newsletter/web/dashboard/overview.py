"""Home and articles pages."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import reports

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

LAST_CAMPAIGNS = 5
GROWTH_WEEKS = 12


def routes(d: Dashboard) -> list[Route]:
    @d.page()
    def home(request: Request) -> Response:
        store = d.store
        rows = store.campaigns()
        scheduled = sorted(
            (c for c in rows if c["status"] == "scheduled"), key=lambda c: c["scheduled_at"]
        )
        started = [c for c in rows if c["started_at"]]
        last = [
            {"campaign": c, "report": reports.campaign_report(store, c["id"])}
            for c in sorted(started, key=lambda c: c["started_at"], reverse=True)[:LAST_CAMPAIGNS]
        ]
        since = d.clock() - dt.timedelta(weeks=GROWTH_WEEKS)
        return d.render(
            request,
            "home.html",
            active="home",
            scheduled=scheduled,
            last=last,
            new_articles=store.articles(only_new=True),
            growth=store.subscriber_growth(since),
            counts=store.subscriber_counts(),
        )

    @d.page()
    def articles(request: Request) -> Response:
        rows: list[dict[str, Any]] = d.store.articles()
        return d.render(request, "articles.html", active="articles", articles=rows)

    return [Route("/", home), Route("/articles", articles)]
