"""Provider webhooks: check who is calling, store every event once, act on bounces.

``POST /webhooks/sendgrid``  ECDSA P-256 / SHA-256 signature over timestamp + body
``POST /webhooks/mailgun``   HMAC-SHA256 over timestamp + token; fresh, never reused
``POST /webhooks/postmark``  HTTP Basic auth on the URL
``POST /webhooks/ses``       SNS message signature (versions 1 and 2), allow-listed topic

Answers: 200 once the events are stored (or were stored before), 401 or 403
when the caller cannot prove who it is, 400 for a body that is not what the
provider sends, 404 when that provider's secret is not configured, 503 when
storing (or fetching an SNS certificate) failed, so the provider tries again.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import math
import re
import sqlite3
import threading
from collections.abc import Callable
from hashlib import sha256
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.config import Secrets, Settings
from newsletter.store import Store
from newsletter.web import provider_events
from newsletter.web.threads import off_loop

log = logging.getLogger(__name__)
MAX_BODY = 10_000_000  # SendGrid posts batches of events; far below this in practice
MAILGUN_MAX_AGE = 300  # seconds a signed webhook timestamp stays acceptable (Mailgun, SendGrid)
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com$")
Fetch = Callable[[str], bytes]


def _answer(status: int, text: str, **headers: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers=headers or None)


async def _body(request: Request) -> bytes | None:
    """The raw body, or None when it is larger than any real webhook."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return None
    body = await request.body()
    return body if len(body) <= MAX_BODY else None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not JSON") from None


# -- SendGrid -------------------------------------------------------------------


def load_sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or PEM; ValueError if neither."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ValueError("not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve public key")
    return key


def sendgrid_signature_ok(
    key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes
) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True


# -- Mailgun ----------------------------------------------------------------------


def fresh(timestamp: str, now: dt.datetime, max_age: float = MAILGUN_MAX_AGE) -> bool:
    """Whether a signed Unix timestamp is within ``max_age`` seconds of now (either way)."""
    try:
        stamp = float(timestamp)
    except ValueError:
        return False
    return math.isfinite(stamp) and abs(now.timestamp() - stamp) <= max_age


def mailgun_signature_ok(signing_key: str, timestamp: str, token: str, signature: str) -> bool:
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


# -- Postmark ----------------------------------------------------------------------


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


# -- SNS ----------------------------------------------------------------------------


def sns_url_ok(url: Any) -> bool:
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


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """The canonical text SNS signs: chosen fields as "name\\nvalue\\n", in this order."""
    if message.get("Type") == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        optional = {"Subject"}
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        optional = set()
    text = ""
    for name in names:
        value = message.get(name)
        if value is None and name in optional:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name}: missing")
        text += f"{name}\n{value}\n"
    return text.encode()


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
    def signature_ok(key: rsa.RSAPublicKey, message: dict[str, Any]) -> bool:
        version = message.get("SignatureVersion")
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(version))
        if algorithm is None:
            return False
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
            key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        except (ValueError, binascii.Error, InvalidSignature):
            return False
        return True


# -- the routes ---------------------------------------------------------------------


