"""Subscriber pages: the public subscribe form, confirmation links and the preference page.

Abuse resistance of the public form, none of which needs a cookie: a signed
form token that expires and is bound to the network it was fetched from
(CSRF and replay), an Origin check, a honeypot field, a per-network limit
kept in memory, and at most one confirmation email per address per few
minutes. The answer to a sign-up is the same page, sent at once, whether or
not the address is known: the emails go out from a worker thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import queue
import threading
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter import consent, tracking
from newsletter.clock import Clock
from newsletter.errors import InputError, NewsletterError
from newsletter.mime import needs_smtputf8
from newsletter.status import SubscriberStatus
from newsletter.store import Store
from newsletter.web.attempts import AttemptLimiter, network
from newsletter.web.pages import SUBSCRIBER_HEADERS, public_page
from newsletter.web.threads import off_loop
from newsletter.workspace import Workspace

log = logging.getLogger(__name__)
FORM_MAX_AGE = dt.timedelta(hours=2)


def _network_tag(ip: str | None) -> int:
    return int.from_bytes(hashlib.sha256(network(ip).encode()).digest()[:4], "big")


def form_token(signer: tracking.Signer, ip: str | None, now: dt.datetime) -> str:
    """A token for one subscribe form: valid for two hours, from the network that fetched it."""
    return signer.make("form", 0, _network_tag(ip), int(now.timestamp()))


def form_token_ok(signer: tracking.Signer, token: str, ip: str | None, now: dt.datetime) -> bool:
    data = signer.read(token, "form")
    if data is None or data.subscriber_id != _network_tag(ip):
        return False
    issued = dt.datetime.fromtimestamp(data.link_id, dt.UTC)
    return issued - consent.FUTURE_SLACK <= now <= issued + FORM_MAX_AGE


class MailWorker:
    """Sends confirmation and welcome emails in order from one thread.

    ``close()`` sends what is queued before it returns; ``flush()`` waits
    until the queue is empty.
    """

    def __init__(self, ws: Workspace, clock: Clock):
        self.ws, self.clock = ws, clock
        self._queue: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="subscriber-mail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, kind: str, ident: int) -> None:
        self._queue.put((kind, ident))

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        ws, settings = self.ws, self.ws.settings
        store = ws.open_store()
        transport = None
        try:
            while True:
                job = self._queue.get()
                try:
                    if job is None:
                        return
                    if transport is None:
                        transport = ws.transport()
                    kind, ident = job
                    if kind == "confirm":
                        templates = ws.templates(settings.subscribers.confirm_template)
                        consent.send_confirmation(
                            store, transport, settings, ws.signer, templates, ident, self.clock()
                        )
                    else:
                        templates = ws.templates(settings.subscribers.welcome_template)
                        consent.send_welcome(
                            store, transport, settings, ws.signer, templates, ident, self.clock()
                        )
                except NewsletterError as exc:
                    log.error("subscriber email %s: %s", job, exc)
                except Exception:  # noqa: BLE001 - one bad email must not stop the others
                    log.exception("subscriber email %s", job)
                finally:
                    self._queue.task_done()
                    if self._queue.empty() and transport is not None:
                        transport.close()
                        transport = None
        finally:
            if transport is not None:
                transport.close()
            store.close()


class SubscriberPages:
    """The routes of the subscribe form, confirmation links and the preference page."""

    def __init__(self, ws: Workspace, store: Store, clock: Clock):
        self.ws, self.store, self.clock = ws, store, clock
        self.settings = ws.settings
        self.signer = ws.signer
        self.limiter = AttemptLimiter(
            self.settings.subscribers.form_limit_per_hour, dt.timedelta(hours=1)
        )
        self.mail = MailWorker(ws, clock)
        base = urlsplit(self.settings.site.base_url)
        self.site_origin = f"{base.scheme}://{base.netloc}".lower()
        self.routes = [
            Route("/subscribe", self.subscribe, methods=["GET", "POST"]),
            Route("/confirm/{token}", self.confirm, methods=["GET", "POST"]),
            Route("/confirm/{token}/resend", self.resend, methods=["POST"]),
            Route("/p/{token}", self.preferences, methods=["GET", "POST"]),
        ]

    def start(self) -> None:
        self.mail.start()

    def close(self) -> None:
        self.mail.close()

    # -- helpers --------------------------------------------------------------

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return public_page(
            template, self.settings.sender.from_name, status, SUBSCRIBER_HEADERS, **context
        )

    def _ip(self, request: Request) -> str | None:
        return request.client.host if request.client else None

    def _stored_ip(self, request: Request) -> str | None:
        ip = self._ip(request)
        return tracking.truncate_ip(ip) if self.settings.tracking.truncate_ip else ip

    def _user_agent(self, request: Request) -> str:
        return request.headers.get("user-agent", "")[:500]

    def _foreign_origin(self, request: Request) -> bool:
        """True if a browser says the form was sent from another site."""
        origin = request.headers.get("origin")
        if not origin:
            return False  # not a browser, or one that does not tell: the token decides
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        return origin.lower() not in (self.site_origin, own)

    def _form(self, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
        now = self.clock()
        chosen = context.pop("chosen", None)
        if chosen is None:
            chosen = [request.query_params.get("list", "")]
        return self.page(
            "subscribe.html",
            status,
            consent_text=self.settings.consent.text,
            consent_version=self.settings.consent.version,
            form_token=form_token(self.signer, self._ip(request), now),
            lists=self.store.lists(public_only=True),
            chosen=set(chosen),
            email=context.pop("email", ""),
            name=context.pop("name", ""),
            **context,
        )

    # -- the subscribe form ---------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        # The form reads the lists: in a worker thread, as every database access here.
        if request.method != "POST":  # GET and HEAD (link scanners) change nothing
            return await off_loop(self._form, request)
        if self._foreign_origin(request):
            return await off_loop(
                self._form, request, 403, error="This form can only be sent from our own page."
            )
        form = await request.form()
        # Recording the consent writes to the database: a worker thread, not the loop.
        return await off_loop(self._subscribe, request, form)

    def _subscribe(self, request: Request, form: FormData) -> Response:
        email = str(form.get("email", ""))[:320]
        name = str(form.get("name", ""))[:200]
        chosen = [str(v) for v in form.getlist("list")]
        keep = {"email": email, "name": name, "chosen": chosen}
        now = self.clock()
        ip = self._ip(request)
        if not form_token_ok(self.signer, str(form.get("form_token", "")), ip, now):
            return self._form(
                request,
                400,
                error="This form was open for a long time or came from another page; "
                "please check it and send it again.",
                **keep,
            )
        if not self.limiter.allow(network(ip), now):
            return self._form(
                request,
                429,
                error="Too many sign-ups from your network in the last hour; "
                "please try again later.",
                **keep,
            )
        if form.get("website"):
            # Only a bot fills the field people cannot see: it gets the usual answer.
            log.info("subscribe form: honeypot filled; nothing recorded")
            return self.page("subscribe_sent.html", email=email.strip())
        if str(form.get("consent_version", "")) != self.settings.consent.version:
            return self._form(
                request,
                400,
                error="The wording of the consent has changed since the page was opened; "
                "please read it and send the form again.",
                **keep,
            )
        if form.get("consent") != "yes":
            return self._form(
                request,
                400,
                error="Please tick the box to agree to receive the newsletter.",
                **keep,
            )
        public = {row["name"] for row in self.store.lists(public_only=True)}
        # An internationalised mailbox the transport cannot reach is refused here, not
        # answered with "check your inbox" for a confirmation that could never arrive.
        # Asking an SMTP server blocks; this runs in a worker thread, off the event loop.
        refusal = self.ws.eai_refusal() if needs_smtputf8(email.strip()) else None
        try:
            consent_id = consent.request(
                self.store,
                self.settings,
                email,
                name=name,
                lists=[n for n in dict.fromkeys(chosen) if n in public],
                source="form",
                ip=self._stored_ip(request),
                user_agent=self._user_agent(request),
                detail={"url": str(request.url)[:500]},
                now=now,
                eai_refusal=lambda: refusal,
            )
        except consent.UnreachableAddress:
            return self._form(
                request,
                400,
                error="Our mail system cannot deliver to an address with non-ASCII characters "
                "before the @; please use another address.",
                field="email",
                **keep,
            )
        except InputError:
            return self._form(
                request, 400, error="Please enter a valid email address.", field="email", **keep
            )
        if consent_id is not None:
            self.mail.put("confirm", consent_id)
        return self.page("subscribe_sent.html", email=email.strip())

    # -- confirmation links ------------------------------------------------------

    def _link(self, request: Request) -> tuple[consent.ConfirmLink, dict[str, Any], str] | None:
        """The link's consent and its state, or None for anything not genuine."""
        link = consent.read_confirm_token(self.signer, request.path_params["token"])
        if link is None:
            return None
        record = self.store.consent(link.consent_id)
        if record is None or record["subscriber_id"] != link.subscriber_id:
            return None
        state = consent.link_state(link, self.clock(), self.settings.subscribers.confirm_days)
        if state == "invalid":
            return None
        return link, record, state

    async def confirm(self, request: Request) -> Response:
        return await off_loop(self._confirm, request)

    def _confirm(self, request: Request) -> Response:
        found = self._link(request)
        if found is None:
            return self.page("notfound.html", 404)
        link, record, state = found
        subscriber = self.store.subscriber(link.subscriber_id)
        resend = f"{request.url.path}/resend"
        if record["confirmed_at"]:
            return self.page("confirmed.html", subscriber=subscriber, already=True)
        if state == "expired":
            return self.page("confirm_expired.html", 410, action=resend, stale=False)
        if request.method != "POST":  # GET and HEAD (link scanners) change nothing
            # A GET never confirms: mail scanners open links before people do.
            return self.page(
                "confirm.html", subscriber=subscriber, record=record, action=request.url.path
            )
        if self._foreign_origin(request):
            return self.page("notfound.html", 403)
        result = self.store.confirm_opt_in(
            link.consent_id, link.subscriber_id, self.clock(), self._stored_ip(request)
        )
        if result == "stale":
            return self.page("confirm_expired.html", 410, action=resend, stale=True)
        if result == "unknown":
            return self.page("notfound.html", 404)
        if result == "confirmed" and self.settings.subscribers.welcome_template:
            self.mail.put("welcome", link.subscriber_id)
        return self.page(
            "confirmed.html",
            subscriber=self.store.subscriber(link.subscriber_id),
            already=result == "already",
        )

    async def resend(self, request: Request) -> Response:
        return await off_loop(self._resend, request)

    def _resend(self, request: Request) -> Response:
        found = self._link(request)
        if found is None or self._foreign_origin(request):
            return self.page("notfound.html", 404)
        link, record, _ = found
        if record["confirmed_at"]:
            subscriber = self.store.subscriber(link.subscriber_id)
            return self.page("confirmed.html", subscriber=subscriber, already=True)
        now = self.clock()
        if not self.limiter.allow(network(self._ip(request)), now):
            return self.page("confirm_resent.html", 429, limited=True)
        # A new consent request: the confirmation page shows its text, and a link
        # older than a later unsubscribe must not be revived.
        subscriber = self.store.subscriber(link.subscriber_id)
        if subscriber is None:
            return self.page("notfound.html", 404)
        given = record["detail"] or {}
        consent_id = consent.request(
            self.store,
            self.settings,
            subscriber["email"],
            name=" ".join(filter(None, (given.get("first_name"), given.get("last_name")))),
            lists=record["lists"],
            source="resend",
            ip=self._stored_ip(request),
            user_agent=self._user_agent(request),
            detail={"renews": link.consent_id},
            now=now,
        )
        if consent_id is not None:
            self.mail.put("confirm", consent_id)
        return self.page("confirm_resent.html", limited=False)

    # -- the preference page ---------------------------------------------------

    async def preferences(self, request: Request) -> Response:
        form = await request.form() if request.method == "POST" else None
        return await off_loop(self._preferences, request, form)

    def _preferences(self, request: Request, form: FormData | None) -> Response:
        token = request.path_params["token"]
        data = self.signer.read(token, "preferences")
        if data is None:
            return self.page("notfound.html", 404)
        subscriber = self.store.subscriber(data.subscriber_id)
        notice = ""
        if form is not None and subscriber is not None:
            if self._foreign_origin(request):
                return self.page("notfound.html", 403)
            notice = self._change(request, form, data, subscriber)
            subscriber = self.store.subscriber(data.subscriber_id)
        if subscriber is None:
            return self.page("preferences.html", subscriber=None)
        memberships = self.store.memberships(subscriber["id"])
        on = [m for m in memberships if not m["unsubscribed_at"]]
        left = [m for m in memberships if m["unsubscribed_at"]]
        known = {m["id"] for m in memberships}
        others = [row for row in self.store.lists(public_only=True) if row["id"] not in known]
        return self.page(
            "preferences.html",
            subscriber=subscriber,
            on=on,
            left=left,
            others=others,
            notice=notice,
            action=request.url.path,
            unsubscribe_action="/u/"
            + self.signer.make("unsubscribe", data.campaign_id, subscriber["id"]),
        )

    def _change(
        self,
        request: Request,
        form: FormData,
        data: tracking.TokenData,
        subscriber: dict[str, Any],
    ) -> str:
        """Carry out one button of the preference page; return what to tell the reader."""
        action = form.get("action")
        now = self.clock()
        ip, agent = self._stored_ip(request), self._user_agent(request)
        lists = {row["id"]: row for row in self.store.lists()}
        memberships = {m["id"] for m in self.store.memberships(subscriber["id"])}
        try:
            list_id = int(str(form.get("list", "")))
        except ValueError:
            list_id = None
        chosen = lists.get(list_id) if list_id is not None else None
        if action == "leave" and chosen and list_id in memberships:
            self.store.leave_list(
                subscriber["id"], chosen["id"], data.campaign_id or None, now, ip, agent
            )
            return f"You left “{chosen['name']}”. Nothing more from that list will reach you."
        if action == "join" and chosen and (list_id in memberships or chosen["public"]):
            if self.store.join_list(
                subscriber["id"],
                chosen["id"],
                now,
                "preferences",
                self.settings.consent.text,
                self.settings.consent.version,
                ip,
                agent,
            ):
                return f"You are on “{chosen['name']}” again."
            return "Subscribe again first; then you can choose your lists."
        if action == "resubscribe" and subscriber["status"] != SubscriberStatus.CONFIRMED:
            # Coming back is a new opt-in: consent recorded, confirmed by email.
            consent_id = consent.request(
                self.store,
                self.settings,
                subscriber["email"],
                source="preferences",
                ip=ip,
                user_agent=agent,
                detail={"url": str(request.url)[:500]},
                now=now,
            )
            if consent_id is not None:
                self.mail.put("confirm", consent_id)
            return (
                f"We sent a confirmation link to {subscriber['email']}. Click it to "
                f"start receiving the newsletter again."
            )
        return "Nothing changed."
