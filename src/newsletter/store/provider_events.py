"""Events reported by email providers' webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from newsletter import delivery_key
from newsletter.addresses import mailbox_key
from newsletter.status import DeliveryStatus, SubscriberStatus
from newsletter.store.base import (
    PROVIDER_STATUS_RANK,
    StoreBase,
    _iso,
    suppression_keys,
)


class ProviderEventsQueries(StoreBase):
    # -- provider webhook events -------------------------------------------------

    def provider_event_raw(self, provider: str, event_id: str) -> str | None:
        """The stored payload of a provider event, or None if it never arrived."""
        return self._value(
            "SELECT COALESCE(raw, '') FROM events WHERE provider = ? AND provider_event_id = ?",
            [provider, event_id],
        )

    def _delivery_for_event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The delivery an event is about: by our key, else the provider's or our message id."""
        columns = "id, campaign_id, subscriber_id, status, provider_status"
        ours = delivery_key.parse(event.get("key"))
        if ours is not None:
            campaign_id, delivery_id = ours
            row = self._row(
                f"SELECT {columns} FROM deliveries WHERE id = ? AND campaign_id = ?",
                [delivery_id, campaign_id],
            )
            if row is not None:
                return row
        if event.get("provider_id"):
            row = self._row(
                f"SELECT {columns} FROM deliveries WHERE provider_id = ? ORDER BY id DESC LIMIT 1",
                [event["provider_id"]],
            )
            if row is not None:
                return row
        message_id = (event.get("message_id") or "").strip().strip("<>")
        if message_id:
            return self._row(
                f"SELECT {columns} FROM deliveries WHERE message_id IN (?, ?) "
                "ORDER BY id DESC LIMIT 1",
                [f"<{message_id}>", message_id],
            )
        return None

    def record_provider_events(self, events: list[dict[str, Any]], now: datetime) -> dict[str, int]:
        """Store webhook events and act on them in one transaction; return counts.

        Each event: provider, event_id, kind, at, email, key, provider_id,
        message_id, detail, raw. An event already stored (same provider and
        id) changes nothing. A hard bounce, a complaint or an unsubscribe
        suppresses the subscriber; any event about a delivery proves the
        provider took it, which settles a row left in doubt as sent.
        """
        counts = {"stored": 0, "duplicate": 0, "suppressed": 0, "settled": 0}
        stamp = _iso(now)
        with self.transaction():
            for event in events:
                delivery = self._delivery_for_event(event)
                email = (event.get("email") or "").strip().lower() or None
                subscriber_id = delivery["subscriber_id"] if delivery else None
                if subscriber_id is None and email:
                    subscriber_id = self._value(
                        "SELECT id FROM subscribers WHERE email_key = ?", [mailbox_key(email)]
                    )
                    keys = suppression_keys(email)[1:]  # the erased hashes
                    if subscriber_id is None and self._value(
                        "SELECT 1 FROM suppressions WHERE email_key IN "
                        f"({', '.join('?' * len(keys))})",
                        keys,
                    ):
                        # A late report about an erased person: counted, not kept by name.
                        email = None
                        event = {**event, "raw": None, "detail": None}
                cursor = self.conn.execute(
                    "INSERT OR IGNORE INTO events (at, kind, campaign_id, subscriber_id, detail, "
                    "provider, provider_event_id, delivery_id, recipient, raw) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        event.get("at") or stamp,
                        event["kind"],
                        delivery["campaign_id"] if delivery else None,
                        subscriber_id,
                        event.get("detail") or None,
                        event["provider"],
                        event["event_id"],
                        delivery["id"] if delivery else None,
                        email,
                        event.get("raw"),
                    ],
                )
                if cursor.rowcount == 0:
                    counts["duplicate"] += 1
                    continue
                counts["stored"] += 1
                if delivery is not None:
                    counts["settled"] += self._note_delivery(delivery, event["kind"], stamp)
                if subscriber_id is not None:
                    counts["suppressed"] += self._suppress_for(subscriber_id, event["kind"], stamp)
        return counts

    def _note_delivery(self, delivery: dict[str, Any], kind: str, stamp: str) -> int:
        """Record the provider's word on a delivery; return 1 if it settled an in-doubt row."""
        rank = PROVIDER_STATUS_RANK.get(kind)
        if rank is not None and rank > PROVIDER_STATUS_RANK.get(delivery["provider_status"], 0):
            self.conn.execute(
                "UPDATE deliveries SET provider_status = ?, provider_status_at = ? WHERE id = ?",
                [kind, stamp, delivery["id"]],
            )
            delivery["provider_status"] = kind
        if delivery["status"] == DeliveryStatus.IN_DOUBT:
            # The provider reports on the message, so it took it: sent, not to be resent.
            self.conn.execute(
                "UPDATE deliveries SET status = 'sent', error = NULL, done_at = ? "
                "WHERE id = ? AND status = 'in_doubt'",
                [stamp, delivery["id"]],
            )
            delivery["status"] = DeliveryStatus.SENT
            return 1
        return 0

    def _suppress_for(self, subscriber_id: int, kind: str, stamp: str) -> int:
        """Suppress a subscriber after a hard bounce, complaint or unsubscribe; 1 if changed."""
        if kind == "complaint":
            # A complaint outranks an earlier unsubscribe or bounce: it is the reason kept.
            cursor = self.conn.execute(
                "UPDATE subscribers SET status = 'complained', updated_at = ? "
                "WHERE id = ? AND status != 'complained'",
                [stamp, subscriber_id],
            )
        elif kind in ("bounce", "unsubscribe"):
            status = SubscriberStatus.BOUNCED if kind == "bounce" else SubscriberStatus.UNSUBSCRIBED
            cursor = self.conn.execute(
                "UPDATE subscribers SET status = ?, updated_at = ?, "
                "unsubscribed_at = CASE WHEN ? = 'unsubscribed' THEN ? ELSE unsubscribed_at END "
                "WHERE id = ? AND status NOT IN ('unsubscribed', 'bounced', 'complained')",
                [status, stamp, status, stamp, subscriber_id],
            )
        else:
            return 0
        return cursor.rowcount

    def provider_events(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Stored provider events, oldest first."""
        only = " AND provider = ?" if provider else ""
        return self._rows(
            "SELECT id, at, kind, campaign_id, subscriber_id, delivery_id, detail, provider, "
            f"provider_event_id, recipient, raw FROM events WHERE provider IS NOT NULL{only} "
            "ORDER BY id",
            [provider] if provider else [],
        )
