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
from newsletter.addresses import mailbox_key
from newsletter.errors import InputError, NotFound
from newsletter.status import SubscriberStatus
from newsletter.subscriber_csv import (
    FILE_STATUSES,
    MAP_FIELDS,
    NoEmailColumn,
    OptOutColumn,
    ParsedFile,
)
from newsletter.web.dashboard.auth import redirect
from newsletter.web.wording import for_people

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

PAGE_SIZE = 50
STATUSES = tuple(SubscriberStatus)
SHOWN_PROBLEMS = 50
# Uploaded files wait in memory between the preview and the import; a few at a time.
PENDING_IMPORTS = 8
PENDING_SECONDS = 3600
# Rows of a file shown before it is imported.
PREVIEW_ROWS = 5
EXPIRED = "That upload has expired; choose the file again."
# What a column can be read as, in the words of the people who import (the
# column mapper's choices and its "Read as" column), not the core's field names.
FIELD_WORDS = {
    "email": "Email address",
    "first_name": "First name",
    "last_name": "Last name",
    "name": "Full name",
    "status": "Status (words such as active or unsubscribed)",
    "tags": "Tags",
    "attributes": "Extra fields written as JSON",
    "subscribed": "Receives email (yes or no)",
    "unsubscribed": "Opted out (filled in or yes)",
    "unsubscribed_at": "Time they unsubscribed",
    "bounced_at": "Time the address bounced",
    "signed_up": "Time they signed up (consent record)",
    "consent evidence": "Consent record (opt-in time or IP)",
    "ignore": "Leave out",
    "ignored": "Left out",
    "unread": "Not read yet",
}
# The answers to "Did these people agree to receive email from you?" (the same
# choice as `subscribers import --status`), in the order the page offers them.
CONSENT_ANSWERS = {
    SubscriberStatus.CONFIRMED: "Yes, they agreed",
    SubscriberStatus.UNCONFIRMED: "No, or I am not sure",
    SubscriberStatus.UNSUBSCRIBED: "Everyone in this file has unsubscribed",
    SubscriberStatus.BOUNCED: "Every address in this file bounced",
    SubscriberStatus.COMPLAINED: "Everyone in this file marked my email as spam",
}


def read_as(role: str) -> str:
    """A column's role (``ParsedFile.columns``) in plain words."""
    if role.startswith("attribute:"):
        return f"Extra field “{role[10:]}”"
    return FIELD_WORDS.get(role, role)


