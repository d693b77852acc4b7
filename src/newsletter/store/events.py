"""Tracking events: recording, the lookups classification needs, reports' reads, the purge."""

from __future__ import annotations

import sqlite3
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


# An event stored before events were classified counts as unknown.
_UNKNOWN = "COALESCE(classification, '') IN ('', 'unknown')"


def _campaign_filter(campaign_id: int | None) -> tuple[str, list[int]]:
    """The WHERE of one campaign's rows, or of every campaign's."""
    if campaign_id is None:
        return "campaign_id IS NOT NULL", []
    return "campaign_id = ?", [campaign_id]


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

    def campaign_stats(self, campaign_id: int) -> dict[str, Any]:
        """Counts for one campaign; "unique" means distinct subscribers, everywhere.

        Each kind of event counted on its own, for a quick look at one number
        (reports count them all at once with ``event_summaries``); events without
        a subscriber (anonymous mode, erased people) count in totals only.
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

    # -- reports, aggregated here so no page holds a campaign's events in memory ------

    def report_campaigns(self) -> list[dict[str, Any]]:
        """Every campaign's own row, oldest first, without counting its deliveries."""
        rows = self._rows("SELECT * FROM campaigns ORDER BY id")
        for row in rows:
            row["tracking"] = bool(row["tracking"])
        return rows

    def event_marks(self, campaign_id: int | None = None) -> dict[int, tuple[int, int, int]]:
        """Per campaign: its newest event's id, its number of events and of those with a
        subscriber. A new event, a purge and an erasure each change it, so a report kept
        with it stays right while it stays the same (a reclassification comes with the
        click that caused it)."""
        where, args = _campaign_filter(campaign_id)
        return {
            row["campaign_id"]: (row["last"], row["n"], row["people"])
            for row in self._rows(
                "SELECT campaign_id, MAX(id) AS last, COUNT(*) AS n, "
                f"COUNT(subscriber_id) AS people FROM events WHERE {where} GROUP BY campaign_id",
                args,
            )
        }

    def delivery_summaries(self, campaign_id: int | None = None) -> dict[int, dict[str, int]]:
        """Per campaign, how many of its deliveries are in each status."""
        where, args = _campaign_filter(campaign_id)
        found: dict[int, dict[str, int]] = {}
        for row in self._rows(
            f"SELECT campaign_id, status, COUNT(*) AS n FROM deliveries WHERE {where} "
            "GROUP BY campaign_id, status",
            args,
        ):
            found.setdefault(row["campaign_id"], {})[row["status"]] = row["n"]
        return found

    def event_summaries(self, campaign_id: int | None = None) -> dict[int, dict[str, int]]:
        """Per campaign, every count of its events a report shows, in one pass.

        Unique means distinct subscribers; human-unique opens are the subscribers
        with an open and a human open or a human click. Events without a subscriber
        count in totals only. A missing class counts as unknown.
        """
        where, args = _campaign_filter(campaign_id)
        rows = self._rows(
            f"""
            WITH per AS (
              SELECT campaign_id, subscriber_id,
                SUM(kind = 'open') AS opens,
                SUM(kind = 'open' AND classification = 'human') AS human_opens,
                SUM(kind = 'open' AND classification = 'machine') AS machine_opens,
                SUM(kind = 'open' AND {_UNKNOWN}) AS unknown_opens,
                SUM(kind = 'click') AS clicks,
                SUM(kind = 'click' AND classification = 'human') AS human_clicks,
                SUM(kind = 'click' AND classification = 'machine') AS machine_clicks,
                SUM(kind = 'view') AS views,
                SUM(kind = 'unsubscribe') AS unsubscribes,
                SUM(kind = 'bounce') AS bounces,
                SUM(kind = 'complaint') AS complaints
              FROM events
              WHERE {where} AND kind IN
                ('open', 'click', 'view', 'unsubscribe', 'bounce', 'complaint')
              GROUP BY campaign_id, subscriber_id
            )
            SELECT campaign_id,
              SUM(opens) AS opens_total,
              SUM(subscriber_id IS NOT NULL AND opens > 0) AS opens_unique,
              SUM(subscriber_id IS NOT NULL AND opens > 0
                  AND (human_opens > 0 OR human_clicks > 0)) AS opens_human_unique,
              SUM(machine_opens) AS opens_machine,
              SUM(unknown_opens) AS opens_unknown,
              SUM(clicks) AS clicks_total,
              SUM(subscriber_id IS NOT NULL AND clicks > 0) AS clicks_unique,
              SUM(subscriber_id IS NOT NULL AND human_clicks > 0) AS clicks_human_unique,
              SUM(machine_clicks) AS clicks_machine,
              SUM(views) AS views_total,
              SUM(CASE WHEN subscriber_id IS NULL THEN opens + clicks + views ELSE 0 END)
                AS anonymous_events,
              SUM(subscriber_id IS NOT NULL AND unsubscribes > 0) AS unsubscribes_unique,
              SUM(subscriber_id IS NOT NULL AND bounces > 0) AS bounces_unique,
              SUM(subscriber_id IS NOT NULL AND complaints > 0) AS complaints_unique
            FROM per GROUP BY campaign_id
            """,
            args,
        )
        return {row.pop("campaign_id"): row for row in rows}

    def click_summaries(self, campaign_id: int, by: str) -> dict[int, dict[str, int]]:
        """A campaign's clicks per link (``by="link_id"``) or per article (``"article_id"``)."""
        column = {"link_id": "link_id", "article_id": "article_id"}[by]
        rows = self._rows(
            f"""
            WITH per AS (
              SELECT {column} AS target, subscriber_id, COUNT(*) AS clicks,
                SUM(classification = 'human') AS human,
                SUM(classification = 'machine') AS machine
              FROM events WHERE campaign_id = ? AND kind = 'click' AND {column} IS NOT NULL
              GROUP BY {column}, subscriber_id
            )
            SELECT target, SUM(clicks) AS clicks_total,
              SUM(subscriber_id IS NOT NULL) AS clicks_unique,
              SUM(subscriber_id IS NOT NULL AND human > 0) AS clicks_human_unique,
              SUM(machine) AS clicks_machine
            FROM per GROUP BY target
            """,
            [campaign_id],
        )
        return {row.pop("target"): row for row in rows}

    def machine_reasons(self, campaign_id: int) -> dict[str | None, int]:
        """Why a campaign's opens and clicks counted as machine: reason -> events, most first.

        Ties keep the order of first appearance, opens before clicks.
        """
        return {
            row["reason"]: row["n"]
            for row in self._rows(
                "SELECT reason, COUNT(*) AS n, MIN((kind = 'click') * 4611686018427387904 + id) "
                "AS first FROM events WHERE campaign_id = ? AND kind IN ('open', 'click') "
                "AND classification = 'machine' GROUP BY reason ORDER BY n DESC, first",
                [campaign_id],
            )
        }

    def hourly_counts(
        self, campaign_id: int, start: str, hours: int
    ) -> list[tuple[int, str, str, int]]:
        """(hour, kind, class, events) of a campaign's opens and clicks in ``hours`` hours
        from ``start``; an hour counts whole seconds from it, as the events are stored."""
        return [
            (row["hour"], row["kind"], row["cls"], row["n"])
            for row in self._rows(
                f"""
                SELECT seconds / 3600 AS hour, kind, cls, COUNT(*) AS n FROM (
                  SELECT CAST(strftime('%s', at) AS INTEGER)
                           - CAST(strftime('%s', ?) AS INTEGER) AS seconds,
                         kind, CASE WHEN {_UNKNOWN} THEN 'unknown' ELSE classification END AS cls
                  FROM events WHERE campaign_id = ? AND kind IN ('open', 'click'))
                WHERE seconds >= 0 AND seconds < ? GROUP BY hour, kind, cls
                """,
                [start, campaign_id, hours * 3600],
            )
        ]

    def campaign_people(self, campaign_id: int) -> list[dict[str, Any]]:
        """Everyone with an open or a click of a campaign, by address, with their counts.

        ``opened_human`` and ``clicked_human`` follow the report's human-unique rules:
        an open and a human open or click; a human click. Erased people are not here.
        """
        return self._rows(
            """
            WITH per AS (
              SELECT subscriber_id,
                SUM(kind = 'open') AS opens,
                SUM(kind = 'open' AND classification = 'human') AS human_opens,
                SUM(kind = 'open' AND classification = 'machine') AS machine_opens,
                SUM(kind = 'click') AS clicks,
                SUM(kind = 'click' AND classification = 'human') AS human_clicks,
                SUM(kind = 'click' AND classification = 'machine') AS machine_clicks,
                MIN(CASE WHEN kind = 'open' THEN at END) AS first_opened_at,
                MIN(CASE WHEN kind = 'click' THEN at END) AS first_clicked_at
              FROM events
              WHERE campaign_id = ? AND kind IN ('open', 'click') AND subscriber_id IS NOT NULL
              GROUP BY subscriber_id
            )
            SELECT per.subscriber_id, s.email, s.first_name, s.last_name,
              opens > 0 AS opened,
              opens > 0 AND (human_opens > 0 OR human_clicks > 0) AS opened_human,
              clicks > 0 AS clicked,
              human_clicks > 0 AS clicked_human,
              opens, clicks, machine_opens, machine_clicks, first_opened_at, first_clicked_at
            FROM per JOIN subscribers s ON s.id = per.subscriber_id
            ORDER BY s.email COLLATE NOCASE, s.id
            """,
            [campaign_id],
        )

    def kept_report(self, campaign_id: int, part: str, mark: str) -> str | None:
        """The numbers kept for a campaign under ``mark``, as stored; None if none are."""
        return self._value(
            "SELECT numbers FROM kept_reports WHERE campaign_id = ? AND part = ? AND mark = ?",
            [campaign_id, part, mark],
        )

    def keep_report(self, campaign_id: int, part: str, mark: str, numbers: str) -> bool:
        """Keep a finished campaign's numbers; False, and nothing kept, when another writer
        holds the database or it is read-only: keeping them is never worth a wait."""
        waits = int(self._value("PRAGMA busy_timeout"))
        self.conn.execute("PRAGMA busy_timeout = 0")
        try:
            self.conn.execute(
                "INSERT OR REPLACE INTO kept_reports (campaign_id, part, mark, numbers) "
                "VALUES (?, ?, ?, ?)",
                [campaign_id, part, mark, numbers],
            )
        except sqlite3.OperationalError:
            return False
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {waits}")
        return True

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
