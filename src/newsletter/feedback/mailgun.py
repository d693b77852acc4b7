"""Mailgun webhooks: the HMAC signature in the body, and the one event each POST carries.

Mailgun signs ``timestamp + token`` with the webhook signing key
(HMAC-SHA256). The signature does not cover the event, so a token may be used
once only (the web edge checks it against the stored events). Our delivery
key comes back in ``user-variables`` under ``delivery_key.FIELD``.
"""

from __future__ import annotations

import hmac
from hashlib import sha256
from typing import Any

from newsletter import delivery_key
from newsletter.feedback.common import Event, epoch, event, mapping, member, raw, text

# One event: its delivery status, message headers, flags and user variables
# come to a few dozen objects and arrays; this is far above any real one.
MAX_CONTAINERS = 10_000


def signature_ok(signing_key: str, timestamp: str, token: str, signature: str) -> bool:
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


KINDS = {
    "accepted": "accepted",
    "delivered": "delivered",
    "opened": "provider_open",
    "clicked": "provider_click",
    "unsubscribed": "unsubscribe",
    "complained": "complaint",
    "rejected": "dropped",
}


SUPPRESSED = {
    "suppress-complaint": "complaint",
    "suppress-unsubscribe": "unsubscribe",
    "suppress-bounce": "bounce",
}


def event_of(payload: Any) -> tuple[dict[str, str], Event]:
    """The signature fields and the event of one Mailgun webhook POST."""
    payload = mapping(payload, "body")
    signature = mapping(payload.get("signature"), "signature")
    fields = {}
    for field in ("timestamp", "token", "signature"):
        value = signature.get(field)
        if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
            raise ValueError(f"signature.{field}: missing")
        fields[field] = str(value)
    data = mapping(payload.get("event-data"), "event-data")
    name = data.get("event")
    if not isinstance(name, str):
        raise ValueError("event-data.event: missing")
    kind = KINDS.get(name, "other")
    if name == "failed":
        kind = "bounce" if data.get("severity") == "permanent" else "soft_bounce"
        # Mailgun refused to send to an address on its own suppression lists: the
        # reason says which list, and that is what the person did (a complaint, an
        # unsubscribe), not a bounce.
        kind = SUPPRESSED.get(str(data.get("reason", "")).lower(), kind)
    status = member(data, "delivery-status")
    headers = member(member(data, "message"), "headers")
    variables = member(data, "user-variables")
    detail = (
        text(data.get("url"))
        if name == "clicked"
        else text(status.get("description") or status.get("message") or data.get("reason"))
    )
    message_id = text(headers.get("message-id"), 300)
    return fields, event(
        "mailgun",
        fields["token"],
        kind,
        at=epoch(data.get("timestamp")),
        email=text(data.get("recipient"), 320),
        key=text(variables.get(delivery_key.FIELD), 100),
        provider_id=message_id,
        message_id=message_id,
        detail=detail,
        raw=raw(data),
    )
