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

from newsletter import staff, twofactor
from newsletter.errors import NewsletterError, NotFound, StateError
from newsletter.store import Store
from newsletter.web.dashboard.auth import (
    ACCOUNT_LIMIT,
    COOKIE,
    SIGNIN_COOKIE,
    TWO_FACTOR_COOKIE,
    TWO_FACTOR_WINDOW,
    Auth,
    Handler,
    csrf_ok,
    redirect,
)
from newsletter.web.dashboard.sending import BackgroundSender
from newsletter.web.subscribers import network
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
    ("audit", "Audit log", "/audit", "admin"),
    ("account", "Your account", "/account", "editor"),
]
LOCKED = "Too many failed attempts from your network. Wait a quarter of an hour."
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

    def page(self, need: str = "editor", before_2fa: bool = False) -> Callable[[Handler], Handler]:
        """Guard a handler: signed in (else to sign-in), role, CSRF token on every POST.

        With ``[web] require_2fa``, an admin without two-factor sign-in sees only
        the pages that set it up (``before_2fa``) until it is set up.
        """

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
                    return await off_loop(handler, request)
                except NewsletterError as exc:
                    return self.error(request, exc)
                finally:
                    if request.method == "POST":
                        await request.state.form.close()  # uploaded files' temporary files

            return endpoint

        return wrap

    # -- signing in and out ---------------------------------------------------------------

    def audit(self, request: Request, action: str, target: str = "", detail: str = "") -> None:
        """Record a staff action in the audit log: who, when, from which address."""
        session = getattr(request.state, "staff", None)
        self.store.audit(
            self.clock(),
            session["email"] if session else "",
            action,
            target,
            detail,
            request.client.host if request.client else None,
        )

    def _sign_in_page(
        self,
        request: Request,
        template: str,
        status: int,
        nonce: str,
        secure: bool,
        **context: Any,
    ) -> Response:
        body = self.env.get_template(template).render(
            staff=None, nav=[], flash=None, token=self.auth.signin_token(nonce), **context
        )
        response = HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
        self.auth.set_cookie(response, SIGNIN_COOKIE, nonce, secure, 3600)
        return response

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
            elif self.auth.locked(request, email):
                message, status = LOCKED, 429
            else:
                # argon2 is CPU work by design: a worker thread, not the event loop.
                user = await off_loop(staff.authenticate, self.store, email, password)
                if user is None:
                    await off_loop(self._failed, request, email, "password")
                    message, status = "Wrong email address or password.", 401
                elif user["totp_secret"]:
                    # Failures are forgiven only after the code: a known password must not
                    # buy more guesses at the second factor.
                    nonce = request.cookies.get(SIGNIN_COOKIE, "")
                    response = self._sign_in_page(
                        request, "sign_in_code.html", 200, nonce, secure, next_url=next_url
                    )
                    self.auth.set_cookie(
                        response,
                        TWO_FACTOR_COOKIE,
                        self.auth.two_factor_token(user["id"], nonce),
                        secure,
                        int(TWO_FACTOR_WINDOW.total_seconds()),
                    )
                    return response
                else:
                    return await off_loop(self._signed_in, request, user, next_url, secure, "")
        return self._sign_in_page(
            request,
            "sign_in.html",
            status,
            self.auth.new_nonce(),
            secure,
            message=message,
            email=email,
            next_url=next_url,
        )

    async def sign_in_code(self, request: Request) -> Response:
        """The second step of a two-factor sign-in: the code from the app, or a recovery code."""
        secure = self.auth.secure(request, self.ws.settings.site.base_url)
        form = await request.form()
        next_url = self.auth.safe_next(str(form.get("next", "")))
        user_id = self.auth.two_factor_user(request)
        user = await off_loop(self.store.staff_user_by_id, user_id) if user_id else None
        if (
            not self.auth.signin_token_ok(request, str(form.get("token", "")))
            or user is None
            or not user["totp_secret"]
        ):
            return self._sign_in_page(
                request,
                "sign_in.html",
                403,
                self.auth.new_nonce(),
                secure,
                message="The sign-in took too long. Please start again.",
                email="",
                next_url=next_url,
            )
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        if self.auth.locked(request, user["email"]):
            return self._sign_in_page(
                request, "sign_in_code.html", 429, nonce, secure, next_url=next_url, message=LOCKED
            )
        how = await off_loop(self._check_code, user, str(form.get("code", ""))[:64])
        if how is None:
            await off_loop(self._failed, request, user["email"], "code")
            return self._sign_in_page(
                request,
                "sign_in_code.html",
                401,
                nonce,
                secure,
                next_url=next_url,
                message="That code is not right, or it was used already. Try the next one.",
            )
        return await off_loop(self._signed_in, request, user, next_url, secure, how)

    def _check_code(self, user: dict[str, Any], code: str) -> str | None:
        """How the second factor was given ("an authenticator code" ...), or None if it was not."""
        secret = twofactor.unseal(user["totp_secret"], self.ws.secrets.secret_key)
        if secret is None:
            log.error(
                "sign-in: %s: the two-factor secret cannot be read (was the secret key "
                "changed?); reset it with `newsletter users reset-2fa`",
                user["email"],
            )
            return None
        if twofactor.looks_like_recovery_code(code):
            left = self.store.use_recovery_code(user["id"], twofactor.recovery_hash(code))
            return None if left is None else f"a recovery code ({left} left)"
        step = twofactor.code_step(secret, code, self.clock())
        if step is not None and self.store.use_totp_step(user["id"], step):
            return "an authenticator code"
        return None

    def _failed(self, request: Request, email: str, what: str) -> None:
        """Count a failed sign-in; when it locks the account for a network, say so."""
        if not self.auth.failed(request, email):
            return
        source = self.auth.source(request)
        log.warning(
            "sign-in: %s locked for network %s after %d failed %ss in 15 minutes",
            email.strip()[:320],
            source,
            ACCOUNT_LIMIT[0],
            what,
        )
        user = self.store.staff_user(email.strip())
        if user is not None:  # the owner is told at their next sign-in
            self.store.audit(
                self.clock(),
                "",
                "sign-in locked",
                user["email"],
                f"{ACCOUNT_LIMIT[0]} failed {what}s in 15 minutes from {source}",
                request.client.host if request.client else None,
            )

    def _signed_in(
        self, request: Request, user: dict[str, Any], next_url: str, secure: bool, how: str
    ) -> Response:
        self.auth.succeeded(request, user["email"])
        token = staff.start_session(self.store, user["id"], self.clock())
        request.state.staff = {"email": user["email"]}
        self.audit(request, "signed in", user["email"], f"with {how}" if how else "")
        locks = self.store.audit_since("sign-in locked", user["email"], user["signed_in_at"])
        if locks:
            sources = ", ".join(dict.fromkeys(network(entry["ip"]) for entry in locks))
            self.flashes[staff.token_hash(token)] = (
                f"Since you last signed in, sign-in to your account was locked "
                f"{len(locks)} time{'s' if len(locks) > 1 else ''} after repeated failed "
                f"attempts from {sources}. If that was not you, someone is guessing your "
                f"password: ask an administrator for a new one."
            )
        response = redirect(next_url)
        self.auth.set_cookie(
            response, COOKIE, token, secure, int(staff.SESSION_LIFETIME.total_seconds())
        )
        response.delete_cookie(SIGNIN_COOKIE, path=self.prefix)
        response.delete_cookie(TWO_FACTOR_COOKIE, path=self.prefix)
        return response

    def sign_out(self, request: Request) -> Response:
        self.audit(request, "signed out", request.state.staff["email"])
        staff.end_session(self.store, request.cookies.get(COOKIE))
        response = redirect(self.prefix + "/sign-in")
        response.delete_cookie(COOKIE, path=self.prefix)
        return response

    # -- application wiring ---------------------------------------------------------------

    @property
    def routes(self) -> list[Any]:
        from newsletter.web.dashboard import (
            account_views,
            campaign_views,
            overview,
            results_view,
            settings_views,
            subscriber_views,
        )

        routes = [
            Route("/sign-in", self.sign_in, methods=["GET", "POST"]),
            Route("/sign-in/code", self.sign_in_code, methods=["POST"]),
            Route("/sign-out", self.page(before_2fa=True)(self.sign_out), methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
            *overview.routes(self),
            *campaign_views.routes(self),
            *results_view.routes(self),
            *subscriber_views.routes(self),
            *settings_views.routes(self),
            *account_views.routes(self),
        ]
        return [Mount(self.prefix, routes=routes)]

    def close(self) -> None:
        self.sender.close()
        self.store.close()
