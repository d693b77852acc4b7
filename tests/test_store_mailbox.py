"""One subscriber per mailbox: capitals never make a second person (import, opt-in, migration)."""

import json
from datetime import timedelta

import pytest

from clocks import REAL_NOW as NOW
from conftest import database_before
from newsletter.store import Store
from newsletter.store.base import IMPORT_BATCH
from newsletter.subscribers import import_data, import_file, parse_csv, save


def emails(store):
    return [r[0] for r in store.conn.execute("SELECT email FROM subscribers ORDER BY id")]


def test_one_file_with_two_spellings_makes_one_subscriber(store, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("email\nalice@example.com\nALICE@example.com\nAlice@Example.com\n")
    report = import_file(store, path, NOW, confirmed=True)
    assert emails(store) == ["alice@example.com"]
    assert (report.added, report.duplicates) == (1, 2)
    assert "2 duplicate rows" in report.line()


def test_second_file_with_other_capitals_is_reported_as_duplicate(store, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("email\nAlice@example.com\nbo@example.org\n")
    second.write_text("email\nALICE@EXAMPLE.COM\nbo@example.org\ncy@example.net\n")
    import_file(store, first, NOW, confirmed=True)
    report = import_file(store, second, NOW + timedelta(minutes=1), confirmed=True)
    # The spelling first given is the one mail goes to.
    assert emails(store) == ["Alice@example.com", "bo@example.org", "cy@example.net"]
    assert (report.added, report.existing, report.duplicates) == (1, 1, 1)


def test_many_rows_are_looked_up_without_regard_to_case(store, tmp_path):
    # A table much bigger than the import takes the batched lookup path.
    big = tmp_path / "big.csv"
    big.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(60)))
    import_file(store, big, NOW, confirmed=True)
    small = tmp_path / "small.csv"
    small.write_text("email\nP7@EXAMPLE.COM\n")
    report = import_file(store, small, NOW, confirmed=True)
    assert (report.added, report.duplicates) == (0, 1)
    assert len(emails(store)) == 60


def test_opt_in_with_other_capitals_is_the_same_person(store):
    _, first = store.request_opt_in(
        "alice@example.com",
        lists=[],
        source="form",
        text="yes",
        version="1",
        ip=None,
        user_agent=None,
        detail={},
        now=NOW,
        quiet_since=NOW - timedelta(minutes=10),
    )
    _, second = store.request_opt_in(
        "ALICE@example.com",
        lists=[],
        source="form",
        text="yes",
        version="1",
        ip=None,
        user_agent=None,
        detail={},
        now=NOW + timedelta(hours=1),
        quiet_since=NOW,
    )
    assert first == second
    assert emails(store) == ["alice@example.com"]
    assert store.subscriber_by_email("aLiCe@example.com")["id"] == first


