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
from newsletter.addresses import mailbox_key
from newsletter.web.attempts import AttemptLimiter, network

COOKIE = "nl_staff"
SIGNIN_COOKIE = "nl_signin"
TWO_FACTOR_COOKIE = "nl_2fa"
# Failed sign-ins: per network against guessing many accounts; per account *and*
# network against guessing one, so an attacker locks out only their own network,
# never the owner signing in from elsewhere.
NETWORK_LIMIT = (20, dt.timedelta(minutes=15))
ACCOUNT_LIMIT = (8, dt.timedelta(minutes=15))
# Between the password and the code of a two-factor sign-in.
TWO_FACTOR_WINDOW = dt.timedelta(minutes=5)

# A page handler: a coroutine, or a plain function the dashboard runs in a worker thread.
Handler = Callable[[Request], Awaitable[Response]] | Callable[[Request], Response]


class FailedSignIns:
    """Failed sign-ins in a sliding window, per (account, network) and per network.

    Only failures count: a correct password from a network that has not
    failed for that account always gets through, whatever others try.
    """

    def __init__(self, max_keys: int = 10_000):
        self.by_pair = AttemptLimiter(*ACCOUNT_LIMIT, max_keys=max_keys)
        self.by_network = AttemptLimiter(*NETWORK_LIMIT, max_keys=max_keys)

    def locked(self, account: str, source: str, now: dt.datetime) -> bool:
        return self.by_pair.full((account, source), now) or self.by_network.full(source, now)

    def fail(self, account: str, source: str, now: dt.datetime) -> bool:
        """Count a failure; True if it is the one that locks this account for this network."""
        self.by_network.add(source, now)
        return self.by_pair.add((account, source), now) == ACCOUNT_LIMIT[0]

    def succeed(self, account: str, source: str) -> None:
        self.by_pair.forget((account, source))


class Auth:
    """Sessions and sign-in checks of the dashboard mounted at ``prefix``."""

    def __init__(self, store: Any, clock: Callable[[], dt.datetime], key: str, prefix: str):
        self.store, self.clock, self.prefix = store, clock, prefix
        self._key = hashlib.sha256(b"newsletter dashboard sign-in\0" + key.encode()).digest()
        self.failures = FailedSignIns()

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

    @staticmethod
    def source(request: Request) -> str:
        """The network a request comes from: one key for one household or office."""
        return network(request.client.host if request.client else None)

    def locked(self, request: Request, email: str) -> bool:
        return self.failures.locked(mailbox_key(email.strip()), self.source(request), self.clock())

    def failed(self, request: Request, email: str) -> bool:
        """Count a failed sign-in; True if it just locked the account for that network."""
        return self.failures.fail(mailbox_key(email.strip()), self.source(request), self.clock())

    def succeeded(self, request: Request, email: str) -> None:
        self.failures.succeed(mailbox_key(email.strip()), self.source(request))

    # -- the step between password and code --------------------------------------------

    def two_factor_token(self, user_id: int, nonce: str) -> str:
        """Proof that this browser gave the account's password a moment ago."""
        expires = int((self.clock() + TWO_FACTOR_WINDOW).timestamp())
        message = f"2fa:{user_id}:{expires}:{nonce}"
        mac = hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()
        return f"{user_id}.{expires}.{mac}"

    def two_factor_user(self, request: Request) -> int | None:
        """The account whose password this browser gave, if it did so within the window.

        Bound to the sign-in form's nonce cookie, so the token alone is worth nothing.
        """
        value = request.cookies.get(TWO_FACTOR_COOKIE, "")
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        parts = value.split(".")
        if len(parts) != 3 or not nonce or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        message = f"2fa:{parts[0]}:{parts[1]}:{nonce}"
        mac = hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, parts[2]):
            return None
        if int(parts[1]) < self.clock().timestamp():
            return None
        return int(parts[0])

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
