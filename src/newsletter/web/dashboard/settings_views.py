"""Settings (effective configuration, no secrets) and the check page; for admins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import config, jobs
from newsletter.errors import NewsletterError
from newsletter.workspace import Workspace

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard


class SettingsViews:
    """The settings and check pages of one dashboard."""

    def __init__(self, d: Dashboard):
        self.d = d

    @property
    def routes(self) -> list[Route]:
        return [
            self.d.route("/settings", self.settings, need="admin"),
            self.d.route("/settings/check", self.check, methods=["GET", "POST"], need="admin"),
        ]

    def settings(self, request: Request) -> Response:
        ws = self.d.ws
        # Settings never hold secrets (they come from the environment only);
        # for each secret the page says only whether it is set.
        secrets_set = {
            name: bool(getattr(ws.secrets, name)) for name in type(ws.secrets).__dataclass_fields__
        }
        return self.d.render(
            request,
            "settings.html",
            active="settings",
            sections=ws.settings.as_dict(),
            secrets_set=secrets_set,
            config_file=config.CONFIG_FILE,
            users=self.d.store.staff_users(),
        )

    def check(self, request: Request) -> Response:
        ws = self.d.ws
        # The same as `newsletter config check`: the file and environment read
        # afresh, so an edit shows before the restart that would apply it.
        fresh = Workspace.open(ws.root, strict=False)
        problems, warnings = list(fresh.problems), []
        if not problems:
            try:
                warnings = jobs.config_warnings(fresh)  # a worker thread already
            except NewsletterError as exc:  # a DKIM key that cannot be read
                problems.append(str(exc))
        transport_result, transport_error = "", ""
        if request.method == "POST":
            # The transport this server sends with, not the one the file now describes.
            try:
                transport_result = jobs.check_transport(ws)  # in a worker thread
            except NewsletterError as exc:
                transport_error = str(exc)
        return self.d.render(
            request,
            "check.html",
            active="settings",
            problems=problems,
            warnings=warnings,
            transport=ws.settings.delivery.transport,
            transport_result=transport_result,
            transport_error=transport_error,
        )
