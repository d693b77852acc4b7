"""Subscriber pages: search and filter, one person's record, CSV import, unsubscribe, delete;
adding and editing one person, their data as a download, and the lists."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import consent, people, subscribers
from newsletter.addresses import mailbox_key
from newsletter.errors import InputError, NewsletterError, NotFound, StateError
from newsletter.status import SubscriberStatus
from newsletter.subscriber_csv import (
    FILE_STATUSES,
    MAP_FIELDS,
    NoEmailColumn,
    OptOutColumn,
    ParsedFile,
)
from newsletter.web.dashboard.auth import redirect
from newsletter.web.wording import FIELD_WORDS, for_people

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
NO_IMPORT_ANSWER = (
    "Say whether these people agreed to receive email from you: nothing was imported."
)
NO_CONSENT_CHOICE = "consent: choose whether they asked to join or get a confirmation email"
# Checked before anything is stored, as `subscribers add` does by opening the transport first.
NO_SENDING = "sending email is not set up yet, so no confirmation email can go out"


def typed_person(form: Any = None) -> dict[str, Any]:
    """What a person's form holds, as typed (kept to be shown again when it is refused)."""
    form = form or {}
    values: dict[str, Any] = {
        key: str(form.get(key, ""))[:4000]
        for key in ("email", "first_name", "last_name", "tags", "attributes", "consent")
    }
    values["lists"] = [str(v) for v in form.getlist("list")] if form else []
    return values


def person_values(person: dict[str, Any], lists: list[str]) -> dict[str, Any]:
    """A stored person as their form shows them (attributes that are not one line of text
    are shown apart, by ``kept_attributes``)."""
    return {
        "email": person["email"],
        "first_name": person["first_name"] or "",
        "last_name": person["last_name"] or "",
        "tags": ", ".join(person["tags"]),
        "attributes": people.attribute_lines(person["attributes"])[0],
        "consent": "",
        "lists": lists,
    }