class SubscriberViews:
    """The subscriber pages of one dashboard, and the CSV files waiting to be imported."""

    def __init__(self, d: Dashboard):
        self.d, self.store = d, d.store
        self.pending: dict[str, dict[str, Any]] = {}

    @property
    def routes(self) -> list[Route]:
        d = self.d
        return [
            d.route("/subscribers", self.subscriber_list),
            d.route("/subscribers/import", self.import_page, methods=["GET", "POST"]),
            d.route("/subscribers/import/columns", self.import_remap, methods=["POST"]),
            d.route("/subscribers/import/confirm", self.import_confirm, methods=["POST"]),
            d.route("/subscribers/{id:int}", self.subscriber_page),
            d.route("/subscribers/{id:int}/unsubscribe", self.unsubscribe, methods=["POST"]),
            d.route("/subscribers/{id:int}/delete", self.delete, methods=["POST"]),
        ]

    def subscriber_of(self, request: Request) -> dict[str, Any]:
        sid = request.path_params["id"]
        found = self.store.subscriber(sid)
        if found is None:
            raise NotFound(f"subscriber {sid}: no such subscriber (deleted?)")
        return found

    # -- search and one person's record -----------------------------------------------

    def subscriber_list(self, request: Request) -> Response:
        store = self.store
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
        return self.d.render(
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

    def subscriber_page(self, request: Request) -> Response:
        subscriber = self.subscriber_of(request)
        record = self.store.subscriber_record(subscriber["id"])
        return self.d.render(
            request, "subscriber.html", active="subscribers", s=subscriber, record=record
        )

    def unsubscribe(self, request: Request) -> Response:
        d = self.d
        subscriber = self.subscriber_of(request)
        done = self.store.unsubscribe(subscriber["id"], None, d.clock(), "staff")
        # By id only: the log must not keep an address its person may later have erased.
        d.audit(request, "unsubscribed", f"subscriber {subscriber['id']}")
        d.flash(
            request,
            f"{subscriber['email']}: unsubscribed."
            if done
            else f"{subscriber['email']}: already {subscriber['status']}.",
        )
        return redirect(f"{d.prefix}/subscribers/{subscriber['id']}")

    def delete(self, request: Request) -> Response:
        d = self.d
        subscriber = self.subscriber_of(request)
        self.store.delete_subscriber(subscriber["id"], d.clock())
        d.audit(request, "deleted (erased)", f"subscriber {subscriber['id']}")
        d.flash(request, f"{subscriber['email']}: deleted; the address stays suppressed as a hash.")
        return redirect(f"{d.prefix}/subscribers")

    # -- CSV import: upload, preview, columns, confirm --------------------------------

    def import_form(self, request: Request, status: int = 200, **context: Any) -> Response:
        if context.get("error"):
            # Said by the field it is about: the file chosen, or the columns.
            said = for_people(context["error"])
            context.update(error=said.text, error_field=said.field or "")
        return self.d.render(
            request,
            "subscribers_import.html",
            status,
            active="subscribers",
            lists=self.store.lists(),
            **context,
        )

    def import_page(self, request: Request) -> Response:
        if request.method == "GET":
            return self.import_form(request)
        form = request.state.form
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return self.import_form(request, 400, error="Choose a CSV file to import.")
        limit = self.d.ws.settings.web.max_upload_bytes
        data = upload.file.read(limit + 1)  # a worker thread: the file is read as it is
        if len(data) > limit:
            return self.import_form(
                request,
                413,
                error=f"{upload.filename}: larger than {limit:,} bytes, the most an upload "
                f"may be here; split the file.",
            )
        name = upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
        confirmed = form.get("confirmed") == "on"
        # The page asks whether these people agreed (a required choice); a form
        # sent without the answer imports as before it was asked: the file's own
        # words, rows without a status unconfirmed.
        answer = str(form.get("consent", ""))
        status = None
        if answer:
            if answer not in FILE_STATUSES:
                return self.import_form(
                    request, 400, error="Say whether these people agreed to receive email."
                )
            status = SubscriberStatus(answer)
        list_name = str(form.get("list", "")).strip() or None
        if list_name:
            self.store.list_id(list_name)
        pending = self.pending
        now = time.monotonic()
        for token in [t for t, p in pending.items() if now - p["at"] > PENDING_SECONDS]:
            del pending[token]
        while len(pending) >= PENDING_IMPORTS:
            pending.pop(next(iter(pending)))
        job = {
            "data": data,
            "name": name,
            "confirmed": confirmed,
            "status": status,
            "list": list_name,
            "mapping": {},
            "at": now,
            "owner": request.state.staff["user_id"],
        }
        token = secrets.token_urlsafe(16)
        pending[token] = job
        return self.preview(request, token, job)

    def preview(
        self,
        request: Request,
        token: str,
        job: dict[str, Any],
        error: str | None = None,
        before: dict[str, Any] | None = None,
    ) -> Response:
        """The preview of an upload read with the job's mapping. ``before``: the mapping it
        had until this request changed it, restored (with the reason) if the new one fails."""
        blocked = no_email = False

        def parse(guard: bool = True) -> subscribers.ParsedFile:
            return subscribers.parse_csv(
                job["data"],
                job["name"],
                job["confirmed"],
                job["mapping"],
                eai_refusal=self.d.ws.eai_refusal,
                guard=guard,
                status=job.get("status"),
            )

        try:
            parsed = parse()
        except OptOutColumn as exc:
            # A column says who opted out and nothing reads it: the columns are
            # shown so that it can be read as a status, and nothing is imported
            # until it is.
            parsed, error, blocked = parse(guard=False), str(exc), True
        except NoEmailColumn as exc:
            # No column is named as an address column: the mapper is offered, for
            # staff to say which column holds the addresses.
            parsed = ParsedFile(job["name"], columns=[(h, "unread") for h in exc.headers])
            error, blocked, no_email = str(exc), True, True
        except InputError as exc:
            if before is not None:
                job["mapping"] = before
                return self.preview(request, token, job, error=str(exc))
            self.pending.pop(token, None)
            return self.import_form(request, 400, error=str(exc))
        extra = {"error": error} if error else {}
        assert isinstance(parsed.rows, list)  # parse_csv reads every row, unlike import_file
        # Addresses already on the list, by the one identity rule (any capitals):
        # counted for the whole file, marked in the rows shown.
        known = self.store.known_mailboxes(r["email"] for r in parsed.rows)
        sample = [
            {**r, "known": mailbox_key(r["email"]) in known} for r in parsed.rows[:PREVIEW_ROWS]
        ]
        return self.import_form(
            request,
            400 if error else 200,
            **extra,
            parsed=parsed,
            sample=sample,
            known=sum(mailbox_key(r["email"]) in known for r in parsed.rows) if known else 0,
            problems=parsed.problems[:SHOWN_PROBLEMS],
            token=token,
            file_name=job["name"],
            list_name=job["list"],
            confirmed=job["confirmed"],
            answer=CONSENT_ANSWERS.get(job.get("status")),  # type: ignore[arg-type]
            whole=job.get("status"),
            fields=[(f, FIELD_WORDS[f]) for f in MAP_FIELDS],
            read_as=read_as,
            blocked=blocked,
            no_email=no_email,
        )

    def pending_job(self, request: Request) -> tuple[str, dict[str, Any] | None]:
        token = str(request.state.form.get("token", ""))
        job = self.pending.get(token)
        if job is None or job["owner"] != request.state.staff["user_id"]:
            return token, None
        return token, job

    def import_remap(self, request: Request) -> Response:
        token, job = self.pending_job(request)
        if job is None:
            return self.import_form(request, 400, error=EXPIRED)
        # The same COLUMN=FIELD pairs as `subscribers import --map`.
        pairs = [str(v) for v in request.state.form.getlist("map") if v]
        before = job["mapping"]
        try:
            job["mapping"] = subscribers.parse_mapping(pairs)
        except InputError as exc:
            return self.preview(request, token, job, error=str(exc))
        # The file is read once, by the preview: a mapping it refuses gives way to the
        # one before, with the reason; a column still to be read as opted out stands.
        return self.preview(request, token, job, before=before)

    def import_confirm(self, request: Request) -> Response:
        token, job = self.pending_job(request)
        if job is None:
            return self.import_form(request, 400, error=EXPIRED)
        del self.pending[token]
        # The same import as the command line's and the folder's: rows read as
        # they are stored, mailboxes deduplicated in any capitals.
        try:
            report = subscribers.import_data(
                self.store,
                job["data"],
                job["name"],
                self.d.clock(),
                job["list"],
                job["confirmed"],
                job["mapping"],
                eai_refusal=self.d.ws.eai_refusal,
                status=job.get("status"),
            )
        except InputError as exc:
            # One transaction: nothing of the file was stored.
            return self.import_form(request, 400, error=str(exc))
        self.d.audit(request, "imported", job["name"], report.line())
        return self.import_form(
            request, report=report, problems=report.problems[:SHOWN_PROBLEMS], imported=True
        )
