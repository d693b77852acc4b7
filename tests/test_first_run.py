"""First start: the person at the server makes the first admin in the browser, no one else can.

With no staff account, /admin offers "create the first admin" to a request from this
machine only (a loopback client, a loopback host name, no proxy in between), with the
same rules as `newsletter users add`, a CSRF token and an audit entry; from anywhere else
it says whom to ask. `newsletter run` says where the dashboard is.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path

import requests
from playwright.sync_api import expect

from conftest import add_staff, serving, signed_in, stop_process, wait_for_http
from newsletter import staff
from newsletter.workspace import Workspace
from test_dashboard_access import serious_violations
from test_dashboard_words import COMMAND, FLAG, speaks_to_people

PASSWORD = "correct horse battery staple"


def _accounts(server) -> list[dict]:
    return server.app.state.dashboard.store.staff_users()


def test_the_person_at_the_server_creates_the_first_admin(browser, ws_dir: Path, env) -> None:
    with serving(ws_dir, env) as server:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            # Any dashboard page leads there while nobody can sign in.
            page.goto(server.url + "/admin/campaigns")
            page.wait_for_url(server.url + "/admin/first-admin")
            expect(page.get_by_role("heading", name="Create the first admin")).to_be_visible()
            assert serious_violations(page) == []

            # The rules of `users add`, said by the field, with what was typed kept (the
            # server's own checks: the browser's are switched off, as an old browser would).
            page.eval_on_selector("form", "form => { form.noValidate = true; }")
            page.get_by_label("Your email address").fill("owner@clinic.example")
            page.get_by_label("Password", exact=True).fill("too short")
            page.get_by_label("The password again").fill("too short")
            page.get_by_role("button", name="Create the admin and sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("at least 12 characters")
            speaks_to_people(page)
            expect(page.get_by_label("Password", exact=True)).to_have_attribute(
                "aria-invalid", "true"
            )
            expect(page.get_by_label("Your email address")).to_have_value("owner@clinic.example")

            page.eval_on_selector("form", "form => { form.noValidate = true; }")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_label("The password again").fill(PASSWORD + " typo")
            page.get_by_role("button", name="Create the admin and sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("not the same")
            speaks_to_people(page)

            page.get_by_label("Your email address").fill("owner at clinic")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_label("The password again").fill(PASSWORD)
            page.eval_on_selector("form", "form => { form.noValidate = true; }")
            page.get_by_role("button", name="Create the admin and sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("is not an email address")
            expect(page.get_by_label("Your email address")).to_have_attribute(
                "aria-invalid", "true"
            )
            assert _accounts(server) == []

            page.get_by_label("Your email address").fill("owner@clinic.example")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_label("The password again").fill(PASSWORD)
            page.get_by_role("button", name="Create the admin and sign in").click()
            page.wait_for_url(server.url + "/admin/")
            expect(page.get_by_text("owner@clinic.example (admin)")).to_be_visible()

            # The account is an admin that signs in with that password; the log says who
            # made it, and from where.
            (account,) = _accounts(server)
            assert (account["email"], account["role"]) == ("owner@clinic.example", "admin")
            store = server.app.state.dashboard.store
            assert staff.authenticate(store, "owner@clinic.example", PASSWORD) is not None
            page.goto(server.url + "/admin/audit")
            row = page.get_by_role("row").filter(has_text="created the first admin")
            expect(row).to_contain_text("owner@clinic.example")
            expect(row).to_contain_text("127.0.0.1")

            # Never offered again: the page sends to sign-in, and a second form is refused.
            answer = requests.get(server.url + "/admin/first-admin", allow_redirects=False)
            assert answer.status_code == 303
            assert answer.headers["location"] == "/admin/sign-in"
            assert len(_accounts(server)) == 1
        finally:
            context.close()


def _first_admin_form(server, headers: dict[str, str] | None = None) -> requests.Response:
    """The form filled in and sent as a browser would, from where ``headers`` say."""
    session = requests.Session()
    session.headers.update(headers or {})
    page = session.get(server.url + "/admin/first-admin", timeout=10)
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    return session.post(
        server.url + "/admin/first-admin",
        data={
            "token": token.group(1) if token else "",
            "email": "intruder@example.net",
            "password": PASSWORD,
            "again": PASSWORD,
        },
        allow_redirects=False,
        timeout=30,
    )


def test_from_elsewhere_the_page_says_whom_to_ask(ws_dir: Path, env) -> None:
    # Behind a trusted proxy, the reader's own address is the one that counts.
    proxied = {**env, "NEWSLETTER_WEB__TRUSTED_PROXIES": "127.0.0.1"}
    with serving(ws_dir, proxied) as server:
        elsewhere = {"X-Forwarded-For": "203.0.113.9"}
        page = requests.get(server.url + "/admin/first-admin", headers=elsewhere, timeout=10)
        assert page.status_code == 403
        assert "Ask the person who runs the server" in page.text
        assert 'name="password"' not in page.text
        assert not FLAG.search(page.text) and not COMMAND.search(page.text)
        answer = _first_admin_form(server, elsewhere)
        assert answer.status_code == 403
        assert _accounts(server) == []

    with serving(ws_dir, env) as server:
        # A proxy on this machine that is not trusted: its headers still give it away.
        assert _first_admin_form(server, {"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        assert _first_admin_form(server, {"Forwarded": "for=203.0.113.9"}).status_code == 403
        # A proxy that passes the public name on as Host.
        assert _first_admin_form(server, {"Host": "news.example.com"}).status_code == 403
        assert _accounts(server) == []


def test_the_first_admin_form_needs_its_token(ws_dir: Path, env) -> None:
    with serving(ws_dir, env) as server:
        # Another site's page posting to this one: no token from this dashboard.
        answer = requests.post(
            server.url + "/admin/first-admin",
            data={"email": "owner@clinic.example", "password": PASSWORD, "again": PASSWORD},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 403
        assert "The form had expired" in answer.text
        assert _accounts(server) == []
        # The same form from this dashboard goes through.
        assert _first_admin_form(server).status_code == 303
        assert [a["email"] for a in _accounts(server)] == ["intruder@example.net"]


def test_run_says_where_the_dashboard_is(cli, port: int) -> None:
    proc = cli.popen("run")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    finally:
        log = stop_process(proc)
    assert f"dashboard on http://127.0.0.1:{port}/admin/" in log
    assert (
        f"no dashboard account yet: open http://127.0.0.1:{port}/admin/ in a browser on "
        "this machine to create the first admin"
    ) in log


def _staffed(ws_dir: Path, env: dict[str, str]) -> None:
    ws = Workspace.open(ws_dir, env=env)
    try:
        add_staff(ws, dt.datetime.now(dt.UTC))
    finally:
        ws.close()


def test_check_flags_links_on_another_port_than_the_server(ws_dir: Path, env) -> None:
    _staffed(ws_dir, env)
    # The links say the port of [web] port; this server was started on another.
    with serving(ws_dir, env) as server:
        base_url = env["NEWSLETTER_SITE__BASE_URL"]
        assert not base_url.endswith(f":{server.port}")
        session, _ = signed_in(server.url + "/admin")
        page = session.get(server.url + "/admin/settings/check", timeout=10).text
        assert (
            f"site.base_url: {base_url} uses port {env['NEWSLETTER_WEB__PORT']}, but this "
            f"server answers on port {server.port}"
        ) in html.unescape(page)

    # Served where its links point: nothing to say about ports.
    with serving(ws_dir, env, port=int(env["NEWSLETTER_WEB__PORT"])) as server:
        session, _ = signed_in(server.url + "/admin")
        page = session.get(server.url + "/admin/settings/check", timeout=10).text
        assert "answers on port" not in page and "uses port" not in page


def test_check_flags_plain_http_links_in_mail_that_leaves_the_machine(ws_dir: Path, env) -> None:
    _staffed(ws_dir, env)
    with serving(ws_dir, env) as server:
        session, _ = signed_in(server.url + "/admin")
        page = session.get(server.url + "/admin/settings/check", timeout=10).text
        assert "is not https" not in page  # the outbox: mail stays here
        # The file edited for a provider, the server not restarted yet: Check reads it afresh.
        config_file = ws_dir / "newsletter.toml"
        text = config_file.read_text(encoding="utf-8")
        text = text.replace('transport = "outbox"', 'transport = "postmark"')
        text = text.replace(
            'base_url = "http://127.0.0.1:8080"', 'base_url = "http://news.example.com"'
        )
        config_file.write_text(text, encoding="utf-8")
        page = html.unescape(session.get(server.url + "/admin/settings/check", timeout=10).text)
        assert (
            "site.base_url: http://news.example.com is not https, "
            "but mail goes out through postmark" in page
        )