def webhook_routes(
    settings: Settings,
    secrets: Secrets,
    store: Store,
    clock: Callable[[], dt.datetime],
    sns_fetch: Fetch | None = None,
) -> list[Route]:
    """The four webhook endpoints, sharing the web app's database connection.

    ``sns_fetch`` GETs SNS certificate and subscription URLs (already checked
    to be https on an SNS host); tests pass one that serves their own.
    """
    sendgrid_key = None
    if secrets.sendgrid_webhook_public_key:
        try:
            sendgrid_key = load_sendgrid_key(secrets.sendgrid_webhook_public_key)
        except ValueError:
            log.error(
                "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key; "
                "/webhooks/sendgrid is off"
            )
    topics = set(settings.ses.topic_arns)
    sns = SnsVerifier(sns_fetch or fetch_https, clock)

    def save(provider: str, events: list[dict[str, Any]]) -> Response:
        try:
            counts = store.record_provider_events(events, clock())
        except sqlite3.Error as exc:
            log.error("webhook %s: cannot store %d events (%s)", provider, len(events), exc)
            return _answer(503, "cannot store the events now; try again")
        log.debug("webhook %s: %s", provider, counts)
        return _answer(200, "ok")

    async def sendgrid(request: Request) -> Response:
        if sendgrid_key is None:
            return _answer(404, "the SendGrid webhook is not configured")
        body = await _body(request)
        if body is None:
            return _answer(413, "body too large")
        signature = request.headers.get("x-twilio-email-event-webhook-signature", "")
        timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp", "")
        if not (signature and timestamp):
            return _answer(403, "signature headers missing")
        if not sendgrid_signature_ok(sendgrid_key, signature, timestamp, body):
            return _answer(403, "bad signature")
        # The signature covers the timestamp, so a captured request replayed
        # later fails here; SendGrid signs each delivery and retry anew.
        if not fresh(timestamp, clock()):
            return _answer(403, "stale timestamp")
        try:
            events = provider_events.sendgrid_events(_json(body))
        except ValueError as exc:
            return _answer(400, f"not a SendGrid event batch: {exc}")
        return await off_loop(save, "sendgrid", events)

    async def mailgun(request: Request) -> Response:
        signing_key = secrets.mailgun_webhook_signing_key
        if not signing_key:
            return _answer(404, "the Mailgun webhook is not configured")
        body = await _body(request)
        if body is None:
            return _answer(413, "body too large")
        try:
            fields, event = provider_events.mailgun_event(_json(body))
            stamp = float(fields["timestamp"])
        except ValueError as exc:
            return _answer(400, f"not a Mailgun webhook: {exc}")
        if not mailgun_signature_ok(
            signing_key, fields["timestamp"], fields["token"], fields["signature"]
        ):
            return _answer(403, "bad signature")
        if abs(clock().timestamp() - stamp) > MAILGUN_MAX_AGE:
            return _answer(403, "stale timestamp")
        seen = store.provider_event_raw("mailgun", fields["token"])
        if seen is not None:
            # The signature covers only timestamp and token, so a token seen with
            # another event is a replay; the same event again is Mailgun retrying.
            if seen != event["raw"]:
                return _answer(403, "token already used")
            return _answer(200, "ok")
        return await off_loop(save, "mailgun", [event])

    async def postmark(request: Request) -> Response:
        user, password = secrets.postmark_webhook_user, secrets.postmark_webhook_password
        if not (user and password):
            return _answer(404, "the Postmark webhook is not configured")
        if not basic_auth_ok(request.headers.get("authorization", ""), user, password):
            return _answer(401, "authentication required", **{"WWW-Authenticate": "Basic"})
        body = await _body(request)
        if body is None:
            return _answer(413, "body too large")
        try:
            event = provider_events.postmark_event(_json(body))
        except ValueError as exc:
            return _answer(400, f"not a Postmark webhook: {exc}")
        return await off_loop(save, "postmark", [event])

    async def ses(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return _answer(413, "body too large")
        try:
            message = _json(body)
            if not isinstance(message, dict):
                raise ValueError("expected an SNS message")
            kind = message.get("Type")
            if kind not in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
                raise ValueError("Type: not an SNS message type")
            sns_string_to_sign(message)
        except ValueError as exc:
            return _answer(400, f"not an SNS message: {exc}")
        if message.get("TopicArn") not in topics:
            log.warning("webhook ses: refused a message for topic %.200s", message.get("TopicArn"))
            return _answer(403, "topic not allowed; add it to ses.topic_arns")
        url = message.get("SigningCertURL")
        if not sns_url_ok(url):
            return _answer(403, "signing certificate not on an https SNS host")
        try:
            key = await run_in_threadpool(sns.public_key, url)
        except ValueError as exc:
            return _answer(403, f"unusable signing certificate: {exc}")
        except Exception as exc:  # noqa: BLE001 - any fetch failure: let SNS try again
            log.error("webhook ses: cannot fetch the signing certificate (%s)", type(exc).__name__)
            return _answer(503, "cannot fetch the signing certificate now")
        if not sns.signature_ok(key, message):
            return _answer(403, "bad signature")
        if kind == "SubscriptionConfirmation":
            subscribe = message.get("SubscribeURL")
            if not sns_url_ok(subscribe):
                return _answer(403, "SubscribeURL not on an https SNS host")
            try:
                await run_in_threadpool(sns.fetch, subscribe)
            except Exception as exc:  # noqa: BLE001 - let SNS send the confirmation again
                log.error("webhook ses: cannot confirm the subscription (%s)", type(exc).__name__)
                return _answer(503, "cannot confirm the subscription now")
            log.info("webhook ses: subscribed to %s", message["TopicArn"])
            return _answer(200, "subscribed")
        if kind == "UnsubscribeConfirmation":
            log.warning("webhook ses: unsubscribed from %s", message["TopicArn"])
            return _answer(200, "ok")
        try:
            inner = json.loads(message["Message"])
            events = provider_events.ses_events(inner, message["MessageId"])
        except ValueError:
            # Not an SES event (SNS's own test message, say): kept raw all the same.
            events = [
                {
                    "provider": "ses",
                    "event_id": message["MessageId"],
                    "kind": "other",
                    "raw": message["Message"],
                }
            ]
        return await off_loop(save, "ses", events)

    return [
        Route("/webhooks/sendgrid", sendgrid, methods=["POST"]),
        Route("/webhooks/mailgun", mailgun, methods=["POST"]),
        Route("/webhooks/postmark", postmark, methods=["POST"]),
        Route("/webhooks/ses", ses, methods=["POST"]),
    ]
