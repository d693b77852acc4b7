"""Double opt-in: consent requests, expiring confirmation links, confirmation and welcome mail.

The web form, ``newsletter subscribers add`` and the preference page's
"subscribe again" all record a pending consent and send a confirmation
email; only the subscriber's click on its link confirms, and only a confirmed
opt-in lifts an address off the suppression list (see ``Store.confirm_opt_in``).
Tokens and messages are built from data; the store and transport are passed in.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from newsletter import subscriber_csv, tracking
from newsletter.config import Settings
from newsletter.errors import (
    AddressUnusable,
    InputError,
    MessageRejected,
    NotFound,
    PermanentError,
    TransientError,
)
from newsletter.mime import compose, needs_smtputf8, unreachable
from newsletter.render import TemplateSet, sender_context, site_context, subscriber_context
from newsletter.rows import Subscriber
from newsletter.status import SubscriberStatus
from newsletter.store import Store
from newsletter.subscribers import normalize_email
from newsletter.transports import (
    PERMANENT,
    REJECTED,
    SENT,
    UNUSABLE,
    Content,
    Envelope,
    Transport,
)

# One confirmation email per address in this time, however often it is asked for.
RESEND_QUIET = dt.timedelta(minutes=10)
BOUNCED_QUIET = dt.timedelta(days=1)
# A link issued further ahead than this is not one we made (clock skew allowance).
FUTURE_SLACK = dt.timedelta(minutes=5)
NAME_LIMIT = 100


class UnreachableAddress(InputError):
    """A valid address that no email can reach through the configured transport."""


@dataclass(frozen=True)
class ConfirmLink:
    consent_id: int
    subscriber_id: int
    issued: dt.datetime


def confirm_token(
    signer: tracking.Signer, consent_id: int, subscriber_id: int, issued: dt.datetime
) -> str:
    """A signed link token carrying the consent, the subscriber and when it was issued."""
    return signer.make("confirm", consent_id, subscriber_id, int(issued.timestamp()))


def read_confirm_token(signer: tracking.Signer, token: str) -> ConfirmLink | None:
    """The link's contents if the token is genuine, else None (expiry is checked apart)."""
    data = signer.read(token, "confirm")
    if data is None:
        return None
    issued = dt.datetime.fromtimestamp(data.link_id, dt.UTC)
    return ConfirmLink(data.campaign_id, data.subscriber_id, issued)


def link_state(link: ConfirmLink, now: dt.datetime, days: int) -> str:
    """ "valid", "expired" (older than ``days``) or "invalid" (issued in the future)."""
    if link.issued > now + FUTURE_SLACK:
        return "invalid"
    if now - link.issued > dt.timedelta(days=days):
        return "expired"
    return "valid"


def clean_name(value: str) -> str | None:
    """A name typed into a form or given to the CLI: the intake rule of imports; empty is none."""
    return subscriber_csv.clean_name(value, NAME_LIMIT) or None


def checked_address(email: str, eai_refusal: Callable[[], str | None] | None = None) -> str:
    """The address as it is stored, or InputError naming what was typed; UnreachableAddress
    for an internationalised mailbox that ``eai_refusal`` says the transport cannot reach
    (refused before anything is stored: a confirmation could never reach it)."""
    # Here, not at the top: email-validator is for reading addresses (see
    # subscriber_csv.cells), not for every command's or sending process's start-up.
    from email_validator import EmailNotValidError

    try:
        address = normalize_email(email)
    except EmailNotValidError as exc:
        raise InputError(f"{email.strip()!r} is not a valid email address ({exc})") from None
    if eai_refusal is not None and needs_smtputf8(address):
        refusal = eai_refusal()
        if refusal:
            raise UnreachableAddress(unreachable(address, refusal))
    return address


def request(
    store: Store,
    settings: Settings,
    email: str,
    *,
    name: str = "",
    lists: list[str] | None = None,
    source: str,
    ip: str | None = None,
    user_agent: str | None = None,
    detail: Mapping[str, Any] | None = None,
    now: dt.datetime,
    eai_refusal: Callable[[], str | None] | None = None,
) -> int | None:
    """Record that an address asked to subscribe; return the consent to confirm, or None.

    The consent text and version shown are the configured ones. None means a
    confirmation email went to this address moments ago and none is due now.
    An invalid address raises InputError naming it; an internationalised mailbox
    that ``eai_refusal`` says the transport cannot reach raises UnreachableAddress.
    """
    address = checked_address(email, eai_refusal)
    first, _, last = (clean_name(name) or "").partition(" ")
    info = dict(detail or {})
    if first:
        info["first_name"] = first
    if last:
        info["last_name"] = last
    known = store.subscriber_by_email(address)
    # An address that bounced or complained gets at most one confirmation a day: the
    # public form must not become a way to mail it again and again.
    bounced = known is not None and known["status"] in (
        SubscriberStatus.BOUNCED,
        SubscriberStatus.COMPLAINED,
    )
    quiet = BOUNCED_QUIET if bounced else RESEND_QUIET
    consent_id, _ = store.request_opt_in(
        address,
        lists=list(lists or []),
        source=source,
        text=settings.consent.text,
        version=settings.consent.version,
        ip=ip,
        user_agent=user_agent,
        detail=info,
        now=now,
        quiet_since=now - quiet,
    )
    return consent_id


