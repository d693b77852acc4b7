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
from newsletter.subscribers import csv_cell

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

AUDIT_PAGE = 100
AUDIT_COLUMNS = ("at", "actor", "action", "target", "detail", "ip")


def routes(d: Dashboard) -> list[Route]:
    store = d.store
    key = d.ws.secrets.secret_key

    def me(request: Request) -> dict[str, Any]:
        return store.staff_user_by_id(request.state.staff["user_id"])

    def account_page(request: Request, status: int = 200, **context: Any) -> Response:
        user = me(request)
        return d.render(
            request,
            "account.html",
            status,
            active="account",
            enabled=bool(user["totp_secret"]),
            recovery_left=len(json.loads(user["recovery_codes"] or "[]")),
            **{"error": "", "codes": [], "enrolling": False, **context},
        )

    def enrolment(request: Request, secret: str, status: int = 200, error: str = "") -> Response:
        uri = twofactor.provisioning_uri(
            secret, request.state.staff["email"], d.ws.settings.sender.from_name
        )
        return account_page(
            request,
            status,
            enrolling=True,
            qr=twofactor.qr_data_uri(uri),
            key=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            error=error,
        )

    @d.page(before_2fa=True)
    def account(request: Request) -> Response:
        return account_page(request)

    @d.page(before_2fa=True)
    def start(request: Request) -> Response:
        if me(request)["totp_secret"]:
            return account_page(request)
        # A new secret each time: one shown earlier and not confirmed is dropped.
        secret = twofactor.new_secret()
        store.set_totp_pending(request.state.staff["user_id"], twofactor.seal(secret, key))
        return enrolment(request, secret)

    @d.page(before_2fa=True)
    def confirm(request: Request) -> Response:
        user = me(request)
        pending = twofactor.unseal(user["totp_pending"], key) if user["totp_pending"] else None
        if user["totp_secret"] or pending is None:
            return account_page(request)
        step = twofactor.code_step(pending, str(request.state.form.get("code", "")), d.clock())
        if step is None:
            return enrolment(
                request,
                pending,
                400,
                "That code is not right. Check the phone's clock and enter the code shown now.",
            )
        codes = twofactor.new_recovery_codes()
        store.enable_totp(
            user["id"],
            twofactor.seal(pending, key),
            step,
            [twofactor.recovery_hash(c) for c in codes],
        )
        d.audit(request, "turned on two-factor sign-in", user["email"])
        request.state.staff = {**request.state.staff, "has_2fa": True}
        return account_page(request, codes=codes)

    @d.page("admin")
    def audit_log(request: Request) -> Response:
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        total = store.audit_count()
        return d.render(
            request,
            "audit.html",
            active="audit",
            rows=store.audit_entries(AUDIT_PAGE, (page - 1) * AUDIT_PAGE),
            page=page,
            pages=max(1, -(-total // AUDIT_PAGE)),
            timezone=d.ws.settings.schedule.timezone,
        )

    @d.page("admin")
    def audit_csv(request: Request) -> Response:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(AUDIT_COLUMNS)
        for row in store.audit_entries():
            # An address or a subject typed by someone else must not run as a formula.
            writer.writerow([csv_cell(row[c]) for c in AUDIT_COLUMNS])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="audit-log.csv"',
                "Cache-Control": "no-store",
            },
        )

    return [
        Route("/account", account),
        Route("/account/2fa/start", start, methods=["POST"]),
        Route("/account/2fa/confirm", confirm, methods=["POST"]),
        Route("/audit", audit_log),
        Route("/audit.csv", audit_csv),
    ]
