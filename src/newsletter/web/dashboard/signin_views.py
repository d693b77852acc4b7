"""Signing staff in and out: password, then (when set up) a code; lockouts; the owner told.

A password that fails counts against the account *from that network* only
(see ``auth.FailedSignIns``); failures are forgiven only after the whole
sign-in succeeds, so a known password buys no extra guesses at the code.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter import staff, twofactor
from newsletter.errors import InputError
from newsletter.web.attempts import network
from newsletter.web.dashboard.auth import (
    ACCOUNT_LIMIT,
    COOKIE,
    SIGNIN_COOKIE,
    TWO_FACTOR_COOKIE,
    TWO_FACTOR_WINDOW,
    redirect,
)
from newsletter.web.pages import DASHBOARD_HEADERS
from newsletter.web.threads import off_loop

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

log = logging.getLogger(__name__)
LOCKED = "Too many failed attempts from your network. Wait a quarter of an hour."
# Headers a proxy adds: a request that carries one came from elsewhere, whatever its socket says.
FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host")
LOCAL_NAMES = ("localhost", "localhost.")


def from_this_machine(request: Request) -> bool:
    """Whether a person at the server's own keyboard sent this: a loopback client, a
    loopback host name, and no sign of a proxy in between.

    A reverse proxy on the same machine connects from loopback too; the headers it adds
    (or the public name it passes on as Host) give it away. A proxy that adds neither
    cannot be told apart, which is why the first admin can be made only until one exists.
    """
    client = request.client.host if request.client else ""
    try:
        if not ipaddress.ip_address(client).is_loopback:
            return False
    except ValueError:
        return False
    if any(name in request.headers for name in FORWARDED):
        return False
    host = (request.url.hostname or "").lower()
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SignIn:
    """The sign-in, code and sign-out routes of one dashboard."""

    def __init__(self, d: Dashboard):
        self.d = d
        # Two first admins sent at once: only one finds the dashboard without accounts.
        self._first = threading.Lock()

    @property
    def routes(self) -> list[Route]:
        return [
            Route("/sign-in", self.sign_in, methods=["GET", "POST"]),
            Route("/sign-in/code", self.sign_in_code, methods=["POST"]),
            Route("/first-admin", self.first_admin, methods=["GET", "POST"]),
            self.d.route("/sign-out", self.sign_out, methods=["POST"], before_2fa=True),
        ]

    def _sign_in_page(
        self,
        request: Request,
        template: str,
        status: int,
        nonce: str,
        secure: bool,
        **context: Any,
    ) -> Response:
        body = self.d.env.get_template(template).render(
            staff=None, nav=[], flash=None, token=self.d.auth.signin_token(nonce), **context
        )
        response = HTMLResponse(body, status_code=status, headers=DASHBOARD_HEADERS)
        self.d.auth.set_cookie(response, SIGNIN_COOKIE, nonce, secure, 3600)
        return response

    async def sign_in(self, request: Request) -> Response:
        if not await off_loop(self.d.store.staff_users):
            return redirect(self.d.prefix + "/first-admin")  # nobody could sign in
        next_url = self.d.auth.safe_next(request.query_params.get("next"))
        secure = self.d.auth.secure(request, self.d.ws.settings.site.base_url)
        message, email, status = "", "", 200
        if request.method == "POST":
            form = await request.form()
            email = str(form.get("email", ""))[:320]
            password = str(form.get("password", ""))[:1024]
            next_url = self.d.auth.safe_next(str(form.get("next", "")))
            if not self.d.auth.signin_token_ok(request, str(form.get("token", ""))):
                message, status = "The form had expired. Please try again.", 403
            elif self.d.auth.locked(request, email):
                message, status = LOCKED, 429
            else:
                # argon2 is CPU work by design: a worker thread, not the event loop.
                user = await off_loop(staff.authenticate, self.d.store, email, password)
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
                    self.d.auth.set_cookie(
                        response,
                        TWO_FACTOR_COOKIE,
                        self.d.auth.two_factor_token(user["id"], nonce),
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
            self.d.auth.new_nonce(),
            secure,
            message=message,
            email=email,
            next_url=next_url,
        )

    async def sign_in_code(self, request: Request) -> Response:
        """The second step of a two-factor sign-in: the code from the app, or a recovery code."""
        secure = self.d.auth.secure(request, self.d.ws.settings.site.base_url)
        form = await request.form()
        next_url = self.d.auth.safe_next(str(form.get("next", "")))
        user_id = self.d.auth.two_factor_user(request)
        user = await off_loop(self.d.store.staff_user_by_id, user_id) if user_id else None
        if (
            not self.d.auth.signin_token_ok(request, str(form.get("token", "")))
            or user is None
            or not user["totp_secret"]
        ):
            return self._sign_in_page(
                request,
                "sign_in.html",
                403,
                self.d.auth.new_nonce(),
                secure,
                message="The sign-in took too long. Please start again.",
                email="",
                next_url=next_url,
            )
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        if self.d.auth.locked(request, user["email"]):
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

    async def first_admin(self, request: Request) -> Response:
        """With no account yet, the first administrator is made here, from this machine only.

        Like a first start of listmonk: whoever sits at the server makes the account that
        makes the others. From anywhere else the page only says whom to ask.
        """
        if await off_loop(self.d.store.staff_users):
            return redirect(self.d.prefix + "/sign-in")
        secure = self.d.auth.secure(request, self.d.ws.settings.site.base_url)
        local = from_this_machine(request)
        nonce = request.cookies.get(SIGNIN_COOKIE, "") or self.d.auth.new_nonce()
        context: dict[str, Any] = {"local": local, "message": "", "field": "", "email": ""}
        status = 200 if local else 403
        if request.method == "POST" and local:
            form = await request.form()
            email = str(form.get("email", ""))[:320]
            password = str(form.get("password", ""))[:1024]
            context["email"] = email
            if not self.d.auth.signin_token_ok(request, str(form.get("token", ""))):
                context["message"], status = "The form had expired. Please try again.", 403
                nonce = self.d.auth.new_nonce()
            elif password != str(form.get("again", ""))[:1024]:
                context.update(message="The two passwords are not the same.", field="again")
                status = 400
            else:
                done = await off_loop(self._create_first_admin, request, email, password, secure)
                if isinstance(done, Response):
                    return done
                context.update(message=done[0], field=done[1])
                status = 400
        return self._sign_in_page(
            request,
            "first_admin.html",
            status,
            nonce,
            secure,
            min_password=staff.MIN_PASSWORD,
            **context,
        )

    def _create_first_admin(
        self, request: Request, email: str, password: str, secure: bool
    ) -> Response | tuple[str, str]:
        """Make the account and sign it in; or what was wrong, and in which field."""
        with self._first:
            if self.d.store.staff_users():
                return redirect(self.d.prefix + "/sign-in")
            try:
                # The rules of `users add`: an address, a password of MIN_PASSWORD or more.
                user_id = staff.add_user(self.d.store, email, "admin", password, self.d.clock())
            except InputError as exc:
                field = "password" if str(exc).startswith("password") else "email"
                if field == "password":
                    return (
                        f"The password needs at least {staff.MIN_PASSWORD} characters "
                        "(a passphrase of a few words).",
                        field,
                    )
                return f"{email.strip()} is not an email address.", field
        user = self.d.store.staff_user_by_id(user_id)
        assert user is not None  # made a moment ago, under the lock
        request.state.staff = {"email": user["email"]}
        self.d.audit(request, "created the first admin", user["email"], "from this machine")
        log.info("dashboard: first admin %s created from this machine", user["email"])
        return self._signed_in(request, user, self.d.prefix + "/", secure, "")

    def _check_code(self, user: dict[str, Any], code: str) -> str | None:
        """How the second factor was given ("an authenticator code" ...), or None if it was not."""
        secret = twofactor.unseal(user["totp_secret"], self.d.ws.secrets.secret_key)
        if secret is None:
            log.error(
                "sign-in: %s: the two-factor secret cannot be read (was the secret key "
                "changed?); reset it with `newsletter users reset-2fa`",
                user["email"],
            )
            return None
        if twofactor.looks_like_recovery_code(code):
            left = self.d.store.use_recovery_code(user["id"], twofactor.recovery_hash(code))
            return None if left is None else f"a recovery code ({left} left)"
        step = twofactor.code_step(secret, code, self.d.clock())
        if step is not None and self.d.store.use_totp_step(user["id"], step):
            return "an authenticator code"
        return None

    def _failed(self, request: Request, email: str, what: str) -> None:
        """Count a failed sign-in; when it locks the account for a network, say so."""
        if not self.d.auth.failed(request, email):
            return
        source = self.d.auth.source(request)
        log.warning(
            "sign-in: %s locked for network %s after %d failed %ss in 15 minutes",
            email.strip()[:320],
            source,
            ACCOUNT_LIMIT[0],
            what,
        )
        user = self.d.store.staff_user(email.strip())
        if user is not None:  # the owner is told at their next sign-in
            self.d.store.audit(
                self.d.clock(),
                "",
                "sign-in locked",
                user["email"],
                f"{ACCOUNT_LIMIT[0]} failed {what}s in 15 minutes from {source}",
                request.client.host if request.client else None,
            )

    def _signed_in(
        self, request: Request, user: dict[str, Any], next_url: str, secure: bool, how: str
    ) -> Response:
        self.d.auth.succeeded(request, user["email"])
        token = staff.start_session(self.d.store, user["id"], self.d.clock())
        request.state.staff = {"email": user["email"]}
        self.d.audit(request, "signed in", user["email"], f"with {how}" if how else "")
        locks = self.d.store.audit_since("sign-in locked", user["email"], user["signed_in_at"])
        if locks:
            sources = ", ".join(dict.fromkeys(network(entry["ip"]) for entry in locks))
            self.d.flashes[staff.token_hash(token)] = (
                f"Since you last signed in, sign-in to your account was locked "
                f"{len(locks)} time{'s' if len(locks) > 1 else ''} after repeated failed "
                f"attempts from {sources}. If that was not you, someone is guessing your "
                f"password: ask an administrator for a new one."
            )
        response = redirect(next_url)
        self.d.auth.set_cookie(
            response, COOKIE, token, secure, int(staff.SESSION_LIFETIME.total_seconds())
        )
        response.delete_cookie(SIGNIN_COOKIE, path=self.d.prefix)
        response.delete_cookie(TWO_FACTOR_COOKIE, path=self.d.prefix)
        return response

    def sign_out(self, request: Request) -> Response:
        self.d.audit(request, "signed out", request.state.staff["email"])
        staff.end_session(self.d.store, request.cookies.get(COOKIE))
        response = redirect(self.d.prefix + "/sign-in")
        response.delete_cookie(COOKIE, path=self.d.prefix)
        return response