def test_the_database_refuses_a_second_spelling(store, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("email\nalice@example.com\n")
    import_file(store, path, NOW, confirmed=True)
    with pytest.raises(Exception, match="UNIQUE"):
        store.conn.execute(
            "INSERT INTO subscribers (email, status, created_at, updated_at) "
            "VALUES ('ALICE@example.com', 'confirmed', 'x', 'x')"
        )


# -- m009: merging the duplicates an older version let in ---------------------


def old_database(path):
    """A database migrated up to m008, before one row per mailbox was enforced."""
    return database_before(path, "m009")


def add(store, sid, email, status, created, **extra):
    columns = {
        "id": sid,
        "email": email,
        "status": status,
        "created_at": created,
        "updated_at": created,
        **extra,
    }
    marks = ", ".join("?" * len(columns))
    store.conn.execute(
        f"INSERT INTO subscribers ({', '.join(columns)}) VALUES ({marks})", list(columns.values())
    )


def delivery(conn, delivery_id, campaign_id, subscriber_id, status):
    conn.execute(
        "INSERT INTO deliveries (id, campaign_id, subscriber_id, status, queued_at) "
        "VALUES (?, ?, ?, ?, 'x')",
        [delivery_id, campaign_id, subscriber_id, status],
    )


def test_migration_merges_case_duplicates(tmp_path):
    path = tmp_path / "old.db"
    store = old_database(path)
    c = store.conn
    with store.transaction():
        # Alice: confirmed first as alice@, later again as ALICE@ (who then unsubscribed).
        add(
            store,
            1,
            "alice@example.com",
            "confirmed",
            "2026-01-01T00:00:00+00:00",
            first_name="Alice",
            tags='["yoga"]',
            attributes='{"city": "Springfield"}',
            confirmed_at="2026-01-02T00:00:00+00:00",
        )
        add(store, 2, "bo@example.org", "confirmed", "2026-01-01T00:00:00+00:00")
        add(
            store,
            3,
            "ALICE@example.com",
            "confirmed",
            "2026-02-01T00:00:00+00:00",
            last_name="Liddell",
            tags='["yoga", "back-pain"]',
            attributes='{"city": "X", "plan": "pro"}',
            confirmed_at="2026-02-01T00:00:00+00:00",
        )
        # Cy: both spellings merely confirmed; the later row holds the earlier confirmation.
        add(store, 4, "Cy@example.net", "unconfirmed", "2026-01-05T00:00:00+00:00")
        add(
            store,
            5,
            "cy@example.net",
            "confirmed",
            "2026-01-06T00:00:00+00:00",
            confirmed_at="2026-01-06T00:00:00+00:00",
        )
        c.execute("INSERT INTO lists (id, name, created_at) VALUES (1, 'patients', 'x')")
        c.execute("INSERT INTO memberships VALUES (1, 1, '2026-01-01', NULL)")
        c.execute("INSERT INTO memberships VALUES (1, 3, '2026-02-01', '2026-03-01')")
        for sid, email, at in [
            (1, "alice@example.com", "2026-01-01"),
            (3, "ALICE@example.com", "2026-02-01"),
        ]:
            c.execute(
                "INSERT INTO consents (subscriber_id, email, at, source, text, text_version) "
                "VALUES (?, ?, ?, 'import', 'ok', '1')",
                [sid, email, at],
            )
        for cid, status in [(1, "sent"), (2, "sending")]:
            c.execute(
                "INSERT INTO campaigns (id, subject, template, status, created_at) "
                "VALUES (?, 's', 'digest', ?, 'x')",
                [cid, status],
            )
        # Campaign 1 went to both spellings; campaign 2 reached ALICE@ and still waits for alice@.
        delivery(c, 1, 1, 1, "sent")
        delivery(c, 2, 1, 3, "sent")
        delivery(c, 3, 2, 1, "pending")
        delivery(c, 4, 2, 3, "sent")
        c.execute(
            "INSERT INTO events (at, kind, campaign_id, subscriber_id) VALUES ('x', 'open', 1, 3)"
        )
        c.execute(
            "INSERT INTO events (at, kind, campaign_id, subscriber_id, delivery_id, provider, "
            "provider_event_id, recipient, raw) VALUES ('x', 'delivered', 1, 1, 1, 'sendgrid', "
            "'e1', 'alice@example.com', '{}')"
        )
        c.execute(
            "INSERT INTO events (at, kind, campaign_id, subscriber_id) "
            "VALUES ('x', 'unsubscribe', 1, 3)"
        )
        c.execute(
            "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = '2026-03-01' "
            "WHERE id = 3"
        )

    [left_at] = c.execute(
        "SELECT at FROM suppressions WHERE email = 'ALICE@example.com'"
    ).fetchone()

    applied = store.migrate()
    assert applied[0] == "m009_one_subscriber_per_mailbox"
    # The opt-out keeps its own time: the upgrade is not when Alice left.
    assert [r[0] for r in c.execute("SELECT at FROM suppressions")] == [left_at]

    rows = {r["id"]: r for r in store._rows("SELECT * FROM subscribers ORDER BY id")}
    assert sorted(rows) == [1, 2, 4]
    alice = rows[1]
    # The spelling first given, the strictest status, the earliest consent times.
    assert alice["email"] == "alice@example.com"
    assert alice["status"] == "unsubscribed"
    assert alice["created_at"] == "2026-01-01T00:00:00+00:00"
    assert (alice["first_name"], alice["last_name"]) == ("Alice", "Liddell")
    assert json.loads(alice["tags"]) == ["yoga", "back-pain"]
    assert json.loads(alice["attributes"]) == {"city": "Springfield", "plan": "pro"}
    assert store.is_suppressed("alice@example.com")
    cy = rows[4]
    assert (cy["email"], cy["status"]) == ("Cy@example.net", "confirmed")
    assert cy["confirmed_at"] == "2026-01-06T00:00:00+00:00"

    # Every consent record kept, now on the one subscriber; the earliest first.
    consents = store._rows("SELECT subscriber_id, email, at FROM consents ORDER BY at")
    assert [(r["subscriber_id"], r["at"]) for r in consents] == [
        (1, "2026-01-01"),
        (1, "2026-02-01"),
    ]
    # One delivery per campaign for the mailbox; the pending second copy will never go.
    mine = store._rows(
        "SELECT id, campaign_id, status FROM deliveries WHERE subscriber_id = 1 "
        "ORDER BY campaign_id"
    )
    assert [(r["campaign_id"], r["status"]) for r in mine] == [(1, "sent"), (2, "sent")]
    assert mine[1]["id"] == 4
    loser = store._row("SELECT subscriber_id, status, error FROM deliveries WHERE id = 3")
    assert loser["subscriber_id"] is None
    assert loser["status"] == "skipped"
    assert "same mailbox" in loser["error"]
    # Campaign totals are unchanged: no delivery row was deleted.
    assert store._value("SELECT COUNT(*) FROM deliveries") == 4
    # Events re-pointed; the provider event of the kept address keeps its payload.
    kinds = store._rows(
        "SELECT kind, subscriber_id, raw FROM events WHERE kind != 'merge' ORDER BY id"
    )
    assert [(e["kind"], e["subscriber_id"]) for e in kinds] == [
        ("open", 1),
        ("delivered", 1),
        ("unsubscribe", 1),
    ]
    assert kinds[1]["raw"] == "{}"
    merges = store._rows(
        "SELECT subscriber_id, detail FROM events WHERE kind = 'merge' ORDER BY id"
    )
    assert [m["subscriber_id"] for m in merges] == [1, 4]
    assert "subscriber 3" in merges[0]["detail"]
    # A list left under either spelling stays left.
    membership = store._row(
        "SELECT added_at, unsubscribed_at FROM memberships WHERE subscriber_id = 1"
    )
    assert membership == {"added_at": "2026-01-01", "unsubscribed_at": "2026-03-01"}
    # From now on the database itself refuses a second spelling.
    with pytest.raises(Exception, match="UNIQUE"):
        c.execute(
            "INSERT INTO subscribers (email, status, created_at, updated_at) "
            "VALUES ('BO@example.org', 'confirmed', 'x', 'x')"
        )
    store.close()


def test_migration_on_a_database_without_duplicates_changes_no_row(tmp_path):
    store = old_database(tmp_path / "old.db")
    with store.transaction():
        add(store, 1, "alice@example.com", "confirmed", "2026-01-01T00:00:00+00:00")
        add(store, 2, "bo@example.org", "unsubscribed", "2026-01-01T00:00:00+00:00")
    before = store._rows("SELECT * FROM subscribers ORDER BY id")
    store.migrate()
    after = store._rows("SELECT * FROM subscribers ORDER BY id")
    # m011's derived mailbox key is the only addition.
    assert [{k: v for k, v in r.items() if k != "email_key"} for r in after] == before
    assert store._value("SELECT COUNT(*) FROM events") == 0
    store.close()


def test_a_file_read_as_it_is_stored_finds_other_spellings_across_batches(store, tmp_path):
    """import_file streams the rows: repeats are found in a temporary table, not a set."""
    others = "".join(f"p{i}@example.com,\n" for i in range(3 * IMPORT_BATCH))
    path = tmp_path / "people.csv"
    path.write_text(
        "email,status\nAlice@example.com,\nCy@example.net,unsubscribed\n"
        + others
        + "ALICE@EXAMPLE.COM,\nalice@example.com,\nP7@example.com,\nCY@EXAMPLE.NET,subscribed\n"
    )
    report = import_file(store, path, NOW, confirmed=True)
    # A later spelling of the opted-out Cy is a repeat of that row, as in a parsed file.
    assert (report.added, report.opted_out, report.suppressed) == (2 + 3 * IMPORT_BATCH, 1, 0)
    assert (report.existing, report.duplicates) == (0, 4)
    assert emails(store)[:3] == ["Alice@example.com", "Cy@example.net", "p0@example.com"]
    assert "p7@example.com" in emails(store) and "P7@example.com" not in emails(store)
    # The table of mailboxes seen is the import's own: nothing of it stays.
    assert store.conn.execute("SELECT name FROM temp.sqlite_master").fetchall() == []
    again = import_file(store, path, NOW + timedelta(minutes=1), confirmed=True)
    assert (again.added, again.existing, again.suppressed) == (0, 1 + 3 * IMPORT_BATCH, 1)


def test_an_upload_and_a_file_are_imported_as_a_parsed_file_is(tmp_path):
    data = (
        b"email,first_name,status\nAlice@example.com,Alice,\nbo@example.org,Bo,unsubscribed\n"
        b"ALICE@example.com,A,\nnot-an-address,X,\nBO@example.org,Bo,\ncy@example.net,Cy,\n"
    )
    path = tmp_path / "people.csv"
    path.write_bytes(data)

    def parsed(store):
        return save(store, parse_csv(data, "people.csv", True), NOW)

    reports = []
    for name, load in (
        ("parsed", parsed),
        ("file", lambda s: import_file(s, path, NOW, confirmed=True)),
        ("upload", lambda s: import_data(s, data, "people.csv", NOW, confirmed=True)),
    ):
        store = Store(tmp_path / f"{name}.sqlite")
        store.migrate()
        try:
            report = load(store)
            assert emails(store) == ["Alice@example.com", "bo@example.org", "cy@example.net"]
        finally:
            store.close()
        # The file's report names its path, the upload's its name.
        problems = [p.rpartition("people.csv:")[2] for p in report.problems]
        reports.append((report.line().partition(":")[2], report.bad_rows, problems))
    assert reports[0] == reports[1] == reports[2]
    assert "3 added" in reports[0][0] and "1 opted out" in reports[0][0]
    assert "2 duplicate rows" in reports[0][0]
    assert reports[0][2][0].startswith("5: invalid address")
