"""Amazon SES events through SNS: the SNS signature, its certificate, the SES event inside.

SNS signs chosen fields of each message with the key of a certificate it
names by URL (RSA, SHA1 for version 1, SHA256 for version 2). Only https URLs
on an ``sns.<region>.amazonaws.com`` host are ever fetched. The SES event is
the JSON inside the notification's ``Message``; our delivery key comes back as
the message tag ``delivery_key.FIELD``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter import delivery_key
from newsletter.feedback.common import (
    Event,
    event,
    iso,
    mapping,
    member,
    parse_json,
    raw,
    text,
)

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com$")
SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
Fetch = Callable[[str], bytes]


def sns_url_ok(url: Any) -> TypeGuard[str]:
    """True for an https URL on an ``sns.<region>.amazonaws.com`` host, nothing else."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and bool(SNS_HOST.match(parts.hostname or ""))
        and port in (None, 443)
        and parts.username is None
        and parts.password is None
    )


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical text SNS signs: chosen fields as "name\\nvalue\\n", in this order."""
    if message.get("Type") == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        optional = {"Subject"}
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        optional = set()
    signed = ""
    for name in names:
        value = message.get(name)
        if value is None and name in optional:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name}: missing")
        signed += f"{name}\n{value}\n"
    return signed.encode()


# An SNS envelope is an object of strings; the SES event inside its Message
# string has a few hundred brackets at most, even for a bounce of 50 recipients.
MAX_CONTAINERS = 10_000


def sns_message(body: bytes) -> dict[str, Any]:
    """The SNS message a POST carries, with every signed field there; ValueError if not one."""
    message = parse_json(body, MAX_CONTAINERS)
    if not isinstance(message, dict):
        raise ValueError("expected an SNS message")
    if message.get("Type") not in SNS_TYPES:
        raise ValueError("Type: not an SNS message type")
    string_to_sign(message)
    return message


def fetch_https(url: str) -> bytes:
    """GET an SNS URL (a signing certificate, a subscription confirmation)."""
    response = requests.get(url, timeout=10, allow_redirects=False)
    response.raise_for_status()
    return response.content[:100_000]


class SnsVerifier:
    """Checks SNS message signatures with certificates fetched (and kept) per URL."""

    def __init__(self, fetch: Fetch, clock: Callable[[], dt.datetime]):
        self.fetch = fetch
        self.clock = clock
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def public_key(self, url: str) -> rsa.RSAPublicKey:
        """The certificate's key; ValueError if it is not a valid RSA certificate today."""
        with self._lock:
            if url in self._keys:
                return self._keys[url]
        certificate = x509.load_pem_x509_certificate(self.fetch(url))
        now = self.clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise ValueError("the signing certificate is not valid now")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("the signing certificate has no RSA key")
        with self._lock:
            if len(self._keys) > 32:
                self._keys.clear()
            self._keys[url] = key
        return key

    @staticmethod
    def signature_ok(key: rsa.RSAPublicKey, message: Mapping[str, Any]) -> bool:
        version = message.get("SignatureVersion")
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(version))
        if algorithm is None:
            return False
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
        except (ValueError, binascii.Error, InvalidSignature):
            return False
        return True


KINDS = {
    "Delivery": "delivered",
    "Send": "accepted",
    "Reject": "dropped",
    "DeliveryDelay": "deferred",
    "Open": "provider_open",
    "Click": "provider_click",
    "Complaint": "complaint",
}


def events(message: Any, sns_message_id: str) -> list[Event]:
    """The events of one SES notification: one per recipient it names."""
    body = mapping(message, "Message")
    name = body.get("eventType") or body.get("notificationType")
    if not isinstance(name, str):
        raise ValueError("Message: neither eventType nor notificationType")
    mail = mapping(body.get("mail", {}), "Message.mail")
    tags = member(mail, "tags")
    key_tag = tags.get(delivery_key.FIELD)
    key = key_tag[0] if isinstance(key_tag, list) and key_tag else ""
    headers = member(mail, "commonHeaders")
    part_name = name[0].lower() + name[1:]
    part = member(body, part_name)
    kind = KINDS.get(name, "other")
    recipients: list[Any] = []
    detail = ""
    if name == "Bounce":
        kind = "bounce" if part.get("bounceType") == "Permanent" else "soft_bounce"
        found = part.get("bouncedRecipients") or []
        recipients = [r.get("emailAddress") for r in found if isinstance(r, Mapping)]
        first = found[0] if found and isinstance(found[0], Mapping) else {}
        detail = text(first.get("diagnosticCode") or part.get("bounceSubType"))
    elif name == "Complaint":
        found = part.get("complainedRecipients") or []
        recipients = [r.get("emailAddress") for r in found if isinstance(r, Mapping)]
        detail = text(part.get("complaintFeedbackType"))
    elif name == "DeliveryDelay":
        found = part.get("delayedRecipients") or []
        recipients = [r.get("emailAddress") for r in found if isinstance(r, Mapping)]
        detail = text(part.get("delayType"))
    elif name == "Delivery":
        recipients = list(part.get("recipients") or [])
        detail = text(part.get("smtpResponse"))
    elif name == "Click":
        detail = text(part.get("link"))
    elif name == "Reject":
        detail = text(part.get("reason"))
    if not recipients:
        recipients = list(mail.get("destination") or [None])
    at = iso(part.get("timestamp")) or iso(mail.get("timestamp"))
    as_sent = raw(body)
    return [
        event(
            "ses",
            sns_message_id if index == 0 else f"{sns_message_id}#{index}",
            kind,
            at=at,
            email=text(recipient, 320),
            key=text(key, 100),
            provider_id=text(mail.get("messageId"), 100),
            message_id=text(headers.get("messageId"), 300),
            detail=detail,
            raw=as_sent,
        )
        for index, recipient in enumerate(recipients)
    ]


def notification_events(message: Mapping[str, Any]) -> list[Event]:
    """The events of a signed SNS notification; one kept raw if it holds no SES event."""
    try:
        return events(json.loads(message["Message"]), message["MessageId"])
    except (ValueError, RecursionError):
        # Not an SES event (SNS's own test message, say): kept raw all the same.
        return [
            {
                "provider": "ses",
                "event_id": message["MessageId"],
                "kind": "other",
                "raw": message["Message"],
            }
        ]
