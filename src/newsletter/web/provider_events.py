"""Provider webhook payloads turned into events of one shape. Pure: data in, data out.

Every event becomes a dict with ``provider``, ``event_id`` (the provider's
own id, for deduplication), ``kind``, ``at``, ``email``, ``key`` (our
delivery key, when the provider echoed it), ``provider_id``, ``message_id``,
``detail`` and ``raw`` (the provider's JSON for it, kept as it came).

Kinds that act: ``bounce`` (hard) and ``complaint`` and ``unsubscribe``
suppress the subscriber. Opens and clicks the provider saw are kept apart
(``provider_open``, ``provider_click``) from the ones our own pixel and links
count, so nothing is counted twice. A payload that is not what the provider
sends raises ValueError, which the web edge answers with 400.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from newsletter.transports.httpapi import DELIVERY_KEY

Event = dict[str, Any]


def _raw(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _text(value: Any, limit: int = 500) -> str:
    return str(value)[:limit] if value not in (None, "") else ""


def _epoch(value: Any) -> str | None:
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _iso(value: Any) -> str | None:
    """An ISO 8601 time as the providers write it, in UTC; None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Postmark and SES give up to seven fractional digits; Python reads six.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what}: expected a JSON object")
    return value


def _event(provider: str, event_id: str, kind: str, **fields: Any) -> Event:
    return {
        "provider": provider,
        "event_id": event_id,
        "kind": kind,
        "at": fields.get("at"),
        "email": fields.get("email") or None,
        "key": fields.get("key") or None,
        "provider_id": fields.get("provider_id") or None,
        "message_id": fields.get("message_id") or None,
        "detail": fields.get("detail") or "",
        "raw": fields.get("raw"),
    }


# -- SendGrid -------------------------------------------------------------------

SENDGRID_KINDS = {
    "processed": "accepted",
    "delivered": "delivered",
    "deferred": "deferred",
    "dropped": "dropped",
    "open": "provider_open",
    "click": "provider_click",
    "spamreport": "complaint",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
}
# SendGrid drops a message to an address on its own suppression lists; the
# reason says which, and that is as good as the original event.
SENDGRID_DROP_REASONS = {
    "bounced address": "bounce",
    "invalid": "bounce",
    "spam reporting address": "complaint",
    "unsubscribed address": "unsubscribe",
}


def sendgrid_events(payload: Any) -> list[Event]:
    """The events of one SendGrid Event Webhook POST (a JSON array)."""
    if not isinstance(payload, list):
        raise ValueError("expected a JSON array of events")
    events = []
    for index, item in enumerate(payload):
        item = _mapping(item, f"event {index}")
        name = item.get("event")
        if not isinstance(name, str):
            raise ValueError(f"event {index}: no event name")
        kind = SENDGRID_KINDS.get(name, "other")
        reason = _text(item.get("reason"))
        if name == "bounce":
            # "blocked" is a temporary refusal; "bounce" a hard one.
            kind = "soft_bounce" if item.get("type") == "blocked" else "bounce"
        elif name == "dropped":
            kind = SENDGRID_DROP_REASONS.get(reason.strip().lower(), "dropped")
        raw = _raw(item)
        event_id = item.get("sg_event_id") or hashlib.sha256(raw.encode()).hexdigest()
        sg_message_id = str(item.get("sg_message_id") or "")
        events.append(
            _event(
                "sendgrid",
                str(event_id),
                kind,
                at=_epoch(item.get("timestamp")),
                email=_text(item.get("email"), 320),
                key=_text(item.get(DELIVERY_KEY), 100),
                # The X-Message-Id answered at send time is the part before the first dot.
                provider_id=sg_message_id.split(".", 1)[0],
                message_id=_text(item.get("smtp-id"), 300),
                detail=_text(item.get("url"))
                if name == "click"
                else reason or _text(item.get("response")),
                raw=raw,
            )
        )
    return events


# -- Mailgun ----------------------------------------------------------------------

