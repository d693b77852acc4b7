"""Home and articles pages."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import reports
from newsletter.status import CampaignStatus

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

LAST_CAMPAIGNS = 5
GROWTH_WEEKS = 12


class Overview:
    """The home and articles pages of one dashboard."""

    def __init__(self, d: Dashboard):
        self.d = d

    @property
    def routes(self) -> list[Route]:
        return [self.d.route("/", self.home), self.d.route("/articles", self.articles)]

    def home(self, request: Request) -> Response:
        store = self.d.store
        rows = store.report_campaigns()
        scheduled = sorted(
            (c for c in rows if c["status"] == CampaignStatus.SCHEDULED),
            key=lambda c: c["scheduled_at"],
        )
        # Only the last campaigns started are shown: only theirs are counted.
        started = sorted(
            (c for c in rows if c["started_at"]), key=lambda c: c["started_at"], reverse=True
        )
        last = reports.summaries(store, self.d.report_cache, started[:LAST_CAMPAIGNS])
        since = self.d.clock() - dt.timedelta(weeks=GROWTH_WEEKS)
        return self.d.render(
            request,
            "home.html",
            active="home",
            scheduled=scheduled,
            last=last,
            new_articles=store.articles(only_new=True),
            growth=store.subscriber_growth(since),
            counts=store.subscriber_counts(),
        )

    def articles(self, request: Request) -> Response:
        rows: list[dict[str, Any]] = self.d.store.articles()
        return self.d.render(request, "articles.html", active="articles", articles=rows)
