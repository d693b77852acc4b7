"""Shared fixtures: a workspace per test, the CLI as a subprocess, servers on loopback."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from newsletter.sources.http import Fetcher
from newsletter.sources.policy import FetchPolicy
from newsletter.store import Store
from newsletter.store.base import MIGRATIONS
from newsletter.web.app import create_app
from newsletter.web.server import listen, make_server
from newsletter.workspace import Workspace, init_workspace

pytest_plugins = ("clock_guard", "pytester")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ws_dir(tmp_path: Path) -> Path:
    """A workspace made by `init` on the embedded defaults."""
    directory = tmp_path / "ws"
    init_workspace(directory)
    return directory


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def env(port: int) -> dict[str, str]:
    """Environment for CLI subprocesses: public links point at this test's server port."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    clean["NEWSLETTER_WEB__PORT"] = str(port)
    clean["NEWSLETTER_SITE__BASE_URL"] = f"http://127.0.0.1:{port}"
    return clean


class Cli:
    def __init__(self, workspace: Path, env: dict[str, str]):
        self.workspace = workspace
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "--workspace", str(self.workspace), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.workspace,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"newsletter {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--workspace", str(self.workspace), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.workspace,
        )


@pytest.fixture
def cli(ws_dir: Path, env: dict[str, str]) -> Cli:
    return Cli(ws_dir, env)


def dump(db: Path) -> list[str]:
    """The database file as SQL, to compare before and after a command (none yet: [])."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def one_line_error(
    result: subprocess.CompletedProcess[str], *needles: str, exit_code: int | None = None
) -> str:
    """Check that a command failed with one `Error:` line naming each needle, and return it.

    ``exit_code``: the code the command must exit with; None takes any failing code.
    """
    if exit_code is None:
        assert result.returncode != 0
    else:
        assert result.returncode == exit_code
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def wait_for_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"server exited early:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def stop_process(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """Ctrl-C the process as a user would and return everything it printed."""
    import signal

    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"process ignored Ctrl-C:\n{output}") from None
    return output


def signed_in(url: str) -> tuple[requests.Session, str]:
    """A requests session signed in to the dashboard at ``url`` as its admin, and its CSRF token."""
    session = requests.Session()
    form = session.get(url + "/sign-in", timeout=10).text
    token = re.search(r'name="token" value="([^"]+)"', form).group(1)
    answer = session.post(
        url + "/sign-in",
        data={"email": "admin@example.com", "password": STAFF_PASSWORD, "token": token},
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303, answer.text
    page = session.get(url + "/subscribers/import", timeout=10).text
    return session, re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def import_in_dashboard(
    session: requests.Session,
    url: str,
    csrf: str,
    name: str,
    data: bytes,
    timeout: float,
    consent: str = "unconfirmed",
) -> requests.Response:
    """Upload ``data`` as file ``name`` on the dashboard at ``url``, confirm the preview as an
    admin would, and return the page that answers the confirmation. ``consent``: the answer
    to "Did these people agree to receive email from you?" (the page requires one); by
    default "No, or I am not sure"."""
    preview = session.post(
        url + "/subscribers/import",
        data={"csrf": csrf, "list": "", "consent": consent},
        files={"file": (name, data, "text/csv")},
        timeout=timeout,
    )
    token = re.search(r'name="token" value="([^"]+)"', preview.text).group(1)
    return session.post(
        url + "/subscribers/import/confirm",
        data={"csrf": csrf, "token": token},
        timeout=timeout,
    )


def subscribe_form(url: str, address: str) -> requests.Response:
    """Send the public subscribe form at ``url`` as a person would, consent ticked."""
    session = requests.Session()
    page = session.get(url + "/subscribe", timeout=10)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
    return session.post(
        url + "/subscribe",
        data={**fields, "email": address, "consent": "yes"},
        allow_redirects=False,
        timeout=10,
    )


class LiveServer:
    """The web application served by uvicorn in a thread of the test process."""

    def __init__(self, ws: Workspace, port: int = 0, **options: Any):
        self.app = create_app(ws, **options)  # e.g. clock=, for a server living at a set time
        self.sock = listen("127.0.0.1", port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(self.app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def start(self) -> None:
        self.thread.start()
        wait_for_http(self.url + "/healthz")

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@contextlib.contextmanager
def serving(ws_dir: Path, env: dict[str, str], **options: Any) -> Iterator[LiveServer]:
    """The workspace in ``ws_dir``, opened on ``env``, served on loopback for the block."""
    ws = Workspace.open(ws_dir, env=env)
    server = LiveServer(ws, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        ws.close()


@pytest.fixture
def live_server(workspace: Workspace) -> Iterator[LiveServer]:
    server = LiveServer(workspace)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workspace(ws_dir: Path) -> Iterator[Workspace]:
    """The opened workspace (settings from its newsletter.toml, no environment overrides)."""
    ws = Workspace.open(ws_dir, env={})
    yield ws
    ws.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated database of its own, without a workspace."""
    store = Store(tmp_path / "db.sqlite")
    store.migrate()
    yield store
    store.close()


