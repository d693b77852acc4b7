"""The schema of the store's database, as numbered migrations applied in order.

Declarative and append-only: a new change is a new function at the end of
``MIGRATIONS``; an applied migration is never edited. Each keeps the words of
its own time, in its Python as in its SQL (plain status strings, not the names
of ``newsletter.status``, whose values may change in a later version). Three
call code of today: m009, m011 and m013 key mailboxes with
``addresses.mailbox_key`` (the rule the rest of the store compares by, which
they must agree with), and m009 reads the clock through ``newsletter.clock``;
a change to that rule is itself a new migration that re-keys the rows.
``StoreBase.migrate`` runs each in one transaction with its record in
``_migrations``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from newsletter import clock
from newsletter.addresses import ERASED_PREFIX, mailbox_key

# The statuses that put an address on the suppression list, as m003's triggers name them.
_SUPPRESSED = ("unsubscribed", "bounced", "complained")
# The store's JSON of tags and attributes (compact, non-ASCII kept), for merged rows.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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


def m006_event_classes(conn: sqlite3.Connection) -> None:
    """Why each open, click and view got its class; an index for the retention purge."""
    _script(
        conn,
        """
        ALTER TABLE events ADD COLUMN reason TEXT;
        CREATE INDEX events_at ON events(at);
        """,
    )


def m007_scheduling(conn: sqlite3.Connection) -> None:
    """Automatic campaigns, missed due times, runs of recurring jobs, welcome steps.

    ``campaigns.kind``: manual, or instant, digest, latest (made by the
    scheduler); ``subscriber_id`` narrows a campaign to one person (the
    latest-articles email of a new subscriber); ``missed_at`` is set when a
    scheduled campaign's time passed by more than the grace window, so it
    is never sent without a person deciding. ``personal_articles``: for the
    recipients of an automatic campaign who get only some of its articles
    (they had the others), the ones they get; everyone else gets them all.
    With the deliveries, it records who was given which article, so nobody
    gets one twice, while writing rows only for the exceptions. ``job_runs``:
    one row per due time of a recurring job (the digest), so two schedulers
    or a restart never run it twice. ``automation_steps``: what to send after
    a confirmation, and when.
    """
    _script(
        conn,
        """
        ALTER TABLE campaigns ADD COLUMN kind TEXT NOT NULL DEFAULT 'manual';
        ALTER TABLE campaigns ADD COLUMN subscriber_id INTEGER
            REFERENCES subscribers(id) ON DELETE SET NULL;
        ALTER TABLE campaigns ADD COLUMN missed_at TEXT;
        CREATE INDEX campaigns_status ON campaigns(status, scheduled_at);
        CREATE TABLE personal_articles (
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
            PRIMARY KEY (campaign_id, subscriber_id, article_id)
        );
        CREATE INDEX campaign_articles_article ON campaign_articles(article_id);
        CREATE TABLE job_runs (
            job TEXT NOT NULL,
            due_at TEXT NOT NULL,
            status TEXT NOT NULL,
            at TEXT NOT NULL,
            campaign_id INTEGER REFERENCES campaigns(id) ON DELETE SET NULL,
            detail TEXT,
            PRIMARY KEY (job, due_at)
        );
        CREATE TABLE automation_steps (
            id INTEGER PRIMARY KEY,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            consent_id INTEGER NOT NULL,
            kind TEXT NOT NULL,
            due_at TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            done_at TEXT,
            detail TEXT,
            UNIQUE (consent_id, kind)
        );
        CREATE INDEX automation_steps_due ON automation_steps(status, due_at);
        CREATE INDEX consents_confirmed ON consents(confirmed_at);
        """,
    )


def m008_staff(conn: sqlite3.Connection) -> None:
    """Staff accounts of the dashboard and their sign-in sessions.

    A session row is keyed by the SHA-256 of the cookie's random token, so a
    copy of the database does not hand out live sessions; its CSRF token is
    compared with every form the session posts.
    """
    _script(
        conn,
        """
        CREATE TABLE staff_users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            role TEXT NOT NULL CHECK (role IN ('admin', 'editor')),
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            signed_in_at TEXT
        );
        CREATE TABLE staff_sessions (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES staff_users(id) ON DELETE CASCADE,
            csrf TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE INDEX staff_sessions_user ON staff_sessions(user_id);
        """,
    )


# Statuses of one mailbox's duplicate rows, strictest first (see m009). A suppressed
# status always wins; of the others, a confirmed opt-in is proof of consent, and a
# pending one is not a withdrawal of it.
_MERGE_STATUS_ORDER = ("complained", "bounced", "unsubscribed", "confirmed", "unconfirmed")
# Which of two deliveries of one campaign to the same mailbox stands for it after a merge.
_MERGE_DELIVERY_ORDER = ("sent", "in_doubt", "sending", "deferred", "pending", "failed", "skipped")


def _merge_rank(order: tuple[str, ...], value: str) -> int:
    return order.index(value) if value in order else len(order)


def m009_one_subscriber_per_mailbox(conn: sqlite3.Connection) -> None:
    """Merge subscribers whose addresses differ only in capitals; one row per mailbox from now on.

    ``alice@example.com`` and ``ALICE@example.com`` are one mailbox (as
    Mailchimp and listmonk treat them), and two rows mailed that person every
    campaign twice. For each group the row created first is kept, with the
    spelling first given (the one mail goes to). Its status becomes the
    strictest of the group (complained, bounced, unsubscribed; else confirmed
    if any row confirmed); it keeps the earliest creation and confirmation
    times; names, tags and attributes it lacks come from the others. Every
    consent record, event, list membership, welcome step and campaign of the
    others moves to it, and each campaign keeps one delivery per mailbox: the
    one that went furthest (sent before pending); the other, if still to send,
    is skipped, so the mailbox never gets that campaign twice. Each merge is
    recorded as a ``merge`` event naming the ids merged. Then a unique index
    keeps the address unique without regard to case (ASCII letters, as the
    suppression list compares them).
    """
    groups: dict[bytes, list[int]] = {}
    for subscriber_id, email in conn.execute(
        "SELECT id, email FROM subscribers WHERE lower(email) IN (SELECT lower(email) "
        "FROM subscribers GROUP BY lower(email) HAVING COUNT(*) > 1) ORDER BY created_at, id"
    ):
        # bytes.lower() folds A-Z only, exactly as SQLite's lower() and NOCASE do.
        groups.setdefault(email.encode("utf-8").lower(), []).append(subscriber_id)
    # The time of the merges, read only when there is something to merge.
    stamp = clock.utcnow().isoformat(timespec="seconds") if groups else ""
    for keeper, *others in groups.values():
        _merge_subscribers(conn, keeper, others, stamp)
    conn.execute(
        "CREATE UNIQUE INDEX subscribers_email_nocase ON subscribers(email COLLATE NOCASE)"
    )


def _merge_subscribers(
    conn: sqlite3.Connection, keeper: int, others: list[int], stamp: str
) -> None:
    """Fold the subscriber rows ``others`` into ``keeper`` (see m009)."""
    conn.row_factory = sqlite3.Row
    try:
        rows = [
            dict(conn.execute("SELECT * FROM subscribers WHERE id = ?", [i]).fetchone())
            for i in [keeper, *others]
        ]
    finally:
        conn.row_factory = None
    kept = rows[0]
    status = min((r["status"] for r in rows), key=lambda s: _merge_rank(_MERGE_STATUS_ORDER, s))
    if status not in _SUPPRESSED:
        # The suppression list is the last word on a mailbox, whatever its rows say.
        reason = conn.execute(
            "SELECT reason FROM suppressions WHERE email = ?", [kept["email"]]
        ).fetchone()
        if reason is not None:
            status = reason[0] if reason[0] in _SUPPRESSED else "unsubscribed"
    tags: list[str] = []
    attributes: dict[str, Any] = {}
    for row in rows:
        for tag in json.loads(row["tags"] or "[]"):
            if tag not in tags:
                tags.append(tag)
        for key, value in json.loads(row["attributes"] or "{}").items():
            attributes.setdefault(key, value)

    def earliest(column: str) -> str | None:
        values = [r[column] for r in rows if r[column]]
        return min(values) if values else None

    first_name = next((r["first_name"] for r in rows if r["first_name"]), None)
    last_name = next((r["last_name"] for r in rows if r["last_name"]), None)
    # The others' addresses are changed first, so deleting them below neither
    # blanks the provider events of the kept address (the erase trigger matches
    # by address) nor collides with it.
    for other in others:
        conn.execute(
            "UPDATE subscribers SET email = ? WHERE id = ?",
            [f"merged-{other}-into-{keeper}", other],
        )
    conn.execute(
        "UPDATE subscribers SET first_name = ?, last_name = ?, tags = ?, attributes = ?, "
        "created_at = ?, confirmed_at = ?, "
        "unsubscribed_at = CASE WHEN ? IN ('unsubscribed', 'bounced', 'complained') "
        "THEN COALESCE(?, unsubscribed_at, updated_at) ELSE NULL END WHERE id = ?",
        [
            first_name,
            last_name,
            _json(tags),
            _json(attributes) if attributes else "{}",
            earliest("created_at"),
            earliest("confirmed_at") if status == "confirmed" else kept["confirmed_at"],
            status,
            earliest("unsubscribed_at"),
            keeper,
        ],
    )
    if status != kept["status"]:
        # Through the status triggers: a suppressed status puts the address on the list,
        # stamped with updated_at. That stamp is the time the person left (the earliest
        # the group's rows or the list knew), not the upgrade's: the suppression list is
        # the record of an opt-out, and a later re-subscription is judged against it.
        left_at = stamp
        if status in _SUPPRESSED:
            emails = [r["email"] for r in rows]
            marks = ", ".join("?" * len(emails))
            listed = conn.execute(
                f"SELECT min(at) FROM suppressions WHERE email IN ({marks})", emails
            ).fetchone()[0]
            left_at = min((t for t in (earliest("unsubscribed_at"), listed) if t), default=stamp)
        conn.execute(
            "UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?",
            [status, left_at, keeper],
        )
    for other in others:
        _merge_deliveries(conn, keeper, other, stamp)
        for table in ("consents", "events", "automation_steps", "campaigns"):
            conn.execute(
                f"UPDATE {table} SET subscriber_id = ? WHERE subscriber_id = ?", [keeper, other]
            )
        # A list left under either spelling stays left: the earlier departure counts.
        conn.execute(
            "INSERT INTO memberships (list_id, subscriber_id, added_at, unsubscribed_at) "
            "SELECT list_id, ?, added_at, unsubscribed_at FROM memberships WHERE subscriber_id = ? "
            "ON CONFLICT (list_id, subscriber_id) DO UPDATE SET "
            "added_at = min(added_at, excluded.added_at), "
            "unsubscribed_at = CASE WHEN unsubscribed_at IS NULL THEN excluded.unsubscribed_at "
            "WHEN excluded.unsubscribed_at IS NULL THEN unsubscribed_at "
            "ELSE min(unsubscribed_at, excluded.unsubscribed_at) END",
            [keeper, other],
        )
        conn.execute(
            "INSERT INTO events (at, kind, subscriber_id, detail) VALUES (?, 'merge', ?, ?)",
            [stamp, keeper, f"subscriber {other} was the same mailbox; merged into {keeper}"],
        )
        conn.execute("DELETE FROM subscribers WHERE id = ?", [other])


def _merge_deliveries(conn: sqlite3.Connection, keeper: int, other: int, stamp: str) -> None:
    """Move ``other``'s deliveries to ``keeper``, one per campaign (see m009)."""
    theirs = conn.execute(
        "SELECT id, campaign_id, status FROM deliveries WHERE subscriber_id = ?", [other]
    ).fetchall()
    for delivery_id, campaign_id, status in theirs:
        mine = conn.execute(
            "SELECT id, status FROM deliveries WHERE campaign_id = ? AND subscriber_id = ?",
            [campaign_id, keeper],
        ).fetchone()
        if mine is None:
            conn.execute(
                "UPDATE deliveries SET subscriber_id = ? WHERE id = ?", [keeper, delivery_id]
            )
            conn.execute(
                "INSERT OR IGNORE INTO personal_articles (campaign_id, subscriber_id, article_id) "
                "SELECT campaign_id, ?, article_id FROM personal_articles "
                "WHERE campaign_id = ? AND subscriber_id = ?",
                [keeper, campaign_id, other],
            )
            continue
        if _merge_rank(_MERGE_DELIVERY_ORDER, status) < _merge_rank(_MERGE_DELIVERY_ORDER, mine[1]):
            winner, loser = delivery_id, mine[0]
            conn.execute(
                "DELETE FROM personal_articles WHERE campaign_id = ? AND subscriber_id = ?",
                [campaign_id, keeper],
            )
            conn.execute(
                "UPDATE personal_articles SET subscriber_id = ? "
                "WHERE campaign_id = ? AND subscriber_id = ?",
                [keeper, campaign_id, other],
            )
        else:
            winner, loser = mine[0], delivery_id
        # The loser keeps its place in the campaign's totals, tied to nobody; if it
        # was still to be sent, it never will be.
        conn.execute(
            "UPDATE deliveries SET subscriber_id = NULL, "
            "error = CASE WHEN status IN ('pending', 'deferred', 'failed') "
            "THEN 'same mailbox as another subscriber (merged)' ELSE error END, "
            "done_at = CASE WHEN status IN ('pending', 'deferred', 'failed') "
            "THEN ? ELSE done_at END, "
            "status = CASE WHEN status IN ('pending', 'deferred', 'failed') "
            "THEN 'skipped' ELSE status END WHERE id = ?",
            [stamp, loser],
        )
        conn.execute("UPDATE deliveries SET subscriber_id = ? WHERE id = ?", [keeper, winner])


def m010_staff_security(conn: sqlite3.Connection) -> None:
    """Two-factor sign-in of staff accounts and the audit log of staff actions.

    ``totp_secret`` is encrypted with a key derived from the secret key;
    ``totp_last_step`` makes each code work once; recovery codes are kept
    only as SHA-256 hashes. The audit log names the actor by address, not by
    account id, so it outlives a removed account.
    """
    _script(
        conn,
        """
        ALTER TABLE staff_users ADD COLUMN totp_secret TEXT;
        ALTER TABLE staff_users ADD COLUMN totp_pending TEXT;
        ALTER TABLE staff_users ADD COLUMN totp_last_step INTEGER;
        ALTER TABLE staff_users ADD COLUMN recovery_codes TEXT NOT NULL DEFAULT '[]';
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '',
            ip TEXT
        );
        CREATE INDEX audit_log_at ON audit_log(at);
        CREATE INDEX audit_log_target ON audit_log(target, action);
        """,
    )


def m011_mailbox_key(conn: sqlite3.Connection) -> None:
    """One mailbox, one subscriber, with Unicode capitals and IDNA domains too.

    SQLite's NOCASE folds A-Z only, so ``JÜRGEN@example.com`` and
    ``jürgen@example.com`` (or ``bücher.example`` and ``xn--bcher-kva.example``)
    were two subscribers. ``subscribers.email_key`` and ``suppressions.email_key``
    hold ``mailbox_key`` of the address, kept by the store code (SQLite cannot
    compute it) and unique. Rows that turn out to be one mailbox are merged by
    m009's rules (the row created first keeps its spelling, the strictest
    status wins; see ``_merge_subscribers``); suppression entries of one
    mailbox become one, the strictest reason and the earliest time. The
    status triggers now match the suppression list by key.
    """
    conn.execute("ALTER TABLE subscribers ADD COLUMN email_key TEXT")
    conn.execute("ALTER TABLE suppressions ADD COLUMN email_key TEXT")
    conn.executemany(
        "UPDATE subscribers SET email_key = ? WHERE id = ?",
        [(mailbox_key(e), i) for i, e in conn.execute("SELECT id, email FROM subscribers")],
    )
    # An erased entry (sha256:...) is its own key.
    entries = conn.execute("SELECT email, reason, at FROM suppressions").fetchall()
    conn.executemany(
        "UPDATE suppressions SET email_key = ? WHERE email = ?",
        [(e if e.startswith(ERASED_PREFIX) else mailbox_key(e), e) for e, _, _ in entries],
    )
    by_key: dict[str, list[tuple[str, str, str]]] = {}
    for email, reason, at in entries:
        key = email if email.startswith(ERASED_PREFIX) else mailbox_key(email)
        by_key.setdefault(key, []).append((email, reason, at))
    for group in by_key.values():
        if len(group) < 2:
            continue
        reason = min((r for _, r, _ in group), key=lambda r: _merge_rank(_MERGE_STATUS_ORDER, r))
        at = min(a for _, _, a in group)
        keep, *drop = group
        conn.executemany("DELETE FROM suppressions WHERE email = ?", [(e,) for e, _, _ in drop])
        conn.execute(
            "UPDATE suppressions SET reason = ?, at = ? WHERE email = ?", [reason, at, keep[0]]
        )
    _script(
        conn,
        """
        DROP TRIGGER subscribers_suppress;
        DROP TRIGGER subscribers_suppressed_stay_out;
        CREATE TRIGGER subscribers_suppress AFTER UPDATE OF status ON subscribers
        WHEN NEW.status IN ('unsubscribed', 'bounced', 'complained')
            AND NEW.status IS NOT OLD.status
        BEGIN
            DELETE FROM suppressions WHERE email_key = NEW.email_key;
            INSERT INTO suppressions (email, email_key, reason, at)
            VALUES (NEW.email, NEW.email_key, NEW.status, NEW.updated_at);
        END;
        CREATE TRIGGER subscribers_suppressed_stay_out BEFORE UPDATE OF status ON subscribers
        WHEN NEW.status NOT IN ('unsubscribed', 'bounced', 'complained')
            AND EXISTS (SELECT 1 FROM suppressions WHERE email_key = NEW.email_key)
        BEGIN
            SELECT RAISE(ABORT, 'suppressed address: only a confirmed opt-in lifts it');
        END;
        """,
    )
    groups: dict[str, list[int]] = {}
    for subscriber_id, key in conn.execute(
        "SELECT id, email_key FROM subscribers WHERE email_key IN (SELECT email_key "
        "FROM subscribers GROUP BY email_key HAVING COUNT(*) > 1) ORDER BY created_at, id"
    ):
        groups.setdefault(key, []).append(subscriber_id)
    # The time of the merges, read only when there is something to merge.
    stamp = clock.utcnow().isoformat(timespec="seconds") if groups else ""
    for keeper, *others in groups.values():
        _merge_subscribers(conn, keeper, others, stamp)
    _script(
        conn,
        """
        CREATE UNIQUE INDEX subscribers_email_key ON subscribers(email_key);
        CREATE UNIQUE INDEX suppressions_email_key ON suppressions(email_key);
        """,
    )


def m012_scheduler_module(conn: sqlite3.Connection) -> None:
    """Forget the scheduler's stored jobs that name the module's old name.

    APScheduler stores each job's function as ``module:function``; the module
    that holds them was ``newsletter.scheduler`` and is now
    ``newsletter.job_scheduler``, so a job stored under the old name could not
    be loaded. Every stored job is derived: ``newsletter run`` re-creates the
    fixed ones from the settings and one per scheduled campaign at start (and
    runs the recurring ones at once), so dropping them loses nothing.
    """
    has_jobs = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'apscheduler_jobs'"
    ).fetchone()
    if has_jobs:
        conn.execute(
            "DELETE FROM apscheduler_jobs WHERE instr(job_state, CAST(? AS BLOB)) > 0",
            ["newsletter.scheduler:"],
        )


