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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from newsletter.config import Secrets, Settings
from newsletter.errors import (
    AccountError,
    AddressUnusable,
    ConfigError,
    InDoubtError,
    MessageRejected,
    NewsletterError,
    PermanentError,
    TransientError,
)

if TYPE_CHECKING:
    from newsletter.dkim import DkimSigner

# Outcome statuses: PERMANENT bounces and suppresses the address; REJECTED fails the
# message only; IN_DOUBT means it may have been taken (never resent blindly).
SENT, TRANSIENT, PERMANENT, REJECTED, IN_DOUBT = (
    "sent",
    "transient",
    "permanent",
    "rejected",
    "in_doubt",
)
# The transport cannot carry this one address (needs SMTPUTF8): the message fails,
# and, unlike REJECTED, it says nothing about the campaign as a whole.
UNUSABLE = "unusable"


@dataclass(frozen=True)
class Content:
    """A message as fields, for provider APIs that take JSON or form fields, not MIME."""

    subject: str
    from_name: str
    from_address: str
    to_name: str
    to_address: str
    html: str
    text: str
    # Message-ID, Reply-To, List-Unsubscribe, List-Unsubscribe-Post, List-Id, Feedback-ID
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    data: bytes  # the whole message, wire format (CRLF)
    key: str  # unique per delivery: file name, idempotency key, custom argument
    content: Content | None = None


@dataclass(frozen=True)
class Outcome:
    """What the provider said about one envelope."""

    key: str
    status: str  # SENT, TRANSIENT, PERMANENT, REJECTED, UNUSABLE or IN_DOUBT
    provider_id: str | None = None
    error: str = ""
    retry_after: float | None = None  # seconds, when the provider said when to come back


class Transport(Protocol):
    name: str
    batch_size: int  # envelopes per send_batch call: 1 for SMTP, the API limit otherwise

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        """One outcome per envelope, in order. Raise TransientError when the whole
        call failed before the provider could take any of it (connection refused,
        429, 5xx); raise PermanentError when no message can ever go (bad API key)."""
        ...

    def was_sent(self, key: str) -> bool | None: ...

    def close(self) -> None: ...


def outcomes_one_by_one(
    send: Callable[[Envelope], str | None],
    envelopes: Sequence[Envelope],
    doubt_pauses: bool = True,
) -> list[Outcome]:
    """send_batch for transports that take one message per call.

    A refusal of one message is that envelope's outcome. An account-wide
    refusal stops the batch: raised when nothing went yet (the campaign
    pauses), otherwise the rest are deferred, since their addresses are not
    at fault. A request left unanswered is raised too when ``doubt_pauses``
    (a hanging API would leave every following message in doubt), else it is
    that message's in-doubt outcome (SMTP: a connection dropped after the
    final dot, and the next message goes over a fresh one).
    """
    outcomes: list[Outcome] = []
    for index, envelope in enumerate(envelopes):
        try:
            provider_id = send(envelope)
        except AccountError as exc:
            if not outcomes:
                raise
            outcomes.extend(Outcome(e.key, TRANSIENT, error=str(exc)) for e in envelopes[index:])
            return outcomes
        except AddressUnusable as exc:
            outcomes.append(Outcome(envelope.key, UNUSABLE, error=str(exc)))
        except MessageRejected as exc:
            outcomes.append(Outcome(envelope.key, REJECTED, error=str(exc)))
        except PermanentError as exc:
            outcomes.append(Outcome(envelope.key, PERMANENT, error=str(exc)))
        except InDoubtError as exc:
            if doubt_pauses and not outcomes:
                raise
            outcomes.append(Outcome(envelope.key, IN_DOUBT, error=str(exc)))
        except TransientError as exc:
            outcomes.append(
                Outcome(envelope.key, TRANSIENT, error=str(exc), retry_after=exc.retry_after)
            )
        else:
            outcomes.append(Outcome(envelope.key, SENT, provider_id=provider_id))
    return outcomes


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


def _dkim_signer(
    settings: Settings, secrets: Secrets, workspace: Path
) -> Callable[[bytes], bytes] | None:
    """The DKIM signing function when [dkim] is configured, else None."""
    signers = dkim_signers(settings, secrets, workspace)
    if not signers:
        return None
    from newsletter.dkim import sign_all

    return functools.partial(sign_all, signers)


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