def database_before(path: Path, migration: str) -> Store:
    """A database at ``path`` migrated as an older version left it: up to, not with, the
    migration whose name starts with ``migration`` (say "m009")."""
    store = Store(path)
    with store.transaction():
        store.conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        for step in MIGRATIONS:
            if step.__name__.startswith(migration):
                break
            step(store.conn)
            store.conn.execute(
                "INSERT INTO _migrations VALUES (?, datetime('now'))", [step.__name__]
            )
    return store


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    """The article sources' HTTP client, allowed to reach the loopback test servers."""
    with Fetcher(FetchPolicy(allow_private=True, timeout=5)) as fetcher:
        yield fetcher


# -- the dashboard in a real browser ------------------------------------------------------

CHROMIUM = os.environ.get("NEWSLETTER_TEST_CHROMIUM", "/usr/bin/chromium")
STAFF_PASSWORD = "a long test passphrase"
ARTIFACTS = Path(
    os.environ.get("NEWSLETTER_TEST_ARTIFACTS")
    or Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, one for the whole session (never downloaded)."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import expect, sync_playwright

    # What a page shows after a request (a live preview, a poll) can take seconds on a
    # loaded 2-core machine: every expectation waits up to 15 s (a passing one no longer).
    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


class Dashboard:
    """A workspace served on loopback with a staff account, its SMTP transport on a sink."""

    def __init__(self, ws: Workspace, server: LiveServer, sink):
        self.ws, self.server, self.sink = ws, server, sink
        self.url = server.url + "/admin"

    def sign_in(self, page, email: str = "admin@example.com") -> None:
        page.goto(self.url + "/sign-in")
        page.get_by_label("Email address").fill(email)
        page.get_by_label("Password").fill(STAFF_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(self.url + "/")

    def screenshot(self, page, name: str, part: str | None = None) -> None:
        """Save the whole page, or one part of it (a full-page capture leaves frames blank)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = str(ARTIFACTS / f"{name}.png")
        if part:
            page.locator(part).screenshot(path=path)
        else:
            page.screenshot(path=path, full_page=True)


def add_staff(ws: Workspace, now: datetime.datetime) -> None:
    """Two staff accounts on STAFF_PASSWORD: admin@example.com (admin), editor@example.com."""
    from newsletter import staff

    staff.add_user(ws.store, "admin@example.com", "admin", STAFF_PASSWORD, now)
    staff.add_user(ws.store, "editor@example.com", "editor", STAFF_PASSWORD, now)


@contextlib.contextmanager
def dashboard_served(ws_dir: Path, clock: Any = None, **env: str) -> Iterator[Dashboard]:
    """The web app with an admin and an editor account, mail going to an SMTP sink, for the
    block; on ``clock`` (the server's and the accounts' time) when given, else the real one."""
    from smtp_sink import SmtpSink, smtp_env

    port = free_port()
    with SmtpSink() as sink:
        ws = Workspace.open(
            ws_dir,
            env=smtp_env(sink, NEWSLETTER_SITE__BASE_URL=f"http://127.0.0.1:{port}", **env),
        )
        add_staff(ws, clock() if clock else datetime.datetime.now(datetime.UTC))
        server = LiveServer(ws, port, **({"clock": clock} if clock else {}))
        server.start()
        try:
            yield Dashboard(ws, server, sink)
        finally:
            server.stop()
            ws.close()


@pytest.fixture
def dashboard(ws_dir: Path) -> Iterator[Dashboard]:
    """The web app with an admin and an editor account, mail going to an SMTP sink."""
    with dashboard_served(ws_dir) as served:
        yield served


@pytest.fixture
def admin_page(browser, dashboard: Dashboard):
    """A browser page signed in to the dashboard as an admin."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    dashboard.sign_in(page)
    yield page
    context.close()
