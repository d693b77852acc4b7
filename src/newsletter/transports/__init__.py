"""Transports hand finished messages to a mail provider. One module each, chosen by name.

A transport takes a batch of envelopes and says what became of each one
(``send_batch``): SMTP and the outbox take one message at a time, email APIs
up to their batch limit. A transport object is shared by the sender's worker
threads, so it must be safe to call from several threads at once (a pool of
SMTP connections, one HTTP session with connection pooling).

``was_sent(key)`` lets the delivery ledger settle a message that was in
flight when a sender stopped: True or False where the transport can know,
None where it cannot (the row is then shown as in doubt, never resent
blindly).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config import Secrets, Settings
from newsletter.errors import (
    ConfigError,
    NewsletterError,
)

# The shared types live in base.py, which the transports import (never this
# module, which imports them); they are named here too, as the package's interface.
from newsletter.transports.base import (
    FIELDS,
    IN_DOUBT,
    MIME,
    PERMANENT,
    REJECTED,
    SENT,
    TRANSIENT,
    UNUSABLE,
    Content,
    Envelope,
    InFlight,
    Outcome,
    Pipelining,
    Transport,
    outcomes_one_by_one,
)

if TYPE_CHECKING:
    from newsletter.dkim import DkimSigner
    from newsletter.transports.signing import DkimSigning

__all__ = [
    "FIELDS",
    "IN_DOUBT",
    "MIME",
    "PERMANENT",
    "REJECTED",
    "SENT",
    "TRANSIENT",
    "UNUSABLE",
    "Content",
    "Envelope",
    "InFlight",
    "Outcome",
    "Pipelining",
    "Transport",
    "dkim_signers",
    "dkim_warnings",
    "eai_refusal",
    "open_transport",
    "outcomes_one_by_one",
]


Factory = Callable[[Settings, Secrets, Path], Transport]


def _outbox(settings: Settings, secrets: Secrets, workspace: Path) -> Transport:
    from newsletter.transports.outbox import OutboxTransport

    # Signed as SMTP would sign it, so the outbox shows exactly what would be sent.
    return OutboxTransport(
        workspace / settings.delivery.outbox_dir, sign=_dkim_signer(settings, secrets, workspace)
    )


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
        connections=settings.delivery.concurrency,
        sign=_dkim_signer(settings, secrets, workspace),
    )


def _dkim_signer(settings: Settings, secrets: Secrets, workspace: Path) -> DkimSigning | None:
    """The DKIM signing when [dkim] is configured, else None: a message on its own is
    signed in this process, a campaign's messages by a helper process (signing.py)."""
    signers = dkim_signers(settings, secrets, workspace)
    if not signers:
        return None
    from newsletter.transports.signing import DkimSigning

    return DkimSigning(signers)


def _dkim_pem(
    env_value: str, env_name: str, file_value: str, key: str, workspace: Path
) -> tuple[bytes, str]:
    if env_value:
        return env_value.encode(), env_name
    if not file_value:
        raise ConfigError(
            f"dkim.{key}: set it (or {env_name}) to sign mail; `newsletter dkim keygen` makes a key"
        )
    path = Path(file_value).expanduser()
    path = path if path.is_absolute() else workspace / path
    where = f"dkim.{key} {path}"
    try:
        return path.read_bytes(), where
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the key ({exc.strerror})") from None


def dkim_signers(settings: Settings, secrets: Secrets, workspace: Path) -> list[DkimSigner]:
    """Every configured DKIM key as a signer, RSA first (its signature goes on top)."""
    d = settings.dkim
    if not d.domain:
        return []
    from newsletter.dkim import DkimSigner

    signers = []
    if d.selector:
        pem, where = _dkim_pem(
            secrets.dkim_private_key,
            "NEWSLETTER_DKIM_PRIVATE_KEY",
            d.private_key_file,
            "private_key_file",
            workspace,
        )
        signers.append(DkimSigner.from_pem(d.domain, d.selector, pem, where))
    if d.ed25519_selector:
        pem, where = _dkim_pem(
            secrets.dkim_ed25519_private_key,
            "NEWSLETTER_DKIM_ED25519_PRIVATE_KEY",
            d.ed25519_private_key_file,
            "ed25519_private_key_file",
            workspace,
        )
        signer = DkimSigner.from_pem(d.domain, d.ed25519_selector, pem, where)
        if signer.algorithm != b"ed25519-sha256":
            raise ConfigError(
                f"{where}: not an Ed25519 key; put an RSA key in dkim.private_key_file "
                f"(`newsletter dkim keygen --algorithm ed25519` makes an Ed25519 one)"
            )
        signers.append(signer)
    return sorted(signers, key=lambda signer: signer.algorithm != b"rsa-sha256")


def dkim_warnings(settings: Settings, secrets: Secrets, workspace: Path) -> list[str]:
    """What `config check` should point out about the DKIM keys (a bad key raises)."""
    signers = dkim_signers(settings, secrets, workspace)
    if signers and all(s.algorithm == b"ed25519-sha256" for s in signers):
        return [
            "dkim: only an Ed25519 key signs; many receivers (and Perl's Mail::DKIM) "
            "cannot check ed25519-sha256 and see the mail as unsigned. Add an RSA key "
            "and sign with both: the RSA one in private_key_file, the Ed25519 one in "
            "ed25519_private_key_file"
        ]
    return []


def _provider(module: str) -> Factory:
    """The factory of an email API transport, imported only when it is chosen."""

    def make(settings: Settings, secrets: Secrets, workspace: Path) -> Transport:
        from importlib import import_module

        return import_module(f"newsletter.transports.{module}").from_settings(settings, secrets)

    return make


REGISTRY: dict[str, Factory] = {
    "outbox": _outbox,
    "smtp": _smtp,
    **{name: _provider(name) for name in ("sendgrid", "mailgun", "postmark", "ses")},
}


def eai_refusal(settings: Settings, secrets: Secrets, workspace: Path) -> str | None:
    """Why the configured transport cannot carry an internationalised mailbox (a non-ASCII
    local part), as the end of "needs SMTPUTF8, ..."; None when it can, or cannot tell
    (the send then decides for each message).

    The outbox writes files and takes any address; an email API answers from its
    documentation (the module's ``EAI_REFUSAL``); an SMTP server is asked (EHLO).
    """
    name = settings.delivery.transport
    if name == "outbox":
        return None
    if name != "smtp":
        from importlib import import_module

        return getattr(import_module(f"newsletter.transports.{name}"), "EAI_REFUSAL", None)
    try:
        transport = open_transport(settings, secrets, workspace)
    except NewsletterError:
        return None
    try:
        return transport.smtputf8_refusal()  # type: ignore[attr-defined]
    finally:
        transport.close()


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
