"""Attacks on the web server as a whole: huge bodies, framing and sniffing, forged client addresses.

Each test is the attack, made over real sockets against the real server.
"""

from __future__ import annotations

import select
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from clocks import REAL_NOW as NOW
from conftest import LiveServer, serving, stop_process, wait_for_http
from newsletter.mail import Urls
from newsletter.workspace import Workspace
from workspaces import campaign_urls, sent_campaign

MB = 1_000_000


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def read_response(sock: socket.socket) -> bytes:
    """What the server answered, up to the end of its headers and a little of the body."""
    data = b""
    sock.settimeout(10)
    try:
        while len(data) < 4096:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
            if b"\r\n\r\n" in data:
                sock.settimeout(0.5)  # the rest of a short answer, if it comes
    except (ConnectionResetError, TimeoutError):
        pass  # the server closed on the rest of our body; what it said came first
    return data


def stream_chunked(
    port: int, path: str, total: int, content_type: str = "application/json"
) -> tuple[bytes, int]:
    """POST ``total`` bytes in 64 KB chunks; stop as soon as the server answers or hangs up.

    Returns the answer and how many body bytes went out before it.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sock.sendall(head.encode())
    piece = b"x" * 65536
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    try:
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # answered before the end of the body
            sock.sendall(frame)
            sent += len(piece)
        else:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        return read_response(sock), sent
    finally:
        sock.close()


def send_head_only(port: int, path: str, headers: str) -> bytes:
    """Send a request's headers and none of its body; return the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
        return read_response(sock)
    finally:
        sock.close()


@pytest.fixture
def served(cli, port: int):
    """`newsletter serve` as a user runs it, in its own process."""
    proc = cli.popen("serve")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        yield proc
    finally:
        stop_process(proc)


# -- 4: request bodies -------------------------------------------------------------------


