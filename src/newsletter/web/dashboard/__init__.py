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
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from newsletter import staff
from newsletter.errors import NewsletterError, NotFound, StateError
from newsletter.store import Store
from newsletter.web.dashboard.auth import COOKIE, SIGNIN_COOKIE, Auth, Handler, csrf_ok, redirect
from newsletter.web.dashboard.sending import BackgroundSender
from newsletter.web.threads import ThreadStores, off_loop
from newsletter.workspace import Workspace

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
PREFIX = "/admin"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Scripts only from the package; styles may be set inline by the chart
    # library; frames only our own preview route.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
NAV = [
    ("home", "Home", "", "editor"),
    ("campaigns", "Campaigns", "/campaigns", "editor"),
    ("articles", "Articles", "/articles", "editor"),
    ("subscribers", "Subscribers", "/subscribers", "editor"),
    ("settings", "Settings", "/settings", "admin"),
]


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
        self.flashes: dict[str, str] = {}
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.globals.update(prefix=prefix, sender_name=ws.settings.sender.from_name)
        self.env.filters["pct"] = lambda v: f"{v:.1%}"
        self.env.filters["when"] = self.local_time
        self.env.filters["http_url"] = http_url

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
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    def flash(self, request: Request, message: str) -> None:
        self.flashes[request.state.staff["token_hash"]] = message

    def error(self, request: Request, exc: NewsletterError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, StateError) else 400
        return self.render(request, "error.html", status, message=str(exc))

    def page(self, need: str = "editor") -> Callable[[Handler], Handler]:
        """Guard a handler: signed in (else to sign-in), role, CSRF token on every POST."""

        def wrap(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def endpoint(request: Request) -> Response:
                session = self.auth.session(request)
                if session is None:
                    if request.headers.get("hx-request"):
                        # A polled fragment: send the whole page to sign-in, not the fragment.
                        return Response(
                            status_code=204,
                            headers={"HX-Redirect": self.auth.sign_in_url_for_page(request)},
                        )
                    return redirect(self.auth.sign_in_url(request))
                request.state.staff = session
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
                    return await off_loop(handler, request)
                except NewsletterError as exc:
                    return self.error(request, exc)
                finally:
                    if request.method == "POST":
                        await request.state.form.close()  # uploaded files' temporary files

            return endpoint

        return wrap

    # -- signing in and out ---------------------------------------------------------------

    async def sign_in(self, request: Request) -> Response:
        next_url = self.auth.safe_next(request.query_params.get("next"))
        secure = self.auth.secure(request, self.ws.settings.site.base_url)
        message, email, status = "", "", 200
        if request.method == "POST":
            form = await request.form()
            email = str(form.get("email", ""))[:320]
            password = str(form.get("password", ""))[:1024]
            next_url = self.auth.safe_next(str(form.get("next", "")))
            if not self.auth.signin_token_ok(request, str(form.get("token", ""))):
                message, status = "The form had expired. Please try again.", 403
            elif not self.auth.allow_attempt(request, email):
                message, status = "Too many attempts. Wait a quarter of an hour.", 429
            else:
                # argon2 is CPU work by design: a worker thread, not the event loop.
                user = await off_loop(staff.authenticate, self.store, email, password)
                if user is not None:
                    token = await off_loop(
                        staff.start_session, self.store, user["id"], self.clock()
                    )
                    response = redirect(next_url)
                    self.auth.set_cookie(
                        response,
                        COOKIE,
                        token,
                        secure,
                        int(staff.SESSION_LIFETIME.total_seconds()),
                    )
                    response.delete_cookie(SIGNIN_COOKIE, path=self.prefix)
                    return response
                message, status = "Wrong email address or password.", 401
        nonce = self.auth.new_nonce()
        body = self.env.get_template("sign_in.html").render(
            staff=None,
            nav=[],
            flash=None,
            message=message,
            email=email,
            next_url=next_url,
            token=self.auth.signin_token(nonce),
        )
        response = HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
        self.auth.set_cookie(response, SIGNIN_COOKIE, nonce, secure, 3600)
        return response

    async def sign_out(self, request: Request) -> Response:
        staff.end_session(self.store, request.cookies.get(COOKIE))
        response = redirect(self.prefix + "/sign-in")
        response.delete_cookie(COOKIE, path=self.prefix)
        return response

    # -- application wiring ---------------------------------------------------------------

    @property
    def routes(self) -> list[Any]:
        from newsletter.web.dashboard import (
            campaign_views,
            overview,
            results_view,
            settings_views,
            subscriber_views,
        )

        routes = [
            Route("/sign-in", self.sign_in, methods=["GET", "POST"]),
            Route("/sign-out", self.page()(self.sign_out), methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
            *overview.routes(self),
            *campaign_views.routes(self),
            *results_view.routes(self),
            *subscriber_views.routes(self),
            *settings_views.routes(self),
        ]
        return [Mount(self.prefix, routes=routes)]

    def close(self) -> None:
        self.sender.close()
        self.store.close()
