"""The staff audit log: every staff action, from the dashboard or the command line, leaves
an entry naming who did it, to what, and (over the network) from which address.

The dashboard runs behind a proxy on loopback, so each request comes "from" the address
it forwards; the command line runs as a subprocess under a chosen login name.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from pathlib import Path

import pyotp
import requests

from conftest import STAFF_PASSWORD, Cli
from newsletter import jobs
from test_dashboard_security import ATTACKER, OWNER, staff_server, try_sign_in


def _entries(ws_dir: Path) -> list[dict]:
    with sqlite3.connect(ws_dir / "newsletter.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM audit_log ORDER BY id")]


def _entry(entries: list[dict], action: str, target: str) -> dict:
    found = [e for e in entries if e["action"] == action and e["target"] == target]
    assert len(found) == 1, (action, target, entries)
    return found[0]


def _csrf(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10).text
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def _post(session: requests.Session, url: str, csrf: str, **data: str) -> requests.Response:
    answer = session.post(url, data={"csrf": csrf, **data}, timeout=30)
    assert answer.ok, (url, answer.status_code, answer.text[:500])
    return answer


def _new_campaign(ws, session: requests.Session, url: str, csrf: str, subject: str) -> int:
    article = str(ws.store.articles()[0]["id"])
    _post(
        session,
        url + "/campaigns/new",
        csrf,
        subject=subject,
        articles_mode="chosen",
        article=article,
        template="auto",
    )
    return max(c["id"] for c in ws.store.campaigns() if c["subject"] == subject)


def test_every_audited_dashboard_action_names_actor_target_and_address(ws_dir: Path) -> None:
    with staff_server(ws_dir) as (ws, url):
        jobs.fetch_sources(ws, ws.store, dt.datetime.now(dt.UTC))  # articles to send
        admin = try_sign_in(url, STAFF_PASSWORD, OWNER).session
        csrf = _csrf(admin, url + "/campaigns")

        scheduled = _new_campaign(ws, admin, url, csrf, "Later")
        sent = _new_campaign(ws, admin, url, csrf, "Now")
        tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        _post(
            admin,
            f"{url}/campaigns/{scheduled}/schedule",
            csrf,
            date=f"{tomorrow:%Y-%m-%d}",
            time="09:00",
            tz="UTC",
        )
        _post(admin, f"{url}/campaigns/{scheduled}/cancel", csrf)
        _post(admin, f"{url}/campaigns/{sent}/send", csrf)

        upload = admin.post(
            url + "/subscribers/import",
            data={"csrf": csrf, "confirmed": "on", "consent": "confirmed"},
            files={"file": ("people.csv", b"email\nann@example.com\nbea@example.com\n")},
            timeout=30,
        )
        assert upload.ok, upload.text[:500]
        token = re.search(r'name="token" value="([^"]+)"', upload.text).group(1)
        _post(admin, url + "/subscribers/import/confirm", csrf, token=token)
        ann = ws.store.subscriber_by_email("ann@example.com")["id"]
        bea = ws.store.subscriber_by_email("bea@example.com")["id"]
        _post(admin, f"{url}/subscribers/{ann}/unsubscribe", csrf)
        _post(admin, f"{url}/subscribers/{bea}/delete", csrf)

        enrolling = _post(admin, url + "/account/2fa/start", csrf).text
        key = re.search(r'<code id="totp-key">([^<]+)</code>', enrolling).group(1)
        turned_on = _post(
            admin, url + "/account/2fa/confirm", csrf, code=pyotp.TOTP(key.replace(" ", "")).now()
        )
        assert "Two-factor sign-in is on." in turned_on.text

        # Someone guessing the editor's password from elsewhere locks the account there.
        statuses = [
            try_sign_in(url, f"guess {n}", ATTACKER, "editor@example.com").status_code
            for n in range(9)
        ]
        assert statuses[-1] == 429

    entries = _entries(ws_dir)
    staff_actions = [
        ("scheduled", f"campaign {scheduled}"),
        ("cancelled", f"campaign {scheduled}"),
        ("sent", f"campaign {sent}"),
        ("imported", "people.csv"),
        ("unsubscribed", f"subscriber {ann}"),
        ("deleted (erased)", f"subscriber {bea}"),
        ("turned on two-factor sign-in", "admin@example.com"),
    ]
    for action, target in staff_actions:
        entry = _entry(entries, action, target)
        assert (entry["actor"], entry["ip"]) == ("admin@example.com", OWNER), entry
    assert "Scheduled for" in _entry(entries, "scheduled", f"campaign {scheduled}")["detail"]
    assert "2 added" in _entry(entries, "imported", "people.csv")["detail"]
    # The address of a person is never the target: an erased one must not stay here.
    assert not any("bea@example.com" in str(e.values()) for e in entries)
    locked = _entry(entries, "sign-in locked", "editor@example.com")
    # No one signed in did it: the actor is empty; the address is the guesser's.
    assert (locked["actor"], locked["ip"]) == ("", ATTACKER)
    assert "8 failed" in locked["detail"]


def test_staff_actions_on_the_command_line_name_the_os_user_and_no_address(
    cli: Cli, ws_dir: Path
) -> None:
    cli.env = {
        **cli.env,
        "LOGNAME": "alice",
        "USER": "alice",
        "NEWSLETTER_USER_PASSWORD": STAFF_PASSWORD,
    }
    cli("fetch")
    (ws_dir / "people.csv").write_text("email\nann@example.com\nbea@example.com\n")
    cli("subscribers", "import", "people.csv", "--confirmed")
    cli("campaign", "create", "--subject", "Later", "--articles", "1")
    cli("campaign", "create", "--subject", "Now", "--articles", "1")
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    cli("campaign", "schedule", "1", "--at", f"{tomorrow:%Y-%m-%d} 09:00", "--tz", "UTC")
    cli("campaign", "pause", "1")
    cli("campaign", "resume", "1")
    cli("campaign", "cancel", "1")
    cli("campaign", "send", "2")
    cli("subscribers", "unsubscribe", "ann@example.com")
    cli("subscribers", "delete", "bea@example.com")
    cli("users", "add", "bob@example.com", "--role", "editor")
    cli("users", "reset-2fa", "bob@example.com")
    cli("users", "remove", "bob@example.com")

    entries = _entries(ws_dir)
    expected = [
        ("imported", "people.csv"),
        ("created a campaign", "campaign 1"),
        ("scheduled", "campaign 1"),
        ("paused", "campaign 1"),
        ("resumed", "campaign 1"),
        ("cancelled", "campaign 1"),
        ("created a campaign", "campaign 2"),
        ("sent", "campaign 2"),
        ("added staff account", "bob@example.com"),
        ("reset two-factor sign-in", "bob@example.com"),
        ("removed staff account", "bob@example.com"),
    ]
    for action, target in expected:
        entry = _entry(entries, action, target)
        assert (entry["actor"], entry["ip"]) == ("command line (alice)", None), entry
    # People by id, as the dashboard logs them, never by address.
    by_action = {e["action"]: e for e in entries}
    for action in ("unsubscribed", "deleted (erased)"):
        entry = by_action[action]
        assert re.fullmatch(r"subscriber \d+", entry["target"]), entry
        assert (entry["actor"], entry["ip"]) == ("command line (alice)", None), entry
    assert not any("bea@example.com" in str(e.values()) for e in entries)
    assert "2 added" in _entry(entries, "imported", "people.csv")["detail"]
    # A command that fails changes nothing and logs nothing.
    before = len(entries)
    assert cli("campaign", "pause", "2", check=False).returncode == 1
    assert len(_entries(ws_dir)) == before