MAILGUN_KINDS = {
    "accepted": "accepted",
    "delivered": "delivered",
    "opened": "provider_open",
    "clicked": "provider_click",
    "unsubscribed": "unsubscribe",
    "complained": "complaint",
    "rejected": "dropped",
}


MAILGUN_SUPPRESSED = {
    "suppress-complaint": "complaint",
    "suppress-unsubscribe": "unsubscribe",
    "suppress-bounce": "bounce",
}


def mailgun_event(payload: Any) -> tuple[dict[str, str], Event]:
    """The signature fields and the event of one Mailgun webhook POST."""
    payload = _mapping(payload, "body")
    signature = _mapping(payload.get("signature"), "signature")
    fields = {}
    for name in ("timestamp", "token", "signature"):
        value = signature.get(name)
        if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
            raise ValueError(f"signature.{name}: missing")
        fields[name] = str(value)
    data = _mapping(payload.get("event-data"), "event-data")
    name = data.get("event")
    if not isinstance(name, str):
        raise ValueError("event-data.event: missing")
    kind = MAILGUN_KINDS.get(name, "other")
    if name == "failed":
        kind = "bounce" if data.get("severity") == "permanent" else "soft_bounce"
        # Mailgun refused to send to an address on its own suppression lists: the
        # reason says which list, and that is what the person did (a complaint, an
        # unsubscribe), not a bounce.
        kind = MAILGUN_SUPPRESSED.get(str(data.get("reason", "")).lower(), kind)
    status = data.get("delivery-status") if isinstance(data.get("delivery-status"), Mapping) else {}
    message = data.get("message") if isinstance(data.get("message"), Mapping) else {}
    headers = message.get("headers") if isinstance(message.get("headers"), Mapping) else {}
    variables = data.get("user-variables")
    variables = variables if isinstance(variables, Mapping) else {}
    detail = (
        _text(data.get("url"))
        if name == "clicked"
        else _text(status.get("description") or status.get("message") or data.get("reason"))
    )
    message_id = _text(headers.get("message-id"), 300)
    return fields, _event(
        "mailgun",
        fields["token"],
        kind,
        at=_epoch(data.get("timestamp")),
        email=_text(data.get("recipient"), 320),
        key=_text(variables.get(DELIVERY_KEY), 100),
        provider_id=message_id,
        message_id=message_id,
        detail=detail,
        raw=_raw(data),
    )


# -- Postmark ----------------------------------------------------------------------

POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked"}
POSTMARK_SUPPRESSION = {
    "HardBounce": "bounce",
    "SpamComplaint": "complaint",
    "ManualSuppression": "unsubscribe",
}


def postmark_event(payload: Any) -> Event:
    """The event of one Postmark webhook POST (one JSON object)."""
    item = _mapping(payload, "body")
    record = item.get("RecordType")
    if not isinstance(record, str):
        raise ValueError("RecordType: missing")
    email = item.get("Email") or item.get("Recipient")
    detail = ""
    if record == "Bounce":
        bounce = item.get("Type")
        kind = (
            "bounce"
            if bounce in POSTMARK_HARD
            else "complaint"
            if bounce == "SpamComplaint"
            else "unsubscribe"
            if bounce == "Unsubscribe"
            else "soft_bounce"
            if bounce in POSTMARK_SOFT
            else "other"
        )
        if bounce == "SpamNotification":
            kind = "complaint"  # the recipient's system filed it as spam: never mail again
        elif item.get("Inactive") is True and kind not in ("complaint", "unsubscribe"):
            # Postmark deactivated the address and will refuse every further message
            # to it, whatever the bounce type: suppress it here too.
            kind = "bounce"
        detail = _text(item.get("Details") or item.get("Description"))
        at = item.get("BouncedAt")
    elif record == "SpamComplaint":
        kind, at = "complaint", item.get("BouncedAt")
    elif record == "Delivery":
        kind, at, detail = "delivered", item.get("DeliveredAt"), _text(item.get("Details"))
    elif record in ("Open", "Click"):
        kind = "provider_open" if record == "Open" else "provider_click"
        at = item.get("ReceivedAt")
        detail = _text(item.get("OriginalLink"))
    elif record == "SubscriptionChange":
        reason = item.get("SuppressionReason")
        kind = POSTMARK_SUPPRESSION.get(reason, "other") if item.get("SuppressSending") else "other"
        at, detail = item.get("ChangedAt"), _text(reason)
    else:
        kind, at = "other", None
    message_id = _text(item.get("MessageID"), 100)
    if item.get("ID") not in (None, ""):
        event_id = f"{record}:{item['ID']}"
    elif message_id:
        # No record id: the message, the kind of record and when it happened
        # tell apart two opens of one message, and a retried POST repeats all three.
        event_id = f"{record}:{message_id}:{at or ''}"
    else:
        event_id = f"{record}:" + hashlib.sha256(_raw(item).encode()).hexdigest()
    metadata = item.get("Metadata") if isinstance(item.get("Metadata"), Mapping) else {}
    return _event(
        "postmark",
        event_id,
        kind,
        at=_iso(at),
        email=_text(email, 320),
        key=_text(metadata.get(DELIVERY_KEY), 100),
        provider_id=message_id,
        detail=detail,
        raw=_raw(item),
    )


