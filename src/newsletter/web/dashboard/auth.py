"""Signing staff in and out, the session cookie, CSRF checks and roles.

The session cookie holds a random token (the database keeps its hash); it
is HttpOnly, SameSite=Lax, limited to the dashboard's path and Secure when
the site is served over HTTPS. Every POST must carry the session's CSRF
token (form field ``csrf`` or header ``X-CSRF-Token``), or it is refused with
403. The sign-in form, posted before there is a session, carries an HMAC of
a random pre-session cookie instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter import staff
from newsletter.web.subscribers import RateLimiter, network

COOKIE = "nl_staff"
SIGNIN_COOKIE = "nl_signin"
# Sign-in attempts: per network against guessing many accounts, per account
# against a spread-out attack on one.
NETWORK_LIMIT = (20, dt.timedelta(minutes=15))
ACCOUNT_LIMIT = (8, dt.timedelta(minutes=15))

# A page handler: a coroutine, or a plain function the dashboard runs in a worker thread.
Handler = Callable[[Request], Awaitable[Response]] | Callable[[Request], Response]


class Auth:
    """Sessions and sign-in checks of the dashboard mounted at ``prefix``."""

    def __init__(self, store: Any, clock: Callable[[], dt.datetime], key: str, prefix: str):
        self.store, self.clock, self.prefix = store, clock, prefix
        self._key = hashlib.sha256(b"newsletter dashboard sign-in\0" + key.encode()).digest()
        self.by_network = RateLimiter(*NETWORK_LIMIT)
        self.by_account = RateLimiter(*ACCOUNT_LIMIT)

    # -- cookies ---------------------------------------------------------------------

    def secure(self, request: Request, base_url: str) -> bool:
        return request.url.scheme == "https" or base_url.startswith("https:")

    def set_cookie(
        self, response: Response, name: str, value: str, secure: bool, max_age: int | None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.prefix,
            secure=secure,
            httponly=True,
            samesite="lax",
        )

    # -- sign-in form token ---------------------------------------------------------------

    def signin_token(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def signin_token_ok(self, request: Request, token: str) -> bool:
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        return bool(nonce) and hmac.compare_digest(self.signin_token(nonce), token)

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def allow_attempt(self, request: Request, email: str) -> bool:
        now = self.clock()
        ip = request.client.host if request.client else None
        by_network = self.by_network.allow(network(ip), now)
        by_account = self.by_account.allow(email.strip().lower(), now)
        return by_network and by_account

    # -- sessions ------------------------------------------------------------------------

    def session(self, request: Request) -> dict[str, Any] | None:
        return staff.session(self.store, request.cookies.get(COOKIE), self.clock())

    def sign_in_url(self, request: Request) -> str:
        target = request.url.path
        if request.url.query and request.method == "GET":
            target += "?" + request.url.query
        return f"{self.prefix}/sign-in?next={quote(target, safe='')}"

    def sign_in_url_for_page(self, request: Request) -> str:
        """Sign-in, then back to the page that polled (htmx names it), not to the fragment."""
        parts = urlsplit(request.headers.get("hx-current-url", ""))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"{self.prefix}/sign-in?next={quote(self.safe_next(target), safe='')}"

    def safe_next(self, target: str | None) -> str:
        """Where to go after signing in: only a path inside the dashboard, never another site."""
        if (
            target
            and target.startswith(self.prefix + "/")
            and not target.startswith("//")
            and "\\" not in target
        ):
            return target
        return self.prefix + "/"


def csrf_ok(session: dict[str, Any], token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session["csrf"], str(token))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
