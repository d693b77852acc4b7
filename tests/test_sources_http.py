"""The guarded HTTP fetcher against a real server on loopback."""

from __future__ import annotations

import gzip
import ipaddress
import socket
import threading
from collections.abc import Iterator

import pytest
from werkzeug import Request, Response

from newsletter import __version__
from newsletter.sources.http import Fetcher, FetchError
from newsletter.sources.policy import FetchPolicy, parse_networks

LOOPBACK_ALLOWED = FetchPolicy(allow_private=True, timeout=5)


def test_get_sends_a_clear_user_agent_and_returns_the_body(httpserver_ipv4, fetcher):
    httpserver_ipv4.expect_request("/feed.xml").respond_with_data(
        "<rss/>", content_type="application/rss+xml"
    )
    answer = fetcher.get(httpserver_ipv4.url_for("/feed.xml"))
    assert answer.status == 200 and answer.body == b"<rss/>"
    assert answer.content_type == "application/rss+xml"
    request, _ = httpserver_ipv4.log[0]
    assert request.headers["User-Agent"].startswith(f"newsletter/{__version__} ")
    assert "application/rss+xml" in request.headers["Accept"]


def test_conditional_get_sends_the_validators_and_reports_not_modified(httpserver_ipv4, fetcher):
    def handler(request: Request) -> Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304, headers={"ETag": '"v1"'})
        return Response("<rss/>", headers={"ETag": '"v1"', "Last-Modified": "Wed, 25 Nov 2026"})

    httpserver_ipv4.expect_request("/feed.xml").respond_with_handler(handler)
    url = httpserver_ipv4.url_for("/feed.xml")
    first = fetcher.get(url)
    assert first.headers["etag"] == '"v1"' and not first.not_modified
    second = fetcher.get(url, etag='"v1"', last_modified="Wed, 25 Nov 2026")
    assert second.not_modified and second.body == b""
    request, _ = httpserver_ipv4.log[1]
    assert request.headers["If-Modified-Since"] == "Wed, 25 Nov 2026"


def test_redirects_are_followed_and_the_final_url_kept(httpserver_ipv4, fetcher):
    httpserver_ipv4.expect_request("/old").respond_with_response(
        Response(status=301, headers={"Location": "/middle"})
    )
    httpserver_ipv4.expect_request("/middle").respond_with_response(
        Response(status=302, headers={"Location": httpserver_ipv4.url_for("/new")})
    )
    httpserver_ipv4.expect_request("/new").respond_with_data("here")
    answer = fetcher.get(httpserver_ipv4.url_for("/old"))
    assert answer.body == b"here"
    assert answer.url == httpserver_ipv4.url_for("/new")


def test_a_redirect_loop_stops_at_the_cap(httpserver_ipv4):
    httpserver_ipv4.expect_request("/loop").respond_with_response(
        Response(status=302, headers={"Location": "/loop"})
    )
    with Fetcher(FetchPolicy(allow_private=True, max_redirects=3)) as fetcher:
        with pytest.raises(FetchError, match="more than 3 redirects"):
            fetcher.get(httpserver_ipv4.url_for("/loop"))
    assert len(httpserver_ipv4.log) == 4


@pytest.mark.parametrize("status", [401, 404, 500])
def test_http_errors_name_the_url_and_status(httpserver_ipv4, fetcher, status):
    httpserver_ipv4.expect_request("/feed.xml").respond_with_data("nope", status=status)
    url = httpserver_ipv4.url_for("/feed.xml")
    with pytest.raises(FetchError) as excinfo:
        fetcher.get(url)
    assert str(excinfo.value).startswith(f"{url}: HTTP {status}")
    assert excinfo.value.status == status


def test_a_refused_connection_has_no_status():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Fetcher(LOOPBACK_ALLOWED) as fetcher:
        with pytest.raises(FetchError) as excinfo:
            fetcher.get(f"http://127.0.0.1:{port}/")
    assert excinfo.value.status is None


def test_a_declared_oversized_body_is_refused_before_reading(httpserver_ipv4):
    httpserver_ipv4.expect_request("/big").respond_with_data(b"x" * 200_000)
    with Fetcher(FetchPolicy(allow_private=True, max_bytes=64_000)) as fetcher:
        with pytest.raises(FetchError, match="larger than 64,000 bytes"):
            fetcher.get(httpserver_ipv4.url_for("/big"))


def test_fifty_megabytes_of_streamed_noise_stop_at_the_cap(httpserver_ipv4):
    produced = []

    def noise() -> Iterator[bytes]:
        for _ in range(800):  # 800 x 64 KiB = 50 MiB, never all produced
            produced.append(1)
            yield b"\x00noise" * 10_923

    httpserver_ipv4.expect_request("/noise").respond_with_handler(
        lambda request: Response(noise(), content_type="application/rss+xml")
    )
    with Fetcher(FetchPolicy(allow_private=True, max_bytes=1_000_000)) as fetcher:
        with pytest.raises(FetchError, match="larger than 1,000,000 bytes"):
            fetcher.get(httpserver_ipv4.url_for("/noise"))
    assert len(produced) < 800


