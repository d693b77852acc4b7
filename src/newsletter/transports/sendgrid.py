"""SendGrid v3 Mail Send: one JSON request per message over a pooled session.

Every message of a campaign differs (tracking links, unsubscribe token), so
each goes in its own request with one personalization; batching them as
personalizations with substitutions would put one recipient's links within
reach of a typo in another's. 202 means queued; ``X-Message-Id`` is the
prefix of the ``sg_message_id`` in webhook events, and the delivery key goes
along as a custom argument, which SendGrid copies into every event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from newsletter import delivery_key
from newsletter.config import Secrets, Settings
from newsletter.errors import AccountError, PermanentError, TransientError
from newsletter.mime import ascii_domain
from newsletter.transports.base import (
    FIELDS,
    Envelope,
    NothingToPrepare,
    Outcome,
    outcomes_one_by_one,
)
from newsletter.transports.httpapi import (
    api_address,
    content_of,
    error_text,
    make_session,
    post,
    reply_to_parts,
    require,
    retry_after,
)

# An internationalised mailbox (non-ASCII local part) cannot go through this API.
EAI_REFUSAL: str | None = "which SendGrid does not accept"

ENDPOINTS = {"us": "https://api.sendgrid.com", "eu": "https://api.eu.sendgrid.com"}
# Headers SendGrid sets itself and refuses in "headers"; Reply-To has its own field.
RESERVED = {
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
}


class SendGridTransport(NothingToPrepare):
    name = "sendgrid"
    batch_size = 1
    needs = FIELDS

    def __init__(
        self,
        api_key: str,
        *,
        region: str = "us",
        api_base: str = "",
        timeout: float = 30.0,
        connections: int = 1,
        clock: Callable[[], float] = time.time,
    ):
        self.url = (api_base or ENDPOINTS[region]).rstrip("/") + "/v3/mail/send"
        self.timeout = timeout
        self.clock = clock
        self.session = make_session(connections)
        self._headers = {"Authorization": f"Bearer {api_key}"}

    def payload(self, envelope: Envelope) -> dict[str, Any]:
        """The Mail Send JSON for one message: one personalization, our tracking only."""
        c = content_of(envelope)
        # SendGrid takes no internationalised mailbox: it answers 202 and drops it.
        to: dict[str, str] = {"email": api_address(c.to_address, "SendGrid", False)}
        if c.to_name:
            to["name"] = c.to_name
        sender: dict[str, str] = {"email": ascii_domain(c.from_address)}
        if c.from_name:
            sender["name"] = c.from_name
        headers = {k: v for k, v in c.headers.items() if v and k.lower() not in RESERVED}
        personalization: dict[str, Any] = {
            "to": [to],
            "custom_args": {delivery_key.FIELD: envelope.key},
        }
        if headers:
            personalization["headers"] = headers
        body: dict[str, Any] = {
            "personalizations": [personalization],
            "from": sender,
            "subject": c.subject,
            # text/plain must come first when both are given.
            "content": [
                part
                for part in (
                    {"type": "text/plain", "value": c.text},
                    {"type": "text/html", "value": c.html},
                )
                if part["value"]
            ],
            # The links and the pixel are already ours; SendGrid's rewriting would
            # count every open and click twice and replace our unsubscribe headers.
            "tracking_settings": {
                "click_tracking": {"enable": False, "enable_text": False},
                "open_tracking": {"enable": False},
                "subscription_tracking": {"enable": False},
            },
        }
        reply_to = c.headers.get("Reply-To")
        if reply_to:
            # An object, as the v3 schema says: a "Name <address>" string is refused.
            name, address = reply_to_parts(reply_to)
            body["reply_to"] = {"email": address, **({"name": name} if name else {})}
        return body

    def send(self, envelope: Envelope) -> str | None:
        """Hand one message to SendGrid; return its X-Message-Id."""
        what = f"sendgrid {envelope.recipient}"
        response = post(
            self.session,
            self.url,
            what,
            self.timeout,
            json=self.payload(envelope),
            headers=self._headers,
        )
        status = response.status_code
        if status in (200, 202):
            return response.headers.get("X-Message-Id") or None
        problem = f"{what}: {error_text(response)}"
        if status == 429 or status >= 500:
            raise TransientError(problem, retry_after=retry_after(response, self.clock))
        if status in (401, 403):
            raise AccountError(
                f"{problem}; check NEWSLETTER_SENDGRID_API_KEY (Mail Send permission) "
                f"and that the sender address is verified"
            )
        if status == 400 and _about_recipient(response):
            raise PermanentError(problem)
        raise AccountError(problem)

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        return outcomes_one_by_one(self.send, envelopes)

    def was_sent(self, key: str) -> bool | None:
        return None  # SendGrid offers no lookup by our key

    def close(self) -> None:
        self.session.close()


def _about_recipient(response: Any) -> bool:
    """True when every error SendGrid lists is about the recipient's address."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return False
    fields = [str(e.get("field") or "") for e in errors if isinstance(e, dict)]
    return bool(fields) and all(f.startswith("personalizations") and ".to" in f for f in fields)


def from_settings(settings: Settings, secrets: Secrets) -> SendGridTransport:
    require(secrets, "sendgrid")
    s = settings.sendgrid
    return SendGridTransport(
        secrets.sendgrid_api_key,
        region=s.region,
        api_base=s.api_base,
        timeout=s.timeout,
        connections=settings.delivery.concurrency,
    )