def test_a_chunked_body_far_over_the_cap_is_cut_off_without_growing_the_server(served, port):
    url = f"http://127.0.0.1:{port}"
    for _ in range(3):  # warm up: the first requests load code and caches
        requests.post(url + "/webhooks/ses", data=b"{}", timeout=5)
    before = rss_bytes(served.pid)

    answer, sent = stream_chunked(port, "/webhooks/ses", 300 * MB)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # The webhook's cap is 10 MB: the server read that much and no more.
    assert sent < 60 * MB
    grown = rss_bytes(served.pid) - before
    assert grown < 40 * MB, f"the server grew by {grown / MB:.0f} MB"
    # And it goes on serving.
    assert requests.get(url + "/healthz", timeout=5).text == "ok"


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_sent(served, port):
    answer = send_head_only(
        port,
        "/webhooks/sendgrid",
        "Content-Type: application/json\r\nContent-Length: 600000000\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("path", ["/admin/sign-in", "/subscribe", "/webhooks/ses", "/p/x"])
def test_an_upload_to_a_route_that_takes_none_is_refused_unread(served, port, path):
    # Headers only: the answer comes before a byte of the 100 MB "file" is sent,
    # so nothing was read, let alone spooled to disk.
    answer = send_head_only(
        port,
        path,
        "Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 100000000\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 415"), answer[:200]


def test_the_csv_upload_takes_a_file_up_to_its_own_cap(served, port):
    # Multipart is welcome here, but a declared size over the cap is refused unread.
    answer = send_head_only(
        port,
        "/admin/subscribers/import",
        "Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 60000000\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"at most 50 MB" in answer


def test_a_file_smuggled_into_a_one_click_unsubscribe_is_refused(workspace, live_server):
    campaign_id, reader, urls = _sent_campaign(workspace)
    answer = requests.post(
        live_server.url + urlsplit(urls.unsubscribe(campaign_id, reader)).path,
        files={"List-Unsubscribe": (None, "One-Click"), "x": ("x.bin", b"\0" * 4000)},
        timeout=5,
    )
    assert answer.status_code == 400
    assert workspace.store.subscriber(reader)["status"] == "confirmed"


def test_each_route_has_its_own_cap(served, port, ws_dir):
    # A public form is a few hundred bytes: a stream to it is refused long before its end
    # (what went out beyond 16 KB waited in the sockets' buffers).
    answer, sent = stream_chunked(port, "/subscribe", 50 * MB, "application/x-www-form-urlencoded")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 40 * MB
    # The same 100 KB is well within a webhook's cap: read and judged on its content.
    body = b'{"Type": "Notification"' + b" " * 100_000 + b"}"
    answer = requests.post(f"http://127.0.0.1:{port}/webhooks/ses", data=body, timeout=5)
    assert answer.status_code == 400


def test_the_webhook_cap_is_a_setting(ws_dir: Path):
    with serving(ws_dir, {"NEWSLETTER_WEB__MAX_WEBHOOK_BYTES": "2048"}) as server:
        answer, _ = stream_chunked(server.port, "/webhooks/ses", MB)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"at most 2 KB here" in answer


# -- 7: security headers on every response -----------------------------------------------


def _sent_campaign(ws: Workspace) -> tuple[int, int, Urls]:
    campaign_id = sent_campaign(ws, NOW)
    reader = ws.store.subscribers("confirmed")[0]["id"]
    return campaign_id, reader, campaign_urls(ws)


def test_every_response_forbids_framing_and_sniffing(workspace: Workspace, live_server):
    campaign_id, reader, urls = _sent_campaign(workspace)
    link = next(iter(workspace.store.links(campaign_id).values()))

    def path(url: str) -> str:
        return live_server.url + urlsplit(url).path

    cases = {
        "unsubscribe page": (path(urls.unsubscribe(campaign_id, reader)), 200),
        "view in browser": (path(urls.view(campaign_id, reader)), 200),
        "click redirect": (path(urls.click(campaign_id, reader, link)), 302),
        "dashboard redirect": (live_server.url + "/admin/", 303),
        "unknown path": (live_server.url + "/wp-login.php", 404),
        "bad token": (live_server.url + "/u/forged", 404),
        "pixel": (path(urls.open(campaign_id, reader)), 200),
        "health": (live_server.url + "/healthz", 200),
        "method not allowed": (live_server.url + "/webhooks/ses", 405),
    }
    for name, (url, status) in cases.items():
        answer = requests.get(url, allow_redirects=False, timeout=5)
        assert answer.status_code == status, name
        headers = answer.headers
        csp = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, name
        assert headers.get("x-frame-options") == "DENY", name
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("referrer-policy") == "no-referrer", name
        assert "script-src" not in csp and "default-src 'none'" in csp, name


def test_the_view_in_browser_page_shows_remote_images_but_runs_no_script(
    workspace: Workspace, live_server
):
    campaign_id, reader, urls = _sent_campaign(workspace)
    view = live_server.url + urlsplit(urls.view(campaign_id, reader)).path
    answer = requests.get(view, timeout=5)
    csp = answer.headers["content-security-policy"]
    assert "img-src http: https: data:" in csp
    assert "default-src 'none'" in csp and "script" not in csp


# -- 11: X-Forwarded-For only from trusted proxies ---------------------------------------


def _recorded_ip(ws_dir: Path, env: dict[str, str], forwarded: str) -> str | None:
    ws = Workspace.open(ws_dir, env=env)
    server = LiveServer(ws)
    server.start()
    try:
        requests.get(
            server.url + "/o/forged.gif", headers={"X-Forwarded-For": forwarded}, timeout=5
        )
    finally:
        server.stop()  # the event writer stores what was answered
    try:
        rows = ws.store._rows("SELECT ip FROM events WHERE kind = 'bad_token' ORDER BY id")
        return rows[-1]["ip"]
    finally:
        ws.close()


def test_a_forged_forwarded_for_is_ignored_by_default(ws_dir: Path):
    # Anyone who reaches the port could claim any address and dodge every per-network limit.
    assert _recorded_ip(ws_dir, {}, "198.51.100.7") == "127.0.0.0"


def test_forwarded_for_is_believed_from_a_listed_proxy(ws_dir: Path):
    env = {"NEWSLETTER_WEB__TRUSTED_PROXIES": "127.0.0.1"}
    assert _recorded_ip(ws_dir, env, "198.51.100.7") == "198.51.100.0"


def test_trusted_proxies_must_be_addresses(cli):
    path = cli.workspace / "newsletter.toml"
    path.write_text(path.read_text().replace("trusted_proxies = []", 'trusted_proxies = ["proxy"]'))
    result = cli("config", "check", check=False)
    assert result.returncode == 1
    assert "web.trusted_proxies: 'proxy' is not an address" in result.stdout + result.stderr
