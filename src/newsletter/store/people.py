"""One person added or changed by staff, lists renamed, and who did what to a person.

The rules for what may be stored (addresses, names, tags, suppression) are the
core's (``newsletter.people``); these queries only write what it has checked,
each change in one transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from newsletter.addresses import mailbox_key, suppression_keys
from newsletter.status import SubscriberStatus
from newsletter.store.base import StoreBase, _iso, _json, _marks
from newsletter.store.consent import read_leave_detail


class PeopleQueries(StoreBase):
    def add_confirmed_subscriber(
        self,
        email: str,
        *,
        first_name: str | None,
        last_name: str | None,
        tags: list[str],
        attributes: dict[str, str],
        list_ids: list[int],
        source: str,
        text: str,
        version: str,
        now: datetime,
    ) -> int | None:
        """Add a confirmed subscriber with a confirmed consent record and their lists.

        None (and nothing stored) when the mailbox is already a subscriber or on
        the suppression list: only the person's own confirmation lifts that.
        """
        stamp = _iso(now)
        key = mailbox_key(email)
        keys = suppression_keys(email)
        with self.transaction():
            if self._value("SELECT 1 FROM subscribers WHERE email_key = ?", [key]) or self._value(
                f"SELECT 1 FROM suppressions WHERE email_key IN ({_marks(keys)})", keys
            ):
                return None
            cursor = self.conn.execute(
                "INSERT INTO subscribers (email, email_key, first_name, last_name, status, tags, "
                "attributes, source, created_at, updated_at, confirmed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    email,
                    key,
                    first_name,
                    last_name,
                    SubscriberStatus.CONFIRMED,
                    _json(tags),
                    _json(attributes),
                    source,
                    stamp,
                    stamp,
                    stamp,
                ],
            )
            subscriber_id = cursor.lastrowid
            assert subscriber_id is not None
            names = [self._value("SELECT name FROM lists WHERE id = ?", [i]) for i in list_ids]
            self.conn.execute(
                "INSERT INTO consents (subscriber_id, email, at, source, text, text_version, "
                "confirmed_at, lists) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [subscriber_id, email, stamp, source, text, version, stamp, json.dumps(names)],
            )
            self.conn.executemany(
                "INSERT OR IGNORE INTO memberships (list_id, subscriber_id, added_at) "
                "VALUES (?, ?, ?)",
                [(list_id, subscriber_id, stamp) for list_id in list_ids],
            )
        return subscriber_id

    def update_subscriber_details(
        self,
        subscriber_id: int,
        *,
        first_name: str | None,
        last_name: str | None,
        tags: list[str],
        attributes: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Set a subscriber's name, tags and attributes; False if there is no such subscriber."""
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE subscribers SET first_name = ?, last_name = ?, tags = ?, attributes = ?, "
                "updated_at = ? WHERE id = ?",
                [first_name, last_name, _json(tags), _json(attributes), _iso(now), subscriber_id],
            )
        return cursor.rowcount == 1

    def list_by_id(self, list_id: int) -> dict[str, Any] | None:
        row = self._row(
            "SELECT id, name, description, public, created_at FROM lists WHERE id = ?", [list_id]
        )
        if row:
            row["public"] = bool(row["public"])
        return row

    def rename_list(self, list_id: int, name: str) -> bool:
        """Rename a list; False if another list has that name.

        Campaigns and memberships keep the list by its id. Consents still waiting
        for their confirmation name the lists to join by name: they follow the
        new name, so a confirmation still lands on the list. A confirmed consent
        stays as it was given, as proof.
        """
        with self.transaction():
            old = self._value("SELECT name FROM lists WHERE id = ?", [list_id])
            if old is None:
                return False
            if old == name:
                return True
            if self._value("SELECT 1 FROM lists WHERE name = ?", [name]):
                return False
            self.conn.execute("UPDATE lists SET name = ? WHERE id = ?", [name, list_id])
            pending = self.conn.execute(
                "SELECT id, lists FROM consents WHERE confirmed_at IS NULL AND lists IS NOT NULL "
                "AND EXISTS (SELECT 1 FROM json_each(consents.lists) j WHERE j.value = ?)",
                [old],
            ).fetchall()
            for consent_id, lists in pending:
                renamed = [name if n == old else n for n in json.loads(lists)]
                self.conn.execute(
                    "UPDATE consents SET lists = ? WHERE id = ?",
                    [json.dumps(renamed, ensure_ascii=False), consent_id],
                )
        return True

    def lists_left(self, subscriber_id: int) -> dict[str, dict[str, Any]]:
        """The lists a subscriber is no longer on, by name: when they left (``at``) and the
        staff account that took them off (``by``; None when they left it themselves, or
        when no event says who)."""
        by: dict[int, str | None] = {}
        for (detail,) in self.conn.execute(
            "SELECT detail FROM events WHERE subscriber_id = ? AND kind = 'leave_list' ORDER BY id",
            [subscriber_id],
        ):
            list_id, staff = read_leave_detail(detail)
            if list_id is not None:
                by[list_id] = staff
        return {
            row["name"]: {"at": row["unsubscribed_at"], "by": by.get(row["list_id"])}
            for row in self._rows(
                "SELECT l.name, m.list_id, m.unsubscribed_at FROM memberships m "
                "JOIN lists l ON l.id = m.list_id "
                "WHERE m.subscriber_id = ? AND m.unsubscribed_at IS NOT NULL",
                [subscriber_id],
            )
        }

    def staff_actions_on(self, subscriber_id: int) -> list[dict[str, Any]]:
        """What staff did to one subscriber, from the audit log: at, actor, action, detail."""
        return self._rows(
            "SELECT at, actor, action, detail FROM audit_log WHERE target = ? ORDER BY id",
            [f"subscriber {subscriber_id}"],
        )

    def campaign_senders(self, campaign_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """Per campaign, who sent or scheduled it and when (the audit log), oldest first."""
        if not campaign_ids:
            return {}
        targets = [f"campaign {cid}" for cid in campaign_ids]
        rows = self._rows(
            "SELECT at, actor, action, target FROM audit_log "
            f"WHERE target IN ({_marks(targets)}) AND action IN ('sent', 'scheduled') "
            "ORDER BY id",
            targets,
        )
        found: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(int(row.pop("target").split()[1]), []).append(row)
        return found

    def importer_of(self, file_name: str, since: str) -> dict[str, Any] | None:
        """Who imported the file ``file_name`` that brought people in at ``since`` (their
        ``created_at``, an ISO time), if the audit log says; else None.

        An audited import records its file, the time its rows were stored and how many
        people it added (``ImportReport.record``). Its entry is the one for that file and
        that time which added someone; nobody is named rather than the wrong account when
        two entries fit or more people came in from that file at that time than the entry
        added (an unaudited import of a file of the same name, from the subscribers folder,
        in the same second).
        """
        entries = self._rows(
            "SELECT at, actor, json_extract(data, '$.added') AS added FROM audit_log "
            "WHERE action = 'imported' AND data IS NOT NULL "
            "AND json_extract(data, '$.file') = ? AND json_extract(data, '$.at') = ? "
            "AND json_extract(data, '$.added') > 0",
            [file_name, since],
        )
        if len(entries) != 1:
            return None
        arrived = self._value(
            "SELECT COUNT(*) FROM subscribers WHERE source = ? AND created_at = ?",
            [f"import:{file_name}", since],
        )
        if arrived > entries[0]["added"]:
            return None
        return {"at": entries[0]["at"], "actor": entries[0]["actor"]}
