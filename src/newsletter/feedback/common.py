"""Provider events of one shape, and what every provider's parser shares. Pure.

Every event becomes a dict with ``provider``, ``event_id`` (the provider's
own id, for deduplication), ``kind``, ``at``, ``email``, ``key`` (our
delivery key, when the provider echoed it), ``provider_id``, ``message_id``,
``detail`` and ``raw`` (the provider's JSON for it, kept as it came).

Kinds that act: ``bounce`` (hard) and ``complaint`` and ``unsubscribe``
suppress the subscriber. Opens and clicks the provider saw are kept apart
(``provider_open``, ``provider_click``) from the ones our own pixel and links
count, so nothing is counted twice. A payload that is not what the provider
sends raises ValueError, which the web edge answers with 400.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

Event = dict[str, Any]
MAX_AGE = 300  # seconds a signed webhook timestamp stays acceptable (Mailgun, SendGrid)


def parse_json(body: bytes, max_containers: int | None = None) -> Any:
    """The request body as JSON; ValueError if it is not JSON.

    Nesting deeper than Python's recursion limit (``[[[[...``) raises
    RecursionError inside the parser: that body is not JSON we take either.
    ``max_containers`` bounds the objects and arrays (counted as brackets,
    those inside strings too) of a body read before its sender is proven:
    CPython's parser holds the interpreter lock while it builds them, so a
    megabyte of ``[[[1]]],`` would stop every other thread for a second.
    """
    if max_containers is not None and body.count(b"[") + body.count(b"{") > max_containers:
        raise ValueError(
            f"the body is not JSON as the provider sends it: more than {max_containers} "
            f"objects and arrays"
        )
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError("the body is not JSON") from None


def fresh(timestamp: str, now: dt.datetime, max_age: float = MAX_AGE) -> bool:
    """Whether a signed Unix timestamp is within ``max_age`` seconds of now (either way)."""
    try:
        stamp = float(timestamp)
    except ValueError:
        return False
    return math.isfinite(stamp) and abs(now.timestamp() - stamp) <= max_age


def raw(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def text(value: Any, limit: int = 500) -> str:
    return str(value)[:limit] if value not in (None, "") else ""


def epoch(value: Any) -> str | None:
    try:
        return dt.datetime.fromtimestamp(float(value), dt.UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def iso(value: Any) -> str | None:
    """An ISO 8601 time as the providers write it, in UTC; None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Postmark and SES give up to seven fractional digits; Python reads six.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what}: expected a JSON object")
    return value


def member(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """``parent[name]`` when it is a JSON object, else an empty one: the optional parts."""
    value = parent.get(name)
    return value if isinstance(value, Mapping) else {}


def event(provider: str, event_id: str, kind: str, **fields: Any) -> Event:
    return {
        "provider": provider,
        "event_id": event_id,
        "kind": kind,
        "at": fields.get("at"),
        "email": fields.get("email") or None,
        "key": fields.get("key") or None,
        "provider_id": fields.get("provider_id") or None,
        "message_id": fields.get("message_id") or None,
        "detail": fields.get("detail") or "",
        "raw": fields.get("raw"),
    }