def test_a_compressed_bomb_is_capped_after_decompression(httpserver_ipv4):
    bomb = gzip.compress(b"\x00" * 20_000_000, compresslevel=9)
    assert len(bomb) < 100_000
    httpserver_ipv4.expect_request("/bomb").respond_with_response(
        Response(bomb, headers={"Content-Encoding": "gzip"}, content_type="text/xml")
    )
    with Fetcher(FetchPolicy(allow_private=True, max_bytes=1_000_000)) as fetcher:
        with pytest.raises(FetchError, match="larger than"):
            fetcher.get(httpserver_ipv4.url_for("/bomb"))


def test_a_server_that_never_answers_times_out():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # the kernel completes the handshake; nobody ever answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/feed.xml"
    try:
        with Fetcher(FetchPolicy(allow_private=True, timeout=0.3)) as fetcher:
            with pytest.raises(FetchError) as excinfo:
                fetcher.get(url)
    finally:
        silent.close()
    assert str(excinfo.value) == f"{url}: timed out after 0.3 s"


def test_a_closed_port_is_a_connection_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Fetcher(LOOPBACK_ALLOWED) as fetcher:
        with pytest.raises(FetchError, match="cannot connect"):
            fetcher.get(f"http://127.0.0.1:{port}/")


def test_tls_to_a_plain_http_server_is_a_tls_error(httpserver_ipv4, fetcher):
    with pytest.raises(FetchError, match="TLS error"):
        fetcher.get(f"https://127.0.0.1:{httpserver_ipv4.port}/")


# -- what is refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "a cloud metadata address"),
        ("http://127.0.0.1/", "a loopback address"),
        ("http://[::1]/", "a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "a loopback address"),
        ("http://[64:ff9b::7f00:1]/", "a loopback address"),
        ("http://[64:ff9b::a9fe:a9fe]/", "a cloud metadata address"),
        ("http://[64:ff9b::a01:203]/", "a private address"),
        ("http://168.63.129.16/machine", "a cloud metadata address"),
        ("http://10.1.2.3/", "a private address"),
        ("http://192.168.0.10/", "a private address"),
        ("http://169.254.1.1/", "a link-local address"),
        ("http://224.0.0.1/", "a multicast address"),
        ("http://0.0.0.0/", "an unspecified address"),
        ("http://240.0.0.1/", "a reserved address"),
    ],
)
def test_non_public_addresses_are_refused_without_connecting(url, reason):
    with Fetcher(FetchPolicy()) as fetcher:
        with pytest.raises(FetchError) as excinfo:
            fetcher.get(url)
    assert str(excinfo.value).startswith(f"{url}: refused")
    assert reason in str(excinfo.value)


