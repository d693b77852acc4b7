"""Subscribers and lists: lookups, imports, searches, counts, a person's whole record.

Consent, leaving and joining, the suppression list and erasure are in consent.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from newsletter.addresses import mailbox_key
from newsletter.errors import NotFound
from newsletter.status import SubscriberStatus
from newsletter.store.base import (
    ERASED_PREFIX,
    IMPORT_BATCH,
    SUPPRESSED,
    StoreBase,
    _decode_consent,
    _decode_subscriber,
    _iso,
    _json,
    _marks,
    suppression_keys,
)
from newsletter.subscriber_csv.rows import merge_repeats


class SubscribersQueries(StoreBase):
    # -- subscribers and lists -----------------------------------------------------

    def subscriber_by_email(self, email: str) -> dict[str, Any] | None:
        """The subscriber with this mailbox, however its capitals are typed (one at most)."""
        row = self._row("SELECT * FROM subscribers WHERE email_key = ?", [mailbox_key(email)])
        return _decode_subscriber(row) if row else None

    def subscriber(self, subscriber_id: int) -> dict[str, Any] | None:
        row = self._row("SELECT * FROM subscribers WHERE id = ?", [subscriber_id])
        return _decode_subscriber(row) if row else None

    def subscribers(
        self, status: str | None = None, list_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Subscribers in id order, optionally only one status or the members of one list."""
        clause, params = _subscriber_filter("", status, list_id, None)
        rows = self._rows(f"SELECT s.* FROM subscribers s {clause} ORDER BY s.id", params)
        return [_decode_subscriber(r) for r in rows]

    def first_subscriber(self, status: str) -> dict[str, Any] | None:
        """The subscriber with the lowest id in ``status``, without reading the others."""
        row = self._row("SELECT * FROM subscribers WHERE status = ? ORDER BY id LIMIT 1", [status])
        return _decode_subscriber(row) if row else None

    def _suppression_keys(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT email_key FROM suppressions")}

    def known_mailboxes(self, emails: Iterable[str]) -> set[str]:
        """The ``mailbox_key`` of each of these addresses that a subscriber has already."""
        keys = list({mailbox_key(email) for email in emails})
        known: set[str] = set()
        for start in range(0, len(keys), IMPORT_BATCH):
            batch = keys[start : start + IMPORT_BATCH]
            known.update(
                key
                for (key,) in self.conn.execute(
                    f"SELECT email_key FROM subscribers WHERE email_key IN ({_marks(batch)})",
                    batch,
                )
            )
        return known

    def add_subscribers(
        self,
        rows: Iterable[dict[str, Any]],
        list_name: str | None,
        source: str,
        consent_text: str,
        now: datetime,
        *,
        on_progress: Callable[[int], None] | None = None,
        list_id: int | None = None,
    ) -> dict[str, int]:
        """Insert the subscribers that are not in the database yet, in one transaction.

        An address is known when the same mailbox is there in any capitals
        (``ALICE@example.com`` is ``alice@example.com``): it keeps the spelling
        it was first given. Known addresses keep everything they have, except
        that a row saying the person opted out moves them there (never the
        other way): an import never turns a suppressed address (unsubscribed,
        bounced, complained, erased) back on; those rows are counted as
        suppressed. A new row that arrives opted out is stored as such and put
        on the suppression list (``opted_out``), dated by the row's
        ``unsubscribed_at`` (when the export says the person left) if it has
        one, else by ``now``. Each new row gets a consent record naming the
        import. Rows go in with executemany, a batch at a time.

        A mailbox the rows give more than once (in any capitals) is one person:
        the first row stands, unless a later one says they opted out, which
        then stands with its own status and time (whichever batch it is in);
        the other rows count as ``duplicates``. What each mailbox came to is
        kept in a temporary table, not in memory, so ``rows`` may be an
        iterator over a file of millions of rows. ``overridden``: the people
        whose row's own status won against what staff said of the whole file.

        ``list_id``: the list to add them to, kept by id (a pending import
        whose list was renamed still goes to it); NotFound if it is gone.
        """
        counts = {
            "added": 0,
            "existing": 0,
            "suppressed": 0,
            "opted_out": 0,
            "duplicates": 0,
            "overridden": 0,
        }
        stamp = _iso(now)
        with self.transaction():
            if list_id is not None:
                list_name = self._value("SELECT name FROM lists WHERE id = ?", [list_id])
                if list_name is None:
                    raise NotFound(
                        "the list chosen for this import no longer exists; nothing was "
                        "imported; choose a list and import the file again"
                    )
            elif list_name:
                list_id = self._ensure_list(list_name, now)
            lists_json = _json([list_name] if list_name else [])
            suppressed = self._suppression_keys()
            erased = any(key.startswith(ERASED_PREFIX) for key in suppressed)
            # Never reuse an id (see the subscribers table): start past the highest
            # ever given out, which sqlite_sequence remembers after deletions.
            next_id = (
                self._value(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence "
                    "WHERE name = 'subscribers'), 0), COALESCE(MAX(id), 0)) FROM subscribers"
                )
                + 1
            )
            # Known addresses: all of them in one scan when the table is not much
            # bigger than the import, else looked up a batch at a time.
            scan = isinstance(rows, list) and next_id - 1 <= 4 * len(rows)
            # What each mailbox of this import came to (by mailbox_key): its
            # subscriber, the count it went to, whether this import put it on the
            # list, whether its own status won. A later opt-out changes it.
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS import_sightings (mailbox TEXT PRIMARY KEY, "
                "subscriber_id INTEGER, outcome TEXT NOT NULL, joined INTEGER NOT NULL, "
                "overridden INTEGER NOT NULL)"
            )
            self.conn.execute("DELETE FROM temp.import_sightings")
            # Keyed by mailbox_key; the value also holds the stored spelling.
            known: dict[str, tuple[int, str, str]] = {}
            if scan:
                known = {
                    mailbox_key(email): (subscriber_id, status, email)
                    for email, subscriber_id, status in self.conn.execute(
                        "SELECT email, id, status FROM subscribers"
                    )
                }
            batches = iter(rows)
            done = 0
            while chunk := list(itertools.islice(batches, IMPORT_BATCH)):
                done += len(chunk)
                chunk, repeats = merge_repeats(chunk)
                counts["duplicates"] += repeats
                chunk = self._later_sightings(chunk, counts, source, stamp, list_id)
                if not chunk:
                    if on_progress:
                        on_progress(done)
                    continue
                if not scan:
                    marks = ", ".join("?" * len(chunk))
                    known = {
                        mailbox_key(email): (subscriber_id, status, email)
                        for email, subscriber_id, status in self.conn.execute(
                            "SELECT email, id, status FROM subscribers "
                            f"WHERE email_key IN ({marks})",
                            [mailbox_key(r["email"]) for r in chunk],
                        )
                    }
                members_before: set[int] = set()
                if list_id is not None:
                    ids = [
                        known[k][0]
                        for k in map(mailbox_key, (r["email"] for r in chunk))
                        if k in known
                    ]
                    # Who is on the list already: joining it is this import's doing
                    # only for the others (undone if a later row says they left).
                    members_before = {
                        sid
                        for (sid,) in self.conn.execute(
                            "SELECT subscriber_id FROM memberships WHERE list_id = ? "
                            f"AND subscriber_id IN ({', '.join('?' * len(ids))})",
                            [list_id, *ids],
                        )
                    }
                people, consents, members, opted_out = [], [], [], []
                sightings: list[tuple[str, int | None, str, int, int]] = []
                first_id = next_id
                for row in chunk:
                    email = row["email"]
                    key = mailbox_key(email)
                    current = known.get(key)
                    mine = int(bool(row.get("overridden")))
                    counts["overridden"] += mine
                    if (current is not None and current[1] in SUPPRESSED) or (
                        suppressed
                        and (
                            key in suppressed
                            or (
                                erased and any(k in suppressed for k in suppression_keys(email)[1:])
                            )
                        )
                    ):
                        counts["suppressed"] += 1
                        sightings.append((key, None, "suppressed", 0, mine))
                        continue
                    if current is not None and row["status"] in SUPPRESSED:
                        # A newer export says this known address opted out: moving
                        # towards suppression is always safe (never the other way).
                        self._opt_out(current[0], key, row, stamp, new=False)
                        counts["opted_out"] += 1
                        sightings.append((key, current[0], "opted_out", 0, mine))
                        continue
                    if current is not None:
                        # Another spelling of a known mailbox is a duplicate row.
                        counted = "existing" if current[2] == email else "duplicates"
                        counts[counted] += 1
                        joined = list_id is not None and current[0] not in members_before
                        if joined:
                            members.append((list_id, current[0], stamp))
                        sightings.append((key, current[0], counted, int(joined), mine))
                        continue
                    status = row["status"]
                    confirmed_at = stamp if status == SubscriberStatus.CONFIRMED else None
                    left = _left_at(row, stamp) if status in SUPPRESSED else None
                    tags = row.get("tags")
                    attributes = row.get("attributes")
                    evidence = row.get("consent")
                    people.append(
                        (
                            next_id,
                            email,
                            key,
                            row.get("first_name"),
                            row.get("last_name"),
                            status,
                            _json(tags) if tags else "[]",
                            _json(attributes) if attributes else "{}",
                            source,
                            stamp,
                            stamp,
                            confirmed_at,
                            left if status == SubscriberStatus.UNSUBSCRIBED else None,
                        )
                    )
                    consents.append(
                        (
                            next_id,
                            email,
                            confirmed_at,
                            _json(evidence) if evidence else None,
                            row.get("file_signed_up_at"),
                            row.get("file_confirmed_at"),
                        )
                    )
                    if status in SUPPRESSED:
                        opted_out.append((email, key, status, left))
                        sightings.append((key, next_id, "opted_out", 0, mine))
                    else:
                        if list_id is not None:
                            members.append((list_id, next_id, stamp))
                        sightings.append((key, next_id, "added", int(list_id is not None), mine))
                    next_id += 1
                counts["added"] += len(people)
                counts["opted_out"] += len(opted_out)
                self.conn.executemany(
                    "INSERT INTO subscribers (id, email, email_key, first_name, last_name, status, "
                    "tags, attributes, source, created_at, updated_at, confirmed_at, "
                    "unsubscribed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    people,
                )
                if any(c[3] or c[4] or c[5] for c in consents):
                    self.conn.executemany(
                        "INSERT INTO consents (subscriber_id, email, confirmed_at, detail, "
                        "file_signed_up_at, file_confirmed_at, at, source, text, text_version, "
                        "lists) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'import', ?)",
                        [(*c, stamp, source, consent_text, lists_json) for c in consents],
                    )
                elif consents:
                    # No opt-in evidence to carry: copy from the rows just written, in C.
                    self.conn.execute(
                        "INSERT INTO consents (subscriber_id, email, confirmed_at, at, source, "
                        "text, text_version, lists) "
                        "SELECT id, email, confirmed_at, ?, ?, ?, 'import', ? "
                        "FROM subscribers WHERE id BETWEEN ? AND ? ORDER BY id",
                        [stamp, source, consent_text, lists_json, first_id, next_id - 1],
                    )
                if opted_out:
                    self.conn.executemany(
                        "INSERT OR IGNORE INTO suppressions (email, email_key, reason, at) "
                        "VALUES (?, ?, ?, ?)",
                        opted_out,
                    )
                if members:
                    self.conn.executemany(
                        "INSERT OR IGNORE INTO memberships (list_id, subscriber_id, added_at) "
                        "VALUES (?, ?, ?)",
                        members,
                    )
                self.conn.executemany(
                    "INSERT INTO temp.import_sightings VALUES (?, ?, ?, ?, ?)", sightings
                )
                if on_progress:
                    on_progress(done)
            self.conn.execute("DROP TABLE temp.import_sightings")
        return counts

    def _later_sightings(
        self,
        chunk: list[dict[str, Any]],
        counts: dict[str, int],
        source: str,
        stamp: str,
        list_id: int | None,
    ) -> list[dict[str, Any]]:
        """The rows of a batch whose mailbox this import has not had yet; the rest are counted.

        A repeat in any capitals is a duplicate row, as ``parse_csv`` counts it;
        one that says the person opted out, where the row that stood did not,
        moves them there now (``_opt_out``), and the counts say so.
        """
        keys = [mailbox_key(r["email"]) for r in chunk]
        had = {
            mailbox: (subscriber_id, outcome, joined, overridden)
            for mailbox, subscriber_id, outcome, joined, overridden in self.conn.execute(
                "SELECT mailbox, subscriber_id, outcome, joined, overridden "
                f"FROM temp.import_sightings WHERE mailbox IN ({_marks(keys)})",
                keys,
            )
        }
        if not had:
            return chunk
        fresh = []
        for row, key in zip(chunk, keys, strict=True):
            earlier = had.get(key)
            if earlier is None:
                fresh.append(row)
                continue
            counts["duplicates"] += 1
            subscriber_id, outcome, joined, overridden = earlier
            if outcome not in ("added", "existing", "duplicates") or (
                row["status"] not in SUPPRESSED
            ):
                continue
            self._opt_out(subscriber_id, key, row, stamp, new=outcome == "added", source=source)
            if joined and list_id is not None:
                self.conn.execute(
                    "DELETE FROM memberships WHERE list_id = ? AND subscriber_id = ?",
                    [list_id, subscriber_id],
                )
            mine = int(bool(row.get("overridden")))
            if outcome != "added":
                # A new person stays added (and now opted out); a known one
                # counts as opted out instead of already present.
                counts[outcome] -= 1
            counts["opted_out"] += 1
            counts["overridden"] += mine - overridden
            self.conn.execute(
                "UPDATE temp.import_sightings SET outcome = 'opted_out', joined = 0, "
                "overridden = ? WHERE mailbox = ?",
                [mine, key],
            )
        return fresh

    def _opt_out(
        self,
        subscriber_id: int,
        key: str,
        row: dict[str, Any],
        stamp: str,
        *,
        new: bool,
        source: str = "",
    ) -> None:
        """Move a person to the opted-out status a row of the import gives, with its time.

        ``new``: they came in with this very import, on an earlier row of it:
        they are stored as if that row had said so (never confirmed, left then).
        """
        gone = _left_at(row, stamp)
        if new:
            self.conn.execute(
                "UPDATE subscribers SET status = ?, updated_at = ?, confirmed_at = NULL, "
                "unsubscribed_at = ? WHERE id = ?",
                [
                    row["status"],
                    stamp,
                    gone if row["status"] == SubscriberStatus.UNSUBSCRIBED else None,
                    subscriber_id,
                ],
            )
            self.conn.execute(
                "UPDATE consents SET confirmed_at = NULL WHERE subscriber_id = ? AND source = ?",
                [subscriber_id, source],
            )
        else:
            self.conn.execute(
                "UPDATE subscribers SET status = ?, updated_at = ?, "
                "unsubscribed_at = COALESCE(unsubscribed_at, ?) WHERE id = ?",
                [row["status"], stamp, gone, subscriber_id],
            )
        if gone != stamp:
            # The trigger dates the suppression by updated_at: the export knows
            # when the person really left.
            self.conn.execute("UPDATE suppressions SET at = ? WHERE email_key = ?", [gone, key])

    def _ensure_list(self, name: str, now: datetime) -> int:
        self.conn.execute(
            "INSERT OR IGNORE INTO lists (name, created_at) VALUES (?, ?)", [name, _iso(now)]
        )
        return self._value("SELECT id FROM lists WHERE name = ?", [name])

    def list_id(self, name: str) -> int:
        list_id = self._value("SELECT id FROM lists WHERE name = ?", [name])
        if list_id is None:
            raise NotFound(
                f"list {name!r}: no such list; create it with `newsletter lists create {name}` "
                f"or import subscribers with --list {name}"
            )
        return list_id

    def create_list(self, name: str, description: str, public: bool, now: datetime) -> bool:
        """Create a list, or update the description and visibility of an existing one.

        Returns True if the list is new.
        """
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT OR IGNORE INTO lists (name, created_at, description, public) "
                "VALUES (?, ?, ?, ?)",
                [name, _iso(now), description, int(public)],
            )
            if cursor.rowcount == 0:
                self.conn.execute(
                    "UPDATE lists SET description = ?, public = ? WHERE name = ?",
                    [description, int(public), name],
                )
        return cursor.rowcount == 1

    def lists(self, public_only: bool = False) -> list[dict[str, Any]]:
        """Every list (or only the public ones) with its number of current members."""
        where = "WHERE l.public = 1" if public_only else ""
        rows = self._rows(
            "SELECT l.id, l.name, l.description, l.public, l.created_at, "
            "(SELECT COUNT(*) FROM memberships m JOIN subscribers s ON s.id = m.subscriber_id "
            " WHERE m.list_id = l.id AND m.unsubscribed_at IS NULL "
            " AND s.status = 'confirmed') AS confirmed_members "
            f"FROM lists l {where} ORDER BY l.name"
        )
        for row in rows:
            row["public"] = bool(row["public"])
        return rows

    def memberships(self, subscriber_id: int) -> list[dict[str, Any]]:
        """The lists a subscriber is or was on: joined (added_at) and left (unsubscribed_at)."""
        rows = self._rows(
            "SELECT l.id, l.name, l.description, l.public, m.added_at, m.unsubscribed_at "
            "FROM memberships m JOIN lists l ON l.id = m.list_id "
            "WHERE m.subscriber_id = ? ORDER BY l.name",
            [subscriber_id],
        )
        for row in rows:
            row["public"] = bool(row["public"])
        return rows

    def subscriber_record(self, subscriber_id: int) -> dict[str, Any]:
        """Everything held on one person, for a data-subject access request."""
        subscriber = self.subscriber(subscriber_id)
        email = subscriber["email"] if subscriber else ""
        keys = suppression_keys(email)
        suppression = self._row(
            f"SELECT reason, at FROM suppressions WHERE email_key IN ({_marks(keys)})", keys
        )
        return {
            "subscriber": subscriber,
            "lists": [
                {"name": m["name"], "joined_at": m["added_at"], "left_at": m["unsubscribed_at"]}
                for m in self.memberships(subscriber_id)
            ],
            "suppression": suppression,
            "consents": [
                _decode_consent(r)
                for r in self._rows(
                    "SELECT at, source, text, text_version, ip, user_agent, lists, detail, "
                    "confirm_sent_at, confirmed_at, confirm_ip, file_signed_up_at, "
                    "file_confirmed_at FROM consents "
                    "WHERE subscriber_id = ? ORDER BY id",
                    [subscriber_id],
                )
            ],
            "deliveries": self._rows(
                "SELECT campaign_id, status, done_at FROM deliveries WHERE subscriber_id = ? "
                "ORDER BY id",
                [subscriber_id],
            ),
            "events": self._rows(
                "SELECT at, kind, campaign_id, link_id, article_id, method, user_agent, ip, "
                "classification, reason, detail FROM events WHERE subscriber_id = ? ORDER BY id",
                [subscriber_id],
            ),
        }

    def subscriber_growth(self, since: datetime) -> list[dict[str, Any]]:
        """Per week (Monday's date) since ``since``: confirmations and departures."""
        monday = "date({col}, 'weekday 0', '-6 days')"
        rows = self._rows(
            f"""
            SELECT week, SUM(joined) AS joined, SUM(left_) AS left_ FROM (
              SELECT {monday.format(col="confirmed_at")} AS week, 1 AS joined, 0 AS left_
                FROM subscribers WHERE confirmed_at >= ?
              UNION ALL
              SELECT {monday.format(col="unsubscribed_at")}, 0, 1
                FROM subscribers WHERE unsubscribed_at >= ?
            ) GROUP BY week ORDER BY week
            """,
            [_iso(since), _iso(since)],
        )
        return [{"week": r["week"], "joined": r["joined"], "left": r["left_"]} for r in rows]

    def subscriber_counts(self) -> dict[str, int]:
        """How many subscribers have each status."""
        return {
            r["status"]: r["n"]
            for r in self._rows("SELECT status, COUNT(*) AS n FROM subscribers GROUP BY status")
        }

    def search_subscribers(
        self,
        query: str = "",
        status: str | None = None,
        list_id: int | None = None,
        tag: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of subscribers matching a text (address or name), status, list and tag,
        with the number of all matches."""
        clause, params = _subscriber_filter(query, status, list_id, tag)
        total = self._value(f"SELECT COUNT(*) FROM subscribers s {clause}", params)
        rows = self._rows(
            f"SELECT s.* FROM subscribers s {clause} ORDER BY s.id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [_decode_subscriber(r) for r in rows], total

    def subscribers_matching(self, text: str, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` subscribers whose address or name contains ``text``.

        Without the count of all matches that a page of ``search_subscribers``
        needs: asked on every key typed, it reads no further than it shows.
        """
        clause, params = _subscriber_filter(text, None, None, None)
        rows = self._rows(
            f"SELECT s.* FROM subscribers s {clause} ORDER BY s.id LIMIT ?", [*params, limit]
        )
        return [_decode_subscriber(r) for r in rows]


def _left_at(row: dict[str, Any], stamp: str) -> str:
    """When an imported person left: the export's time if it gave one, else the import's.

    Never later than the import (a time in the future is a wrong clock, not a
    later unsubscribe).
    """
    left = row.get("unsubscribed_at")
    return min(left, stamp) if left else stamp


def _subscriber_filter(
    query: str, status: str | None, list_id: int | None, tag: str | None
) -> tuple[str, list[Any]]:
    """The WHERE clause (or "") and its parameters for a search of subscribers ``s``."""
    where: list[str] = []
    params: list[Any] = []
    if query:
        where.append(
            "(s.email LIKE ? ESCAPE '\\' OR COALESCE(s.first_name, '') || ' ' || "
            "COALESCE(s.last_name, '') LIKE ? ESCAPE '\\')"
        )
        like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [like, like]
    if status:
        where.append("s.status = ?")
        params.append(status)
    if list_id is not None:
        where.append(
            "EXISTS (SELECT 1 FROM memberships m WHERE m.subscriber_id = s.id "
            "AND m.list_id = ? AND m.unsubscribed_at IS NULL)"
        )
        params.append(list_id)
    if tag:
        where.append("EXISTS (SELECT 1 FROM json_each(s.tags) t WHERE t.value = ?)")
        params.append(tag)
    return (f"WHERE {' AND '.join(where)}" if where else ""), params
