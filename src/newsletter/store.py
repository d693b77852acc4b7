"""Every SQL statement newsletter runs, behind named methods.

The schema changes only through numbered migrations appended to
``MIGRATIONS``; an applied migration is never edited. Times are stored as
ISO 8601 text in UTC. Each method that writes commits its own transaction,
so a crash never leaves half of a change behind.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from newsletter.errors import InputError, NotFound

# Delivery row states. "sending" is written and committed before the provider
# call; a row still "sending" when a sender starts was in flight at a crash.
PENDING, SENDING, SENT, FAILED, DEFERRED, IN_DOUBT, SKIPPED = (
    "pending",
    "sending",
    "sent",
    "failed",
    "deferred",
    "in_doubt",
    "skipped",
)
CAMPAIGN_STATES = ("draft", "scheduled", "sending", "paused", "sent", "cancelled")


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the caller's transaction.

    ``executescript`` would COMMIT first and break the migration's atomicity.
    """
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError("incomplete SQL statement in migration")


def m001_initial(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            location TEXT NOT NULL,
            added_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT '{}',
            UNIQUE (kind, location)
        );
        CREATE TABLE articles (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id),
            key TEXT NOT NULL,
            url TEXT,
            title TEXT NOT NULL,
            author TEXT,
            published TEXT,
            updated TEXT,
            summary TEXT NOT NULL DEFAULT '',
            body_html TEXT NOT NULL DEFAULT '',
            image TEXT,
            image_alt TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            content_hash TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            changed_at TEXT NOT NULL,
            UNIQUE (source_id, key)
        );
        CREATE TABLE article_stats (
            id INTEGER PRIMARY KEY,
            article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            observed_at TEXT NOT NULL,
            views INTEGER,
            comments INTEGER,
            likes INTEGER
        );
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            first_name TEXT,
            last_name TEXT,
            status TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            attributes TEXT NOT NULL DEFAULT '{}',
            source TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            confirmed_at TEXT,
            unsubscribed_at TEXT
        );
        CREATE INDEX subscribers_status ON subscribers(status);
        CREATE TABLE lists (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );
        CREATE TABLE memberships (
            list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            added_at TEXT NOT NULL,
            PRIMARY KEY (list_id, subscriber_id)
        );
        CREATE TABLE consents (
            id INTEGER PRIMARY KEY,
            subscriber_id INTEGER REFERENCES subscribers(id) ON DELETE SET NULL,
            email TEXT NOT NULL,
            at TEXT NOT NULL,
            source TEXT NOT NULL,
            text TEXT NOT NULL,
            text_version TEXT NOT NULL,
            ip TEXT,
            user_agent TEXT,
            confirm_sent_at TEXT,
            confirmed_at TEXT,
            confirm_ip TEXT
        );
        CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY,
            subject TEXT NOT NULL,
            preheader TEXT NOT NULL DEFAULT '',
            template TEXT NOT NULL,
            list_id INTEGER REFERENCES lists(id),
            status TEXT NOT NULL,
            tracking INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            scheduled_at TEXT,
            started_at TEXT,
            finished_at TEXT,
            note TEXT
        );
        CREATE TABLE campaign_articles (
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            article_id INTEGER NOT NULL REFERENCES articles(id),
            position INTEGER NOT NULL,
            PRIMARY KEY (campaign_id, article_id)
        );
        CREATE TABLE links (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            url TEXT NOT NULL,
            article_id INTEGER REFERENCES articles(id),
            UNIQUE (campaign_id, url)
        );
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            subscriber_id INTEGER REFERENCES subscribers(id) ON DELETE SET NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            message_id TEXT,
            error TEXT,
            queued_at TEXT NOT NULL,
            sending_at TEXT,
            done_at TEXT,
            UNIQUE (campaign_id, subscriber_id)
        );
        CREATE INDEX deliveries_campaign_status ON deliveries(campaign_id, status);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            campaign_id INTEGER,
            subscriber_id INTEGER,
            link_id INTEGER,
            article_id INTEGER,
            method TEXT,
            user_agent TEXT,
            ip TEXT,
            classification TEXT,
            detail TEXT
        );
        CREATE INDEX events_campaign_kind ON events(campaign_id, kind);
        """,
    )


MIGRATIONS = [m001_initial]


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL; SQLite answers "locked" without waiting while another opener does it."""
    for attempt in range(200):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.05)


