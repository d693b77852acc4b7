"""One mailbox is one person with non-ASCII capitals and IDNA domains too.

SQLite's NOCASE folds A-Z only: ``JÜRGEN@example.com`` after
``jürgen@example.com`` must not make a second subscriber, nor
``bücher.example`` after ``xn--bcher-kva.example``, whichever way the address
comes in (import, subscribe form, ``subscribers add``), on the suppression
list, for an erased person, and in a database an older version filled.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from clocks import REAL_NOW as NOW
from conftest import LiveServer, database_before, subscribe_form
from newsletter.store import Store, erased_key, mailbox_key
from newsletter.subscribers import import_file
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink, smtp_env


def emails(store: Store) -> list[str]:
    return [r[0] for r in store.conn.execute("SELECT email FROM subscribers ORDER BY id")]


def write(path: Path, *addresses: str) -> Path:
    path.write_text("email\n" + "".join(f"{a}\n" for a in addresses), encoding="utf-8")
    return path


def test_the_key_lowers_unicode_capitals_and_takes_the_a_label_of_the_domain() -> None:
    assert mailbox_key("JÜRGEN@Example.COM") == mailbox_key("jürgen@example.com")
    assert mailbox_key("Ann@Bücher.Example") == "ann@xn--bcher-kva.example"
    assert mailbox_key("ann@XN--BCHER-KVA.example") == "ann@xn--bcher-kva.example"
    # Lower-casing, not case-folding: ß and ss may be two people's mailboxes.
    assert mailbox_key("straße@example.com") != mailbox_key("strasse@example.com")
    # The erased hash follows the same rule.
    assert erased_key("JÜRGEN@bücher.example") == erased_key("jürgen@xn--bcher-kva.example")


def test_an_import_finds_non_ascii_capitals_and_punycode_domains_known(store, tmp_path) -> None:
    first = write(tmp_path / "a.csv", "jürgen@example.com", "renée@bücher.example")
    import_file(store, first, NOW, confirmed=True)
    second = write(
        tmp_path / "b.csv", "JÜRGEN@example.com", "RENÉE@xn--bcher-kva.example", "Zoë@example.com"
    )
    report = import_file(store, second, NOW + timedelta(minutes=1), confirmed=True)
    assert emails(store) == ["jürgen@example.com", "renée@bücher.example", "Zoë@example.com"]
    assert (report.added, report.duplicates) == (1, 2)
    # Within one file too.
    third = write(tmp_path / "c.csv", "ÅSA@example.com", "åsa@example.com")
    assert import_file(store, third, NOW, confirmed=True).duplicates == 1
    assert store.subscriber_by_email("zoË@EXAMPLE.com")["email"] == "Zoë@example.com"


def test_the_suppression_list_and_the_erased_hash_know_every_spelling(store, tmp_path) -> None:
    import_file(store, write(tmp_path / "a.csv", "jürgen@bücher.example"), NOW, confirmed=True)
    jurgen = store.subscriber_by_email("jürgen@bücher.example")
    store.unsubscribe(jurgen["id"], None, NOW, "test")
    assert store.is_suppressed("JÜRGEN@xn--bcher-kva.example")
    report = import_file(store, write(tmp_path / "b.csv", "JÜRGEN@bücher.example"), NOW)
    assert (report.added, report.suppressed) == (0, 1)
    store.delete_subscriber(jurgen["id"], NOW)
    again = write(tmp_path / "c.csv", "Jürgen@XN--BCHER-KVA.example")
    assert import_file(store, again, NOW, confirmed=True).suppressed == 1
    assert emails(store) == []


def test_the_form_and_subscribers_add_find_the_same_person(cli, ws_dir: Path) -> None:
    with SmtpSink(smtputf8=True) as sink:
        cli.env = {**cli.env, **smtp_env(sink)}
        for old in (ws_dir / "subscribers").glob("*.csv"):
            old.unlink()
        cli("subscribers", "import", str(write(ws_dir / "people.csv", "jürgen@example.com")))
        cli("subscribers", "add", "renée@bücher.example")
        cli("subscribers", "add", "JÜRGEN@EXAMPLE.com")
        ws = Workspace.open(ws_dir, env={**cli.env})
        server = LiveServer(ws)
        server.start()
        try:
            assert subscribe_form(server.url, "RENÉE@xn--bcher-kva.example").status_code == 200
            assert subscribe_form(server.url, "Jürgen@Example.com").status_code == 200
            server.app.state.subscriber_pages.mail.flush()
        finally:
            server.stop()
        assert emails(ws.store) == ["jürgen@example.com", "renée@bücher.example"]
        ws.close()


# -- m011: merging the duplicates that only Unicode capitals or IDNA told apart ---------


def before_m011(path: Path) -> Store:
    """A database as a version before m011 left it."""
    return database_before(path, "m011")


def test_m011_merges_mailboxes_that_differ_in_unicode_capitals_or_domain_form(tmp_path) -> None:
    store = before_m011(tmp_path / "old.db")
    c = store.conn
    rows = [
        (1, "jürgen@example.com", "confirmed", "2026-01-01", "Jürgen"),
        (2, "JÜRGEN@example.com", "unconfirmed", "2026-02-01", None),
        (3, "renée@bücher.example", "confirmed", "2026-03-01", None),
        (4, "Renée@xn--bcher-kva.example", "confirmed", "2026-01-15", "Renée"),
        (5, "ann@example.com", "confirmed", "2026-01-01", None),
    ]
    with store.transaction():
        for sid, email, status, created, name in rows:
            c.execute(
                "INSERT INTO subscribers (id, email, status, created_at, updated_at, first_name) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [sid, email, status, created, created, name],
            )
        c.execute(
            "INSERT INTO campaigns (id, subject, template, status, created_at) "
            "VALUES (1, 's', 'default', 'sending', 'x')"
        )
        for did, sid, status in ((1, 3, "sent"), (2, 4, "pending")):
            c.execute(
                "INSERT INTO deliveries (id, campaign_id, subscriber_id, status, queued_at) "
                "VALUES (?, 1, ?, ?, 'x')",
                [did, sid, status],
            )
        # The second Renée unsubscribed: the strictest status wins for the mailbox.
        c.execute(
            "UPDATE subscribers SET status = 'unsubscribed', updated_at = '2026-04-01' WHERE id = 3"
        )
    store.migrate()
    people = store._rows("SELECT id, email, email_key, status, first_name FROM subscribers")
    assert people == [
        {
            "id": 1,
            "email": "jürgen@example.com",
            "email_key": "jürgen@example.com",
            "status": "confirmed",
            "first_name": "Jürgen",
        },
        {
            "id": 4,  # created first: its spelling is kept for sending
            "email": "Renée@xn--bcher-kva.example",
            "email_key": "renée@xn--bcher-kva.example",
            "status": "unsubscribed",
            "first_name": "Renée",
        },
        {
            "id": 5,
            "email": "ann@example.com",
            "email_key": "ann@example.com",
            "status": "confirmed",
            "first_name": None,
        },
    ]
    # One delivery per mailbox: the sent one stands, the pending one is never sent.
    deliveries = store._rows("SELECT id, subscriber_id, status FROM deliveries ORDER BY id")
    assert deliveries == [
        {"id": 1, "subscriber_id": 4, "status": "sent"},
        {"id": 2, "subscriber_id": None, "status": "skipped"},
    ]
    merges = store._rows("SELECT subscriber_id FROM events WHERE kind = 'merge' ORDER BY id")
    assert [m["subscriber_id"] for m in merges] == [1, 4]
    (suppressed,) = store.suppressions()
    assert suppressed["reason"] == "unsubscribed"
    # The opt-out keeps its own time, not the upgrade's.
    assert suppressed["at"] == "2026-04-01"
    assert store.is_suppressed("RENÉE@bücher.example")
    # The database itself now refuses a second spelling of a mailbox.
    with pytest.raises(Exception, match="UNIQUE"):
        c.execute(
            "INSERT INTO subscribers (email, email_key, status, created_at, updated_at) "
            "VALUES ('JÜRGEN@example.com', ?, 'confirmed', 'x', 'x')",
            [mailbox_key("JÜRGEN@example.com")],
        )
    store.close()


def test_erasing_a_person_unnames_provider_reports_in_non_ascii_capitals(store, tmp_path) -> None:
    import_file(store, write(tmp_path / "a.csv", "JÜRGEN@example.com"), NOW, confirmed=True)
    jurgen = store.subscriber_by_email("jürgen@example.com")
    store.record_provider_events(
        [
            {
                "provider": "mailgun",
                "event_id": "e1",
                "kind": "delivered",
                "email": "JÜRGEN@example.com",
                "raw": '{"recipient": "JÜRGEN@example.com"}',
                "detail": "JÜRGEN@example.com delivered",
            }
        ],
        NOW,
    )
    store.delete_subscriber(jurgen["id"], NOW)
    (event,) = store._rows("SELECT recipient, raw, detail FROM events WHERE provider = 'mailgun'")
    assert event == {"recipient": None, "raw": None, "detail": None}


# -- staff accounts: the same rule -------------------------------------------------------------


def test_a_staff_account_is_one_mailbox_however_it_is_spelled(store) -> None:
    from newsletter import staff
    from newsletter.errors import InputError

    passphrase = "a long passphrase"
    user_id = staff.add_user(store, "jürgen@bücher.example", "admin", passphrase, NOW)
    for spelling in ("JÜRGEN@bücher.example", "Jürgen@XN--BCHER-KVA.example"):
        with pytest.raises(InputError, match="already a staff account"):
            staff.add_user(store, spelling, "editor", passphrase, NOW)
        # Sign-in finds the account under every spelling of its mailbox.
        assert staff.authenticate(store, spelling, passphrase)["id"] == user_id
    assert [u["email"] for u in store.staff_users()] == ["jürgen@bücher.example"]
    store.reset_totp("JÜRGEN@xn--bcher-kva.example")
    store.remove_staff_user("JÜRGEN@xn--bcher-kva.example")
    assert store.staff_users() == []


def test_the_dashboard_signs_in_another_spelling_of_a_staff_address(dashboard) -> None:
    import re

    import requests

    from newsletter import staff

    staff.add_user(dashboard.ws.store, "renée@bücher.example", "editor", "a long passphrase", NOW)
    session = requests.Session()
    form = session.get(dashboard.url + "/sign-in", timeout=10).text
    token = re.search(r'name="token" value="([^"]+)"', form).group(1)
    answer = session.post(
        dashboard.url + "/sign-in",
        data={
            "email": "RENÉE@xn--bcher-kva.example",
            "password": "a long passphrase",
            "token": token,
        },
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303, answer.text
    account = session.get(dashboard.url + "/account", timeout=10).text
    assert "renée@bücher.example, editor." in account


def test_m013_makes_staff_accounts_of_one_mailbox_one(tmp_path) -> None:
    store = database_before(tmp_path / "old.db", "m013")
    accounts = [
        # id, address, role, created, last sign-in
        (1, "jürgen@example.com", "editor", "2026-01-01", "2026-05-01"),
        (2, "JÜRGEN@example.com", "admin", "2026-02-01", None),
        (3, "renée@bücher.example", "editor", "2026-01-01", "2026-03-01"),
        (4, "Renée@xn--bcher-kva.example", "editor", "2026-02-01", "2026-04-01"),
        (5, "ann@example.com", "editor", "2026-01-01", None),
    ]
    with store.transaction():
        for uid, email, role, created, signed_in in accounts:
            store.conn.execute(
                "INSERT INTO staff_users (id, email, role, password_hash, created_at, "
                "signed_in_at) VALUES (?, ?, ?, 'hash', ?, ?)",
                [uid, email, role, created, signed_in],
            )
        for uid in (1, 3, 4):
            store.conn.execute(
                "INSERT INTO staff_sessions VALUES (?, ?, 'csrf', 'x', '2999-01-01')",
                [f"token{uid}", uid],
            )
    store.migrate()
    kept = store._rows("SELECT id, email, email_key, role FROM staff_users ORDER BY id")
    # The admin account of Jürgen's mailbox stays (whoever reads it had those rights);
    # of Renée's two editor accounts, the one signed in last.
    assert kept == [
        {
            "id": 2,
            "email": "JÜRGEN@example.com",
            "email_key": "jürgen@example.com",
            "role": "admin",
        },
        {
            "id": 4,
            "email": "Renée@xn--bcher-kva.example",
            "email_key": "renée@xn--bcher-kva.example",
            "role": "editor",
        },
        {"id": 5, "email": "ann@example.com", "email_key": "ann@example.com", "role": "editor"},
    ]
    # The removed accounts' sessions ended with them.
    sessions = store._rows("SELECT token_hash FROM staff_sessions")
    assert sessions == [{"token_hash": "token4"}]
    # The database itself now refuses a second spelling of a staff mailbox.
    with pytest.raises(Exception, match="UNIQUE"):
        store.conn.execute(
            "INSERT INTO staff_users (email, email_key, role, password_hash, created_at) "
            "VALUES ('ANN@EXAMPLE.COM', ?, 'editor', 'hash', 'x')",
            [mailbox_key("ANN@example.com")],
        )
    store.close()
