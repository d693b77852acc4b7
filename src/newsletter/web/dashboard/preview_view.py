"""A campaign's preview: the email as one subscriber gets it, and finding that subscriber.

The campaign page shows the preview as an inbox lists it (sender, subject, preheader)
above two frames, desktop and phone. The frames load ``preview``, which answers with the
email or with a plain document saying why there is none: never a page of the dashboard,
which inside a frame would be the dashboard shown in the email's place.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from newsletter import campaigns, jobs
from newsletter.errors import NewsletterError, NotFound, StateError
from newsletter.mail import SAMPLE_SUBSCRIBER
from newsletter.store import Store
from newsletter.web.pages import NO_STORE, PREVIEW_HEADERS
from newsletter.web.wording import words

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

# People offered while "as subscriber" is typed, and listed when several match.
MATCHES = 10


@dataclass
class Preview:
    """What the preview part of a campaign page shows."""

    typed: str
    # Whom the email is shown for; None when it cannot be shown (``error`` says why).
    subscriber: dict[str, Any] | None = None
    # The others whose name or address contains what was typed.
    others: list[dict[str, Any]] = field(default_factory=list)
    # The line of an inbox list: sender name and address, subject, preheader.
    inbox: dict[str, str] = field(default_factory=dict)
    error: str = ""
    # Whether the error is about what was typed (the field is then marked).
    typed_wrong: bool = False

    @property
    def made_up(self) -> bool:
        """Shown for the made-up reader: there is no confirmed subscriber yet."""
        return self.subscriber is not None and self.subscriber["id"] == SAMPLE_SUBSCRIBER["id"]

    @property
    def name(self) -> str:
        """The name of whom the email is shown for, as the people finder offers it."""
        return full_name(self.subscriber) if self.subscriber is not None else ""

    @property
    def frame_for(self) -> str:
        """The ``subscriber`` the frames ask for: the one found, or "" for the default."""
        return "" if self.subscriber is None or self.made_up else str(self.subscriber["email"])


def full_name(person: dict[str, Any]) -> str:
    return " ".join(p for p in (person.get("first_name"), person.get("last_name")) if p)


def find_subscriber(store: Store, typed: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The subscriber a preview is for, and the others that match what was typed.

    Nothing typed: the first confirmed subscriber (else a made-up reader). An
    address: its subscriber. Anything else: the first whose name or address
    contains it.
    """
    typed = typed.strip()
    if not typed:
        return campaigns.sample_subscriber(store), []
    try:
        return campaigns.sample_subscriber(store, typed), []
    except NotFound:
        pass
    found = store.subscribers_matching(typed, MATCHES)
    if not found:
        raise NotFound(f"No subscriber's name or address contains “{typed}”.")
    return found[0], found[1:]


def status_of(exc: NewsletterError) -> int:
    return 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, StateError) else 400


def plain_document(message: str, status: int) -> HTMLResponse:
    """What a frame shows instead of the email: the reason, in a page of its own."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>No preview</title></head>"
        '<body style="font:16px/1.5 system-ui,sans-serif;margin:1.5rem;color:#1f2328">'
        f"<p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=PREVIEW_HEADERS)


class PreviewView:
    """The preview of a campaign's email: the page's part, its frames and the people finder."""

    def __init__(self, d: Dashboard):
        self.d, self.store = d, d.store
        # The campaign page (campaign.html, through _preview.html) asks for its preview here.
        d.env.globals["campaign_preview"] = self.panel

    @property
    def routes(self) -> list[Route]:
        d = self.d
        # The guard's endpoint is always a coroutine, whatever the handler is.
        guarded = cast(Callable[[Request], Awaitable[Response]], d.page()(self.preview))

        async def framed(request: Request) -> Response:
            response = await guarded(request)
            if getattr(request.state, "previewed", False):
                return response
            # The guard answered instead (signed out, a second factor to set up): its
            # page is the dashboard's, and the frame says so in a line instead.
            signed_out = 300 <= response.status_code < 400 or response.status_code == 204
            return plain_document(
                "Sign in again to see the preview: reload the page."
                if signed_out
                else "This preview cannot be shown to you.",
                401 if signed_out else response.status_code,
            )

        return [
            Route("/campaigns/{id:int}/preview", framed),
            d.route("/campaigns/{id:int}/preview/people.json", self.people),
        ]

    def panel(self, campaign_id: int, typed: str) -> Preview:
        """The preview part of a campaign's page: whom it is for, the inbox line, or the error.

        The email is rendered here once, so a template that fails says so on the
        page rather than in the frames.
        """
        shown = Preview(typed=typed)
        try:
            subscriber, others = find_subscriber(self.store, typed)
        except NotFound as exc:
            shown.error, shown.typed_wrong = words(exc), True
            return shown
        try:
            mail = jobs.campaign_mail(self.d.ws, self.store, campaign_id)
            rendered = mail.render(subscriber, tracked=False)
        except NewsletterError as exc:
            shown.error = words(exc)
            return shown
        sender = self.d.ws.settings.sender
        shown.subscriber, shown.others = subscriber, others
        shown.inbox = {
            "from_name": sender.from_name,
            "from_address": sender.from_address,
            "subject": rendered.subject,
            "preheader": str(mail.context(subscriber)["campaign"]["preheader"] or ""),
        }
        return shown

    def preview(self, request: Request) -> Response:
        """The email for the frames, or a plain document with the reason there is none."""
        request.state.previewed = True
        try:
            subscriber, _ = find_subscriber(self.store, request.query_params.get("subscriber", ""))
            mail = jobs.campaign_mail(self.d.ws, self.store, request.path_params["id"])
            rendered = mail.render(subscriber, tracked=False)
        except NewsletterError as exc:
            return plain_document(words(exc), status_of(exc))
        return HTMLResponse(rendered.html, headers=PREVIEW_HEADERS)

    def people(self, request: Request) -> Response:
        """Up to ``MATCHES`` subscribers whose name or address contains ``q``, as JSON."""
        text = request.query_params.get("q", "").strip()
        found = self.store.subscribers_matching(text, MATCHES) if text else []
        return JSONResponse(
            [{"email": p["email"], "name": full_name(p)} for p in found], headers=NO_STORE
        )