class Store:
    """The SQLite database of one workspace."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=30, isolation_level=None, check_same_thread=False
            )
        except sqlite3.OperationalError as exc:
            raise InputError(f"{self.path}: cannot open the database ({exc})") from None
        # WAL lets the web server read while a campaign writes. NORMAL sync
        # keeps every committed row across a process crash (the failure the
        # delivery ledger must survive) at a fraction of FULL's fsync cost.
        conn.execute("PRAGMA busy_timeout = 30000")
        _set_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self.db = sqlite_utils.Database(conn)
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    # -- plumbing ---------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one IMMEDIATE transaction: all of it or none of it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def _rows(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def _row(self, sql: str, params: Iterable[Any] | dict = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _value(self, sql: str, params: Iterable[Any] | dict = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def migrate(self) -> list[str]:
        """Apply the migrations this database has not had yet; return their names.

        Each migration and its record commit together, and the list of applied
        migrations is read inside the write lock, so two processes starting
        at once cannot both apply the same one.
        """
        applied = []
        for migration in MIGRATIONS:
            with self.transaction():
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS _migrations "
                    "(name TEXT PRIMARY KEY, applied_at TEXT)"
                )
                if self._value("SELECT 1 FROM _migrations WHERE name = ?", [migration.__name__]):
                    continue
                migration(self.conn)
                self.conn.execute(
                    "INSERT INTO _migrations VALUES (?, datetime('now'))", [migration.__name__]
                )
            applied.append(migration.__name__)
        return applied

    # -- sources and articles ---------------------------------------------

    def source_id(self, kind: str, location: str, now: datetime) -> int:
        """Return the id of a source, registering it on first sight."""
        self.conn.execute(
            "INSERT OR IGNORE INTO sources (kind, location, added_at) VALUES (?, ?, ?)",
            [kind, location, _iso(now)],
        )
        return self._value(
            "SELECT id FROM sources WHERE kind = ? AND location = ?", [kind, location]
        )

    def save_articles(
        self, source_id: int, articles: Iterable[dict[str, Any]], now: datetime
    ) -> dict[str, int]:
        """Insert new articles and update changed ones in one transaction; return counts."""
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        with self.transaction():
            for art in articles:
                existing = self._row(
                    "SELECT id, content_hash FROM articles WHERE source_id = ? AND key = ?",
                    [source_id, art["key"]],
                )
                fields = {
                    "url": art.get("url"),
                    "title": art["title"],
                    "author": art.get("author"),
                    "published": art.get("published"),
                    "updated": art.get("updated"),
                    "summary": art.get("summary", ""),
                    "body_html": art.get("body_html", ""),
                    "image": art.get("image"),
                    "image_alt": art.get("image_alt"),
                    "tags": json.dumps(art.get("tags", [])),
                    "content_hash": art["content_hash"],
                }
                if existing is None:
                    fields.update(
                        source_id=source_id,
                        key=art["key"],
                        first_seen_at=_iso(now),
                        changed_at=_iso(now),
                    )
                    names = ", ".join(fields)
                    marks = ", ".join("?" for _ in fields)
                    cursor = self.conn.execute(
                        f"INSERT INTO articles ({names}) VALUES ({marks})", list(fields.values())
                    )
                    article_id = cursor.lastrowid
                    counts["new"] += 1
                elif existing["content_hash"] != art["content_hash"]:
                    fields["changed_at"] = _iso(now)
                    assignments = ", ".join(f"{name} = ?" for name in fields)
                    self.conn.execute(
                        f"UPDATE articles SET {assignments} WHERE id = ?",
                        [*fields.values(), existing["id"]],
                    )
                    article_id = existing["id"]
                    counts["updated"] += 1
                else:
                    article_id = existing["id"]
                    counts["unchanged"] += 1
                if art.get("views") is not None or art.get("comments") is not None:
                    self.conn.execute(
                        "INSERT INTO article_stats (article_id, observed_at, views, comments, "
                        "likes) VALUES (?, ?, ?, ?, ?)",
                        [
                            article_id,
                            _iso(now),
                            art.get("views"),
                            art.get("comments"),
                            art.get("likes"),
                        ],
                    )
        return counts

    def articles(self, only_new: bool = False) -> list[dict[str, Any]]:
        """List articles, newest first, with their latest blog view counts.

        An article is new until a campaign includes it.
        """
        where = (
            "WHERE NOT EXISTS (SELECT 1 FROM campaign_articles ca WHERE ca.article_id = a.id)"
            if only_new
            else ""
        )
        rows = self._rows(
            f"""
            SELECT a.*, s.kind AS source_kind, s.location AS source_location,
              (SELECT views FROM article_stats st WHERE st.article_id = a.id
                 ORDER BY st.id DESC LIMIT 1) AS views,
              (SELECT comments FROM article_stats st WHERE st.article_id = a.id
                 ORDER BY st.id DESC LIMIT 1) AS comments,
              (SELECT MIN(c.started_at) FROM campaign_articles ca
                 JOIN campaigns c ON c.id = ca.campaign_id
                 WHERE ca.article_id = a.id) AS sent_at
            FROM articles a JOIN sources s ON s.id = a.source_id
            {where}
            ORDER BY COALESCE(a.published, a.first_seen_at) DESC, a.id DESC
            """
        )
        return [_decode_article(r) for r in rows]

    def articles_by_id(self, ids: list[int]) -> list[dict[str, Any]]:
        """Return the articles with these ids, in the order given."""
        found = {}
        for article_id in ids:
            row = self._row("SELECT * FROM articles WHERE id = ?", [article_id])
            if row is None:
                raise NotFound(
                    f"article {article_id}: no such article; see `newsletter articles list`"
                )
            found[article_id] = _decode_article(row)
        return [found[i] for i in ids]

    # -- subscribers ---------------------------------------------------------

    def subscriber_by_email(self, email: str) -> dict[str, Any] | None:
        row = self._row("SELECT * FROM subscribers WHERE email = ?", [email])
        return _decode_subscriber(row) if row else None

    def subscriber(self, subscriber_id: int) -> dict[str, Any] | None:
        row = self._row("SELECT * FROM subscribers WHERE id = ?", [subscriber_id])
        return _decode_subscriber(row) if row else None

    def subscribers(self, status: str | None = None) -> list[dict[str, Any]]:
        if status:
            rows = self._rows("SELECT * FROM subscribers WHERE status = ? ORDER BY id", [status])
        else:
            rows = self._rows("SELECT * FROM subscribers ORDER BY id")
        return [_decode_subscriber(r) for r in rows]

    def add_subscribers(
        self,
        rows: list[dict[str, Any]],
        list_name: str | None,
        source: str,
        consent_text: str,
        now: datetime,
    ) -> dict[str, int]:
        """Insert subscribers that are not in the database yet, in one transaction.

        Existing addresses keep their status: an import never turns an
        unsubscribed, bounced or complained address back on. Each new row gets
        a consent record naming the import as its source.
        """
        counts = {"added": 0, "existing": 0, "suppressed": 0}
        stamp = _iso(now)
        with self.transaction():
            list_id = self._ensure_list(list_name, now) if list_name else None
            for row in rows:
                current = self._row(
                    "SELECT id, status FROM subscribers WHERE email = ?", [row["email"]]
                )
                if current is None:
                    status = row["status"]
                    cursor = self.conn.execute(
                        "INSERT INTO subscribers (email, first_name, last_name, status, tags, "
                        "attributes, source, created_at, updated_at, confirmed_at, "
                        "unsubscribed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            row["email"],
                            row.get("first_name"),
                            row.get("last_name"),
                            status,
                            json.dumps(row.get("tags", [])),
                            json.dumps(row.get("attributes", {})),
                            source,
                            stamp,
                            stamp,
                            stamp if status == "confirmed" else None,
                            stamp if status == "unsubscribed" else None,
                        ],
                    )
                    subscriber_id = cursor.lastrowid
                    self.conn.execute(
                        "INSERT INTO consents (subscriber_id, email, at, source, text, "
                        "text_version, confirmed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            subscriber_id,
                            row["email"],
                            stamp,
                            source,
                            consent_text,
                            "import",
                            stamp if status == "confirmed" else None,
                        ],
                    )
                    counts["added"] += 1
                else:
                    subscriber_id = current["id"]
                    if current["status"] in ("unsubscribed", "bounced", "complained"):
                        counts["suppressed"] += 1
                    else:
                        counts["existing"] += 1
                if list_id is not None:
                    self.conn.execute(
                        "INSERT OR IGNORE INTO memberships VALUES (?, ?, ?)",
                        [list_id, subscriber_id, stamp],
                    )
        return counts

    def _ensure_list(self, name: str, now: datetime) -> int:
        self.conn.execute(
            "INSERT OR IGNORE INTO lists (name, created_at) VALUES (?, ?)", [name, _iso(now)]
        )
        return self._value("SELECT id FROM lists WHERE name = ?", [name])

    def list_id(self, name: str) -> int:
        list_id = self._value("SELECT id FROM lists WHERE name = ?", [name])
        if list_id is None:
            raise NotFound(f"list {name!r}: no such list; import subscribers with --list {name}")
        return list_id

    def unsubscribe(
        self,
        subscriber_id: int,
        campaign_id: int | None,
        now: datetime,
        how: str,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        """Unsubscribe at once and record the event; return False if already out."""
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

    def delete_subscriber(self, subscriber_id: int) -> None:
        """Erase a person; their events stay, anonymised, so campaign totals stay right."""
        with self.transaction():
            self.conn.execute(
                "UPDATE events SET subscriber_id = NULL, ip = NULL, user_agent = NULL "
                "WHERE subscriber_id = ?",
                [subscriber_id],
            )
            self.conn.execute(
                "UPDATE consents SET email = '(deleted)', ip = NULL, user_agent = NULL, "
                "confirm_ip = NULL WHERE subscriber_id = ?",
                [subscriber_id],
            )
            self.conn.execute("DELETE FROM subscribers WHERE id = ?", [subscriber_id])

    def subscriber_record(self, subscriber_id: int) -> dict[str, Any]:
        """Everything held on one person, for a data-subject access request."""
        return {
            "subscriber": self.subscriber(subscriber_id),
            "lists": [
                r["name"]
                for r in self._rows(
                    "SELECT l.name FROM lists l JOIN memberships m ON m.list_id = l.id "
                    "WHERE m.subscriber_id = ? ORDER BY l.name",
                    [subscriber_id],
                )
            ],
            "consents": self._rows(
                "SELECT at, source, text, text_version, ip, user_agent, confirm_sent_at, "
                "confirmed_at, confirm_ip FROM consents WHERE subscriber_id = ? ORDER BY id",
                [subscriber_id],
            ),
            "deliveries": self._rows(
                "SELECT campaign_id, status, done_at FROM deliveries WHERE subscriber_id = ? "
                "ORDER BY id",
                [subscriber_id],
            ),
            "events": self._rows(
                "SELECT at, kind, campaign_id, link_id, user_agent, ip FROM events "
                "WHERE subscriber_id = ? ORDER BY id",
                [subscriber_id],
            ),
        }

    # -- campaigns -----------------------------------------------------------

    def create_campaign(
        self,
        subject: str,
        preheader: str,
        template: str,
        article_ids: list[int],
        list_id: int | None,
        tracking: bool,
        now: datetime,
    ) -> int:
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT INTO campaigns (subject, preheader, template, list_id, status, tracking, "
                "created_at) VALUES (?, ?, ?, ?, 'draft', ?, ?)",
                [subject, preheader, template, list_id, int(tracking), _iso(now)],
            )
            campaign_id = cursor.lastrowid
            self.conn.executemany(
                "INSERT INTO campaign_articles VALUES (?, ?, ?)",
                [(campaign_id, article_id, pos) for pos, article_id in enumerate(article_ids)],
            )
        return campaign_id

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        row = self._row("SELECT * FROM campaigns WHERE id = ?", [campaign_id])
        if row is None:
            raise NotFound(
                f"campaign {campaign_id}: no such campaign; see `newsletter campaign list`"
            )
        row["tracking"] = bool(row["tracking"])
        row["article_ids"] = [
            r["article_id"]
            for r in self._rows(
                "SELECT article_id FROM campaign_articles WHERE campaign_id = ? ORDER BY position",
                [campaign_id],
            )
        ]
        return row

    def campaigns(self) -> list[dict[str, Any]]:
        return self._rows(
            """
            SELECT c.*,
              (SELECT COUNT(*) FROM deliveries d WHERE d.campaign_id = c.id) AS recipients,
              (SELECT COUNT(*) FROM deliveries d WHERE d.campaign_id = c.id
                 AND d.status = 'sent') AS sent,
              (SELECT COUNT(*) FROM deliveries d WHERE d.campaign_id = c.id
                 AND d.status = 'failed') AS failed,
              (SELECT COUNT(*) FROM deliveries d WHERE d.campaign_id = c.id
                 AND d.status = 'in_doubt') AS in_doubt
            FROM campaigns c ORDER BY c.id
            """
        )

    def set_campaign_status(
        self,
        campaign_id: int,
        status: str,
        allowed_from: Iterable[str],
        now: datetime,
        **extra: Any,
    ) -> bool:
        """Move a campaign to a status if it is in one of ``allowed_from``; return success."""
        allowed = list(allowed_from)
        assignments = ", ".join(["status = ?"] + [f"{k} = ?" for k in extra])
        values = [status, *extra.values()]
        if status in ("sent", "cancelled"):
            assignments += ", finished_at = ?"
            values.append(_iso(now))
        marks = ", ".join("?" for _ in allowed)
        with self.transaction():
            cursor = self.conn.execute(
                f"UPDATE campaigns SET {assignments} WHERE id = ? AND status IN ({marks})",
                [*values, campaign_id, *allowed],
            )
        return cursor.rowcount == 1

    def campaign_status(self, campaign_id: int) -> str:
        return self._value("SELECT status FROM campaigns WHERE id = ?", [campaign_id])

    def due_campaigns(self, now: datetime) -> list[int]:
        """Scheduled campaigns whose time has come, and campaigns left sending by a stop."""
        return [
            r["id"]
            for r in self._rows(
                "SELECT id FROM campaigns WHERE (status = 'scheduled' AND scheduled_at <= ?) "
                "OR status = 'sending' ORDER BY id",
                [_iso(now)],
            )
        ]

    def register_links(
        self, campaign_id: int, links: list[tuple[str, int | None]]
    ) -> dict[str, int]:
        """Store the campaign's links (url, article id) and return their ids by url."""
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO links (campaign_id, url, article_id) VALUES (?, ?, ?)",
                [(campaign_id, url, article_id) for url, article_id in links],
            )
        return self.links(campaign_id)

    def links(self, campaign_id: int) -> dict[str, int]:
        return {
            r["url"]: r["id"]
            for r in self._rows("SELECT id, url FROM links WHERE campaign_id = ?", [campaign_id])
        }

    def link(self, link_id: int, campaign_id: int) -> dict[str, Any] | None:
        """The link registered under this id for this campaign, or None."""
        return self._row(
            "SELECT id, url, article_id FROM links WHERE id = ? AND campaign_id = ?",
            [link_id, campaign_id],
        )

    # -- the delivery ledger -----------------------------------------------

    def start_campaign(self, campaign_id: int, list_id: int | None, now: datetime) -> bool:
        """Move a draft or scheduled campaign to sending and plan its deliveries, atomically.

        One pending row per confirmed recipient is written in the same
        transaction as the status change, so a crash can never leave a
        sending campaign without its recipient list. False if the campaign
        was not in a state that can start.
        """
        if list_id is None:
            source = "SELECT id FROM subscribers WHERE status = 'confirmed'"
            params: list[Any] = []
        else:
            source = (
                "SELECT s.id FROM subscribers s JOIN memberships m ON m.subscriber_id = s.id "
                "WHERE s.status = 'confirmed' AND m.list_id = ?"
            )
            params = [list_id]
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE campaigns SET status = 'sending', started_at = ? "
                "WHERE id = ? AND status IN ('draft', 'scheduled')",
                [_iso(now), campaign_id],
            )
            if cursor.rowcount != 1:
                return False
            self.conn.execute(
                "INSERT OR IGNORE INTO deliveries (campaign_id, subscriber_id, status, queued_at) "
                f"SELECT ?, id, 'pending', ? FROM ({source}) ORDER BY id",
                [campaign_id, _iso(now), *params],
            )
        return True

    def in_flight(self, campaign_id: int) -> list[dict[str, Any]]:
        """Rows left 'sending' by a sender that stopped mid-call."""
        return self._rows(
            "SELECT * FROM deliveries WHERE campaign_id = ? AND status = 'sending'", [campaign_id]
        )

    def next_pending(self, campaign_id: int, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Stream pending rows in id order, a batch at a time, so memory stays flat."""
        return self._rows(
            "SELECT d.id, d.subscriber_id, d.attempts FROM deliveries d "
            "WHERE d.campaign_id = ? AND d.status IN ('pending', 'deferred') AND d.id > ? "
            "ORDER BY d.id LIMIT ?",
            [campaign_id, after_id, limit],
        )

    def claim_delivery(self, delivery_id: int, message_id: str, now: datetime) -> bool:
        """Mark a row 'sending' before the provider call; False if another sender took it."""
        cursor = self.conn.execute(
            "UPDATE deliveries SET status = 'sending', message_id = ?, sending_at = ?, "
            "attempts = attempts + 1 WHERE id = ? AND status IN ('pending', 'deferred')",
            [message_id, _iso(now), delivery_id],
        )
        return cursor.rowcount == 1

    def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        now: datetime,
        error: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Record the outcome of a provider call (or of an in-flight row's resolution)."""
        self.conn.execute(
            "UPDATE deliveries SET status = ?, error = ?, done_at = ?, "
            "message_id = COALESCE(?, message_id) WHERE id = ?",
            [status, error, _iso(now), message_id, delivery_id],
        )

    def retry_in_doubt(self, campaign_id: int) -> int:
        """Put in-doubt rows back to pending on purpose; return how many."""
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE deliveries SET status = 'pending' WHERE campaign_id = ? "
                "AND status = 'in_doubt'",
                [campaign_id],
            )
        return cursor.rowcount

    def retry_failed(self, campaign_id: int) -> int:
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE deliveries SET status = 'pending', error = NULL WHERE campaign_id = ? "
                "AND status = 'failed'",
                [campaign_id],
            )
        return cursor.rowcount

    def delivery_counts(self, campaign_id: int) -> dict[str, int]:
        counts = dict.fromkeys((PENDING, SENDING, SENT, FAILED, DEFERRED, IN_DOUBT, SKIPPED), 0)
        for row in self._rows(
            "SELECT status, COUNT(*) AS n FROM deliveries WHERE campaign_id = ? GROUP BY status",
            [campaign_id],
        ):
            counts[row["status"]] = row["n"]
        return counts

    def delivery(self, campaign_id: int, subscriber_id: int) -> dict[str, Any] | None:
        return self._row(
            "SELECT * FROM deliveries WHERE campaign_id = ? AND subscriber_id = ?",
            [campaign_id, subscriber_id],
        )

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


def _decode_article(row: dict[str, Any]) -> dict[str, Any]:
    row["tags"] = json.loads(row["tags"])
    return row


def _decode_subscriber(row: dict[str, Any]) -> dict[str, Any]:
    row["tags"] = json.loads(row["tags"])
    row["attributes"] = json.loads(row["attributes"])
    return row
