"""The delivery ledger's rules: how hard to push, when to retry, when to give up.

Data in, data out: no threads, no store, no transport, no clock (``now`` and
the jitter are passed in). The send loop asks this module what a
transport's answer means for each row, writes what it is told, and counts
failures in a row with ``Streak``. The settings a send needs (``Policy``,
``EnvelopeSender``) are made from the configuration by the caller (``policy_for``,
``envelope_sender_for``) and passed down: nothing below the caller reads the settings.

Invariants:
- A transient failure is retried later (``deferred``, with its next try
  time) until the row has had ``max_attempts`` tries; then it is ``failed``.
- A row that may have gone (``in_doubt``) is never retried blindly; it
  counts as failed until staff decide.
- A permanent failure fails the row and bounces the address; a message the
  provider refused, or an address this transport cannot carry, fails that
  message alone.
- Temporary failures, refused messages and unanswered sends in a row pause
  the campaign after ``pause_after``; a bounce or an unusable address is
  about one address, so it neither counts nor resets the streak.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from newsletter.config import Settings
from newsletter.status import DeliveryStatus
from newsletter.transports import IN_DOUBT as IN_DOUBT_OUTCOME
from newsletter.transports import PERMANENT, REJECTED, TRANSIENT, UNUSABLE, Envelope, Outcome
from newsletter.transports import SENT as SENT_OUTCOME


@dataclass(frozen=True)
class Policy:
    """How hard to push and when to give up; from [delivery] settings."""

    concurrency: int = 1
    rate_per_second: float = 0.0  # 0: no limit
    # Like an MTA's queue: first retry after about 5 minutes, doubling to at most
    # about an hour between tries, for roughly a day before giving up.
    max_attempts: int = 25  # tries per row before a transient failure counts as failed
    backoff_seconds: float = 300.0
    max_backoff_seconds: float = 4000.0
    pause_after: int = 10  # consecutive transient failures that pause the campaign
    processes: int = 1  # sending processes for a large campaign; 0: one per CPU core


def policy_for(settings: Settings) -> Policy:
    d = settings.delivery
    return Policy(
        concurrency=d.concurrency,
        rate_per_second=d.rate_per_second,
        max_attempts=d.max_attempts,
        backoff_seconds=d.retry_backoff,
        max_backoff_seconds=d.max_retry_backoff,
        pause_after=d.pause_after_failures,
        processes=d.processes,
    )


@dataclass(frozen=True)
class EnvelopeSender:
    """Who a send goes out as, from [sender] settings: the envelope sender (SMTP
    MAIL FROM, the API's sender), where bounces come back to. The From and
    Reply-To headers are part of the message, built with the campaign's mail."""

    envelope_from: str


def envelope_sender_for(settings: Settings) -> EnvelopeSender:
    return EnvelopeSender(envelope_from=settings.sender.from_address)


@dataclass
class SendProgress:
    """What one send has done so far, as reported while it runs and when it ends."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    settled: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    stopped: bool = False
    paused_reason: str | None = None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.deferred + self.skipped

    def add(self, other: SendProgress) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.deferred += other.deferred
        self.skipped += other.skipped
        self.stopped = self.stopped or other.stopped
        if other.paused_reason and not self.paused_reason:
            self.paused_reason = other.paused_reason


@dataclass
class Item:
    """One rendered message on its way from the reader to a worker."""

    delivery_id: int
    subscriber_id: int
    attempts: int
    message_id: str
    envelope: Envelope


def retry_delay(
    attempts: int,
    policy: Policy,
    retry_after: float | None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the next try: exponential with jitter, or what the provider said."""
    base = min(policy.max_backoff_seconds, policy.backoff_seconds * 2.0 ** max(attempts - 1, 0))
    delay = base * (0.5 + rand())  # jitter spreads retries of many rows apart
    return max(delay, retry_after or 0.0)


@dataclass(frozen=True)
class Batch:
    """What the transport's answer for a batch means: the ledger rows to write, and
    how they count (in doubt counts as failed)."""

    rows: list[dict[str, Any]]
    outcomes: list[Outcome]
    sent: int = 0
    failed: int = 0
    deferred: int = 0


def outcome_rows(
    items: Sequence[Item],
    outcomes: Sequence[Outcome],
    policy: Policy,
    now: dt.datetime,
    rand: Callable[[], float] = random.random,
) -> Batch:
    """The ledger rows for what the transport said about a batch, and their counts."""
    stamp = now.isoformat(timespec="seconds")  # when it went, not when it is written
    rows = []
    counts = {DeliveryStatus.SENT: 0, DeliveryStatus.DEFERRED: 0, DeliveryStatus.FAILED: 0}
    for item, outcome in zip(items, outcomes, strict=True):
        row: dict[str, Any] = {
            "id": item.delivery_id,
            "provider_id": outcome.provider_id,
            "done_at": stamp,
        }
        if outcome.status == PERMANENT:
            row.update(status=DeliveryStatus.FAILED, error=outcome.error, bounce=item.subscriber_id)
        elif outcome.status in (REJECTED, UNUSABLE):
            row.update(status=DeliveryStatus.FAILED, error=outcome.error)
        elif outcome.status == IN_DOUBT_OUTCOME:
            row.update(status=DeliveryStatus.IN_DOUBT, error=outcome.error)
        elif outcome.status == TRANSIENT:
            attempts = item.attempts + 1
            if attempts >= policy.max_attempts:
                row.update(
                    status=DeliveryStatus.FAILED,
                    error=f"gave up after {attempts} tries: {outcome.error}",
                )
            else:
                wait = retry_delay(attempts, policy, outcome.retry_after, rand)
                row.update(
                    status=DeliveryStatus.DEFERRED,
                    error=outcome.error,
                    next_attempt_at=(now + dt.timedelta(seconds=wait)).isoformat(
                        timespec="seconds"
                    ),
                )
        else:
            row.update(status=DeliveryStatus.SENT)
        rows.append(row)
        # In doubt counts as failed: it was not seen to go.
        counts[row["status"] if row["status"] in counts else DeliveryStatus.FAILED] += 1
    return Batch(
        rows,
        list(outcomes),
        sent=counts[DeliveryStatus.SENT],
        failed=counts[DeliveryStatus.FAILED],
        deferred=counts[DeliveryStatus.DEFERRED],
    )


def unsent_rows(items: Sequence[Item], status: DeliveryStatus, error: str) -> list[dict[str, Any]]:
    """Rows for a batch the transport refused as a whole: ``pending`` when nothing can
    have gone (sent again after the fix), ``in_doubt`` when it may have."""
    return [{"id": i.delivery_id, "status": status, "error": error} for i in items]


@dataclass(frozen=True)
class Streak:
    """Failures in a row that point beyond one address, and the last one's error."""

    count: int = 0
    last_error: str = ""

    def after(self, outcomes: Sequence[Outcome]) -> Streak:
        """The streak once these outcomes are counted, in order."""
        count, last_error = self.count, self.last_error
        for outcome in outcomes:
            # Temporary failures, refused messages and unanswered sends in a row
            # mean something is wrong beyond one address: stop and say why.
            # A bounce, or an address this transport cannot carry, is about one
            # address, so it neither counts nor resets.
            if outcome.status in (TRANSIENT, REJECTED, IN_DOUBT_OUTCOME):
                count += 1
                last_error = outcome.error
            elif outcome.status == SENT_OUTCOME:
                count = 0
        return Streak(count, last_error)

    def pause_reason(self, policy: Policy) -> str | None:
        """Why the campaign pauses now, or None while it goes on."""
        if self.count >= policy.pause_after:
            return f"paused after {self.count} failures in a row; last: {self.last_error}"
        return None


def settled_row(verdict: bool | None) -> tuple[DeliveryStatus, str | None]:
    """The status (and error) of a row left ``sending`` by a stopped sender, from what
    the transport says: sent, never taken (safe to send again), or cannot tell."""
    if verdict is True:
        return DeliveryStatus.SENT, None
    if verdict is False:
        # The transport knows it never took the message: safe to send again.
        return DeliveryStatus.PENDING, None
    return DeliveryStatus.IN_DOUBT, (
        "in flight when the sender stopped; the transport cannot tell whether it was accepted"
    )
