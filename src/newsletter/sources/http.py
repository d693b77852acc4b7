"""The one way article sources reach the network: a guarded HTTP GET.

Feed and page addresses come from settings files and from the feeds
themselves (links, redirects), so every request is treated as untrusted:

- only ``http`` and ``https``;
- the host is resolved and refused if any address is loopback, private,
  link-local, multicast, reserved or a cloud metadata service, unless the
  settings allow it (the rules are in ``policy.py``); the address actually
  connected to is checked again, so a DNS answer that changes between the
  check and the connection gains nothing;
- redirects are followed here, one at a time, each one checked the same way;
  the caller's own headers (an API key) go only to the origin they were meant
  for, never to a redirect target on another scheme, host or port;
- a wall-clock deadline for the whole request and a size cap on the body,
  counted after decompression, so neither a slow server nor a compressed bomb
  can hold the poll or fill memory. A socket timeout bounds each read, not the
  request: a server that sends a byte every half second would never trip it.
  So a watchdog timer shuts the connection down at the deadline, which makes
  a stalled read return, and the body is read in pieces with the clock
  checked between them. (A TLS handshake is bounded per read only.)
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from newsletter import __version__
from newsletter.errors import SourceError
from newsletter.sources.policy import FetchPolicy

USER_AGENT = f"newsletter/{__version__} (email newsletter article intake; python-requests)"
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024

Resolver = Callable[..., list[tuple[Any, ...]]]


class FetchError(SourceError):
    """A request could not be made or was refused; the message is the reason.

    ``status`` is the HTTP status when the server answered with an error, so
    callers (the Wix API) can tell "no such post" from "wrong key" without
    reading the message.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RefusedAddress(Exception):
    """Raised inside a connection when the peer address is not allowed.

    Deliberately not an OSError, so urllib3 does not wrap it as a retryable
    connection failure.
    """


@dataclass
class Response:
    """A successful (200) or not-modified (304) answer, with the body read in full."""

    url: str
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


# -- the connection-level check ----------------------------------------------------


class _Deadline:
    """One request's end time; ``fired`` once the watchdog has cut its connection."""

    def __init__(self, at: float):
        self.at = at
        self.fired = False
        self.connection: Any = None