def kept_attributes(person: dict[str, Any]) -> list[tuple[str, str]]:
    """The attributes the edit form shows but does not change, each with its value as JSON."""
    kept = people.attribute_lines(person["attributes"])[1]
    return [(key, json.dumps(value, ensure_ascii=False)) for key, value in kept.items()]


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
            d.route("/subscribers/new", self.add_page, methods=["GET", "POST"]),
            d.route("/subscribers/{id:int}/edit", self.edit_page, methods=["GET", "POST"]),
            d.route("/subscribers/{id:int}/data.json", self.export),
            d.route("/subscribers/lists", self.lists_page, methods=["GET", "POST"]),
            d.route("/subscribers/lists/{id:int}/rename", self.rename_list, methods=["POST"]),
            d.route("/subscribers/{id:int}/ask-again", self.ask_again, methods=["POST"]),
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
            request,
            "subscriber.html",
            active="subscribers",
            s=subscriber,
            record=record,
            history=people.history(self.store, subscriber["id"], record),
            ask_again=people.may_ask_again(self.store, subscriber, record["consents"]),
        )

    def unsubscribe(self, request: Request) -> Response:
        d = self.d
        subscriber = self.subscriber_of(request)
        # The event names the staff account, so the person's history says who it was.
        how = f"staff:{request.state.staff['email']}"
        done = self.store.unsubscribe(subscriber["id"], None, d.clock(), how)
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

    # -- one person added, edited, downloaded; the lists -------------------------------

    def person_form(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        """A form of one person, with what was typed and, by its field, what is wrong."""
        error = context.pop("error", None)
        if error is not None:
            said = for_people(error)
            context.update(error=said.text, error_field=said.field or "")
        return self.d.render(
            request, template, status, active="subscribers", lists=self.store.lists(), **context
        )

    def add_page(self, request: Request) -> Response:
        d = self.d
        if request.method == "GET":
            return self.person_form(request, "subscriber_new.html", values=typed_person())
        values = typed_person(request.state.form)
        if values["consent"] not in ("asked", "confirm"):
            return self.person_form(
                request,
                "subscriber_new.html",
                400,
                values=values,
                error=InputError(NO_CONSENT_CHOICE),
            )
        if values["consent"] == "confirm" and d.ws.sending_problems:
            return self.person_form(
                request,
                "subscriber_new.html",
                400,
                values=values,
                error=InputError(f"consent: {NO_SENDING}"),
            )
        actor = request.state.staff["email"]
        now = d.clock()
        try:
            details = people.read_details(
                values["first_name"], values["last_name"], values["tags"], values["attributes"]
            )
            added = people.add(
                self.store,
                d.ws.settings,
                values["email"],
                details,
                values["lists"],
                asked=values["consent"] == "asked",
                actor=actor,
                now=now,
                eai_refusal=d.ws.eai_refusal,
            )
        except NewsletterError as exc:
            return self.person_form(request, "subscriber_new.html", 400, values=values, error=exc)
        sid = added.subscriber_id
        if added.confirmed:
            d.audit(request, "added", f"subscriber {sid}", "they asked to join: confirmed")
            d.flash(request, f"{added.address}: added as confirmed; they asked to join.")
            return redirect(f"{d.prefix}/subscribers/{sid}")
        d.audit(request, "added", f"subscriber {sid}", "unconfirmed: confirmation email")
        d.flash(request, self.confirmation(added, now))
        return redirect(f"{d.prefix}/subscribers/{sid}")

    def ask_again(self, request: Request) -> Response:
        d = self.d
        person = self.subscriber_of(request)
        if d.ws.sending_problems:
            raise StateError(NO_SENDING)
        now = d.clock()
        added = people.ask_again(
            self.store, d.ws.settings, person["id"], actor=request.state.staff["email"], now=now
        )
        d.audit(request, "asked to confirm again", f"subscriber {person['id']}")
        d.flash(request, self.confirmation(added, now))
        return redirect(f"{d.prefix}/subscribers/{person['id']}")

    def confirmation(self, added: people.Added, now: dt.datetime) -> str:
        """Send the confirmation email of a person just added, as `subscribers add` does;
        what happened, for the page."""
        ws = self.d.ws
        if added.consent_id is None:
            return (
                f"{added.address}: unconfirmed; a confirmation email went to this address "
                f"minutes ago, so none was sent now."
            )
        try:
            transport = ws.transport()
        except NewsletterError as exc:
            return self.not_sent(added, exc)
        try:
            consent.send_confirmation(
                self.store,
                transport,
                ws.settings,
                ws.signer,
                ws.templates(ws.settings.subscribers.confirm_template),
                added.consent_id,
                now,
            )
        except NewsletterError as exc:
            return self.not_sent(added, exc)
        finally:
            transport.close()
        return (
            f"{added.address}: unconfirmed; a confirmation email is on its way. "
            f"They get newsletters once they click its link (it works for "
            f"{ws.settings.subscribers.confirm_days} days)."
        )

    @staticmethod
    def not_sent(added: people.Added, exc: NewsletterError) -> str:
        # The request stays recorded (it is the consent proof); say what failed.
        return (
            f"{added.address}: unconfirmed, and the confirmation email could not be sent: "
            f"{exc}. Fix that (see Settings, Check), then send it again from this page."
        )

    def edit_page(self, request: Request) -> Response:
        d = self.d
        person = self.subscriber_of(request)
        sid = person["id"]
        if request.method == "GET":
            current = [m["name"] for m in self.store.memberships(sid) if not m["unsubscribed_at"]]
            return self.person_form(
                request,
                "subscriber_edit.html",
                s=person,
                values=person_values(person, current),
                left=people.their_own_leaving(self.store, sid),
                kept=kept_attributes(person),
            )
        values = typed_person(request.state.form)
        try:
            details = people.read_details(
                values["first_name"], values["last_name"], values["tags"], ""
            )
            details = dataclasses.replace(
                details,
                attributes=people.edited_attributes(person["attributes"], values["attributes"]),
            )
            changed = people.edit(
                self.store,
                sid,
                details,
                values["lists"],
                actor=request.state.staff["email"],
                now=d.clock(),
            )
        except NewsletterError as exc:
            return self.person_form(
                request,
                "subscriber_edit.html",
                400,
                s=person,
                values=values,
                error=exc,
                left=people.their_own_leaving(self.store, sid),
                kept=kept_attributes(person),
            )
        if changed:
            d.audit(request, "edited", f"subscriber {sid}", ", ".join(changed))
            d.flash(request, f"{person['email']}: saved ({', '.join(changed)}).")
        else:
            d.flash(request, f"{person['email']}: nothing was changed.")
        return redirect(f"{d.prefix}/subscribers/{sid}")

    def export(self, request: Request) -> Response:
        """Everything held on one person as a JSON file: the data of `subscribers export`,
        with staff accounts said as "staff" (``people.for_the_person``)."""
        person = self.subscriber_of(request)
        record = people.for_the_person(self.store.subscriber_record(person["id"]))
        self.d.audit(request, "downloaded their data", f"subscriber {person['id']}")
        body = json.dumps(record, indent=2, ensure_ascii=False)
        return Response(
            body,
            media_type="application/json; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="subscriber-{person["id"]}.json"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    def lists_page(self, request: Request) -> Response:
        d = self.d
        if request.method == "GET":
            return self.person_form(request, "lists.html", values={})
        form = request.state.form
        values = {
            "name": str(form.get("name", "")),
            "description": str(form.get("description", "")),
            "public": form.get("public") == "on",
        }
        try:
            name = people.new_list(
                self.store, values["name"], values["description"], values["public"], d.clock()
            )
        except NewsletterError as exc:
            return self.person_form(request, "lists.html", 400, values=values, error=exc)
        d.audit(request, "created a list", f"list {name}", "public" if values["public"] else "")
        d.flash(request, f"List {name} created.")
        return redirect(f"{d.prefix}/subscribers/lists")

    def rename_list(self, request: Request) -> Response:
        d = self.d
        list_id = request.path_params["id"]
        typed = str(request.state.form.get("name", ""))
        try:
            old, new = people.rename_list(self.store, list_id, typed)
        except NotFound:
            raise
        except NewsletterError as exc:
            return self.person_form(
                request, "lists.html", 400, values={}, renaming=list_id, typed=typed, error=exc
            )
        if old != new:
            d.audit(request, "renamed a list", f"list {new}", f"was {old}")
            d.flash(request, f"List {old} is now called {new}.")
        return redirect(f"{d.prefix}/subscribers/lists")

    # -- CSV import: upload, preview, columns, confirm --------------------------------

    def import_form(
        self, request: Request, status: int = 200, field: str | None = None, **context: Any
    ) -> Response:
        """The import page; an error is said by the field it is about (``field``, else as
        ``for_people`` finds it): the file chosen, the consent question, or the columns."""
        if context.get("error"):
            said = for_people(context["error"])
            context.update(error=said.text, error_field=field or said.field or "")
        return self.d.render(
            request,
            "subscribers_import.html",
            status,
            active="subscribers",
            lists=self.store.lists(),
            consent_answers=CONSENT_ANSWERS,
            **context,
        )

    def list_name(self, list_id: int | None) -> str | None:
        """The name a pending import's list has now (it may have been renamed since)."""
        if list_id is None:
            return None
        return next((x["name"] for x in self.store.lists() if x["id"] == list_id), None)

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
        list_name = str(form.get("list", "")).strip() or None
        # The page asks whether these people agreed: nothing is read or kept
        # until it is answered (the answer decides who may get email).
        answer = str(form.get("consent", ""))
        if answer not in FILE_STATUSES:
            return self.import_form(
                request, 400, field="consent", error=NO_IMPORT_ANSWER, chosen_list=list_name
            )
        status = SubscriberStatus(answer)
        # Kept by id: a list renamed before the import is confirmed is still the one.
        list_id = self.store.list_id(list_name) if list_name else None
        pending = self.pending
        now = time.monotonic()
        for token in [t for t, p in pending.items() if now - p["at"] > PENDING_SECONDS]:
            del pending[token]
        while len(pending) >= PENDING_IMPORTS:
            pending.pop(next(iter(pending)))
        job = {
            "data": data,
            "name": name,
            "status": status,
            "list_id": list_id,
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
                # The consent answer (``status``) says what everyone is; it decides.
                confirmed=False,
                mapping=job["mapping"],
                eai_refusal=self.d.ws.eai_refusal,
                guard=guard,
                status=job["status"],
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
            list_name=self.list_name(job["list_id"]),
            answer=CONSENT_ANSWERS[job["status"]],
            whole=job["status"],
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
                mapping=job["mapping"],
                eai_refusal=self.d.ws.eai_refusal,
                status=job["status"],
                list_id=job["list_id"],
            )
        except (InputError, NotFound) as exc:
            # One transaction: nothing of the file was stored (a list gone since
            # the preview included).
            return self.import_form(request, 400, error=str(exc))
        self.d.audit(request, "imported", job["name"], report.line(), report.record())
        return self.import_form(
            request, report=report, problems=report.problems[:SHOWN_PROBLEMS], imported=True
        )
