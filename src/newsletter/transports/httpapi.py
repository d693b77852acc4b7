"""What the HTTP email APIs share: one pooled session, and reading what went wrong.

Each API transport owns one ``requests.Session`` whose connection pool is as
large as the number of sender threads, so every worker keeps a warm TLS
connection. The session holds no state that changes after it is made (no
cookies, fixed headers), which is what makes sharing it between threads safe.

A failed call is sorted by what the provider can have seen:

- the connection was never made (refused, DNS, TLS handshake, connect
  timeout): nothing arrived, so ``TransientError`` and the rows are retried;
- the request went out and no answer came back (read timeout, connection cut
  mid-answer): the provider may have taken it, so ``InDoubtError``; the rows
  stay in flight and are settled by the ledger's in-doubt rule, never resent
  blindly.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import http.cookiejar
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from newsletter import __version__
from newsletter.config import TRANSPORT_SECRETS, Secrets
from newsletter.errors import (
    AddressUnusable,
    ConfigError,
    InDoubtError,
    InputError,
    TransientError,
)
from newsletter.mime import ascii_domain, needs_smtputf8
from newsletter.transports.base import (
    Content,
    Envelope,
)

USER_AGENT = f"newsletter/{__version__}"


def make_session(pool_size: int) -> requests.Session:
    """A session with one connection per sender thread and no retries of its own.

    Retries belong to the delivery ledger: an automatic retry of a POST that
    timed out could hand the same message over twice.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # No cookie may change the shared session while other threads use it.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.headers["User-Agent"] = USER_AGENT
    return session


def _never_connected(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def post(
    session: requests.Session, url: str, what: str, timeout: float, **kwargs: Any
) -> requests.Response:
    """POST, turning network failures into TransientError or InDoubtError."""
    host = urlsplit(url).netloc
    try:
        return session.post(url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if _never_connected(exc):
            raise TransientError(f"{what}: cannot connect to {host} ({reason})") from None
        raise InDoubtError(
            f"{what}: no answer from {host} after the request was sent ({reason}); "
            f"the provider may have accepted it"
        ) from None


def retry_after(response: requests.Response, now: Callable[[], float]) -> float | None:
    """Seconds to wait, from Retry-After (seconds or a date) or X-RateLimit-Reset (epoch)."""
    value = response.headers.get("Retry-After", "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                return max(0.0, when.timestamp() - now())
    reset = response.headers.get("X-RateLimit-Reset", "").strip()
    if reset:
        try:
            epoch = float(reset)
        except ValueError:
            return None
        if epoch > 1e12:  # some APIs give milliseconds
            epoch /= 1000
        return max(0.0, epoch - now())
    return None


def error_text(response: requests.Response, limit: int = 300) -> str:
    """The provider's own words about a failure, short enough for a log line."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return f"HTTP {response.status_code}" + (f": {text[:limit]}" if text else "")
    parts: list[str] = []
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, Mapping):
                    field = f"{item['field']}: " if item.get("field") else ""
                    parts.append(f"{field}{item.get('message', '')}")
        for key in ("message", "Message"):
            if isinstance(body.get(key), str):
                parts.append(body[key])
    text = "; ".join(p for p in parts if p) or json.dumps(body)[:limit]
    return f"HTTP {response.status_code}: {text[:limit]}"


def content_of(envelope: Envelope) -> Content:
    """The message as fields; read back from its MIME when the caller gave none."""
    if envelope.content is not None:
        return envelope.content
    message = email.message_from_bytes(envelope.data, policy=email.policy.default)
    from_name, from_address = email.utils.parseaddr(str(message.get("From", "")))
    to_name, to_address = email.utils.parseaddr(str(message.get("To", "")))
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    headers = {
        name: str(message[name])
        for name in (
            "Message-ID",
            "Reply-To",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "List-Id",
            "Feedback-ID",
        )
        if message.get(name)
    }
    return Content(
        subject=str(message.get("Subject", "")),
        from_name=from_name,
        from_address=from_address or envelope.sender,
        to_name=to_name,
        to_address=to_address or envelope.recipient,
        html=html.get_content() if html is not None else "",
        text=text.get_content() if text is not None else "",
        headers=headers,
    )


def mailbox(name: str, address: str) -> str:
    """``"Name" <address>`` for APIs that take a display name in one string."""
    if not name:
        return address
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


def api_address(address: str, provider: str, takes_eai: bool) -> str:
    """An address as an API body needs it: the domain as A-labels (Punycode), which every
    provider's spec asks for; an internationalised mailbox (non-ASCII local part) only
    where the provider takes one, else AddressUnusable fails that one message."""
    if needs_smtputf8(address) and not takes_eai:
        raise AddressUnusable(
            f"{address}: needs SMTPUTF8 (a non-ASCII address), which {provider} does not accept"
        )
    try:
        return ascii_domain(address)
    except InputError as exc:
        raise AddressUnusable(str(exc)) from None


def reply_to_parts(value: str) -> tuple[str, str]:
    """``Name <address>`` (or a bare address) as (name, address with an A-label domain)."""
    name, address = email.utils.parseaddr(value)
    return name, ascii_domain(address or value.strip())


def require(secrets: Secrets, transport: str) -> None:
    """Stop with the name of the environment variable the transport is missing."""
    for variable, attribute in TRANSPORT_SECRETS.get(transport, {}).items():
        if not getattr(secrets, attribute):
            raise ConfigError(
                f"{variable}: not set; the {transport} transport needs it "
                f"(secrets come only from the environment)"
            )
