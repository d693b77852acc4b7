"""A campaign's preview: the email as one subscriber would receive it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter import campaigns, jobs
from newsletter.web.pages import PREVIEW_HEADERS

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard


class PreviewView:
    """The preview of a campaign's email, loaded by the frames of its page."""

    def __init__(self, d: Dashboard):
        self.d, self.store = d, d.store

    @property
    def routes(self) -> list[Route]:
        return [self.d.route("/campaigns/{id:int}/preview", self.preview)]

    def preview(self, request: Request) -> Response:
        cid = request.path_params["id"]
        mail = jobs.campaign_mail(self.d.ws, self.store, cid)
        who = request.query_params.get("subscriber") or None
        rendered = mail.render(campaigns.sample_subscriber(self.store, who), tracked=False)
        return HTMLResponse(rendered.html, headers=PREVIEW_HEADERS)
