"""SendGrid's Signed Event Webhook: the verification key, the signature, the event batch.

SendGrid signs ``timestamp + body`` with ECDSA P-256 / SHA-256 and sends the
signature and timestamp in the ``X-Twilio-Email-Event-Webhook-*`` headers.
The body is a JSON array of events; our delivery key comes back in each as
the custom argument ``delivery_key.FIELD``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter import delivery_key
from newsletter.feedback.common import Event, epoch, event, mapping, raw, text

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"


def load_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or PEM; ValueError if neither."""
    value = value.strip()
    try:
        if value.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(value.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ValueError("not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    return key


def signature_ok(
    key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes
) -> bool:
    try:
        signed = base64.b64decode(signature, validate=True)
        key.verify(signed, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True


KINDS = {
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
DROP_REASONS = {
    "bounced address": "bounce",
    "invalid": "bounce",
    "spam reporting address": "complaint",
    "unsubscribed address": "unsubscribe",
}


def events(payload: Any) -> list[Event]:
    """The events of one SendGrid Event Webhook POST (a JSON array)."""
    if not isinstance(payload, list):
        raise ValueError("expected a JSON array of events")
    found = []
    for index, item in enumerate(payload):
        item = mapping(item, f"event {index}")
        name = item.get("event")
        if not isinstance(name, str):
            raise ValueError(f"event {index}: no event name")
        kind = KINDS.get(name, "other")
        reason = text(item.get("reason"))
        if name == "bounce":
            # "blocked" is a temporary refusal; "bounce" a hard one.
            kind = "soft_bounce" if item.get("type") == "blocked" else "bounce"
        elif name == "dropped":
            kind = DROP_REASONS.get(reason.strip().lower(), "dropped")
        as_sent = raw(item)
        event_id = item.get("sg_event_id") or hashlib.sha256(as_sent.encode()).hexdigest()
        sg_message_id = str(item.get("sg_message_id") or "")
        found.append(
            event(
                "sendgrid",
                str(event_id),
                kind,
                at=epoch(item.get("timestamp")),
                email=text(item.get("email"), 320),
                key=text(item.get(delivery_key.FIELD), 100),
                # The X-Message-Id answered at send time is the part before the first dot.
                provider_id=sg_message_id.split(".", 1)[0],
                message_id=text(item.get("smtp-id"), 300),
                detail=text(item.get("url"))
                if name == "click"
                else reason or text(item.get("response")),
                raw=as_sent,
            )
        )
    return found