def _sender(settings: Settings) -> dict[str, str | None]:
    s = settings.sender
    return sender_context(s.from_name, s.from_address, s.postal_address, s.reply_to)


def _deliver(
    transport: Transport,
    settings: Settings,
    *,
    to: str,
    subject: str,
    html: str,
    text: str,
    key: str,
    now: dt.datetime,
    unsubscribe_url: str | None = None,
) -> None:
    """Hand one message to the transport; a refusal raises the transport's error."""
    sender = settings.sender
    domain = sender.from_address.rpartition("@")[2] or "localhost"
    msg_id = f"<{key}.{secrets.token_hex(6)}@{domain}>"
    data = compose(
        subject=subject,
        text=text,
        html=html,
        from_name=sender.from_name,
        from_address=sender.from_address,
        to_address=to,
        reply_to=sender.reply_to,
        msg_id=msg_id,
        date=now,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=(sender.unsubscribe_mailto or None) if unsubscribe_url else None,
    )
    headers = {"Message-ID": msg_id}
    if sender.reply_to:
        headers["Reply-To"] = sender.reply_to
    if unsubscribe_url:
        headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    content = Content(
        subject=subject,
        from_name=sender.from_name,
        from_address=sender.from_address,
        to_name="",
        to_address=to,
        html=html,
        text=text,
        headers=headers,
    )
    envelope = Envelope(sender.from_address, to, data, key, content)
    outcome = transport.send_batch([envelope])[0]
    if outcome.status != SENT:
        kinds = {PERMANENT: PermanentError, REJECTED: MessageRejected, UNUSABLE: AddressUnusable}
        text = outcome.error or outcome.status
        raise kinds.get(outcome.status, TransientError)(text if to in text else f"{to}: {text}")


def send_confirmation(
    store: Store,
    transport: Transport,
    settings: Settings,
    signer: tracking.Signer,
    templates: TemplateSet,
    consent_id: int,
    now: dt.datetime,
) -> str:
    """Send the confirmation email of a pending consent; return the address it went to."""
    consent = store.consent(consent_id)
    subscriber = store.subscriber(consent["subscriber_id"]) if consent else None
    if consent is None or subscriber is None:
        raise NotFound(f"consent {consent_id}: no such pending consent")
    days = settings.subscribers.confirm_days
    token = confirm_token(signer, consent_id, subscriber["id"], now)
    base = settings.site.base_url.rstrip("/")
    rendered = templates.render(
        {
            # Only the address: a name typed into a public form is not shown
            # back in mail we send to whoever owns the address.
            "subscriber": {"email": subscriber["email"]},
            "sender": _sender(settings),
            "site": site_context(settings.site.base_url, settings.templates.language),
            "consent": {"text": consent["text"], "version": consent["text_version"]},
            "lists": consent["lists"],
            "links": {"confirm": f"{base}/confirm/{token}"},
            "expires": {"days": days, "date": f"{now + dt.timedelta(days=days):%d %B %Y}"},
        }
    )
    _deliver(
        transport,
        settings,
        to=subscriber["email"],
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        key=f"confirm-k{consent_id}-{int(now.timestamp())}",
        now=now,
    )
    store.mark_confirmation_sent(consent_id, now)
    return subscriber["email"]


def send_welcome(
    store: Store,
    transport: Transport,
    settings: Settings,
    signer: tracking.Signer,
    templates: TemplateSet,
    subscriber_id: int,
    now: dt.datetime,
) -> None:
    """Send the welcome email to a subscriber who has just confirmed."""
    subscriber = store.subscriber(subscriber_id)
    if subscriber is None or subscriber["status"] != SubscriberStatus.CONFIRMED:
        return
    base = settings.site.base_url.rstrip("/")
    unsubscribe = f"{base}/u/{signer.make('unsubscribe', 0, subscriber_id)}"
    rendered = templates.render(
        {
            # A whole row of the subscribers table: Subscriber's keys and more.
            "subscriber": subscriber_context(cast(Subscriber, subscriber)),
            "sender": _sender(settings),
            "site": site_context(settings.site.base_url, settings.templates.language),
            "lists": [
                m["name"] for m in store.memberships(subscriber_id) if not m["unsubscribed_at"]
            ],
            "links": {
                "unsubscribe": unsubscribe,
                "preferences": f"{base}/p/{signer.make('preferences', 0, subscriber_id)}",
            },
        }
    )
    _deliver(
        transport,
        settings,
        to=subscriber["email"],
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        key=f"welcome-s{subscriber_id}-{int(now.timestamp())}",
        now=now,
        unsubscribe_url=unsubscribe,
    )
