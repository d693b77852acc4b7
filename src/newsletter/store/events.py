"""Tracking events and campaign statistics."""

from __future__ import annotations

from typing import Any

from newsletter.store.base import (
    StoreBase,
)


class EventsQueries(StoreBase):
    # -- events ---------------------------------------------------------------

    def insert_events(self, events: list[dict[str, Any]]) -> None:
        """Store a batch of tracking events in one transaction."""
        if not events:
            return
        columns = (
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
            "detail",
        )
        with self.transaction():
            self.conn.executemany(
                f"INSERT INTO events ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})",
                [[e.get(c) for c in columns] for e in events],
            )

    def event_count(self) -> int:
        return self._value("SELECT COUNT(*) FROM events")

    def campaign_stats(self, campaign_id: int) -> dict[str, Any]:
        """Counts for one campaign; "unique" means distinct subscribers, everywhere."""
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
            stats[f"{kind}s_total"] = row["total"]
            stats[f"{kind}s_unique"] = row["uniq"]
        stats["links"] = self._rows(
            "SELECT l.id, l.url, l.article_id, COUNT(e.id) AS clicks, "
            "COUNT(DISTINCT e.subscriber_id) AS unique_clicks FROM links l "
            "LEFT JOIN events e ON e.link_id = l.id AND e.kind = 'click' "
            "WHERE l.campaign_id = ? GROUP BY l.id ORDER BY l.id",
            [campaign_id],
        )
        return stats

    def event_timeline(self, campaign_id: int, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        """Event counts per hour (UTC, "YYYY-MM-DDTHH:00"), kind and classification."""
        marks = ", ".join("?" for _ in kinds)
        return self._rows(
            "SELECT substr(at, 1, 13) || ':00' AS hour, kind, classification, COUNT(*) AS count "
            f"FROM events WHERE campaign_id = ? AND kind IN ({marks}) "
            "GROUP BY hour, kind, classification ORDER BY hour",
            [campaign_id, *kinds],
        )