def m013_staff_mailbox_key(conn: sqlite3.Connection) -> None:
    """One mailbox, one staff account: the identity rule subscribers have had since m011.

    ``staff_users.email`` is unique with NOCASE, which folds A-Z only, so
    ``JÜRGEN@example.com`` and ``jürgen@example.com`` (or ``bücher.example``
    and ``xn--bcher-kva.example``) could be two accounts of one mailbox, each
    with its own password and role. ``staff_users.email_key`` holds
    ``mailbox_key`` of the address, kept by the store code, and is unique;
    sign-in and the ``users`` commands look accounts up by it. Accounts that
    turn out to be one mailbox become one: the one with the most rights is
    kept (whoever reads that mailbox already had them), then the one signed
    in last (its password is the one in use), then the one created first. The
    others end with their sessions. The audit log names actors by address and
    stays as it was.
    """
    conn.execute("ALTER TABLE staff_users ADD COLUMN email_key TEXT")
    accounts = conn.execute(
        "SELECT id, email FROM staff_users ORDER BY role = 'admin' DESC, "
        "signed_in_at IS NULL, signed_in_at DESC, created_at, id"
    ).fetchall()
    kept: set[str] = set()
    for user_id, email in accounts:
        key = mailbox_key(email)
        if key in kept:
            conn.execute("DELETE FROM staff_sessions WHERE user_id = ?", [user_id])
            conn.execute("DELETE FROM staff_users WHERE id = ?", [user_id])
            continue
        kept.add(key)
        conn.execute("UPDATE staff_users SET email_key = ? WHERE id = ?", [key, user_id])
    conn.execute("CREATE UNIQUE INDEX staff_users_email_key ON staff_users(email_key)")


