"""Your account (two-factor sign-in) for every staff member; the audit log for admins."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import twofactor
from newsletter.errors import StateError
from newsletter.subscribers import csv_cell
from newsletter.web.pages import download_headers

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

AUDIT_PAGE = 100
AUDIT_COLUMNS = ("at", "actor", "action", "target", "detail", "ip")


class AccountViews:
    """Your account (two-factor sign-in) and the audit log of one dashboard."""

    def __init__(self, d: Dashboard):
        self.d, self.store = d, d.store
        self.key = d.ws.secrets.secret_key

    @property
    def routes(self) -> list[Route]:
        d = self.d
        return [
            d.route("/account", self.account, before_2fa=True),
            d.route("/account/2fa/start", self.start, methods=["POST"], before_2fa=True),
            d.route("/account/2fa/confirm", self.confirm, methods=["POST"], before_2fa=True),
            d.route("/audit", self.audit_log, need="admin"),
            d.route("/audit.csv", self.audit_csv, need="admin"),
        ]

    def me(self, request: Request) -> dict[str, Any]:
        user = self.store.staff_user_by_id(request.state.staff["user_id"])
        if user is None:  # removed since this request's session was checked
            raise StateError("This account has just been removed.")
        return user

    def account_page(self, request: Request, status: int = 200, **context: Any) -> Response:
        user = self.me(request)
        return self.d.render(
            request,
            "account.html",
            status,
            active="account",
            enabled=bool(user["totp_secret"]),
            recovery_left=len(json.loads(user["recovery_codes"] or "[]")),
            **{"error": "", "codes": [], "enrolling": False, **context},
        )

    def enrolment(
        self, request: Request, secret: str, status: int = 200, error: str = ""
    ) -> Response:
        uri = twofactor.provisioning_uri(
            secret, request.state.staff["email"], self.d.ws.settings.sender.from_name
        )
        return self.account_page(
            request,
            status,
            enrolling=True,
            qr=twofactor.qr_data_uri(uri),
            key=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            error=error,
        )

    # -- your account -------------------------------------------------------------------

    def account(self, request: Request) -> Response:
        return self.account_page(request)

    def start(self, request: Request) -> Response:
        if self.me(request)["totp_secret"]:
            return self.account_page(request)
        # A new secret each time: one shown earlier and not confirmed is dropped.
        secret = twofactor.new_secret()
        self.store.set_totp_pending(
            request.state.staff["user_id"], twofactor.seal(secret, self.key)
        )
        return self.enrolment(request, secret)

    def confirm(self, request: Request) -> Response:
        key = self.key
        user = self.me(request)
        pending = twofactor.unseal(user["totp_pending"], key) if user["totp_pending"] else None
        if user["totp_secret"] or pending is None:
            return self.account_page(request)
        step = twofactor.code_step(pending, str(request.state.form.get("code", "")), self.d.clock())
        if step is None:
            return self.enrolment(
                request,
                pending,
                400,
                "That code is not right. Check the phone's clock and enter the code shown now.",
            )
        codes = twofactor.new_recovery_codes()
        self.store.enable_totp(
            user["id"],
            twofactor.seal(pending, key),
            step,
            [twofactor.recovery_hash(c) for c in codes],
        )
        self.d.audit(request, "turned on two-factor sign-in", user["email"])
        request.state.staff = {**request.state.staff, "has_2fa": True}
        return self.account_page(request, codes=codes)

    # -- the audit log ------------------------------------------------------------------

    def audit_log(self, request: Request) -> Response:
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        total = self.store.audit_count()
        return self.d.render(
            request,
            "audit.html",
            active="audit",
            rows=self.store.audit_entries(AUDIT_PAGE, (page - 1) * AUDIT_PAGE),
            page=page,
            pages=max(1, -(-total // AUDIT_PAGE)),
            timezone=self.d.ws.settings.schedule.timezone,
        )

    def audit_csv(self, request: Request) -> Response:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(AUDIT_COLUMNS)
        for row in self.store.audit_entries():
            # An address or a subject typed by someone else must not run as a formula.
            writer.writerow([csv_cell(row[c]) for c in AUDIT_COLUMNS])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers=download_headers("audit-log.csv"),
        )
