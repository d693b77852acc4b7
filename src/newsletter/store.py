"""Every SQL statement newsletter runs, behind named methods.

The schema changes only through numbered migrations appended to
``MIGRATIONS``; an applied migration is never edited. Times are stored as
ISO 8601 text in UTC. Each method that writes commits its own transaction,
so a crash never leaves half of a change behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
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
# What a provider last said about a sent delivery; a later, weaker word (a
# "deferred" arriving after "delivered") does not replace a stronger one.
PROVIDER_STATUS_RANK = {
    "accepted": 1,
    "deferred": 2,
    "soft_bounce": 2,
    "delivered": 3,
    "dropped": 4,
    "bounce": 5,
    "complaint": 6,
}
# The per-delivery key sent to providers (see delivery.delivery_key).
_DELIVERY_KEY = re.compile(r"^c(?P<campaign>\d+)-d(?P<delivery>\d+)$")


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
            -- AUTOINCREMENT: an id is never reused, so the signed links of an erased
            -- person can never act on someone who joins later.
            id INTEGER PRIMARY KEY AUTOINCREMENT,
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


def m002_article_intake(conn: sqlite3.Connection) -> None:
    """Feeds and pages: archived articles, re-announced updates, the source item's hash.

    ``new_after_campaign``: NULL for an article recorded without being
    announced (a source's back catalogue); otherwise the article is new until
    a campaign with a higher id includes it (0: any campaign). Announcing an
    update sets it to the last campaign that carried the article.
    ``item_hash``: the hash of the item as the source gave it, before its page
    was fetched for the full text, so an unchanged item is not fetched again.
    """
    _script(
        conn,
        """
        ALTER TABLE articles ADD COLUMN new_after_campaign INTEGER DEFAULT 0;
        ALTER TABLE articles ADD COLUMN item_hash TEXT;
        CREATE INDEX articles_source_url ON articles(source_id, url);
        CREATE INDEX article_stats_article ON article_stats(article_id, id);
        """,
    )


def m004_delivery_retries(conn: sqlite3.Connection) -> None:
    """Retry times, provider ids, and the lease that lets one sender at a time send a campaign."""
    _script(
        conn,
        """
        ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT;
        ALTER TABLE deliveries ADD COLUMN provider_id TEXT;
        CREATE INDEX deliveries_provider_id ON deliveries(provider_id);
        CREATE TABLE send_leases (
            campaign_id INTEGER PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
            owner TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            expires_at REAL NOT NULL
        );
        """,
    )


def m003_subscribers(conn: sqlite3.Connection) -> None:
    """The suppression list, per-list unsubscribes, public lists, consent details, segments.

    ``suppressions`` holds every address that unsubscribed, bounced or
    complained, keyed case-insensitively; an erased person stays on it as
    ``sha256:<hash of the address>``. Triggers on status updates keep it in
    step whoever changes a status (a bounce, a complaint webhook), and refuse
    to turn a suppressed address back to unconfirmed or confirmed: only
    ``Store.confirm_opt_in`` (the subscriber's own confirmed opt-in) lifts an
    entry, and it deletes the entry first. New rows are checked by the two
    methods that insert subscribers; an insert trigger would make a large
    import three times slower.
    """
    _script(
        conn,
        """
        CREATE TABLE suppressions (
            email TEXT PRIMARY KEY COLLATE NOCASE,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        );
        INSERT OR IGNORE INTO suppressions (email, reason, at)
            SELECT email, status, COALESCE(unsubscribed_at, updated_at) FROM subscribers
            WHERE status IN ('unsubscribed', 'bounced', 'complained');
        CREATE TRIGGER subscribers_suppress AFTER UPDATE OF status ON subscribers
        WHEN NEW.status IN ('unsubscribed', 'bounced', 'complained')
            AND NEW.status IS NOT OLD.status
        BEGIN
            INSERT INTO suppressions (email, reason, at)
            VALUES (NEW.email, NEW.status, NEW.updated_at)
            ON CONFLICT (email) DO UPDATE SET reason = excluded.reason, at = excluded.at;
        END;
        CREATE TRIGGER subscribers_suppressed_stay_out BEFORE UPDATE OF status ON subscribers
        WHEN NEW.status NOT IN ('unsubscribed', 'bounced', 'complained')
            AND EXISTS (SELECT 1 FROM suppressions WHERE email = NEW.email)
        BEGIN
            SELECT RAISE(ABORT, 'suppressed address: only a confirmed opt-in lifts it');
        END;
        ALTER TABLE memberships ADD COLUMN unsubscribed_at TEXT;
        ALTER TABLE lists ADD COLUMN description TEXT NOT NULL DEFAULT '';
        ALTER TABLE lists ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE consents ADD COLUMN lists TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE consents ADD COLUMN detail TEXT;
        ALTER TABLE campaigns ADD COLUMN segment TEXT;
        CREATE INDEX consents_subscriber ON consents(subscriber_id);
        CREATE INDEX memberships_subscriber ON memberships(subscriber_id);
        CREATE INDEX events_subscriber ON events(subscriber_id);
        """,
    )


def m005_provider_events(conn: sqlite3.Connection) -> None:
    """Provider webhook events: stored raw, once each, tied to their delivery.

    ``provider_event_id`` is the provider's own id for the event (SendGrid
    sg_event_id, Mailgun's signature token, Postmark's record id, the SNS
    MessageId); the unique index turns a retried webhook into a no-op.
    ``recipient`` (lower case) lets erasing a person blank the raw payloads
    that name them, matched or not. ``provider_status`` is the last word
    about a sent delivery (delivered, bounce, complaint, ...), kept apart from
    the ledger's own ``status``.
    """
    _script(
        conn,
        """
        ALTER TABLE events ADD COLUMN provider TEXT;
        ALTER TABLE events ADD COLUMN provider_event_id TEXT;
        ALTER TABLE events ADD COLUMN delivery_id INTEGER;
        ALTER TABLE events ADD COLUMN recipient TEXT;
        ALTER TABLE events ADD COLUMN raw TEXT;
        CREATE UNIQUE INDEX events_provider_event ON events(provider, provider_event_id);
        CREATE INDEX events_recipient ON events(recipient) WHERE recipient IS NOT NULL;
        ALTER TABLE deliveries ADD COLUMN provider_status TEXT;
        ALTER TABLE deliveries ADD COLUMN provider_status_at TEXT;
        CREATE INDEX deliveries_message_id ON deliveries(message_id);
        CREATE TRIGGER subscribers_erase_provider_events AFTER DELETE ON subscribers
        BEGIN
            UPDATE events SET raw = NULL, detail = NULL, recipient = NULL
            WHERE recipient = lower(OLD.email);
        END;
        """,
    )


MIGRATIONS = [
    m001_initial,
    m002_article_intake,
    m003_subscribers,
    m004_delivery_retries,
    m005_provider_events,
]


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

    def source(self, source_id: int) -> dict[str, Any]:
        """A source row with its state decoded."""
        row = self._row("SELECT * FROM sources WHERE id = ?", [source_id])
        if row is None:
            raise NotFound(f"source {source_id}: no such source")
        row["state"] = json.loads(row["state"] or "{}")
        row["articles"] = self._value(
            "SELECT COUNT(*) FROM articles WHERE source_id = ?", [source_id]
        )
        return row

    def save_source_state(self, source_id: int, state: dict[str, Any]) -> None:
        """Replace a source's state (validators, failures, next try) in one write."""
        with self.transaction():
            self.conn.execute(
                "UPDATE sources SET state = ? WHERE id = ?",
                [json.dumps(state, sort_keys=True), source_id],
            )

    def source_articles(self, source_id: int) -> list[dict[str, Any]]:
        """id, key, url and item hash of every article a source has given."""
        return self._rows(
            "SELECT id, key, url, item_hash FROM articles WHERE source_id = ? ORDER BY id",
            [source_id],
        )

    def _find_article(
        self, source_id: int, art: dict[str, Any], batch_keys: set[str], url_unique: bool
    ) -> dict[str, Any] | None:
        """The stored article this item is, by key; else by URL when its key changed.

        Guids and links both change in real feeds (a platform move, a
        re-generated guid). A URL match counts only when the URL is unique in
        the batch and the stored article's own key is not in the batch, so two
        live articles that share a link are never merged.
        """
        columns = "id, key, content_hash, updated, item_hash"
        row = self._row(
            f"SELECT {columns} FROM articles WHERE source_id = ? AND key = ?",
            [source_id, art["key"]],
        )
        if row is not None or not art.get("url") or not url_unique:
            return row
        candidates = [
            r
            for r in self._rows(
                f"SELECT {columns} FROM articles WHERE source_id = ? AND url = ?",
                [source_id, art["url"]],
            )
            if r["key"] not in batch_keys
        ]
        return candidates[0] if len(candidates) == 1 else None

    def save_articles(
        self,
        source_id: int,
        articles: Iterable[dict[str, Any]],
        now: datetime,
        *,
        announce_updates: bool = False,
        archive: Callable[[list[dict[str, Any]]], set[str]] | None = None,
    ) -> dict[str, int]:
        """Insert new articles and update changed ones in one transaction; return counts.

        An article is changed when what readers see (its content hash) or its
        updated date differs; it is updated in place and stays announced unless
        ``announce_updates``. ``archive`` is given the articles seen for the first
        time and returns the keys of those to record without announcing them.
        Counter snapshots (views, comments, likes) are stored when they differ
        from the article's last one.
        """
        counts = {"new": 0, "updated": 0, "unchanged": 0, "archived": 0}
        batch = list(articles)
        batch_keys = {a["key"] for a in batch}
        urls = Counter(a.get("url") for a in batch if a.get("url"))
        with self.transaction():
            found = {
                a["key"]: self._find_article(source_id, a, batch_keys, urls[a.get("url")] == 1)
                for a in batch
            }
            unseen = [a for a in batch if found[a["key"]] is None]
            archived = archive(unseen) if archive and unseen else set()
            for art in batch:
                existing = found[art["key"]]
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
                    "item_hash": art.get("item_hash"),
                }
                if existing is None:
                    is_archived = art["key"] in archived
                    fields.update(
                        source_id=source_id,
                        key=art["key"],
                        first_seen_at=_iso(now),
                        changed_at=_iso(now),
                        new_after_campaign=None if is_archived else 0,
                    )
                    names = ", ".join(fields)
                    marks = ", ".join("?" for _ in fields)
                    cursor = self.conn.execute(
                        f"INSERT INTO articles ({names}) VALUES ({marks})", list(fields.values())
                    )
                    article_id = cursor.lastrowid
                    counts["archived" if is_archived else "new"] += 1
                elif existing["content_hash"] != art["content_hash"] or existing[
                    "updated"
                ] != art.get("updated"):
                    article_id = existing["id"]
                    fields["key"] = art["key"]
                    fields["changed_at"] = _iso(now)
                    assignments = ", ".join(f"{name} = ?" for name in fields)
                    self.conn.execute(
                        f"UPDATE articles SET {assignments} WHERE id = ?",
                        [*fields.values(), article_id],
                    )
                    if announce_updates:
                        # New again until a campaign after the last one that carried it.
                        # An archived article (NULL) stays archived: editing an old
                        # post does not announce it for the first time.
                        self.conn.execute(
                            "UPDATE articles SET new_after_campaign = COALESCE((SELECT "
                            "MAX(campaign_id) FROM campaign_articles WHERE article_id = ?), 0) "
                            "WHERE id = ? AND new_after_campaign IS NOT NULL",
                            [article_id, article_id],
                        )
                    counts["updated"] += 1
                else:
                    article_id = existing["id"]
                    if existing["key"] != art["key"] or existing["item_hash"] != art.get(
                        "item_hash"
                    ):
                        self.conn.execute(
                            "UPDATE articles SET key = ?, item_hash = ? WHERE id = ?",
                            [art["key"], art.get("item_hash"), article_id],
                        )
                    counts["unchanged"] += 1
                self._snapshot(
                    article_id, now, art.get("views"), art.get("comments"), art.get("likes")
                )
        return counts

    def _snapshot(
        self,
        article_id: int,
        now: datetime,
        views: int | None,
        comments: int | None,
        likes: int | None,
    ) -> bool:
        """Store a counter snapshot if it says something the last one did not."""
        if views is None and comments is None and likes is None:
            return False
        last = self._row(
            "SELECT views, comments, likes FROM article_stats WHERE article_id = ? "
            "ORDER BY id DESC LIMIT 1",
            [article_id],
        )
        if last == {"views": views, "comments": comments, "likes": likes}:
            return False
        self.conn.execute(
            "INSERT INTO article_stats (article_id, observed_at, views, comments, likes) "
            "VALUES (?, ?, ?, ?, ?)",
            [article_id, _iso(now), views, comments, likes],
        )
        return True

    def record_stats(
        self, snapshots: Iterable[tuple[int, int | None, int | None, int | None]], now: datetime
    ) -> int:
        """Store (article id, views, comments, likes) snapshots; return how many were new."""
        stored = 0
        with self.transaction():
            for article_id, views, comments, likes in snapshots:
                stored += self._snapshot(article_id, now, views, comments, likes)
        return stored

    def article_stats(self, article_id: int) -> list[dict[str, Any]]:
        """Every counter snapshot of one article, oldest first."""
        return self._rows(
            "SELECT observed_at, views, comments, likes FROM article_stats "
            "WHERE article_id = ? ORDER BY id",
            [article_id],
        )

    def articles(self, only_new: bool = False) -> list[dict[str, Any]]:
        """List articles, newest first, with their latest blog view counts.

        An article is new until a campaign includes it (after its last
        announced update); an archived article is never new on its own.
        """
        is_new = (
            "(a.new_after_campaign IS NOT NULL AND NOT EXISTS (SELECT 1 FROM campaign_articles "
            "ca WHERE ca.article_id = a.id AND ca.campaign_id > a.new_after_campaign))"
        )
        where = f"WHERE {is_new}" if only_new else ""
        rows = self._rows(
            f"""
            SELECT a.*, s.kind AS source_kind, s.location AS source_location,
              {is_new} AS is_new,
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

    # -- subscribers, lists, consent, suppression ------------------------------

    def subscriber_by_email(self, email: str, any_case: bool = False) -> dict[str, Any] | None:
        """The subscriber with this address; ``any_case``: or the one spelled otherwise."""
        row = self._row("SELECT * FROM subscribers WHERE email = ?", [email])
        if row is None and any_case:
            rows = self._rows(
                "SELECT * FROM subscribers WHERE email = ? COLLATE NOCASE LIMIT 2", [email]
            )
            row = rows[0] if len(rows) == 1 else None
        return _decode_subscriber(row) if row else None

    def subscriber(self, subscriber_id: int) -> dict[str, Any] | None:
        row = self._row("SELECT * FROM subscribers WHERE id = ?", [subscriber_id])
        return _decode_subscriber(row) if row else None

    def subscribers(
        self, status: str | None = None, list_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Subscribers in id order, optionally only one status or the members of one list."""
        where, params = [], []
        if status:
            where.append("s.status = ?")
            params.append(status)
        if list_id is not None:
            where.append(
                "EXISTS (SELECT 1 FROM memberships m WHERE m.subscriber_id = s.id "
                "AND m.list_id = ? AND m.unsubscribed_at IS NULL)"
            )
            params.append(list_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(f"SELECT s.* FROM subscribers s {clause} ORDER BY s.id", params)
        return [_decode_subscriber(r) for r in rows]

    def _suppression_keys(self) -> set[str]:
        return {r[0].lower() for r in self.conn.execute("SELECT email FROM suppressions")}

    def add_subscribers(
        self,
        rows: list[dict[str, Any]],
        list_name: str | None,
        source: str,
        consent_text: str,
        now: datetime,
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Insert the subscribers that are not in the database yet, in one transaction.

        Known addresses keep everything they have: an import never changes a
        status, and never turns a suppressed address (unsubscribed, bounced,
        complained, erased) back on; those rows are counted as suppressed. A
        new row that arrives opted out is stored as such and put on the
        suppression list (``opted_out``). Each new row gets a consent record
        naming the import. Rows go in with executemany, a batch at a time.
        """
        counts = {"added": 0, "existing": 0, "suppressed": 0, "opted_out": 0}
        stamp = _iso(now)
        lists_json = _json([list_name] if list_name else [])
        with self.transaction():
            list_id = self._ensure_list(list_name, now) if list_name else None
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
            scan = next_id - 1 <= 4 * len(rows)
            known: dict[str, tuple[int, str]] = {}
            if scan:
                known = {
                    email: (subscriber_id, status)
                    for email, subscriber_id, status in self.conn.execute(
                        "SELECT email, id, status FROM subscribers"
                    )
                }
            seen: set[str] = set()
            for start in range(0, len(rows), IMPORT_BATCH):
                chunk = rows[start : start + IMPORT_BATCH]
                if not scan:
                    marks = ", ".join("?" * len(chunk))
                    known = {
                        email: (subscriber_id, status)
                        for email, subscriber_id, status in self.conn.execute(
                            f"SELECT email, id, status FROM subscribers WHERE email IN ({marks})",
                            [r["email"] for r in chunk],
                        )
                    }
                people, consents, members, opted_out = [], [], [], []
                first_id = next_id
                for row in chunk:
                    email = row["email"]
                    current = known.get(email)
                    if (current is not None and current[1] in SUPPRESSED) or (
                        suppressed
                        and (
                            email.lower() in suppressed
                            or (erased and erased_key(email) in suppressed)
                        )
                    ):
                        counts["suppressed"] += 1
                        continue
                    if current is not None and row["status"] in SUPPRESSED:
                        # A newer export says this known address opted out: moving
                        # towards suppression is always safe (never the other way).
                        self.conn.execute(
                            "UPDATE subscribers SET status = ?, updated_at = ?, "
                            "unsubscribed_at = COALESCE(unsubscribed_at, ?) WHERE id = ?",
                            [row["status"], stamp, stamp, current[0]],
                        )
                        counts["opted_out"] += 1
                        continue
                    if current is not None or email in seen:
                        counts["existing"] += 1
                        if list_id is not None and current is not None:
                            members.append((list_id, current[0], stamp))
                        continue
                    seen.add(email)
                    status = row["status"]
                    confirmed_at = stamp if status == "confirmed" else None
                    tags = row.get("tags")
                    attributes = row.get("attributes")
                    evidence = row.get("consent")
                    people.append(
                        (
                            next_id,
                            email,
                            row.get("first_name"),
                            row.get("last_name"),
                            status,
                            _json(tags) if tags else "[]",
                            _json(attributes) if attributes else "{}",
                            source,
                            stamp,
                            stamp,
                            confirmed_at,
                            stamp if status == "unsubscribed" else None,
                        )
                    )
                    consents.append(
                        (
                            next_id,
                            email,
                            confirmed_at,
                            _json(evidence) if evidence else None,
                        )
                    )
                    if status in SUPPRESSED:
                        # Later rows of this import with the same address must see it.
                        suppressed.add(email.lower())
                        opted_out.append((email, status, stamp))
                    elif list_id is not None:
                        members.append((list_id, next_id, stamp))
                    next_id += 1
                counts["added"] += len(people)
                counts["opted_out"] += len(opted_out)
                self.conn.executemany(
                    "INSERT INTO subscribers (id, email, first_name, last_name, status, tags, "
                    "attributes, source, created_at, updated_at, confirmed_at, unsubscribed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    people,
                )
                if any(c[3] for c in consents):
                    self.conn.executemany(
                        "INSERT INTO consents (subscriber_id, email, confirmed_at, detail, at, "
                        "source, text, text_version, lists) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 'import', ?)",
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
                        "INSERT OR IGNORE INTO suppressions (email, reason, at) VALUES (?, ?, ?)",
                        opted_out,
                    )
                if members:
                    self.conn.executemany(
                        "INSERT OR IGNORE INTO memberships (list_id, subscriber_id, added_at) "
                        "VALUES (?, ?, ?)",
                        members,
                    )
                if on_progress:
                    on_progress(start + len(chunk))
        return counts

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

    def leave_list(
        self,
        subscriber_id: int,
        list_id: int,
        campaign_id: int | None,
        now: datetime,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        """Leave one list at once, including its campaigns already sending; False if not on it."""
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
                [stamp, campaign_id, subscriber_id, user_agent, ip, f"list {list_id}"],
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
            if subscriber is None or name is None or subscriber["status"] != "confirmed":
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
            subscriber_id = self._value("SELECT id FROM subscribers WHERE email = ?", [email])
            if subscriber_id is None:
                # The same mailbox typed with other capitals is the same person.
                same = self.conn.execute(
                    "SELECT id FROM subscribers WHERE email = ? COLLATE NOCASE LIMIT 2", [email]
                ).fetchall()
                subscriber_id = same[0][0] if len(same) == 1 else None
            if subscriber_id is None:
                blocked = self._value("SELECT 1 FROM suppressions WHERE email = ?", [email])
                cursor = self.conn.execute(
                    "INSERT INTO subscribers (email, status, source, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [email, "unsubscribed" if blocked else "unconfirmed", source, stamp, stamp],
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
            suppressed_at = self._value(
                "SELECT at FROM suppressions WHERE email = ? OR email = ?",
                [email, erased_key(email)],
            )
            # >=: times are kept to the second, and an unsubscribe in the same second
            # as the request must win.
            if suppressed_at is not None and suppressed_at >= consent["at"]:
                return "stale"
            self.conn.execute(
                "UPDATE consents SET confirmed_at = ?, confirm_ip = ? WHERE id = ?",
                [stamp, ip, consent_id],
            )
            self.conn.execute(
                "DELETE FROM suppressions WHERE email = ? OR email = ?", [email, erased_key(email)]
            )
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
        return bool(
            self._value(
                "SELECT 1 FROM suppressions WHERE email = ? OR email = ?",
                [email, erased_key(email)],
            )
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
            reason = self._value("SELECT reason FROM suppressions WHERE email = ?", [email])
            self.conn.execute("DELETE FROM suppressions WHERE email = ?", [email])
            self.conn.execute(
                "INSERT OR IGNORE INTO suppressions (email, reason, at) VALUES (?, ?, ?)",
                [erased_key(email), reason or "erased", _iso(now)],
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
            self.conn.execute("DELETE FROM subscribers WHERE id = ?", [subscriber_id])

    def subscriber_record(self, subscriber_id: int) -> dict[str, Any]:
        """Everything held on one person, for a data-subject access request."""
        subscriber = self.subscriber(subscriber_id)
        email = subscriber["email"] if subscriber else ""
        suppression = self._row(
            "SELECT reason, at FROM suppressions WHERE email = ? OR email = ?",
            [email, erased_key(email)],
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
                    "confirm_sent_at, confirmed_at, confirm_ip FROM consents "
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
                "classification, detail FROM events WHERE subscriber_id = ? ORDER BY id",
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
        segment: list[dict[str, Any]] | None = None,
    ) -> int:
        """A draft campaign; ``segment`` (rules from ``subscribers.parse_segment``) narrows it."""
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT INTO campaigns (subject, preheader, template, list_id, status, tracking, "
                "created_at, segment) VALUES (?, ?, ?, ?, 'draft', ?, ?, ?)",
                [
                    subject,
                    preheader,
                    template,
                    list_id,
                    int(tracking),
                    _iso(now),
                    json.dumps(segment) if segment else None,
                ],
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

        One pending row per recipient is written in the same transaction as
        the status change, so a crash can never leave a sending campaign
        without its recipient list. Recipients are confirmed, not suppressed,
        on the campaign's list (and not left it) and in its segment, if it has
        those. False if the campaign was not in a state that can start.
        """
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE campaigns SET status = 'sending', started_at = ? "
                "WHERE id = ? AND status IN ('draft', 'scheduled')",
                [_iso(now), campaign_id],
            )
            if cursor.rowcount != 1:
                return False
            segment = self._value("SELECT segment FROM campaigns WHERE id = ?", [campaign_id])
            where, params = _recipient_filter(list_id, json.loads(segment) if segment else [])
            self.conn.execute(
                "INSERT OR IGNORE INTO deliveries (campaign_id, subscriber_id, status, queued_at) "
                f"SELECT ?, s.id, 'pending', ? FROM subscribers s WHERE {where} ORDER BY s.id",
                [campaign_id, _iso(now), *params],
            )
        return True

    def count_recipients(self, list_id: int | None, segment: list[dict[str, Any]]) -> int:
        """How many subscribers a campaign with this list and segment would go to now."""
        where, params = _recipient_filter(list_id, segment)
        return self._value(f"SELECT COUNT(*) FROM subscribers s WHERE {where}", params)

    def in_flight(self, campaign_id: int) -> list[dict[str, Any]]:
        """Rows left 'sending' by a sender that stopped mid-call."""
        return self._rows(
            "SELECT * FROM deliveries WHERE campaign_id = ? AND status = 'sending'", [campaign_id]
        )

    def next_pending(
        self, campaign_id: int, after_id: int, limit: int, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Stream the rows due for a try in id order, a batch at a time (flat memory).

        Pending rows are always due; deferred ones once their retry time has come.
        """
        due = _iso(now) if now is not None else "9999"
        rows = self._rows(
            "SELECT d.id, d.subscriber_id, d.attempts, s.email, s.first_name, s.last_name, "
            "s.status AS subscriber_status, s.tags, s.attributes FROM deliveries d "
            "LEFT JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.campaign_id = ? AND d.id > ? AND (d.status = 'pending' OR "
            "(d.status = 'deferred' AND COALESCE(d.next_attempt_at, '') <= ?)) "
            "ORDER BY d.id LIMIT ?",
            [campaign_id, after_id, due, limit],
        )
        for row in rows:
            if row["email"] is not None:
                row["tags"] = json.loads(row["tags"])
                row["attributes"] = json.loads(row["attributes"])
        return rows

    def claim_deliveries(
        self, claims: list[tuple[int, str]], now: datetime
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
            for delivery_id, message_id in claims:
                cursor = self.conn.execute(
                    "UPDATE deliveries SET status = 'sending', message_id = ?, sending_at = ?, "
                    "attempts = attempts + 1 WHERE id = ? AND status IN ('pending', 'deferred') "
                    "AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = "
                    "deliveries.subscriber_id AND s.status = 'confirmed')",
                    [message_id, stamp, delivery_id],
                )
                if cursor.rowcount == 1:
                    claimed.add(delivery_id)
                    continue
                cursor = self.conn.execute(
                    "UPDATE deliveries SET status = 'skipped', error = 'no longer subscribed', "
                    "done_at = ? WHERE id = ? AND status IN ('pending', 'deferred')",
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
        stamp = _iso(now)
        with self.transaction():
            for o in outcomes:
                self.conn.execute(
                    "UPDATE deliveries SET status = ?, error = ?, done_at = ?, "
                    "provider_id = COALESCE(?, provider_id), next_attempt_at = ? "
                    "WHERE id = ? AND status = 'sending'",
                    [
                        o["status"],
                        o.get("error"),
                        stamp,
                        o.get("provider_id"),
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

    def take_lease(
        self,
        campaign_id: int,
        owner: str,
        host: str,
        pid: int,
        now: float,
        seconds: float,
        alive: Callable[[str, int], bool],
    ) -> dict[str, Any] | None:
        """Become the one sender of a campaign; return the holder's row if someone else is.

        A lease is free when it has expired or when its holder is a process on
        this host that no longer runs (a SIGKILLed sender frees it at once).
        Times are wall-clock seconds, comparable between processes.
        """
        with self.transaction():
            holder = self._row("SELECT * FROM send_leases WHERE campaign_id = ?", [campaign_id])
            if holder is not None and holder["owner"] != owner:
                alive_now = alive(holder["host"], holder["pid"])
                # A live process on this host keeps its lease even past expiry (it may be
                # stalled on a slow server); a remote holder is trusted until it expires.
                if alive_now and (holder["host"] == host or holder["expires_at"] > now):
                    return holder
            self.conn.execute(
                "INSERT OR REPLACE INTO send_leases VALUES (?, ?, ?, ?, ?)",
                [campaign_id, owner, host, pid, now + seconds],
            )
        return None

    def renew_lease(self, campaign_id: int, owner: str, now: float, seconds: float) -> bool:
        cursor = self.conn.execute(
            "UPDATE send_leases SET expires_at = ? WHERE campaign_id = ? AND owner = ?",
            [now + seconds, campaign_id, owner],
        )
        return cursor.rowcount == 1

    def release_lease(self, campaign_id: int, owner: str) -> None:
        self.conn.execute(
            "DELETE FROM send_leases WHERE campaign_id = ? AND owner = ?", [campaign_id, owner]
        )

    def next_retry_at(self, campaign_id: int) -> str | None:
        """When the earliest deferred row of a campaign may be tried again."""
        return self._value(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE campaign_id = ? "
            "AND status = 'deferred'",
            [campaign_id],
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
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = NULL "
                "WHERE campaign_id = ? AND status = 'in_doubt'",
                [campaign_id],
            )
        return cursor.rowcount

    def retry_failed(self, campaign_id: int) -> int:
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE deliveries SET status = 'pending', error = NULL, attempts = 0, "
                "next_attempt_at = NULL WHERE campaign_id = ? AND status = 'failed'",
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
        match = _DELIVERY_KEY.match(event.get("key") or "")
        if match:
            row = self._row(
                f"SELECT {columns} FROM deliveries WHERE id = ? AND campaign_id = ?",
                [int(match["delivery"]), int(match["campaign"])],
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
                        "SELECT id FROM subscribers WHERE email = ? COLLATE NOCASE", [email]
                    )
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
        if delivery["status"] == IN_DOUBT:
            # The provider reports on the message, so it took it: sent, not to be resent.
            self.conn.execute(
                "UPDATE deliveries SET status = 'sent', error = NULL, done_at = ? "
                "WHERE id = ? AND status = 'in_doubt'",
                [stamp, delivery["id"]],
            )
            delivery["status"] = SENT
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
            status = "bounced" if kind == "bounce" else "unsubscribed"
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


def _decode_article(row: dict[str, Any]) -> dict[str, Any]:
    row["tags"] = json.loads(row["tags"])
    return row


def _decode_subscriber(row: dict[str, Any]) -> dict[str, Any]:
    row["tags"] = json.loads(row["tags"])
    row["attributes"] = json.loads(row["attributes"])
    return row


# Statuses that put an address on the suppression list.
SUPPRESSED = ("unsubscribed", "bounced", "complained")
# An erased person's suppression entry: the hash of the address, never the address.
ERASED_PREFIX = "sha256:"
# Rows per executemany of an import: far below SQLite's limit on bound parameters.
IMPORT_BATCH = 500
# One encoder for every row of an import; json.dumps with options builds a new one per call.
_JSON_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ESCAPE = json.encoder.encode_basestring  # one str as a JSON string, non-ASCII kept, in C


def _json(value: Any) -> str:
    """JSON of a tag list or attribute dict: flat ones of strings without the encoder's cost."""
    try:
        if isinstance(value, dict):
            return "{" + ",".join([_ESCAPE(k) + ":" + _ESCAPE(v) for k, v in value.items()]) + "}"
        return "[" + ",".join([_ESCAPE(v) for v in value]) + "]"
    except TypeError:  # a number, a nested object: the full encoder
        return _JSON_ENCODE(value)


def erased_key(email: str) -> str:
    """The suppression key that stands for an address after its person was erased."""
    return ERASED_PREFIX + hashlib.sha256(email.lower().encode("utf-8")).hexdigest()


def _decode_consent(row: dict[str, Any]) -> dict[str, Any]:
    row["lists"] = json.loads(row.get("lists") or "[]")
    row["detail"] = json.loads(row["detail"]) if row.get("detail") else None
    return row


def _recipient_filter(list_id: int | None, segment: list[dict[str, Any]]) -> tuple[str, list]:
    """The WHERE clause over subscribers ``s`` that picks a campaign's recipients.

    Confirmed and not suppressed (the triggers keep the two apart, this is
    the second lock), on the campaign's list unless they left it, and
    matching every rule of the segment. Values are always bound parameters.
    """
    clauses = [
        "s.status = 'confirmed'",
        "NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)",
    ]
    params: list[Any] = []
    if list_id is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM memberships m WHERE m.subscriber_id = s.id "
            "AND m.list_id = ? AND m.unsubscribed_at IS NULL)"
        )
        params.append(list_id)
    for rule in segment:
        if rule["kind"] == "tag":
            clause = "EXISTS (SELECT 1 FROM json_each(s.tags) t WHERE lower(t.value) = lower(?))"
            values = [rule["value"]]
        elif rule["kind"] == "attribute" and rule.get("value") is None:
            clause = (
                "EXISTS (SELECT 1 FROM json_each(s.attributes) a WHERE lower(a.key) = lower(?) "
                "AND trim(COALESCE(CAST(a.value AS TEXT), '')) != '')"
            )
            values = [rule["key"]]
        elif rule["kind"] == "attribute":
            clause = (
                "EXISTS (SELECT 1 FROM json_each(s.attributes) a WHERE lower(a.key) = lower(?) "
                "AND lower(CAST(a.value AS TEXT)) = lower(?))"
            )
            values = [rule["key"], rule["value"]]
        else:
            raise ValueError(f"unknown segment rule {rule!r}")
        clauses.append(f"NOT {clause}" if rule.get("negate") else clause)
        params.extend(values)
    return " AND ".join(clauses), params