# -- Amazon SES (the Message inside an SNS notification) -------------------------

SES_KINDS = {
    "Delivery": "delivered",
    "Send": "accepted",
    "Reject": "dropped",
    "DeliveryDelay": "deferred",
    "Open": "provider_open",
    "Click": "provider_click",
    "Complaint": "complaint",
}


def ses_events(message: Any, sns_message_id: str) -> list[Event]:
    """The events of one SES notification: one per recipient it names."""
    body = _mapping(message, "Message")
    name = body.get("eventType") or body.get("notificationType")
    if not isinstance(name, str):
        raise ValueError("Message: neither eventType nor notificationType")
    mail = _mapping(body.get("mail", {}), "Message.mail")
    tags = mail.get("tags") if isinstance(mail.get("tags"), Mapping) else {}
    key_tag = tags.get(DELIVERY_KEY)
    key = key_tag[0] if isinstance(key_tag, list) and key_tag else ""
    headers = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), Mapping) else {}
    part_name = name[0].lower() + name[1:]
    part = body.get(part_name) if isinstance(body.get(part_name), Mapping) else {}
    kind = SES_KINDS.get(name, "other")
    recipients: list[Any] = []
    detail = ""
    if name == "Bounce":
        kind = "bounce" if part.get("bounceType") == "Permanent" else "soft_bounce"
        found = part.get("bouncedRecipients") or []
        recipients = [r.get("emailAddress") for r in found if isinstance(r, Mapping)]
        first = found[0] if found and isinstance(found[0], Mapping) else {}
        detail = _text(first.get("diagnosticCode") or part.get("bounceSubType"))
    elif name == "Complaint":
        found = part.get("complainedRecipients") or []
        recipients = [r.get("emailAddress") for r in found if isinstance(r, Mapping)]
        detail = _text(part.get("complaintFeedbackType"))
    elif name == "DeliveryDelay":
        found = part.get("delayedRecipients") or []
        recipients = [r.get("emailAddress") for r in found if isinstance(r, Mapping)]
        detail = _text(part.get("delayType"))
    elif name == "Delivery":
        recipients = list(part.get("recipients") or [])
        detail = _text(part.get("smtpResponse"))
    elif name == "Click":
        detail = _text(part.get("link"))
    elif name == "Reject":
        detail = _text(part.get("reason"))
    if not recipients:
        recipients = list(mail.get("destination") or [None])
    at = _iso(part.get("timestamp")) or _iso(mail.get("timestamp"))
    raw = _raw(body)
    return [
        _event(
            "ses",
            sns_message_id if index == 0 else f"{sns_message_id}#{index}",
            kind,
            at=at,
            email=_text(recipient, 320),
            key=_text(key, 100),
            provider_id=_text(mail.get("messageId"), 100),
            message_id=_text(headers.get("messageId"), 300),
            detail=detail,
            raw=raw,
        )
        for index, recipient in enumerate(recipients)
    ]