def m014_schedule_zone(conn: sqlite3.Connection) -> None:
    """Remember the time zone a campaign was scheduled in, to show its time as it was chosen.

    ``scheduled_at`` stays in UTC; ``scheduled_tz`` is the IANA zone the person
    picked. Campaigns scheduled before have none and are shown in the
    workspace's zone, as before.
    """
    conn.execute("ALTER TABLE campaigns ADD COLUMN scheduled_tz TEXT")


def m015_report_indexes(conn: sqlite3.Connection) -> None:
    """Indexes for reports and a person's history at a large list's size, and the
    numbers of finished campaigns' reports kept between counts (reports.KeptReports).

    A campaign's events by subscriber, kind and class: the report's counts read
    the index alone. The first send of a campaign found without reading its
    deliveries (the old index on campaign and status is the new one's prefix).
    A person's deliveries without reading every campaign's.
    """
    _script(
        conn,
        """
        CREATE INDEX events_campaign_subscriber
          ON events(campaign_id, subscriber_id, kind, classification);
        CREATE INDEX deliveries_campaign_status_done ON deliveries(campaign_id, status, done_at);
        DROP INDEX deliveries_campaign_status;
        CREATE INDEX deliveries_subscriber ON deliveries(subscriber_id);
        CREATE TABLE kept_reports (
            campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
            part TEXT NOT NULL,
            mark TEXT NOT NULL,
            numbers TEXT NOT NULL,
            PRIMARY KEY (campaign_id, part)
        );
        """,
    )


