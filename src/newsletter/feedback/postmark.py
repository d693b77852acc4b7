"""Postmark webhooks: HTTP Basic auth on the URL, and the one record each POST carries.

Postmark signs nothing; the webhook URL carries a user and password that
only we and Postmark know. Our delivery key comes back in ``Metadata`` under
``delivery_key.FIELD``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

from newsletter import delivery_key
from newsletter.feedback.common import Event, event, iso, mapping, member, raw, text


def basic_auth_ok(header: str, user: str, password: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(value, validate=True).partition(b":")
    except (ValueError, binascii.Error):
        return False
    # Both compared, always, so the time taken says nothing about which was wrong.
    user_ok = hmac.compare_digest(given_user, user.encode())
    password_ok = hmac.compare_digest(given_password, password.encode())
    return user_ok and password_ok


HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked"}
SUPPRESSION = {
    "HardBounce": "bounce",
    "SpamComplaint": "complaint",
    "ManualSuppression": "unsubscribe",
}


def event_of(payload: Any) -> Event:
    """The event of one Postmark webhook POST (one JSON object)."""
    item = mapping(payload, "body")
    record = item.get("RecordType")
    if not isinstance(record, str):
        raise ValueError("RecordType: missing")
    email = item.get("Email") or item.get("Recipient")
    detail = ""
    if record == "Bounce":
        # Only a string names a bounce type; anything else (a list would not even
        # hash for the set lookups below) is a bounce of no known type.
        bounce = item.get("Type") if isinstance(item.get("Type"), str) else ""
        kind = (
            "bounce"
            if bounce in HARD
            else "complaint"
            if bounce == "SpamComplaint"
            else "unsubscribe"
            if bounce == "Unsubscribe"
            else "soft_bounce"
            if bounce in SOFT
            else "other"
        )
        if bounce == "SpamNotification":
            kind = "complaint"  # the recipient's system filed it as spam: never mail again
        elif item.get("Inactive") is True and kind not in ("complaint", "unsubscribe"):
            # Postmark deactivated the address and will refuse every further message
            # to it, whatever the bounce type: suppress it here too.
            kind = "bounce"
        detail = text(item.get("Details") or item.get("Description"))
        at = item.get("BouncedAt")
    elif record == "SpamComplaint":
        kind, at = "complaint", item.get("BouncedAt")
    elif record == "Delivery":
        kind, at, detail = "delivered", item.get("DeliveredAt"), text(item.get("Details"))
    elif record in ("Open", "Click"):
        kind = "provider_open" if record == "Open" else "provider_click"
        at = item.get("ReceivedAt")
        detail = text(item.get("OriginalLink"))
    elif record == "SubscriptionChange":
        reason = item.get("SuppressionReason")
        named = reason if isinstance(reason, str) else ""
        kind = SUPPRESSION.get(named, "other") if item.get("SuppressSending") else "other"
        at, detail = item.get("ChangedAt"), text(reason)
    else:
        kind, at = "other", None
    message_id = text(item.get("MessageID"), 100)
    if item.get("ID") not in (None, ""):
        event_id = f"{record}:{item['ID']}"
    elif message_id:
        # No record id: the message, the kind of record and when it happened
        # tell apart two opens of one message, and a retried POST repeats all three.
        event_id = f"{record}:{message_id}:{at or ''}"
    else:
        event_id = f"{record}:" + hashlib.sha256(raw(item).encode()).hexdigest()
    metadata = member(item, "Metadata")
    return event(
        "postmark",
        event_id,
        kind,
        at=iso(at),
        email=text(email, 320),
        key=text(metadata.get(delivery_key.FIELD), 100),
        provider_id=message_id,
        detail=detail,
        raw=raw(item),
    )
