"""Postmark: up to 500 messages per ``/email/batch`` call, on the broadcast stream.

The batch endpoint answers 200 even when some messages were refused, so each
item's ``ErrorCode`` is read: 0 sent, 406 (inactive recipient) and 300
(invalid address) refuse that recipient for good. Codes about the account or
the sender (a bad token, an unconfirmed sender signature) never mark a
subscriber bounced: when nothing went they pause the campaign, otherwise the
affected messages are deferred.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from newsletter import delivery_key
from newsletter.config import Secrets, Settings
from newsletter.errors import (
    AccountError,
    AddressUnusable,
    InDoubtError,
    PermanentError,
    TransientError,
)
from newsletter.mime import ascii_domain
from newsletter.transports.base import (
    FIELDS,
    PERMANENT,
    SENT,
    TRANSIENT,
    UNUSABLE,
    Envelope,
    NothingToPrepare,
    Outcome,
)
from newsletter.transports.httpapi import (
    api_address,
    content_of,
    error_text,
    mailbox,
    make_session,
    post,
    reply_to_parts,
    require,
    retry_after,
)

# An internationalised mailbox (non-ASCII local part) cannot go through this API.
EAI_REFUSAL: str | None = "which Postmark does not accept"

API_BASE = "https://api.postmarkapp.com"
BATCH_LIMIT = 500
# Postmark takes at most 50 MB per call; stay clear of it, JSON escaping included.
BATCH_BYTES = 45 * 1024 * 1024
INACTIVE_RECIPIENT, INVALID_REQUEST, BAD_TOKEN, MAINTENANCE = 406, 300, 10, 100
RETRY_CODES = {MAINTENANCE, 429}


class PostmarkTransport(NothingToPrepare):
    name = "postmark"
    batch_size = BATCH_LIMIT
    needs = FIELDS

    def __init__(
        self,
        server_token: str,
        *,
        message_stream: str = "broadcast",
        api_base: str = "",
        timeout: float = 60.0,
        connections: int = 1,
        clock: Callable[[], float] = time.time,
    ):
        self.url = (api_base or API_BASE).rstrip("/") + "/email/batch"
        self.message_stream = message_stream
        self.timeout = timeout
        self.clock = clock
        self.session = make_session(connections)
        self._headers = {
            "X-Postmark-Server-Token": server_token,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def message(self, envelope: Envelope) -> dict[str, Any]:
        """One message of a batch, in Postmark's field names."""
        c = content_of(envelope)
        body: dict[str, Any] = {
            "From": mailbox(c.from_name, ascii_domain(c.from_address)),
            # Postmark takes no internationalised mailbox (its API refuses one).
            "To": mailbox(c.to_name, api_address(c.to_address, "Postmark", False)),
            "Subject": c.subject,
            "MessageStream": self.message_stream,
            "Metadata": {delivery_key.FIELD: envelope.key},
            # Our own pixel and links count opens and clicks.
            "TrackOpens": False,
            "TrackLinks": "None",
        }
        if c.html:
            body["HtmlBody"] = c.html
        if c.text:
            body["TextBody"] = c.text
        if c.headers.get("Reply-To"):
            body["ReplyTo"] = mailbox(*reply_to_parts(c.headers["Reply-To"]))
        headers = [
            {"Name": k, "Value": v} for k, v in c.headers.items() if v and k.lower() != "reply-to"
        ]
        if headers:
            body["Headers"] = headers
        return body

    def send(self, envelope: Envelope) -> str | None:
        """Send one message (a test message, a confirmation) as a batch of one."""
        (outcome,) = self.send_batch([envelope])
        if outcome.status == UNUSABLE:
            raise AddressUnusable(outcome.error)
        if outcome.status == PERMANENT:
            raise PermanentError(outcome.error)
        if outcome.status == TRANSIENT:
            raise TransientError(outcome.error, retry_after=outcome.retry_after)
        return outcome.provider_id

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        # An address Postmark cannot take fails alone, before the batch is built.
        unusable: dict[str, Outcome] = {}
        for envelope in envelopes:
            try:
                api_address(content_of(envelope).to_address, "Postmark", False)
            except AddressUnusable as exc:
                unusable[envelope.key] = Outcome(envelope.key, UNUSABLE, error=str(exc))
        if not unusable:
            return self._send_usable(envelopes)
        sent = iter(self._send_usable([e for e in envelopes if e.key not in unusable]))
        return [unusable.get(e.key) or next(sent) for e in envelopes]

    def _send_usable(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for chunk in self._chunks(envelopes):
            try:
                outcomes.extend(self._send(chunk))
            except (TransientError, AccountError) as exc:
                if not outcomes:
                    raise
                # An earlier call of this batch went through: the rest wait for the next pass.
                done = len(outcomes)
                outcomes.extend(Outcome(e.key, TRANSIENT, error=str(exc)) for e in envelopes[done:])
                return outcomes
        return outcomes

    def _chunks(self, envelopes: Sequence[Envelope]) -> list[list[tuple[Envelope, bytes]]]:
        chunks: list[list[tuple[Envelope, bytes]]] = [[]]
        size = 0
        for envelope in envelopes:
            encoded = json.dumps(self.message(envelope)).encode()
            if chunks[-1] and (
                len(chunks[-1]) >= BATCH_LIMIT or size + len(encoded) + 2 > BATCH_BYTES
            ):
                chunks.append([])
                size = 0
            chunks[-1].append((envelope, encoded))
            size += len(encoded) + 1
        return [c for c in chunks if c]

    def _send(self, chunk: list[tuple[Envelope, bytes]]) -> list[Outcome]:
        what = f"postmark batch of {len(chunk)}"
        body = b"[" + b",".join(encoded for _, encoded in chunk) + b"]"
        response = post(
            self.session, self.url, what, self.timeout, data=body, headers=self._headers
        )
        status = response.status_code
        if status != 200:
            problem = f"{what}: {error_text(response)}"
            code = _error_code(response)
            if status in (429, 500, 502, 503, 504) or code in RETRY_CODES:
                raise TransientError(problem, retry_after=retry_after(response, self.clock))
            if status == 401 or code == BAD_TOKEN:
                raise AccountError(f"{problem}; check NEWSLETTER_POSTMARK_SERVER_TOKEN")
            raise AccountError(problem)
        try:
            results = response.json()
        except ValueError:
            results = None
        if not isinstance(results, list) or len(results) != len(chunk):
            # It answered 200, so it took the batch; what became of each message is unknown.
            raise InDoubtError(f"{what}: answer does not list one result per message")
        return self._outcomes(chunk, results)

    def _outcomes(self, chunk: list[tuple[Envelope, bytes]], results: list[Any]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        account_problems: list[str] = []
        for (envelope, _), item in zip(chunk, results, strict=True):
            item = item if isinstance(item, dict) else {}
            code = item.get("ErrorCode")
            text = f"postmark {envelope.recipient}: {code} {item.get('Message', '')}".strip()
            if code == 0:
                outcomes.append(Outcome(envelope.key, SENT, provider_id=item.get("MessageID")))
            elif code == INACTIVE_RECIPIENT or (code == INVALID_REQUEST and _about_to(item)):
                outcomes.append(Outcome(envelope.key, PERMANENT, error=text))
            elif code in RETRY_CODES:
                outcomes.append(Outcome(envelope.key, TRANSIENT, error=text))
            else:
                account_problems.append(text)
                outcomes.append(Outcome(envelope.key, TRANSIENT, error=text))
        if account_problems and len(account_problems) == len(outcomes):
            raise AccountError(account_problems[0])
        return outcomes

    def was_sent(self, key: str) -> bool | None:
        return None  # Postmark offers no lookup by our key

    def close(self) -> None:
        self.session.close()


def _error_code(response: Any) -> int | None:
    try:
        code = response.json().get("ErrorCode")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, int) else None


def _about_to(item: dict[str, Any]) -> bool:
    """300 is "invalid email request": the recipient's fault unless it names the sender."""
    message = str(item.get("Message", "")).lower()
    return not any(word in message for word in ("'from'", "from address", "reply", "sender"))


def from_settings(settings: Settings, secrets: Secrets) -> PostmarkTransport:
    require(secrets, "postmark")
    s = settings.postmark
    return PostmarkTransport(
        secrets.postmark_server_token,
        message_stream=s.message_stream,
        api_base=s.api_base,
        timeout=s.timeout,
        connections=settings.delivery.concurrency,
    )
