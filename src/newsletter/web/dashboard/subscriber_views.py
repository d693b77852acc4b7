"""Subscriber pages: search and filter, one person's record, CSV import, unsubscribe, delete."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import subscribers
from newsletter.errors import InputError, NotFound
from newsletter.subscriber_csv import MAP_FIELDS
from newsletter.web.dashboard.auth import redirect
from newsletter.web.wording import for_people

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

PAGE_SIZE = 50
STATUSES = ("unconfirmed", "confirmed", "unsubscribed", "bounced", "complained")
SHOWN_PROBLEMS = 50
# Uploaded files wait in memory between the preview and the import; a few at a time.
PENDING_IMPORTS = 8
PENDING_SECONDS = 3600
EXPIRED = "That upload has expired; choose the file again."


def routes(d: Dashboard) -> list[Route]:
    store = d.store
    pending: dict[str, dict[str, Any]] = {}

    def subscriber_of(request: Request) -> dict[str, Any]:
        sid = request.path_params["id"]
        found = store.subscriber(sid)
        if found is None:
            raise NotFound(f"subscriber {sid}: no such subscriber (deleted?)")
        return found

    @d.page()
    def subscriber_list(request: Request) -> Response:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in STATUSES:
            raise InputError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        list_name = q.get("list") or None
        list_id = store.list_id(list_name) if list_name else None
        try:
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            page = 1
        rows, total = store.search_subscribers(
            q.get("q", "").strip(),
            status,
            list_id,
            q.get("tag", "").strip() or None,
            PAGE_SIZE,
            (page - 1) * PAGE_SIZE,
        )
        return d.render(
            request,
            "subscribers.html",
            active="subscribers",
            rows=rows,
            total=total,
            page=page,
            pages=max(1, -(-total // PAGE_SIZE)),
            query={k: q.get(k, "") for k in ("q", "status", "list", "tag")},
            statuses=STATUSES,
            lists=store.lists(),
        )

    @d.page()
    def subscriber_page(request: Request) -> Response:
        subscriber = subscriber_of(request)
        record = store.subscriber_record(subscriber["id"])
        return d.render(
            request, "subscriber.html", active="subscribers", s=subscriber, record=record
        )

    @d.page()
    def unsubscribe(request: Request) -> Response:
        subscriber = subscriber_of(request)
        done = store.unsubscribe(subscriber["id"], None, d.clock(), "staff")
        # By id only: the log must not keep an address its person may later have erased.
        d.audit(request, "unsubscribed", f"subscriber {subscriber['id']}")
        d.flash(
            request,
            f"{subscriber['email']}: unsubscribed."
            if done
            else f"{subscriber['email']}: already {subscriber['status']}.",
        )
        return redirect(f"{d.prefix}/subscribers/{subscriber['id']}")

    @d.page()
    def delete(request: Request) -> Response:
        subscriber = subscriber_of(request)
        store.delete_subscriber(subscriber["id"], d.clock())
        d.audit(request, "deleted (erased)", f"subscriber {subscriber['id']}")
        d.flash(request, f"{subscriber['email']}: deleted; the address stays suppressed as a hash.")
        return redirect(f"{d.prefix}/subscribers")

    def import_form(request: Request, status: int = 200, **context: Any) -> Response:
        if context.get("error"):
            # Said by the field it is about: the file chosen, or the columns.
            said = for_people(context["error"])
            context.update(error=said.text, error_field=said.field or "")
        return d.render(
            request,
            "subscribers_import.html",
            status,
            active="subscribers",
            lists=store.lists(),
            **context,
        )

    @d.page()
    def import_page(request: Request) -> Response:
        if request.method == "GET":
            return import_form(request)
        form = request.state.form
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return import_form(request, 400, error="Choose a CSV file to import.")
        limit = d.ws.settings.web.max_upload_bytes
        data = upload.file.read(limit + 1)  # a worker thread: the file is read as it is
        if len(data) > limit:
            return import_form(
                request,
                413,
                error=f"{upload.filename}: larger than {limit:,} bytes, the most an upload "
                f"may be here; split the file.",
            )
        name = upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
        confirmed = form.get("confirmed") == "on"
        list_name = str(form.get("list", "")).strip() or None
        if list_name:
            store.list_id(list_name)
        now = time.monotonic()
        for token in [t for t, p in pending.items() if now - p["at"] > PENDING_SECONDS]:
            del pending[token]
        while len(pending) >= PENDING_IMPORTS:
            pending.pop(next(iter(pending)))
        job = {
            "data": data,
            "name": name,
            "confirmed": confirmed,
            "list": list_name,
            "mapping": {},
            "at": now,
            "owner": request.state.staff["user_id"],
        }
        token = secrets.token_urlsafe(16)
        pending[token] = job
        return preview(request, token, job)

    def preview(
        request: Request, token: str, job: dict[str, Any], error: str | None = None
    ) -> Response:
        try:
            parsed = subscribers.parse_csv(
                job["data"],
                job["name"],
                job["confirmed"],
                job["mapping"],
                eai_refusal=d.ws.eai_refusal,
            )
        except InputError as exc:
            pending.pop(token, None)
            return import_form(request, 400, error=str(exc))
        extra = {"error": error} if error else {}
        return import_form(
            request,
            400 if error else 200,
            **extra,
            parsed=parsed,
            sample=parsed.rows[:5],
            problems=parsed.problems[:SHOWN_PROBLEMS],
            token=token,
            file_name=job["name"],
            list_name=job["list"],
            confirmed=job["confirmed"],
            fields=MAP_FIELDS,
        )

    def pending_job(request: Request) -> tuple[str, dict[str, Any] | None]:
        token = str(request.state.form.get("token", ""))
        job = pending.get(token)
        if job is None or job["owner"] != request.state.staff["user_id"]:
            return token, None
        return token, job

    @d.page()
    def import_remap(request: Request) -> Response:
        token, job = pending_job(request)
        if job is None:
            return import_form(request, 400, error=EXPIRED)
        # The same COLUMN=FIELD pairs as `subscribers import --map`.
        pairs = [str(v) for v in request.state.form.getlist("map") if v]
        before = job["mapping"]
        try:
            job["mapping"] = subscribers.parse_mapping(pairs)
            subscribers.parse_csv(job["data"], job["name"], job["confirmed"], job["mapping"])
        except InputError as exc:
            job["mapping"] = before
            return preview(request, token, job, error=str(exc))
        return preview(request, token, job)

    @d.page()
    def import_confirm(request: Request) -> Response:
        token, job = pending_job(request)
        if job is None:
            return import_form(request, 400, error=EXPIRED)
        del pending[token]
        # The same import as the command line's and the folder's: rows read as
        # they are stored, mailboxes deduplicated in any capitals.
        report = subscribers.import_data(
            store,
            job["data"],
            job["name"],
            d.clock(),
            job["list"],
            job["confirmed"],
            job["mapping"],
            eai_refusal=d.ws.eai_refusal,
        )
        d.audit(request, "imported", job["name"], report.line())
        return import_form(
            request, report=report, problems=report.problems[:SHOWN_PROBLEMS], imported=True
        )

    return [
        Route("/subscribers", subscriber_list),
        Route("/subscribers/import", import_page, methods=["GET", "POST"]),
        Route("/subscribers/import/columns", import_remap, methods=["POST"]),
        Route("/subscribers/import/confirm", import_confirm, methods=["POST"]),
        Route("/subscribers/{id:int}", subscriber_page),
        Route("/subscribers/{id:int}/unsubscribe", unsubscribe, methods=["POST"]),
        Route("/subscribers/{id:int}/delete", delete, methods=["POST"]),
    ]
