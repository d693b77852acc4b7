"""The delivery ledger."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter.status import DeliveryStatus
from newsletter.store.base import (
    StoreBase,
    _iso,
    _recipient_filter,
)


class DeliveriesQueries(StoreBase):
    # -- the delivery ledger -----------------------------------------------

    if TYPE_CHECKING:
        # AutomationQueries's, which Store joins to this class.
        def _plan_received(self, campaign_id: int, now: datetime) -> None: ...

        # EventsQueries's.
        def delivery_summaries(
            self, campaign_id: int | None = None
        ) -> dict[int, dict[str, int]]: ...

    def start_campaign(self, campaign_id: int, list_id: int | None, now: datetime) -> bool:
        """Move a draft or scheduled campaign to sending and plan its deliveries, atomically.

        One pending row per recipient is written in the same transaction as
        the status change, so a crash can never leave a sending campaign
        without its recipient list. Recipients are confirmed, not suppressed,
        on the campaign's list (and not left it) and in its segment, if it has
        those; an automatic campaign gives each only articles new to them.
        False if the campaign was not in a state that can start.
        """
        with self.transaction():
            cursor = self.conn.execute(
                # A "missed" mark or an old note says nothing about this send.
                "UPDATE campaigns SET status = 'sending', started_at = ?, missed_at = NULL, "
                "note = NULL WHERE id = ? AND status IN ('draft', 'scheduled')",
                [_iso(now), campaign_id],
            )
            if cursor.rowcount != 1:
                return False
            c = self._row(
                "SELECT segment, kind, subscriber_id FROM campaigns WHERE id = ?", [campaign_id]
            )
            assert c is not None  # the UPDATE above just found it
            segment = c["segment"]
            where, params = _recipient_filter(list_id, json.loads(segment) if segment else [], now)
            if c["subscriber_id"] is not None:  # a new subscriber's own email
                where += " AND s.id = ?"
                params.append(c["subscriber_id"])
            self.conn.execute(
                "INSERT OR IGNORE INTO deliveries (campaign_id, subscriber_id, status, queued_at) "
                f"SELECT ?, s.id, 'pending', ? FROM subscribers s WHERE {where} ORDER BY s.id",
                [campaign_id, _iso(now), *params],
            )
            if c["kind"] != "manual":
                self._plan_received(campaign_id, now)  # see store/automations.py
        return True

    def count_recipients(
        self, list_id: int | None, segment: list[dict[str, Any]], now: datetime | None = None
    ) -> int:
        """How many subscribers a campaign with this list and segment would go to at ``now``.

        ``now`` is needed by an engagement rule (``engaged:90``), which counts days back.
        """
        where, params = _recipient_filter(list_id, segment, now)
        return self._value(f"SELECT COUNT(*) FROM subscribers s WHERE {where}", params)

    def in_flight(self, campaign_id: int) -> list[dict[str, Any]]:
        """Rows left 'sending' by a sender that stopped mid-call."""
        return self._rows(
            "SELECT * FROM deliveries WHERE campaign_id = ? AND status = 'sending'", [campaign_id]
        )

    def next_pending(
        self,
        campaign_id: int,
        after_id: int,
        limit: int,
        now: datetime | None = None,
        shard: Any = None,
    ) -> list[dict[str, Any]]:
        """Stream the rows due for a try in id order, a batch at a time (flat memory).

        Pending rows are always due; deferred ones once their retry time has come.
        With a shard (index, count), only the rows whose id % count == index.
        """
        due = _iso(now) if now is not None else "9999"
        where, params = "", [campaign_id, after_id, due]
        if shard is not None:
            where = " AND d.id % ? = ?"
            params += [shard.count, shard.index]
        rows = self._rows(
            "SELECT d.id, d.subscriber_id, d.attempts, s.email, s.first_name, s.last_name, "
            "s.status AS subscriber_status, s.tags, s.attributes FROM deliveries d "
            "LEFT JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.campaign_id = ? AND d.id > ? AND (d.status = 'pending' OR "
            f"(d.status = 'deferred' AND COALESCE(d.next_attempt_at, '') <= ?)){where} "
            "ORDER BY d.id LIMIT ?",
            [*params, limit],
        )
        for row in rows:
            if row["email"] is not None:
                row["tags"] = json.loads(row["tags"])
                row["attributes"] = json.loads(row["attributes"])
        return rows

    def due_count(self, campaign_id: int, now: datetime) -> int:
        """Rows that would be tried now: pending, and deferred ones whose time has come."""
        return self._value(
            "SELECT COUNT(*) FROM deliveries WHERE campaign_id = ? AND (status = 'pending' OR "
            "(status = 'deferred' AND COALESCE(next_attempt_at, '') <= ?))",
            [campaign_id, _iso(now)],
        )

    def claim_deliveries(
        self,
        claims: list[tuple[int, str]],
        now: datetime,
        outcomes: list[dict[str, Any]] | None = None,
    ) -> tuple[set[int], set[int]]:
        """Mark rows 'sending' (with their Message-IDs) in one transaction, before the call.

        The subscriber must still be confirmed at this instant: a row whose
        subscriber unsubscribed (or was erased) since the campaign started is
        marked 'skipped' instead, in the same transaction. Returns the ids
        claimed and the ids skipped; a row another sender took is in neither.
        """
        claimed, skipped = set(), set()
        stamp = _iso(now)
        with self.transaction():
            if outcomes:
                # A sender's previous batch, recorded in the same commit as its next
                # claim: one transaction a message instead of two.
                self._record(outcomes, stamp)
            for delivery_id, message_id in claims:
                # The campaign's status is read in the same transaction, so a pause or
                # cancel committed before this claim stops it, in any process.
                cursor = self.conn.execute(
                    "UPDATE deliveries SET status = 'sending', message_id = ?, sending_at = ?, "
                    "attempts = attempts + 1 WHERE id = ? AND status IN ('pending', 'deferred') "
                    "AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = "
                    "deliveries.subscriber_id AND s.status = 'confirmed') "
                    "AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = "
                    "deliveries.campaign_id AND c.status = 'sending')",
                    [message_id, stamp, delivery_id],
                )
                if cursor.rowcount == 1:
                    claimed.add(delivery_id)
                    continue
                cursor = self.conn.execute(
                    "UPDATE deliveries SET status = 'skipped', error = 'no longer subscribed', "
                    "done_at = ? WHERE id = ? AND status IN ('pending', 'deferred') "
                    "AND NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.id = "
                    "deliveries.subscriber_id AND s.status = 'confirmed')",
                    [stamp, delivery_id],
                )
                if cursor.rowcount == 1:
                    skipped.add(delivery_id)
        return claimed, skipped

    def record_outcomes(self, outcomes: list[dict[str, Any]], now: datetime) -> None:
        """Record what the provider said about a batch, in one transaction.

        Each outcome: id, status (sent, failed, deferred), error, provider_id,
        next_attempt_at, and bounce (the subscriber id to suppress, if any).
        """
        with self.transaction():
            self._record(outcomes, _iso(now))

    def _record(self, outcomes: list[dict[str, Any]], stamp: str) -> None:
        """The writes of record_outcomes, inside the caller's transaction."""
        for o in outcomes:
            provider_id = o.get("provider_id")
            # Without a provider id (SMTP) the column is left out of the SET list, so
            # SQLite leaves its index alone: pages the commit need not write.
            self.conn.execute(
                "UPDATE deliveries SET status = ?, error = ?, done_at = ?, "
                + ("provider_id = ?, " if provider_id is not None else "")
                + "next_attempt_at = ? WHERE id = ? AND status = 'sending'",
                [
                    o["status"],
                    o.get("error"),
                    o.get("done_at") or stamp,
                    *([provider_id] if provider_id is not None else []),
                    o.get("next_attempt_at"),
                    o["id"],
                ],
            )
            if o.get("bounce"):
                self.conn.execute(
                    "UPDATE subscribers SET status = 'bounced', updated_at = ? "
                    "WHERE id = ? AND status = 'confirmed'",
                    [stamp, o["bounce"]],
                )
                self.conn.execute(
                    "INSERT INTO events (at, kind, campaign_id, subscriber_id, detail) "
                    "SELECT ?, 'bounce', campaign_id, ?, ? FROM deliveries WHERE id = ?",
                    [stamp, o["bounce"], o.get("error"), o["id"]],
                )

    def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        now: datetime,
        error: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Settle one row that is not settled yet (a crash leftover, a skip, a failure).

        A row already sent, failed or in doubt is never overwritten.
        """
        self.conn.execute(
            "UPDATE deliveries SET status = ?, error = ?, done_at = ?, "
            "message_id = COALESCE(?, message_id) WHERE id = ? "
            "AND status IN ('pending', 'deferred', 'sending')",
            [status, error, _iso(now), message_id, delivery_id],
        )

    def retry_in_doubt(self, campaign_id: int, while_in: Iterable[str]) -> int:
        """Put in-doubt rows back to pending on purpose, if the campaign's status is one
        of ``while_in``; return how many."""
        return self._requeue(
            "attempts = 0, next_attempt_at = NULL", "in_doubt", campaign_id, while_in
        )

    def retry_failed(self, campaign_id: int, while_in: Iterable[str]) -> int:
        """Put failed rows back to pending, if the campaign's status is one of
        ``while_in``; return how many."""
        return self._requeue(
            "error = NULL, attempts = 0, next_attempt_at = NULL", "failed", campaign_id, while_in
        )

    def _requeue(self, reset: str, status: str, campaign_id: int, while_in: Iterable[str]) -> int:
        states = list(while_in)
        marks = ", ".join("?" for _ in states)
        with self.transaction():
            cursor = self.conn.execute(
                f"UPDATE deliveries SET status = 'pending', {reset} "
                "WHERE campaign_id = ? AND status = ? "
                f"AND EXISTS (SELECT 1 FROM campaigns WHERE id = ? AND status IN ({marks}))",
                [campaign_id, status, campaign_id, *states],
            )
        return cursor.rowcount

    def delivery_counts(self, campaign_id: int) -> dict[str, int]:
        """How many of a campaign's deliveries are in each status, every status named."""
        counts: dict[str, int] = dict.fromkeys(DeliveryStatus, 0)
        counts.update(self.delivery_summaries(campaign_id).get(campaign_id, {}))
        return counts

    def delivery(self, campaign_id: int, subscriber_id: int) -> dict[str, Any] | None:
        return self._row(
            "SELECT * FROM deliveries WHERE campaign_id = ? AND subscriber_id = ?",
            [campaign_id, subscriber_id],
        )

    def failed_deliveries(self, campaign_id: int, limit: int = 50) -> list[dict[str, Any]]:
        """The failed and in-doubt rows of a campaign with their address and reason, for
        staff to see why someone did not get it (an erased person shows no address)."""
        return self._rows(
            "SELECT d.id, d.status, d.error, d.done_at, s.email FROM deliveries d "
            "LEFT JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.campaign_id = ? AND d.status IN ('failed', 'in_doubt') "
            "ORDER BY d.id LIMIT ?",
            [campaign_id, limit],
        )
