"""What every transport shares: the message handed over, what became of it, the protocol.

Kept apart from the registry in ``transports/__init__.py``, which imports the
transports by name: they import these from here, so no transport imports the
module that imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from newsletter.errors import (
    AccountError,
    AddressUnusable,
    InDoubtError,
    MessageRejected,
    PermanentError,
    TransientError,
)

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

# What a transport reads of an envelope (``Transport.needs``): the wire-format message
# (SMTP, the outbox, Mailgun's and SES's raw MIME), or the message as fields (JSON
# APIs). A campaign builds only that form for each message.
MIME, FIELDS = "mime", "fields"


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
    data: bytes  # the whole message, wire format (CRLF); empty for a FIELDS transport
    key: str  # unique per delivery: file name, idempotency key, custom argument
    content: Content | None = None  # the message as fields, for a FIELDS transport
    # ``data`` ends every line with CRLF, as MessageFactory builds it (tests hold it to
    # that): SMTP need not scan it for a bare CR or LF. False for data from elsewhere.
    crlf: bool = False
    # The message with its DKIM signature, being made since the transport's ``prepare``
    # (a helper process signs it while the next message is rendered).
    signing: Callable[[], bytes] | None = None


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
    needs: str  # MIME or FIELDS: the form of the message it reads from an envelope

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        """One outcome per envelope, in order. Raise TransientError when the whole
        call failed before the provider could take any of it (connection refused,
        429, 5xx); raise PermanentError when no message can ever go (bad API key)."""
        ...

    def send(self, envelope: Envelope) -> str | None:
        """One message (a test send); the provider's id. Raises what send_batch reports."""
        ...

    def prepare(self, envelope: Envelope) -> Envelope:
        """Called as each message of a campaign is built, before it waits for a sender
        thread: starts what can run meanwhile (a DKIM signature), or returns it as is."""
        ...

    def was_sent(self, key: str) -> bool | None: ...

    def close(self) -> None: ...


class InFlight(Protocol):
    """A message handed over up to its end, whose answer is read later."""

    def finish(self) -> str | None:
        """The provider's id (or None) once it took the message; raises what ``send`` does."""
        ...


@runtime_checkable
class Pipelining(Protocol):
    """A transport that can hand a message over and read the answer later (SMTP), so
    the sender builds its next message meanwhile."""

    connections: int  # messages it can have in flight at once

    def start(self, envelope: Envelope) -> InFlight:
        """Send up to the end; raises what ``send`` raises for a failure before it."""
        ...


class NothingToPrepare:
    """``Transport.prepare`` for transports with nothing to start before the send
    (no signature made ahead): each envelope goes on as it is."""

    def prepare(self, envelope: Envelope) -> Envelope:
        return envelope


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
