"""Results of one campaign: numbers, opens and clicks over time, links, articles, CSV.

Everything the page shows comes from ``report()``; a richer report plugs in there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import results
from newsletter.store import Store

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard


def report(store: Store, campaign_id: int) -> dict[str, Any]:
    """The campaign, its numbers with rates, per-link and per-article tables and timeline."""
    campaign = store.campaign(campaign_id)
    stats = results.campaign_stats(store, campaign_id)
    articles = store.articles_by_id(campaign["article_ids"])
    return {
        "campaign": campaign,
        "stats": stats,
        "links": stats["links"],
        "articles": results.per_article(stats, articles),
        "titles": {a["id"]: a["title"] for a in articles},
        "timeline": results.timeline(store, campaign_id),
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
    async def page(request: Request) -> Response:
        data = report(d.store, request.path_params["id"])
        return d.render(
            request,
            "results.html",
            active="campaigns",
            timezone=d.ws.settings.schedule.timezone,
            **data,
        )

    @d.page()
    async def numbers(request: Request) -> Response:
        data = report(d.store, request.path_params["id"])
        return d.render(
            request, "_results_numbers.html", timezone=d.ws.settings.schedule.timezone, **data
        )

    @d.page()
    async def stats_csv(request: Request) -> Response:
        cid = request.path_params["id"]
        return _csv(
            results.stats_csv([results.campaign_stats(d.store, cid)]), f"campaign-{cid}.csv"
        )

    @d.page()
    async def links_csv(request: Request) -> Response:
        cid = request.path_params["id"]
        data = report(d.store, cid)
        return _csv(results.links_csv(data["stats"], data["titles"]), f"campaign-{cid}-links.csv")

    return [
        Route("/campaigns/{id:int}/results", page),
        Route("/campaigns/{id:int}/results/numbers", numbers),
        Route("/campaigns/{id:int}/results.csv", stats_csv),
        Route("/campaigns/{id:int}/links.csv", links_csv),
    ]
