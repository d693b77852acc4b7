"""Tracking events: recording, the lookups classification needs, reports' reads, the purge."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter.rows import TrackingEvent
from newsletter.store.base import StoreBase, _iso

EVENT_COLUMNS = (
    "at",
    "kind",
    "campaign_id",
    "subscriber_id",
    "link_id",
    "article_id",
    "method",
    "user_agent",
    "ip",
    "classification",
    "reason",
    "detail",
)
# The raw reader events a retention purge deletes; unsubscribes, bounces,
# complaints and consent steps are records that must stay.
TRACKING_KINDS = ("open", "click", "view", "bad_token")


class EventsQueries(StoreBase):
    if TYPE_CHECKING:
        # DeliveriesQueries's, which Store joins to this class.
        def delivery_counts(self, campaign_id: int) -> dict[str, int]: ...

    # -- events ---------------------------------------------------------------

    def insert_events(
        self,
        events: Sequence[TrackingEvent],
        reclassified: Iterable[tuple[str, str, int]] = (),
    ) -> int | None:
        """Store a batch of events and (class, reason, id) changes in one transaction.

        Returns the id of the first stored event; the batch's ids follow it
        without gaps, because the write lock is held for the whole insert and
        the events table has no AUTOINCREMENT holes to skip.
        """
        changes = list(reclassified)
        if not events and not changes:
            return None
        with self.transaction():
            first = None
            if events:
                first = self._value("SELECT COALESCE(MAX(id), 0) + 1 FROM events")
                self.conn.executemany(
                    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})",
                    [[e.get(c) for c in EVENT_COLUMNS] for e in events],
                )
                # Old links of an erased person still work, and are counted, but
                # whatever they bring is stored as erasure left their other events:
                # no subscriber, no address, no user agent. Checked in the same
                # transaction, so an erasure cannot slip between check and insert.
                self.conn.execute(
                    "UPDATE events SET subscriber_id = NULL, ip = NULL, user_agent = NULL "
                    "WHERE id >= ? AND subscriber_id IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM subscribers s WHERE s.id = events.subscriber_id)",
                    [first],
                )
            if changes:
                self.conn.executemany(
                    "UPDATE events SET classification = ?, reason = ? WHERE id = ?", changes
                )
        return first

    def event_count(self) -> int:
        return self._value("SELECT COUNT(*) FROM events")

    def sent_at(self, campaign_id: int, subscriber_id: int) -> str | None:
        """When the message went out (the send started, if it is still in flight), or None."""
        return self._value(
            "SELECT CASE status WHEN 'sent' THEN done_at WHEN 'sending' THEN sending_at END "
            "FROM deliveries WHERE campaign_id = ? AND subscriber_id = ?",
            [campaign_id, subscriber_id],
        )

    def link_count(self, campaign_id: int) -> int:
        return self._value("SELECT COUNT(*) FROM links WHERE campaign_id = ?", [campaign_id])

    def reader_events(self, campaign_id: int) -> list[dict[str, Any]]:
        """A campaign's opens, clicks and views in the order they were recorded."""
        return self._rows(
            "SELECT id, at, kind, subscriber_id, link_id, article_id, method, user_agent, ip, "
            "classification, reason, detail FROM events "
            "WHERE campaign_id = ? AND kind IN ('open', 'click', 'view') ORDER BY id",
            [campaign_id],
        )

    def campaign_stats(self, campaign_id: int) -> dict[str, Any]:
        """Counts for one campaign; "unique" means distinct subscribers, everywhere.

        The building blocks of ``reports.campaign_report``, which adds the
        classified counts; events without a subscriber (anonymous mode, erased
        people) count in totals only.
        """
        stats: dict[str, Any] = {"campaign_id": campaign_id}
        stats.update(self.delivery_counts(campaign_id))
        stats["recipients"] = self._value(
            "SELECT COUNT(*) FROM deliveries WHERE campaign_id = ?", [campaign_id]
        )
        for kind in ("open", "click", "view", "unsubscribe", "bounce", "complaint"):
            row = self._row(
                "SELECT COUNT(*) AS total, COUNT(DISTINCT subscriber_id) AS uniq "
                "FROM events WHERE campaign_id = ? AND kind = ?",
                [campaign_id, kind],
            )
            assert row is not None  # an aggregate without GROUP BY gives one row
            stats[f"{kind}s_total"] = row["total"]
            stats[f"{kind}s_unique"] = row["uniq"]
        return stats

    def campaign_links(self, campaign_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT id, url, article_id FROM links WHERE campaign_id = ? ORDER BY id",
            [campaign_id],
        )

    def first_sent_at(self, campaign_id: int) -> str | None:
        return self._value(
            "SELECT MIN(done_at) FROM deliveries WHERE campaign_id = ? AND status = 'sent'",
            [campaign_id],
        )

    def purge_events(self, before: datetime) -> int:
        """Delete raw opens, clicks, views and bad-token hits recorded before ``before``."""
        marks = ", ".join("?" for _ in TRACKING_KINDS)
        with self.transaction():
            cursor = self.conn.execute(
                f"DELETE FROM events WHERE at < ? AND kind IN ({marks})",
                [_iso(before), *TRACKING_KINDS],
            )
        return cursor.rowcount
