"""Mailgun: the finished MIME message through ``/v3/DOMAIN/messages.mime``.

Sending our own MIME keeps every header exactly as rendered (Message-ID,
List-Unsubscribe and its one-click POST header). The delivery key goes along
as the variable ``v:newsletter_delivery``, which Mailgun returns in every
event's ``user-variables``. One message per request: each recipient's message
is different, and ``recipient-variables`` batching would need Mailgun to
build the messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from urllib.parse import quote

from newsletter import delivery_key
from newsletter.config import Secrets, Settings
from newsletter.errors import AccountError, ConfigError, PermanentError, TransientError
from newsletter.transports.base import (
    MIME,
    Envelope,
    NothingToPrepare,
    Outcome,
    outcomes_one_by_one,
)
from newsletter.transports.httpapi import (
    api_address,
    error_text,
    make_session,
    post,
    require,
    retry_after,
)

# Mailgun's HTTP API takes internationalised mailboxes (SMTPUTF8).
EAI_REFUSAL: str | None = None
ENDPOINTS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}


class MailgunTransport(NothingToPrepare):
    name = "mailgun"
    batch_size = 1
    needs = MIME

    def __init__(
        self,
        api_key: str,
        domain: str,
        *,
        region: str = "us",
        api_base: str = "",
        timeout: float = 30.0,
        connections: int = 1,
        clock: Callable[[], float] = time.time,
    ):
        base = (api_base or ENDPOINTS[region]).rstrip("/")
        self.domain = domain
        self.url = f"{base}/v3/{quote(domain, safe='')}/messages.mime"
        self.timeout = timeout
        self.clock = clock
        self.session = make_session(connections)
        self._auth = ("api", api_key)

    def send(self, envelope: Envelope) -> str | None:
        """Hand one message to Mailgun; return the id it answers (without angle brackets)."""
        what = f"mailgun {envelope.recipient}"
        response = post(
            self.session,
            self.url,
            what,
            self.timeout,
            auth=self._auth,
            data=[
                # Mailgun's HTTP API takes internationalised mailboxes (SMTPUTF8).
                ("to", api_address(envelope.recipient, "Mailgun", True)),
                (f"v:{delivery_key.FIELD}", envelope.key),
                # Our own pixel and links count opens and clicks; Mailgun's
                # rewriting would count them twice.
                ("o:tracking", "no"),
            ],
            files={"message": ("message.mime", envelope.data, "message/rfc822")},
        )
        status = response.status_code
        if status == 200:
            try:
                provider_id = response.json().get("id")
            except (ValueError, AttributeError):
                provider_id = None
            return str(provider_id).strip("<>") if provider_id else None
        problem = f"{what}: {error_text(response)}"
        if status == 429 or status >= 500:
            raise TransientError(problem, retry_after=retry_after(response, self.clock))
        if status == 404:
            # Mailgun answers 404 for a domain it briefly cannot find; it says to
            # retry. A wrong mailgun.domain pauses the campaign after a few tries.
            raise TransientError(f"{problem}; check mailgun.domain {self.domain!r}")
        if status == 401:
            raise AccountError(f"{problem}; check NEWSLETTER_MAILGUN_API_KEY and mailgun.region")
        if status == 400 and _about_recipient(response):
            raise PermanentError(problem)
        raise AccountError(problem)

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        return outcomes_one_by_one(self.send, envelopes)

    def was_sent(self, key: str) -> bool | None:
        return None  # Mailgun offers no lookup by our key at send time

    def close(self) -> None:
        self.session.close()


def _about_recipient(response: object) -> bool:
    """True when Mailgun's 400 names the 'to' address as the problem."""
    try:
        message = str(response.json().get("message", "")).lower()  # type: ignore[attr-defined]
    except (ValueError, AttributeError):
        return False
    return message.startswith("to parameter") or "'to'" in message


def from_settings(settings: Settings, secrets: Secrets) -> MailgunTransport:
    require(secrets, "mailgun")
    s = settings.mailgun
    if not s.domain.strip():
        raise ConfigError("mailgun.domain: set the sending domain, e.g. mg.example.com")
    return MailgunTransport(
        secrets.mailgun_api_key,
        s.domain.strip(),
        region=s.region,
        api_base=s.api_base,
        timeout=s.timeout,
        connections=settings.delivery.concurrency,
    )