class _Watchdog:
    """Shut a request's connection down at its deadline, so a stalled read returns.

    One thread per Fetcher, started with its first request, sleeps until the
    earliest deadline of the requests in flight. The connection in use is
    handed over (``watch``) each time a request goes out on one, new or
    reused. After the deadline the request's ``fired`` is true, and the reader
    reports a timeout, not the broken connection it sees.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: set[_Deadline] = set()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._current = threading.local()

    def begin(self, seconds: float) -> _Deadline:
        """Watch the request this thread is about to make."""
        deadline = _Deadline(time.monotonic() + seconds)
        self._current.deadline = deadline
        with self._cond:
            self._active.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="newsletter-fetch-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return deadline

    def watch(self, connection: Any) -> None:
        """The current request of this thread now goes out on ``connection``."""
        deadline: _Deadline | None = getattr(self._current, "deadline", None)
        if deadline is None:
            return
        with self._cond:
            deadline.connection = connection
            if deadline.fired:
                _shut(connection)

    def end(self, deadline: _Deadline) -> None:
        self._current.deadline = None
        with self._cond:
            self._active.discard(deadline)
            deadline.connection = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for deadline in [d for d in self._active if d.at <= now]:
                    deadline.fired = True
                    self._active.discard(deadline)
                    if deadline.connection is not None:
                        _shut(deadline.connection)
                earliest = min((d.at for d in self._active), default=None)
                self._cond.wait(None if earliest is None else earliest - now)


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also for TLS: it ends a blocked read at
        # once, where SSLSocket.shutdown would first drop the TLS state.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _CheckedConnection:
    """Refuse a socket whose peer address the policy does not allow; obey the watchdog."""

    policy: FetchPolicy
    watchdog: _Watchdog
    host: str

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        peer = ipaddress.ip_address(sock.getpeername()[0].split("%", 1)[0])
        reason = self.policy.refusal(peer)
        if reason:
            sock.close()
            raise RefusedAddress(f"{self.host} connected to {peer}, {reason}")
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        self.watchdog.watch(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _GuardedAdapter(HTTPAdapter):
    """An adapter whose pools create only checked connections."""

    def __init__(self, policy: FetchPolicy, watchdog: _Watchdog):
        self._policy = policy
        self._watchdog = watchdog
        super().__init__(pool_connections=16, pool_maxsize=16, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **kw: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **kw)
        attrs = {"policy": self._policy, "watchdog": self._watchdog}
        http_conn = type("CheckedHTTPConnection", (_CheckedConnection, HTTPConnection), attrs)
        https_conn = type("CheckedHTTPSConnection", (_CheckedConnection, HTTPSConnection), attrs)
        http_pool = type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
        https_pool = type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}


# -- the fetcher --------------------------------------------------------------------


class Fetcher:
    """One requests Session with the guard, shared by every source of one poll."""

    def __init__(self, policy: FetchPolicy, resolver: Resolver = socket.getaddrinfo):
        self.policy = policy
        self._resolve = resolver
        self.session = requests.Session()
        # Proxies and .netrc from the environment would route around the
        # address check (the connection would be to the proxy).
        self.session.trust_env = False
        self.session.headers["User-Agent"] = USER_AGENT
        self._watchdog = _Watchdog()
        adapter = _GuardedAdapter(policy, self._watchdog)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()
        self._watchdog.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_url(self, url: str) -> None:
        """Refuse a URL whose scheme or resolved addresses the policy does not allow."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"{url}: only http and https addresses can be fetched")
        host = parts.hostname
        if not host:
            raise FetchError(f"{url}: the address has no host name")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError(f"{url}: the port is not a number") from None
        try:
            infos = self._resolve(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError(f"{url}: cannot resolve {host} ({exc})") from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            reason = self.policy.refusal(address)
            if reason:
                hint = (
                    ""
                    if reason == "a cloud metadata address"
                    else "; set [sources] allow_private_addresses or allowed_networks "
                    "if this is your own server"
                )
                what = host if host == str(address) else f"{host} resolves to {address}, which"
                raise FetchError(f"{url}: refused, {what} is {reason}{hint}")

    def get(
        self,
        url: str,
        *,
        accept: str = FEED_ACCEPT,
        etag: str | None = None,
        last_modified: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """GET a URL under the policy; return 200 or 304 answers, raise FetchError otherwise.

        ``headers`` (an API key, say) are sent to the URL's own origin only: a
        redirect to another scheme, host or port goes out without them, as
        requests does with Authorization.
        """
        own_headers = dict(headers or {})
        conditional = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        origin = _origin(url)
        deadline = self._watchdog.begin(self.policy.timeout)
        try:
            current = url
            for _ in range(self.policy.max_redirects + 1):
                try:
                    self.check_url(current)
                except FetchError as exc:
                    if current == url:
                        raise
                    raise FetchError(f"{url}: redirected to {exc}") from None
                if own_headers and _origin(current) != origin:
                    own_headers = {}
                request_headers = {"Accept": accept, **own_headers, **conditional}
                answer = self._send(current, request_headers, deadline)
                try:
                    if answer.status_code in REDIRECTS and answer.headers.get("location"):
                        current = urljoin(current, answer.headers["location"])
                        continue
                    if answer.status_code == 304:
                        return Response(current, 304, b"", dict(answer.headers.lower_items()))
                    if answer.status_code != 200:
                        where = "" if current == url else f" (at {current})"
                        reason = answer.reason or ""
                        raise FetchError(
                            f"{url}: HTTP {answer.status_code} {reason}{where}".strip(),
                            status=answer.status_code,
                        )
                    body = self._read(url, answer, deadline)
                    return Response(current, 200, body, dict(answer.headers.lower_items()))
                finally:
                    answer.close()
            raise FetchError(f"{url}: more than {self.policy.max_redirects} redirects")
        finally:
            self._watchdog.end(deadline)

    def _timed_out(self, url: str) -> FetchError:
        return FetchError(f"{url}: timed out after {self.policy.timeout:g} s")

    def _send(self, url: str, headers: Mapping[str, str], deadline: _Deadline) -> requests.Response:
        remaining = max(deadline.at - time.monotonic(), 0.001)
        try:
            return self.session.get(
                url, headers=dict(headers), allow_redirects=False, stream=True, timeout=remaining
            )
        except RefusedAddress as exc:
            raise FetchError(f"{url}: refused, {exc}") from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            # The watchdog's shutdown shows up as a dropped connection.
            if deadline.fired or isinstance(exc, requests.exceptions.Timeout):
                raise self._timed_out(url) from None
            if isinstance(exc, requests.exceptions.SSLError):
                raise FetchError(f"{url}: TLS error ({_root(exc)})") from None
            if isinstance(exc, requests.exceptions.ConnectionError):
                raise FetchError(f"{url}: cannot connect ({_root(exc)})") from None
            raise FetchError(f"{url}: request failed ({_root(exc)})") from None

    def _read(self, url: str, answer: requests.Response, deadline: _Deadline) -> bytes:
        """The body, decompressed, in pieces as they arrive, within the deadline and the cap."""
        cap = self.policy.max_bytes
        too_big = FetchError(
            f"{url}: the answer is larger than {cap:,} bytes; refused "
            f"(raise [sources] max_bytes if this is expected)"
        )
        declared = answer.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                # read1 returns what has arrived (at most CHUNK bytes after
                # decompression) instead of waiting for a full block.
                chunk = answer.raw.read1(CHUNK, decode_content=True)
                if deadline.fired or time.monotonic() > deadline.at:
                    raise self._timed_out(url)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise too_big
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if deadline.fired or isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)):
                raise self._timed_out(url) from None
            raise FetchError(f"{url}: the answer was cut off ({_root(exc)})") from None
        return b"".join(chunks)


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def _root(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 exception chain, as one short line."""
    seen = exc
    while True:
        inner = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if inner is None or inner is seen or not isinstance(inner, BaseException):
            break
        seen = inner
        if isinstance(inner, (ConnectionRefusedError, socket.timeout)):
            break
    text = str(seen) or type(seen).__name__
    # urllib3 prefixes its messages with the connection object's repr.
    if ">: " in text:
        text = text.split(">: ", 1)[1]
    return " ".join(text.split())
