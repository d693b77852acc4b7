"""Settings (effective configuration, no secrets) and the check page; for admins."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import config, jobs
from newsletter.config.checks import _local_host
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
        warnings += self._port_warnings(request, warnings)
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

    def _port_warnings(self, request: Request, said: list[str]) -> list[str]:
        """The links this server puts in its emails, against the port it really answers on.

        The configuration file is compared with its own [web] port by the checks above;
        this server may have been started on another (an environment variable, a
        restart pending), and then its links lead nowhere.
        """
        server = request.scope.get("server")
        base_url = self.d.ws.settings.site.base_url
        url = urlsplit(base_url)
        if not server or not _local_host(url.hostname):
            return []  # a public address: a proxy in front may well use another port
        try:
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:
            return []
        if port == server[1] or any(f"uses port {port}," in w for w in said):
            return []
        return [
            f"site.base_url: {base_url} uses port {port}, but this server answers on port "
            f"{server[1]}: links in the emails it sends would not reach it; make the two agree"
        ]