def m016_campaign_content(conn: sqlite3.Connection) -> None:
    """A campaign's own words, in Markdown: an intro shown above its articles, and the
    body of a campaign without articles (a one-off: closed over the holidays, an event).

    Both empty for every campaign made before: they render as they did.
    """
    _script(
        conn,
        """
        ALTER TABLE campaigns ADD COLUMN intro TEXT NOT NULL DEFAULT '';
        ALTER TABLE campaigns ADD COLUMN body TEXT NOT NULL DEFAULT '';
        """,
    )


def m018_consent_times_from_file(conn: sqlite3.Connection) -> None:
    """When an imported person signed up and confirmed, as the imported file says.

    The consent record of an import is dated by the import; the tool the
    list came from knew when the person really signed up (Mailchimp's
    OPTIN_TIME, MailerLite's subscribed_at, beehiiv's created_at ...) and
    confirmed (CONFIRM_TIME): kept beside it, in UTC, as the file gave them.
    """
    _script(
        conn,
        """
        ALTER TABLE consents ADD COLUMN file_signed_up_at TEXT;
        ALTER TABLE consents ADD COLUMN file_confirmed_at TEXT;
        """,
    )


def m022_audit_data(conn: sqlite3.Connection) -> None:
    """What an audit entry records for programs, as JSON beside its words (``detail``):
    an import's file, time and counts, so a person's history finds who imported them
    without reading the report's English. NULL for entries that record nothing more.
    """
    _script(conn, "ALTER TABLE audit_log ADD COLUMN data TEXT;")


MIGRATIONS = [
    m001_initial,
    m002_article_intake,
    m003_subscribers,
    m004_delivery_retries,
    m005_provider_events,
    m006_event_classes,
    m007_scheduling,
    m008_staff,
    m009_one_subscriber_per_mailbox,
    m010_staff_security,
    m011_mailbox_key,
    m012_scheduler_module,
    m013_staff_mailbox_key,
    m014_schedule_zone,
    m015_report_indexes,
    m016_campaign_content,
    m018_consent_times_from_file,
    m022_audit_data,
]