def test_cloud_metadata_stays_refused_when_private_addresses_are_allowed():
    policy = FetchPolicy(allow_private=True, allowed_networks=parse_networks(["169.254.0.0/16"]))
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"
    assert policy.refusal(ipaddress.ip_address("169.254.10.10")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert FetchPolicy().refusal(ipaddress.ip_address("93.184.216.34")) is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/feed", "gopher://x/"])
def test_only_http_and_https(url):
    with Fetcher(FetchPolicy()) as fetcher:
        with pytest.raises(FetchError, match="only http and https"):
            fetcher.get(url)


def test_a_redirect_to_loopback_is_refused_when_loopback_is_not_allowed(httpserver_ipv4):
    # Only the test server's own address is allowed; the redirect points at
    # another loopback address, as a hostile feed pointing inward would.
    inward = f"http://127.0.0.2:{httpserver_ipv4.port}/admin"
    httpserver_ipv4.expect_request("/feed.xml").respond_with_response(
        Response(status=302, headers={"Location": inward})
    )
    policy = FetchPolicy(allowed_networks=parse_networks(["127.0.0.1/32"]))
    url = httpserver_ipv4.url_for("/feed.xml")
    with Fetcher(policy) as fetcher:
        with pytest.raises(FetchError) as excinfo:
            fetcher.get(url)
    assert str(excinfo.value).startswith(f"{url}: redirected to {inward}: refused")
    assert "a loopback address" in str(excinfo.value)
    assert len(httpserver_ipv4.log) == 1


def test_a_redirect_to_the_metadata_service_is_refused(httpserver_ipv4, fetcher):
    httpserver_ipv4.expect_request("/feed.xml").respond_with_response(
        Response(status=307, headers={"Location": "http://169.254.169.254/latest/"})
    )
    with pytest.raises(FetchError, match="a cloud metadata address"):
        fetcher.get(httpserver_ipv4.url_for("/feed.xml"))


def test_an_address_that_changes_after_the_check_is_refused_at_connect(httpserver_ipv4):
    """DNS rebinding: the check sees a public address, the connection goes to loopback."""

    def public_answer(host, port, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    httpserver_ipv4.expect_request("/feed.xml").respond_with_data("secret")
    with Fetcher(FetchPolicy(), resolver=public_answer) as fetcher:
        with pytest.raises(FetchError) as excinfo:
            fetcher.get(f"http://localhost:{httpserver_ipv4.port}/feed.xml")
    assert "connected to 127.0.0.1, a loopback address" in str(excinfo.value)
    assert httpserver_ipv4.log == []


def test_environment_proxies_are_not_used(httpserver_ipv4, fetcher, monkeypatch):
    # A proxy would make the connection to the proxy's address, not the feed's.
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:9")
    httpserver_ipv4.expect_request("/feed.xml").respond_with_data("direct")
    assert fetcher.get(httpserver_ipv4.url_for("/feed.xml")).body == b"direct"


# -- a slow server cannot hold a fetch past its time limit ----------------------------


class TrickleServer:
    """Answers one request on loopback with ``head``, then one byte every ``interval`` s.

    It stops after ``cap`` bytes or as soon as the client hangs up; ``sent``
    says how far it got, which shows whether the client waited it out.
    """

    def __init__(self, head: bytes, interval: float = 0.05, cap: int = 400):
        self.head, self.interval, self.cap = head, interval, cap
        self.sent = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/feed.xml"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.head)
                while self.sent < self.cap and not self._stop.is_set():
                    conn.sendall(b"a")
                    self.sent += 1
                    self._stop.wait(self.interval)
            except OSError:
                pass  # the client hung up

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)


@pytest.mark.parametrize(
    "head",
    [
        # Header lines that never end.
        b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nX-Slow: ",
        # A body without a length, a byte at a time until the server closes.
        b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n\r\n",
    ],
    ids=["headers", "body"],
)
def test_a_trickling_server_is_cut_off_at_the_deadline(head):
    server = TrickleServer(head)
    try:
        with Fetcher(FetchPolicy(allow_private=True, timeout=1)) as fetcher:
            with pytest.raises(FetchError) as excinfo:
                fetcher.get(server.url)
    finally:
        server.close()
    assert str(excinfo.value) == f"{server.url}: timed out after 1 s"
    # Each byte came well within the 1 s read timeout; the fetch still gave up
    # long before the server ran out of bytes to trickle.
    assert server.sent < server.cap


# -- caller headers stay with their origin -------------------------------------------


def test_caller_headers_are_not_sent_to_a_redirect_on_another_host(httpserver_ipv4, fetcher):
    port = httpserver_ipv4.port
    secret = {"Authorization": "IST.secret-key", "wix-site-id": "site-1"}
    # Same origin first (kept), then another host name for the same server (dropped).
    httpserver_ipv4.expect_request("/v3/posts").respond_with_response(
        Response(status=302, headers={"Location": "/v3/posts/moved"})
    )
    httpserver_ipv4.expect_request("/v3/posts/moved").respond_with_response(
        Response(status=302, headers={"Location": f"http://localhost:{port}/elsewhere"})
    )
    httpserver_ipv4.expect_request("/elsewhere").respond_with_data("{}")
    answer = fetcher.get(httpserver_ipv4.url_for("/v3/posts"), headers=secret)
    assert answer.url == f"http://localhost:{port}/elsewhere"
    seen = {request.path: request.headers for request, _ in httpserver_ipv4.log}
    assert seen["/v3/posts"]["Authorization"] == "IST.secret-key"
    assert seen["/v3/posts/moved"]["Authorization"] == "IST.secret-key"
    assert seen["/v3/posts/moved"]["wix-site-id"] == "site-1"
    assert "Authorization" not in seen["/elsewhere"]
    assert "wix-site-id" not in seen["/elsewhere"]
    assert seen["/elsewhere"]["User-Agent"].startswith("newsletter/")


def test_caller_headers_are_not_sent_to_another_port(httpserver_ipv4, fetcher):
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other_port = other.getsockname()[1]
    other.close()
    from pytest_httpserver import HTTPServer

    second = HTTPServer(host="127.0.0.1", port=other_port)
    second.start()
    try:
        second.expect_request("/landing").respond_with_data("ok")
        httpserver_ipv4.expect_request("/start").respond_with_response(
            Response(status=307, headers={"Location": second.url_for("/landing")})
        )
        fetcher.get(httpserver_ipv4.url_for("/start"), headers={"Authorization": "k"})
        [(request, _)] = second.log
    finally:
        second.clear()
        second.stop()
    assert "Authorization" not in request.headers
