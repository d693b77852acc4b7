"""The database connection, the migration runner and shared helpers of the store.

The migrations themselves are in ``migrations.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from newsletter.addresses import (  # noqa: F401 - names the rest of the store uses
    ERASED_PREFIX,
    erased_key,
    mailbox_key,
    suppression_keys,
)

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own locking alone
    fcntl = None  # type: ignore[assignment]

from newsletter.errors import InputError
from newsletter.status import SUPPRESSED  # noqa: F401 - see store/__init__
from newsletter.store.migrations import MIGRATIONS, m001_initial  # noqa: F401 - see store/__init__

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


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _marks(values: list[str]) -> str:
    """The ``?, ?, ?`` of an IN (...) over ``values``."""
    return ", ".join("?" * len(values))


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


class _Writer:
    """Writers to one database file take turns here before SQLite's own lock.

    SQLite makes a writer that finds the file locked sleep and poll (1, 2,
    5, 10 ms ...), which costs far more than the transaction it waits for
    when several senders commit hundreds of times a second. Threads of one
    process queue on a mutex; processes on an advisory lock file, which the
    kernel hands over the moment it is free and drops when a holder dies.
    """

    def __init__(self, path: Path):
        self.key = path
        self.users = 0
        self.mutex = threading.RLock()
        self.depth = 0
        self.fd: int | None = None
        if fcntl is not None:
            try:
                self.fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self.fd = None  # a read-only folder: SQLite's own lock still holds

    def __enter__(self) -> None:
        self.mutex.acquire()
        self.depth += 1
        if self.depth == 1 and self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self.depth -= 1
        if self.depth == 0 and self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.mutex.release()


_WRITERS: dict[Path, _Writer] = {}
_WRITERS_LOCK = threading.Lock()


def _writer_lock(path: Path) -> _Writer:
    """The one writer gate of this process for a database file, counted per user."""
    key = path.resolve()
    with _WRITERS_LOCK:
        if key not in _WRITERS:
            _WRITERS[key] = _Writer(key)
        writer = _WRITERS[key]
        writer.users += 1
        return writer


def _release_writer(writer: _Writer) -> None:
    """Close the lock file when the last store of this process on that database closes."""
    with _WRITERS_LOCK:
        writer.users -= 1
        if writer.users == 0:
            del _WRITERS[writer.key]
            if writer.fd is not None:
                os.close(writer.fd)


class StoreBase:
    """The connection and plumbing every part of the store builds on."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._writer: _Writer | None = None
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
        self._writer = _writer_lock(self.path)

    def close(self) -> None:
        self.conn.close()
        if self._writer is not None:
            _release_writer(self._writer)
            self._writer = None

    # -- plumbing ---------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one IMMEDIATE transaction: all of it or none of it."""
        writer = self._writer
        if writer is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        with writer:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def _row(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _value(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
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


def _decode_article(row: dict[str, Any]) -> dict[str, Any]:
    row["tags"] = json.loads(row["tags"])
    return row


def _decode_subscriber(row: dict[str, Any]) -> dict[str, Any]:
    row["tags"] = json.loads(row["tags"])
    row["attributes"] = json.loads(row["attributes"])
    return row


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


def _decode_consent(row: dict[str, Any]) -> dict[str, Any]:
    row["lists"] = json.loads(row.get("lists") or "[]")
    row["detail"] = json.loads(row["detail"]) if row.get("detail") else None
    return row


def _recipient_filter(
    list_id: int | None, segment: list[dict[str, Any]], now: datetime | None = None
) -> tuple[str, list]:
    """The WHERE clause over subscribers ``s`` that picks a campaign's recipients.

    Confirmed and not suppressed (the triggers keep the two apart, this is
    the second lock), on the campaign's list unless they left it, and
    matching every rule of the segment. Values are always bound parameters.
    An engagement rule counts its days back from ``now``, which its caller gives.
    """
    clauses = [
        "s.status = 'confirmed'",
        "NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email_key = s.email_key)",
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
        elif rule["kind"] in ("engaged", "clicked"):
            clause, values = _engagement(rule, now)
            clauses.append(clause)  # says its own negation: see _engagement
            params.extend(values)
            continue
        else:
            raise ValueError(f"unknown segment rule {rule!r}")
        clauses.append(f"NOT {clause}" if rule.get("negate") else clause)
        params.extend(values)
    return " AND ".join(clauses), params


def _engagement(rule: dict[str, Any], now: datetime | None) -> tuple[str, list[Any]]:
    """The clause of ``engaged:DAYS`` / ``clicked:DAYS``, negated or not, over ``s``.

    Engaged: an open or a click (clicked: a click) classified human in the
    DAYS before ``now``; machine opens, link scanners and image proxies
    ("unknown") are no sign of a person. Not engaged: got a campaign in that
    window (sent, not bounced or dropped) and did none of it, so a newcomer
    who got nothing yet is not "not engaged", just as Mailchimp's "did not
    open" reads only those who were sent something. Times are compared as
    instants (julianday), whatever offset a stored stamp carries.
    """
    if now is None:
        raise ValueError(f"segment rule {rule!r} needs the time it is counted at (now)")
    since, until = _iso(now - timedelta(days=int(rule["days"]))), _iso(now)
    kinds = "'open', 'click'" if rule["kind"] == "engaged" else "'click'"
    acted = (
        "EXISTS (SELECT 1 FROM events e WHERE e.subscriber_id = s.id "
        f"AND e.kind IN ({kinds}) AND e.classification = 'human' "
        "AND julianday(e.at) > julianday(?) AND julianday(e.at) <= julianday(?))"
    )
    if not rule.get("negate"):
        return acted, [since, until]
    received = (
        "EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber_id = s.id "
        "AND d.status = 'sent' AND COALESCE(d.provider_status, '') NOT IN ('bounce', 'dropped') "
        "AND julianday(d.done_at) > julianday(?) AND julianday(d.done_at) <= julianday(?))"
    )
    return f"({received} AND NOT {acted})", [since, until, since, until]
