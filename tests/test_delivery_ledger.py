"""The ledger's rules as data in, data out: no threads, no SMTP, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.delivery import ledger
from newsletter.delivery.ledger import Item, Policy, Streak, outcome_rows
from newsletter.status import DeliveryStatus
from newsletter.transports import (
    IN_DOUBT,
    PERMANENT,
    REJECTED,
    SENT,
    TRANSIENT,
    UNUSABLE,
    Envelope,
    Outcome,
)

NOW = dt.datetime(2026, 11, 27, 9, 0, 30, 123456, tzinfo=dt.UTC)
POLICY = Policy(max_attempts=3, backoff_seconds=60, max_backoff_seconds=3600, pause_after=3)


def middle() -> float:
    return 0.5  # no jitter: the delay is the base


def item(delivery_id: int = 1, attempts: int = 0, subscriber_id: int = 7) -> Item:
    key = f"k{delivery_id}"
    envelope = Envelope("a@example.com", "b@example.net", b"", key)
    return Item(delivery_id, subscriber_id, attempts, f"<{key}@example.com>", envelope)


def one(outcome: Outcome, attempts: int = 0, policy: Policy = POLICY) -> tuple[dict, ledger.Batch]:
    batch = outcome_rows([item(attempts=attempts)], [outcome], policy, NOW, rand=middle)
    return batch.rows[0], batch


def at(seconds: float) -> str:
    return (NOW + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


def test_a_sent_message_is_sent_with_the_providers_id_and_when_it_went() -> None:
    row, batch = one(Outcome("k1", SENT, provider_id="p-1"))
    assert row == {
        "id": 1,
        "provider_id": "p-1",
        "done_at": "2026-11-27T09:00:30+00:00",
        "status": DeliveryStatus.SENT,
    }
    assert (batch.sent, batch.failed, batch.deferred) == (1, 0, 0)


def test_a_transient_failure_below_the_limit_is_deferred_until_the_next_try() -> None:
    row, batch = one(Outcome("k1", TRANSIENT, error="451 try later"))
    assert row["status"] == DeliveryStatus.DEFERRED
    assert row["error"] == "451 try later"
    assert row["next_attempt_at"] == at(60)  # first retry after the base delay
    assert (batch.sent, batch.failed, batch.deferred) == (0, 0, 1)
    # The second failure of the same row waits twice as long.
    row, _ = one(Outcome("k1", TRANSIENT, error="451 try later"), attempts=1)
    assert row["status"] == DeliveryStatus.DEFERRED
    assert row["next_attempt_at"] == at(120)


def test_a_transient_failure_waits_at_least_as_long_as_the_provider_asked() -> None:
    row, _ = one(Outcome("k1", TRANSIENT, error="429", retry_after=900))
    assert row["next_attempt_at"] == at(900)
    row, _ = one(Outcome("k1", TRANSIENT, error="429", retry_after=5))
    assert row["next_attempt_at"] == at(60)  # a shorter wish does not hurry the queue


def test_a_transient_failure_at_the_attempt_limit_fails_the_row() -> None:
    row, batch = one(Outcome("k1", TRANSIENT, error="451 try later"), attempts=2)
    assert row["status"] == DeliveryStatus.FAILED
    assert row["error"] == "gave up after 3 tries: 451 try later"
    assert "next_attempt_at" not in row
    assert (batch.sent, batch.failed, batch.deferred) == (0, 1, 0)


def test_in_doubt_is_never_retried_blindly_and_counts_as_failed() -> None:
    row, batch = one(Outcome("k1", IN_DOUBT, error="no answer after DATA"))
    assert row["status"] == DeliveryStatus.IN_DOUBT
    assert row["error"] == "no answer after DATA"
    assert "next_attempt_at" not in row and "bounce" not in row
    assert (batch.sent, batch.failed, batch.deferred) == (0, 1, 0)


def test_a_permanent_failure_fails_the_row_and_bounces_the_address() -> None:
    row, batch = one(Outcome("k1", PERMANENT, error="550 no such user"))
    assert row["status"] == DeliveryStatus.FAILED
    assert row["bounce"] == 7  # the subscriber, whose address is then suppressed
    assert row["error"] == "550 no such user"
    assert batch.failed == 1


@pytest.mark.parametrize("status", [REJECTED, UNUSABLE])
def test_a_refused_message_or_unusable_address_fails_only_the_message(status: str) -> None:
    row, batch = one(Outcome("k1", status, error="554 content refused"))
    assert row["status"] == DeliveryStatus.FAILED
    assert row["error"] == "554 content refused"
    assert "bounce" not in row and "next_attempt_at" not in row
    assert batch.failed == 1


def test_a_batch_keeps_its_order_and_counts_each_row() -> None:
    items = [item(1), item(2, attempts=2), item(3), item(4)]
    outcomes = [
        Outcome("k1", SENT),
        Outcome("k2", TRANSIENT, error="busy"),  # at the limit: failed
        Outcome("k3", TRANSIENT, error="busy"),  # deferred
        Outcome("k4", IN_DOUBT, error="?"),
    ]
    batch = outcome_rows(items, outcomes, POLICY, NOW, rand=middle)
    assert [r["id"] for r in batch.rows] == [1, 2, 3, 4]
    assert [r["status"] for r in batch.rows] == ["sent", "failed", "deferred", "in_doubt"]
    assert (batch.sent, batch.failed, batch.deferred) == (1, 2, 1)
    assert batch.outcomes == outcomes


def test_a_batch_with_an_answer_missing_is_an_error() -> None:
    with pytest.raises(ValueError):
        outcome_rows([item(1), item(2)], [Outcome("k1", SENT)], POLICY, NOW, rand=middle)


def test_retry_delay_doubles_up_to_the_cap_with_jitter_around_it() -> None:
    policy = Policy(backoff_seconds=300, max_backoff_seconds=4000)
    assert [ledger.retry_delay(n, policy, None, rand=middle) for n in (1, 2, 3, 4, 5)] == [
        300,
        600,
        1200,
        2400,
        4000,
    ]
    assert ledger.retry_delay(0, policy, None, rand=middle) == 300  # a first try waits the base
    # Jitter: from half to one and a half times the base, never outside.
    assert ledger.retry_delay(2, policy, None, rand=lambda: 0.0) == 300
    assert ledger.retry_delay(2, policy, None, rand=lambda: 0.999) == pytest.approx(899.4)
    assert ledger.retry_delay(2, policy, 10_000, rand=lambda: 0.999) == 10_000


def test_failures_in_a_row_pause_and_one_success_resets_them() -> None:
    busy = Outcome("k", TRANSIENT, error="421 busy")
    streak = Streak().after([busy, busy])
    assert streak == Streak(2, "421 busy")
    assert streak.pause_reason(POLICY) is None
    refused = Outcome("k", REJECTED, error="554 refused")
    paused = streak.after([refused])
    assert paused.pause_reason(POLICY) == "paused after 3 failures in a row; last: 554 refused"
    assert streak.after([Outcome("k", SENT), busy]) == Streak(1, "421 busy")


def test_an_unanswered_send_counts_towards_a_pause() -> None:
    assert Streak().after([Outcome("k", IN_DOUBT, error="no answer")]) == Streak(1, "no answer")


@pytest.mark.parametrize("status", [PERMANENT, UNUSABLE])
def test_a_failure_about_one_address_neither_counts_nor_resets(status: str) -> None:
    streak = Streak(2, "421 busy")
    assert streak.after([Outcome("k", status, error="550 no such user")]) == streak


def test_rows_left_in_flight_are_settled_by_what_the_transport_knows() -> None:
    assert ledger.settled_row(True) == (DeliveryStatus.SENT, None)
    assert ledger.settled_row(False) == (DeliveryStatus.PENDING, None)  # never taken: send again
    status, error = ledger.settled_row(None)
    assert status == DeliveryStatus.IN_DOUBT
    assert error and "cannot tell" in error


def test_a_batch_refused_as_a_whole_is_put_back_or_left_in_doubt() -> None:
    items = [item(1), item(2)]
    assert ledger.unsent_rows(items, DeliveryStatus.PENDING, "535 login refused") == [
        {"id": 1, "status": "pending", "error": "535 login refused"},
        {"id": 2, "status": "pending", "error": "535 login refused"},
    ]
    rows = ledger.unsent_rows(items, DeliveryStatus.IN_DOUBT, "timed out")
    assert [r["status"] for r in rows] == ["in_doubt", "in_doubt"]
