"""Transports hand finished messages to a mail provider. One module each, chosen by name.

A transport is anything with ``send(envelope) -> provider id``,
``was_sent(key) -> bool | None`` and ``close()``. ``was_sent`` lets the
delivery ledger settle a message that was in flight when a sender stopped:
True or False where the transport can know, None where it cannot (then the
row is shown as in doubt, never resent blindly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from newsletter.config import Secrets, Settings
from newsletter.errors import ConfigError


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    data: bytes
    key: str  # unique per delivery: file name, idempotency key


class Transport(Protocol):
    name: str

    def send(self, envelope: Envelope) -> str | None: ...

    def was_sent(self, key: str) -> bool | None: ...

    def close(self) -> None: ...


Factory = Callable[[Settings, Secrets, Path], Transport]


def _outbox(settings: Settings, secrets: Secrets, workspace: Path) -> Transport:
    from newsletter.transports.outbox import OutboxTransport

    return OutboxTransport(workspace / settings.delivery.outbox_dir)


def _smtp(settings: Settings, secrets: Secrets, workspace: Path) -> Transport:
    from newsletter.transports.smtp import SmtpTransport

    s = settings.smtp
    return SmtpTransport(
        host=s.host,
        port=s.port,
        security=s.security,
        username=s.username,
        password=secrets.smtp_password,
        timeout=s.timeout,
    )


REGISTRY: dict[str, Factory] = {"outbox": _outbox, "smtp": _smtp}


def open_transport(settings: Settings, secrets: Secrets, workspace: Path) -> Transport:
    """Make the transport named by ``[delivery] transport``."""
    name = settings.delivery.transport
    factory = REGISTRY.get(name)
    if factory is None:
        raise ConfigError(
            f"delivery.transport: {name!r} is not available in this version; "
            f"use one of {', '.join(sorted(REGISTRY))}"
        )
    return factory(settings, secrets, workspace)
