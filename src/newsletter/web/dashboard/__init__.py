"""The staff dashboard, mounted under /admin in the same application.

Server-rendered pages (Jinja2 with autoescape: article titles, names, user
agents and URLs are attacker-controlled), htmx for the live parts, every
asset served from this package. Each page calls the same core functions as
the CLI; nothing here decides anything the CLI does not.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from newsletter import reports, staff
from newsletter.errors import NewsletterError, NotFound, StateError
from newsletter.store import Store
from newsletter.web.dashboard.auth import Auth, Handler, csrf_ok, redirect
from newsletter.web.dashboard.sending import BackgroundSender
from newsletter.web.pages import DASHBOARD_HEADERS, environment
from newsletter.web.threads import ThreadStores, off_loop
from newsletter.web.wording import words
from newsletter.workspace import Workspace

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PREFIX = "/admin"
NAV = [
    ("home", "Home", "", "editor"),
    ("campaigns", "Campaigns", "/campaigns", "editor"),
    ("articles", "Articles", "/articles", "editor"),
    ("subscribers", "Subscribers", "/subscribers", "editor"),
    ("settings", "Settings", "/settings", "admin"),
    ("audit", "Audit log", "/audit", "admin"),
    ("account", "Your account", "/account", "editor"),
]
ENROL_FIRST = (
    "Administrators of this dashboard sign in with a code from an authenticator app. "
    "Set it up now to go on."
)


def http_url(url: str | None) -> str:
    """The URL if it is http(s), else nothing: a javascript: link from a feed never gets out."""
    return url if url and url.lower().startswith(("http://", "https://")) else ""


class Dashboard:
    """Routes, templates and shared state of the dashboard of one workspace."""

    def __init__(self, ws: Workspace, clock: Callable[[], dt.datetime], prefix: str = PREFIX):
        self.ws, self.clock, self.prefix = ws, clock, prefix
        # A connection per thread: handlers run in worker threads, off the event loop.
        self.store: Store = ThreadStores(ws.path(ws.settings.database.path))  # type: ignore[assignment]
        self.auth = Auth(self.store, clock, ws.secrets.secret_key, prefix)
        self.sender = BackgroundSender(ws, clock)
        # Finished campaigns' numbers, counted again only when their events change.
        self.report_cache = reports.KeptReports(self.store)
        # Counted before the first page, not while staff wait for the campaigns list.
        reports.keep_counts(self.store, self.report_cache)
        self.flashes: dict[str, str] = {}
        self.env = environment(HERE / "templates", undefined=jinja2.StrictUndefined)
        self.env.globals.update(prefix=prefix, sender_name=ws.settings.sender.from_name)
        self.env.filters["pct"] = lambda v: f"{v:.1%}"
        self.env.filters["when"] = self.local_time
        self.env.filters["http_url"] = http_url
        # Every text of the core a page shows goes through this: no flag, no command.
        self.env.filters["people"] = words

    # -- helpers --------------------------------------------------------------------------

    def local_time(self, iso: str | None, zone: str | None = None) -> str:
        """An ISO time from the database shown in the workspace's time zone."""
        if not iso:
            return ""
        from zoneinfo import ZoneInfo

        when = dt.datetime.fromisoformat(iso)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        tz = ZoneInfo(zone or self.ws.settings.schedule.timezone)
        return when.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        session = getattr(request.state, "staff", None)
        # A fragment polled by htmx must not swallow the message meant for the page.
        page = not name.startswith("_")
        flash = self.flashes.pop(session["token_hash"], None) if session and page else None
        nav = [
            (key, label, self.prefix + path)
            for key, label, path, need in NAV
            if session and staff.may(session["role"], need)
        ]
        body = self.env.get_template(name).render(
            request=request, staff=session, nav=nav, flash=flash, **context
        )
        return HTMLResponse(body, status_code=status, headers=DASHBOARD_HEADERS)

    def flash(self, request: Request, message: str) -> None:
        self.flashes[request.state.staff["token_hash"]] = message

    def error(self, request: Request, exc: NewsletterError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, StateError) else 400
        return self.render(request, "error.html", status, message=words(exc))

    def page(self, need: str = "editor", before_2fa: bool = False) -> Callable[[Handler], Handler]:
        """Guard a handler: signed in (else to sign-in), role, CSRF token on every POST.

        With ``[web] require_2fa``, an admin without two-factor sign-in sees only
        the pages that set it up (``before_2fa``) until it is set up.
        """

        def wrap(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def endpoint(request: Request) -> Response:
                # Database reads can wait for SQLite's locks too: never on the loop.
                session = await off_loop(self.auth.session, request)
                if session is None:
                    if request.headers.get("hx-request"):
                        # A polled fragment: send the whole page to sign-in, not the fragment.
                        return Response(
                            status_code=204,
                            headers={"HX-Redirect": self.auth.sign_in_url_for_page(request)},
                        )
                    return redirect(self.auth.sign_in_url(request))
                request.state.staff = session
                if (
                    not before_2fa
                    and self.ws.settings.web.require_2fa
                    and session["role"] == "admin"
                    and not session["has_2fa"]
                ):
                    self.flash(request, ENROL_FIRST)
                    return redirect(self.prefix + "/account")
                if not staff.may(session["role"], need):
                    return self.render(
                        request, "error.html", 403, message="This page is for administrators."
                    )
                if request.method == "POST":
                    form = await request.form()
                    token = form.get("csrf") or request.headers.get("x-csrf-token")
                    if not csrf_ok(session, token if isinstance(token, str) else None):
                        await form.close()
                        return self.render(
                            request,
                            "error.html",
                            403,
                            message="The form had expired or was not sent from this dashboard. "
                            "Reload the page and try again.",
                        )
                    request.state.form = form
                try:
                    if inspect.iscoroutinefunction(handler):
                        return await handler(request)
                    # Database work, reports, CSV parsing: in a worker thread, so the
                    # pixel and the links of everyone's email never wait for a page.
                    return await off_loop(cast(Callable[[Request], Response], handler), request)
                except NewsletterError as exc:
                    return self.error(request, exc)
                finally:
                    if request.method == "POST":
                        await request.state.form.close()  # uploaded files' temporary files

            return endpoint

        return wrap

    def route(
        self,
        path: str,
        handler: Handler,
        methods: list[str] | None = None,
        need: str = "editor",
        before_2fa: bool = False,
    ) -> Route:
        """The route to a page handler, guarded by ``page``."""
        return Route(path, self.page(need, before_2fa)(handler), methods=methods)

    def audit(
        self,
        request: Request,
        action: str,
        target: str = "",
        detail: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Record a staff action in the audit log: who, when, from which address."""
        session = getattr(request.state, "staff", None)
        self.store.audit(
            self.clock(),
            session["email"] if session else "",
            action,
            target,
            detail,
            request.client.host if request.client else None,
            data,
        )

    # -- application wiring ---------------------------------------------------------------

    @property
    def routes(self) -> list[Any]:
        from newsletter.web.dashboard import (
            account_views,
            campaign_views,
            composer_views,
            overview,
            preview_view,
            results_view,
            settings_views,
            signin_views,
            subscriber_views,
        )

        routes = [
            *signin_views.SignIn(self).routes,
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
            *overview.Overview(self).routes,
            *campaign_views.CampaignViews(self).routes,
            *preview_view.PreviewView(self).routes,
            *composer_views.ComposerViews(self).routes,
            *results_view.ResultsView(self).routes,
            *subscriber_views.SubscriberViews(self).routes,
            *settings_views.SettingsViews(self).routes,
            *account_views.AccountViews(self).routes,
        ]
        return [Mount(self.prefix, routes=routes)]

    def close(self) -> None:
        self.sender.close()
        self.store.close()
