"""Staff accounts: the `users` commands and the core they call."""

from __future__ import annotations

import datetime as dt

import pytest

from clocks import NOW
from newsletter import staff
from newsletter.errors import InputError


def test_users_add_list_remove(cli) -> None:
    cli.env["NEWSLETTER_USER_PASSWORD"] = "correct horse battery staple"
    added = cli("users", "add", "Alice@Clinic.Example.com", "--role", "admin")
    assert added.stdout == "Alice@clinic.example.com: staff account added (admin)\n"
    cli("users", "add", "bob@clinic.example.com")
    listed = cli("users", "list").stdout.splitlines()
    assert listed == [
        "Alice@clinic.example.com\tadmin\tpassword only\tnever signed in",
        "bob@clinic.example.com\teditor\tpassword only\tnever signed in",
    ]
    again = cli("users", "add", "alice@clinic.example.com", check=False)
    assert again.returncode == 1
    assert "already a staff account" in again.stderr and "Traceback" not in again.stderr
    assert cli("users", "remove", "BOB@clinic.example.com").stdout.endswith("removed\n")
    assert cli("users", "list").stdout.count("\n") == 1
    gone = cli("users", "remove", "bob@clinic.example.com", check=False)
    assert gone.returncode == 1 and "no such staff account" in gone.stderr


def test_users_add_refuses_short_password_and_unknown_role(cli) -> None:
    cli.env["NEWSLETTER_USER_PASSWORD"] = "short"
    short = cli("users", "add", "a@example.com", check=False)
    assert short.returncode == 1
    assert "at least 12 characters" in short.stderr
    role = cli("users", "add", "a@example.com", "--role", "owner", check=False)
    assert role.returncode == 2 and "owner" in role.stderr
    assert "no staff accounts" in cli("users", "list").stdout


def test_passwords_are_stored_as_argon2_and_sessions_as_hashes(store) -> None:
    user_id = staff.add_user(store, "a@example.com", "editor", "a long passphrase", NOW)
    row = store.staff_user("a@example.com")
    assert row["password_hash"].startswith("$argon2id$")
    assert staff.authenticate(store, "a@example.com", "a long passphrase")["id"] == user_id
    assert staff.authenticate(store, "a@example.com", "a long passphrasf") is None
    assert staff.authenticate(store, "nobody@example.com", "a long passphrase") is None
    token = staff.start_session(store, user_id, NOW)
    stored = store._rows("SELECT token_hash FROM staff_sessions")
    assert stored == [{"token_hash": staff.token_hash(token)}] and token not in str(stored)
    assert staff.session(store, token, NOW + dt.timedelta(hours=1))["role"] == "editor"
    assert staff.session(store, token, NOW + staff.SESSION_LIFETIME) is None
    staff.end_session(store, token)
    assert staff.session(store, token, NOW) is None
    with pytest.raises(InputError):
        staff.add_user(store, "not an address", "editor", "a long passphrase", NOW)


def test_users_reset_2fa_names_an_unknown_account(cli) -> None:
    unknown = cli("users", "reset-2fa", "nobody@example.com", check=False)
    assert unknown.returncode == 1
    assert "nobody@example.com: no such staff account" in unknown.stderr
    assert "Traceback" not in unknown.stderr
