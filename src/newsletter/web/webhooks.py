"""Provider webhooks at the edge: read the request, let feedback/ judge it, store, answer.

``POST /webhooks/sendgrid``  ECDSA P-256 / SHA-256 signature over timestamp + body
``POST /webhooks/mailgun``   HMAC-SHA256 over timestamp + token; fresh, never reused
``POST /webhooks/postmark``  HTTP Basic auth on the URL
``POST /webhooks/ses``       SNS message signature (versions 1 and 2), allow-listed topic

Each provider's key loading, signature check and payload parsing live in
``newsletter.feedback.<provider>``; this module holds what is HTTP: body
limits, status codes, and running blocking work off the event loop.

Answers: 200 once the events are stored (or were stored before), 401 or 403
when the caller cannot prove who it is, 400 for a body that is not what the
provider sends, 404 when that provider's secret is not configured, 503 when
storing (or fetching an SNS certificate) failed, so the provider tries again.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.config import Secrets, Settings
from newsletter.feedback import common, mailgun, postmark, sendgrid, ses
from newsletter.store import Store
from newsletter.web.threads import off_loop

log = logging.getLogger(__name__)
MAX_BODY = 10_000_000  # SendGrid posts batches of events; far below this in practice
# SNS publishes messages of at most 256 KB, and Mailgun posts one event at a
# time. Both bodies are parsed before anything proves who sent them, and
# CPython's JSON parser (and the collection of what it built) holds the
# interpreter lock from start to end even in a worker thread: a 7 MB body of
# small nested arrays would stop the event loop for seconds. So these two take
# no more than their providers ever send, in bytes and in nested parts.
UNSIGNED_MAX_BODY = 1_000_000


def _answer(status: int, text: str, **headers: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers=headers or None)


async def _body(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The raw body, or None when it is larger than any real webhook."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and len(length) < 20 and int(length) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


# -- the routes ---------------------------------------------------------------------


class Webhooks:
    """The four webhook endpoints, sharing the web app's database connections.

    ``sns_fetch`` GETs SNS certificate and subscription URLs (already checked
    to be https on an SNS host); tests pass one that serves their own.

    Each hook reads the body on the event loop (waiting for the network costs
    the loop nothing), then hands everything else to a worker thread: checking
    a signature, parsing up to max_webhook_bytes of JSON and reading or writing
    the store take long enough to stall the pixel and the click redirects of
    every reader if they ran on the loop.
    """

    def __init__(
        self,
        settings: Settings,
        secrets: Secrets,
        store: Store,
        clock: Callable[[], dt.datetime],
        sns_fetch: ses.Fetch | None = None,
    ):
        self.secrets, self.store, self.clock = secrets, store, clock
        self.sendgrid_key = None
        if secrets.sendgrid_webhook_public_key:
            try:
                self.sendgrid_key = sendgrid.load_key(secrets.sendgrid_webhook_public_key)
            except ValueError:
                log.error(
                    "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key; "
                    "/webhooks/sendgrid is off"
                )
        self.topics = set(settings.ses.topic_arns)
        self.sns = ses.SnsVerifier(sns_fetch or ses.fetch_https, clock)
        self.routes = [
            Route("/webhooks/sendgrid", self.sendgrid_hook, methods=["POST"]),
            Route("/webhooks/mailgun", self.mailgun_hook, methods=["POST"]),
            Route("/webhooks/postmark", self.postmark_hook, methods=["POST"]),
            Route("/webhooks/ses", self.ses_hook, methods=["POST"]),
        ]

    def save(self, provider: str, events: list[dict[str, Any]]) -> Response:
        try:
            counts = self.store.record_provider_events(events, self.clock())
        except sqlite3.Error as exc:
            log.error("webhook %s: cannot store %d events (%s)", provider, len(events), exc)
            return _answer(503, "cannot store the events now; try again")
        log.debug("webhook %s: %s", provider, counts)
        return _answer(200, "ok")

    # -- SendGrid ---------------------------------------------------------------

    async def sendgrid_hook(self, request: Request) -> Response:
        if self.sendgrid_key is None:
            return _answer(404, "the SendGrid webhook is not configured")
        body = await _body(request)
        if body is None:
            return _answer(413, "body too large")
        return await off_loop(
            self.sendgrid_judge,
            request.headers.get(sendgrid.SIGNATURE_HEADER, ""),
            request.headers.get(sendgrid.TIMESTAMP_HEADER, ""),
            body,
        )

    def sendgrid_judge(self, signature: str, timestamp: str, body: bytes) -> Response:
        assert self.sendgrid_key is not None  # sendgrid_hook answered 404 without one
        if not (signature and timestamp):
            return _answer(403, "signature headers missing")
        if not sendgrid.signature_ok(self.sendgrid_key, signature, timestamp, body):
            return _answer(403, "bad signature")
        # The signature covers the timestamp, so a captured request replayed
        # later fails here; SendGrid signs each delivery and retry anew.
        if not common.fresh(timestamp, self.clock()):
            return _answer(403, "stale timestamp")
        try:
            events = sendgrid.events(common.parse_json(body))
        except ValueError as exc:
            return _answer(400, f"not a SendGrid event batch: {exc}")
        return self.save("sendgrid", events)

    # -- Mailgun ------------------------------------------------------------------

    async def mailgun_hook(self, request: Request) -> Response:
        signing_key = self.secrets.mailgun_webhook_signing_key
        if not signing_key:
            return _answer(404, "the Mailgun webhook is not configured")
        body = await _body(request, UNSIGNED_MAX_BODY)
        if body is None:
            return _answer(413, "body too large")
        return await off_loop(self.mailgun_judge, signing_key, body)

    def mailgun_judge(self, signing_key: str, body: bytes) -> Response:
        try:
            fields, event = mailgun.event_of(common.parse_json(body, mailgun.MAX_CONTAINERS))
            stamp = float(fields["timestamp"])
        except ValueError as exc:
            return _answer(400, f"not a Mailgun webhook: {exc}")
        if not mailgun.signature_ok(
            signing_key, fields["timestamp"], fields["token"], fields["signature"]
        ):
            return _answer(403, "bad signature")
        if abs(self.clock().timestamp() - stamp) > common.MAX_AGE:
            return _answer(403, "stale timestamp")
        seen = self.store.provider_event_raw("mailgun", fields["token"])
        if seen is not None:
            # The signature covers only timestamp and token, so a token seen with
            # another event is a replay; the same event again is Mailgun retrying.
            if seen != event["raw"]:
                return _answer(403, "token already used")
            return _answer(200, "ok")
        return self.save("mailgun", [event])

    # -- Postmark -----------------------------------------------------------------

    async def postmark_hook(self, request: Request) -> Response:
        user = self.secrets.postmark_webhook_user
        password = self.secrets.postmark_webhook_password
        if not (user and password):
            return _answer(404, "the Postmark webhook is not configured")
        # Before the body is read: a stranger's body is never even taken in.
        if not postmark.basic_auth_ok(request.headers.get("authorization", ""), user, password):
            return _answer(401, "authentication required", **{"WWW-Authenticate": "Basic"})
        body = await _body(request)
        if body is None:
            return _answer(413, "body too large")
        return await off_loop(self.postmark_judge, body)

    def postmark_judge(self, body: bytes) -> Response:
        try:
            event = postmark.event_of(common.parse_json(body))
        except ValueError as exc:
            return _answer(400, f"not a Postmark webhook: {exc}")
        return self.save("postmark", [event])

    # -- Amazon SES (through SNS) -------------------------------------------------

    async def ses_hook(self, request: Request) -> Response:
        # No sign-in and on by default: anyone may post here, so nothing of the
        # body is looked at on the loop.
        body = await _body(request, UNSIGNED_MAX_BODY)
        if body is None:
            return _answer(413, "body too large")
        return await off_loop(self.ses_judge, body)

    def ses_judge(self, body: bytes) -> Response:
        try:
            message = ses.sns_message(body)
        except ValueError as exc:
            return _answer(400, f"not an SNS message: {exc}")
        kind = message["Type"]
        if message.get("TopicArn") not in self.topics:
            log.warning("webhook ses: refused a message for topic %.200s", message.get("TopicArn"))
            return _answer(403, "topic not allowed; add it to ses.topic_arns")
        url = message.get("SigningCertURL")
        if not ses.sns_url_ok(url):
            return _answer(403, "signing certificate not on an https SNS host")
        try:
            key = self.sns.public_key(url)
        except ValueError as exc:
            return _answer(403, f"unusable signing certificate: {exc}")
        except Exception as exc:  # noqa: BLE001 - any fetch failure: let SNS try again
            log.error("webhook ses: cannot fetch the signing certificate (%s)", type(exc).__name__)
            return _answer(503, "cannot fetch the signing certificate now")
        if not self.sns.signature_ok(key, message):
            return _answer(403, "bad signature")
        if kind == "SubscriptionConfirmation":
            subscribe = message.get("SubscribeURL")
            if not ses.sns_url_ok(subscribe):
                return _answer(403, "SubscribeURL not on an https SNS host")
            try:
                self.sns.fetch(subscribe)
            except Exception as exc:  # noqa: BLE001 - let SNS send the confirmation again
                log.error("webhook ses: cannot confirm the subscription (%s)", type(exc).__name__)
                return _answer(503, "cannot confirm the subscription now")
            log.info("webhook ses: subscribed to %s", message["TopicArn"])
            return _answer(200, "subscribed")
        if kind == "UnsubscribeConfirmation":
            log.warning("webhook ses: unsubscribed from %s", message["TopicArn"])
            return _answer(200, "ok")
        return self.save("ses", ses.notification_events(message))
