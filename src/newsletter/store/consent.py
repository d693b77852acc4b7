"""Consent and its withdrawal: opt-ins, joining and leaving lists, suppression, erasure."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from newsletter.addresses import mailbox_key
from newsletter.status import SubscriberStatus
from newsletter.store.base import (
    StoreBase,
    _decode_consent,
    _iso,
    _marks,
    erased_key,
    suppression_keys,
)

# A leave_list event's detail: "list 3", and "list 3; staff:alice@example.com" when a staff
# account took the person off it.
_LEAVE = re.compile(r"^list (?P<id>\d+)(?:; staff:(?P<staff>.+))?$")


def leave_detail(list_id: int, by: str | None) -> str:
    return f"list {list_id}" + (f"; staff:{by}" if by else "")


def read_leave_detail(detail: str) -> tuple[int | None, str | None]:
    """A leave_list event's list id and staff account (None: the person left it)."""
    found = _LEAVE.match(detail or "")
    if found is None:
        return None, None
    return int(found["id"]), found["staff"]


class ConsentQueries(StoreBase):
    # -- consent, leaving and joining, suppression, erasure ----------------------

    def leave_list(
        self,
        subscriber_id: int,
        list_id: int,
        campaign_id: int | None,
        now: datetime,
        ip: str | None = None,
        user_agent: str | None = None,
        by: str | None = None,
    ) -> bool:
        """Leave one list at once, including its campaigns already sending; False if not on it.

        ``by``: the staff account that took the person off the list (the event says so, as
        a staff unsubscribe does); None when the person left it themselves.
        """
        stamp = _iso(now)
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE memberships SET unsubscribed_at = ? WHERE list_id = ? "
                "AND subscriber_id = ? AND unsubscribed_at IS NULL",
                [stamp, list_id, subscriber_id],
            )
            if cursor.rowcount != 1:
                return False
            # The send loop re-checks only the subscriber's status, so the rows
            # still waiting in this list's campaigns are settled here.
            self.conn.execute(
                "UPDATE deliveries SET status = 'skipped', error = 'left the list', done_at = ? "
                "WHERE subscriber_id = ? AND status IN ('pending', 'deferred') "
                "AND campaign_id IN (SELECT id FROM campaigns WHERE list_id = ?)",
                [stamp, subscriber_id, list_id],
            )
            self.conn.execute(
                "INSERT INTO events (at, kind, campaign_id, subscriber_id, method, user_agent, "
                "ip, detail) VALUES (?, 'leave_list', ?, ?, 'POST', ?, ?, ?)",
                [stamp, campaign_id, subscriber_id, user_agent, ip, leave_detail(list_id, by)],
            )
        return True

    def join_list(
        self,
        subscriber_id: int,
        list_id: int,
        now: datetime,
        source: str,
        text: str,
        version: str,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        """Put a confirmed subscriber (back) on a list, with a consent record; False if not."""
        stamp = _iso(now)
        with self.transaction():
            subscriber = self._row(
                "SELECT email, status FROM subscribers WHERE id = ?", [subscriber_id]
            )
            name = self._value("SELECT name FROM lists WHERE id = ?", [list_id])
            if (
                subscriber is None
                or name is None
                or subscriber["status"] != SubscriberStatus.CONFIRMED
            ):
                return False
            self.conn.execute(
                "INSERT INTO memberships (list_id, subscriber_id, added_at) VALUES (?, ?, ?) "
                "ON CONFLICT (list_id, subscriber_id) DO UPDATE SET unsubscribed_at = NULL, "
                "added_at = excluded.added_at",
                [list_id, subscriber_id, stamp],
            )
            self.conn.execute(
                "INSERT INTO consents (subscriber_id, email, at, source, text, text_version, ip, "
                "user_agent, confirmed_at, confirm_ip, lists) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    subscriber_id,
                    subscriber["email"],
                    stamp,
                    source,
                    text,
                    version,
                    ip,
                    user_agent,
                    stamp,
                    ip,
                    json.dumps([name]),
                ],
            )
        return True

    def request_opt_in(
        self,
        email: str,
        *,
        lists: list[str],
        source: str,
        text: str,
        version: str,
        ip: str | None,
        user_agent: str | None,
        detail: dict[str, Any],
        now: datetime,
        quiet_since: datetime,
    ) -> tuple[int | None, int]:
        """Record a pending consent for an address, adding it as unconfirmed if it is new.

        Nothing else about a known address changes until the subscriber
        confirms. Returns (consent id, subscriber id); the consent id is None
        when a confirmation email of a consent still pending went out after
        ``quiet_since``, so one address cannot be flooded with them.
        """
        stamp = _iso(now)
        with self.transaction():
            # The same mailbox typed with other capitals is the same person.
            key = mailbox_key(email)
            subscriber_id = self._value("SELECT id FROM subscribers WHERE email_key = ?", [key])
            if subscriber_id is None:
                blocked = self._value("SELECT 1 FROM suppressions WHERE email_key = ?", [key])
                cursor = self.conn.execute(
                    "INSERT INTO subscribers (email, email_key, status, source, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        email,
                        key,
                        SubscriberStatus.UNSUBSCRIBED if blocked else SubscriberStatus.UNCONFIRMED,
                        source,
                        stamp,
                        stamp,
                    ],
                )
                subscriber_id = cursor.lastrowid
            elif self._value(
                "SELECT 1 FROM consents WHERE subscriber_id = ? AND confirmed_at IS NULL "
                "AND confirm_sent_at > ? LIMIT 1",
                [subscriber_id, _iso(quiet_since)],
            ):
                return None, subscriber_id
            cursor = self.conn.execute(
                "INSERT INTO consents (subscriber_id, email, at, source, text, text_version, ip, "
                "user_agent, lists, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    subscriber_id,
                    email,
                    stamp,
                    source,
                    text,
                    version,
                    ip,
                    user_agent,
                    json.dumps(lists),
                    json.dumps(detail, ensure_ascii=False),
                ],
            )
        return cursor.lastrowid, subscriber_id

    def consent(self, consent_id: int) -> dict[str, Any] | None:
        """One consent record, its lists and details decoded."""
        row = self._row("SELECT * FROM consents WHERE id = ?", [consent_id])
        return _decode_consent(row) if row else None

    def mark_confirmation_sent(self, consent_id: int, now: datetime) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE consents SET confirm_sent_at = ? WHERE id = ?", [_iso(now), consent_id]
            )

    def confirm_opt_in(
        self, consent_id: int, subscriber_id: int, now: datetime, ip: str | None
    ) -> str:
        """Confirm a pending consent: the subscriber's own opt-in, the one way off suppression.

        In one transaction: the consent gets its confirmation time and IP, the
        address leaves the suppression list, the subscriber becomes confirmed
        (names given on the form fill empty ones only) and joins the consent's
        lists. Returns "confirmed", "already" (this consent was confirmed
        before), "stale" (the address was suppressed after this consent was
        asked for: an older link must not undo a later unsubscribe) or
        "unknown".
        """
        stamp = _iso(now)
        with self.transaction():
            consent = self._row(
                "SELECT c.at, c.confirmed_at, c.lists, c.detail, c.source, s.email, s.status "
                "FROM consents c JOIN subscribers s ON s.id = c.subscriber_id "
                "WHERE c.id = ? AND c.subscriber_id = ?",
                [consent_id, subscriber_id],
            )
            if consent is None:
                return "unknown"
            if consent["confirmed_at"] is not None:
                return "already"
            email = consent["email"]
            keys = suppression_keys(email)
            suppressed_at = self._value(
                f"SELECT MAX(at) FROM suppressions WHERE email_key IN ({_marks(keys)})", keys
            )
            # >=: times are kept to the second, and an unsubscribe in the same second
            # as the request must win.
            if suppressed_at is not None and suppressed_at >= consent["at"]:
                return "stale"
            self.conn.execute(
                "UPDATE consents SET confirmed_at = ?, confirm_ip = ? WHERE id = ?",
                [stamp, ip, consent_id],
            )
            self.conn.execute(f"DELETE FROM suppressions WHERE email_key IN ({_marks(keys)})", keys)
            detail = json.loads(consent["detail"] or "{}")
            self.conn.execute(
                "UPDATE subscribers SET status = 'confirmed', confirmed_at = ?, "
                "unsubscribed_at = NULL, updated_at = ?, "
                "first_name = COALESCE(first_name, ?), last_name = COALESCE(last_name, ?) "
                "WHERE id = ?",
                [stamp, stamp, detail.get("first_name"), detail.get("last_name"), subscriber_id],
            )
            for name in json.loads(consent["lists"] or "[]"):
                list_id = self._value("SELECT id FROM lists WHERE name = ?", [name])
                if list_id is None:
                    continue  # removed since the consent was given
                self.conn.execute(
                    "INSERT INTO memberships (list_id, subscriber_id, added_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (list_id, subscriber_id) DO UPDATE SET unsubscribed_at = NULL, "
                    "added_at = excluded.added_at",
                    [list_id, subscriber_id, stamp],
                )
            self.conn.execute(
                "INSERT INTO events (at, kind, subscriber_id, method, ip, detail) "
                "VALUES (?, 'confirm', ?, 'POST', ?, ?)",
                [stamp, subscriber_id, ip, consent["source"]],
            )
        return "confirmed"

    def suppressions(self) -> list[dict[str, Any]]:
        """The suppression list, oldest first; erased people appear by hash only."""
        return self._rows("SELECT email, reason, at FROM suppressions ORDER BY at, email")

    def is_suppressed(self, email: str) -> bool:
        keys = suppression_keys(email)
        return bool(
            self._value(f"SELECT 1 FROM suppressions WHERE email_key IN ({_marks(keys)})", keys)
        )

    def unsubscribe(
        self,
        subscriber_id: int,
        campaign_id: int | None,
        now: datetime,
        how: str,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        """Unsubscribe at once and record the event; return False if already out.

        The status change puts the address on the suppression list (trigger).
        """
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = ?, "
                "updated_at = ? WHERE id = ? AND status NOT IN "
                "('unsubscribed', 'bounced', 'complained')",
                [_iso(now), _iso(now), subscriber_id],
            )
            changed = cursor.rowcount == 1
            if changed:
                self.conn.execute(
                    "INSERT INTO events (at, kind, campaign_id, subscriber_id, method, "
                    "user_agent, ip, detail) VALUES (?, 'unsubscribe', ?, ?, ?, ?, ?, ?)",
                    [_iso(now), campaign_id, subscriber_id, "POST", user_agent, ip, how],
                )
        return changed

    def mark_bounced(
        self, subscriber_id: int, campaign_id: int | None, now: datetime, reason: str
    ) -> None:
        """A permanent failure: suppress the address and record the bounce."""
        with self.transaction():
            self.conn.execute(
                "UPDATE subscribers SET status = 'bounced', updated_at = ? WHERE id = ?",
                [_iso(now), subscriber_id],
            )
            self.conn.execute(
                "INSERT INTO events (at, kind, campaign_id, subscriber_id, detail) "
                "VALUES (?, 'bounce', ?, ?, ?)",
                [_iso(now), campaign_id, subscriber_id, reason],
            )

    def delete_subscriber(self, subscriber_id: int, now: datetime) -> None:
        """Erase a person; their events stay, anonymised, so campaign totals stay right.

        Consent records stay as proof, without address, IP or user agent. The
        address stays on the suppression list only as a hash, so an old export
        imported later cannot bring the person back; a new opt-in of their own
        still can.
        """
        with self.transaction():
            email = self._value("SELECT email FROM subscribers WHERE id = ?", [subscriber_id])
            if email is None:
                return
            key = mailbox_key(email)
            reason = self._value("SELECT reason FROM suppressions WHERE email_key = ?", [key])
            self.conn.execute("DELETE FROM suppressions WHERE email_key = ?", [key])
            hashed = erased_key(email)
            self.conn.execute(
                "INSERT OR IGNORE INTO suppressions (email, email_key, reason, at) "
                "VALUES (?, ?, ?, ?)",
                [hashed, hashed, reason or "erased", _iso(now)],
            )
            self.conn.execute(
                "UPDATE events SET subscriber_id = NULL, ip = NULL, user_agent = NULL "
                "WHERE subscriber_id = ?",
                [subscriber_id],
            )
            self.conn.execute(
                "UPDATE consents SET email = '(deleted)', ip = NULL, user_agent = NULL, "
                "confirm_ip = NULL, detail = NULL WHERE subscriber_id = ?",
                [subscriber_id],
            )
            # Provider reports name the address as the provider spelled it, lower-cased
            # in Python; the delete trigger's SQL lower() folds A-Z only, so a
            # non-ASCII capital would leave them named: blank them here too.
            self.conn.execute(
                "UPDATE events SET raw = NULL, detail = NULL, recipient = NULL "
                "WHERE recipient IN (?, ?)",
                [email.lower(), key],
            )
            self.conn.execute("DELETE FROM subscribers WHERE id = ?", [subscriber_id])
