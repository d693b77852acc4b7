"""The delivery ledger's rules: how hard to push, when to retry, when to give up.

Data in, data out: no threads, no store, no transport. The send loop asks
this module what a transport's answer means for each row and writes what it
is told.

Invariants:
- A transient failure is retried later (``deferred``, with its next try
  time) until the row has had ``max_attempts`` tries; then it is ``failed``.
- A row that may have gone (``in_doubt``) is never retried blindly.
- A permanent failure fails the row and bounces the address; a message the
  provider refused, or an address this transport cannot carry, fails that
  message alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.config import Settings
from newsletter.transports import Envelope


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


@dataclass
class Progress:
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

    def add(self, other: Progress) -> None:
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


def backoff(
    attempts: int,
    policy: Policy,
    retry_after: float | None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the next try: exponential with jitter, or what the provider said."""
    base = min(policy.max_backoff_seconds, policy.backoff_seconds * 2 ** max(attempts - 1, 0))
    delay = base * (0.5 + rand())  # jitter spreads retries of many rows apart
    return max(delay, retry_after or 0.0)
