"""Article intake: items parsed and stored per second, and the cost of re-polling unchanged feeds.

1. A 500-item feed is parsed (feedparser, sanitizing, identity) and stored in a
   fresh database; the ceiling is feedparser alone on the same bytes.
2. 50 feeds are served over loopback by a server that answers conditional
   GETs. A workspace with those 50 feeds is polled once to prime it, then
   polled again: every feed should cost one small 304 request plus its state
   write. Beside it, in the same run, a bare ``requests.get`` of the same 50
   URLs (full bodies, a new connection each) is timed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import http.server
import io
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import feedparser
import requests

from newsletter import jobs
from newsletter.sources import feed
from newsletter.store import Store
from newsletter.workspace import Workspace, init_workspace

ITEMS = 500
FEEDS = 50
ITEMS_PER_FEED = 20
RUNS = 3
NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def make_feed(name: str, items: int) -> bytes:
    """An RSS 2.0 feed shaped like a WordPress one: content:encoded, categories, guid."""
    entries = []
    for i in range(items):
        when = email.utils.format_datetime(NOW - dt.timedelta(hours=i * 7))
        body = (
            f"<p>Paragraph one of post {i} in {name}, with <a href='/post/{i - 1}'>a link</a> "
            f"and <strong>some emphasis</strong>.</p><h2>A heading</h2><ol>"
            + "".join(f"<li>Step {k} of the exercise, done slowly.</li>" for k in range(5))
            + f"</ol><p>Closing thoughts for post {i}.</p><img src='/media/{i}.jpg' alt='x'>"
        )
        entries.append(
            f"<item><title>Post {i} of {name}</title><link>https://{name}.example/post/{i}</link>"
            f'<guid isPermaLink="false">{name}-{i}</guid><pubDate>{when}</pubDate>'
            f"<dc:creator>Author {i % 7}</dc:creator><category>Tag {i % 5}</category>"
            f"<description>Summary of post {i}.</description>"
            f"<content:encoded><![CDATA[{body}]]></content:encoded></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>{name}</title><link>https://{name}.example/</link><description>d</description>"
        + "".join(entries)
        + "</channel></rss>"
    ).encode()


def parse_and_store(body: bytes, work: Path, run: int) -> tuple[float, float]:
    """Seconds to parse the feed and to store its items in a fresh database."""
    store = Store(work / f"bench-{run}.db")
    store.migrate()
    try:
        started = time.perf_counter()
        # Every item is read: the default cap keeps only the newest 200.
        parsed = feed.parse(
            body, "https://big.example/feed.xml", "application/rss+xml", max_items=ITEMS
        )
        parsed_at = time.perf_counter()
        source_id = store.source_id("feed", "https://big.example/feed.xml", NOW)
        counts = store.save_articles(source_id, parsed.articles, NOW)
        stored_at = time.perf_counter()
    finally:
        store.close()
    if counts["new"] != ITEMS:
        sys.exit(f"expected {ITEMS} new articles, stored {counts}")
    return parsed_at - started, stored_at - parsed_at


class FeedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, feeds: dict[str, bytes]):
        self.feeds = feeds
        self.etags = {
            path: '"' + hashlib.sha1(body).hexdigest() + '"' for path, body in feeds.items()
        }
        super().__init__(("127.0.0.1", 0), FeedHandler)


class FeedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FeedServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm
        # and delayed ACKs add tens of milliseconds to every answer.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # the method name http.server calls
        body = self.server.feeds.get(self.path)
        if body is None:
            self.send_error(404)
            return
        etag = self.server.etags[self.path]
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def workspace_with_feeds(work: Path, urls: list[str]) -> Workspace:
    root = work / "ws"
    init_workspace(root)
    config = root / "newsletter.toml"
    listed = ", ".join(f'"{u}"' for u in urls)
    text = config.read_text()
    text = text.replace('folders = ["articles"]', "folders = []")
    text = text.replace("feeds = []", f"feeds = [{listed}]")
    text = text.replace("pages = []", "pages = []\nallow_private_addresses = true")
    config.write_text(text)
    return Workspace.open(root, env={})


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    try:
        big = make_feed("big", ITEMS)
        # The ceiling parses with the settings intake uses (no feedparser sanitizing).
        ceiling = min(
            _timed(lambda: feedparser.parse(io.BytesIO(big), sanitize_html=False))
            for _ in range(RUNS)
        )
        timings = [parse_and_store(big, work, run) for run in range(RUNS)]
        parse_s = min(t[0] for t in timings)
        store_s = min(t[1] for t in timings)
        total = min(sum(t) for t in timings)
        print(
            f"{ITEMS}-item feed ({len(big) / 1e6:.1f} MB): parsed and stored "
            f"{ITEMS / total:.0f} items/s (parse {ITEMS / parse_s:.0f}/s, "
            f"store {ITEMS / store_s:.0f}/s); ceiling feedparser alone "
            f"{ITEMS / ceiling:.0f} items/s; = {ceiling / total:.2f} x ceiling"
        )

        feeds = {f"/feed-{i}.xml": make_feed(f"blog{i}", ITEMS_PER_FEED) for i in range(FEEDS)}
        server = FeedServer(feeds)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        urls = [base + path for path in feeds]
        ws = workspace_with_feeds(work, urls)
        try:
            started = time.perf_counter()
            primed = jobs.fetch_sources(ws, ws.store, NOW)
            prime_s = time.perf_counter() - started
            bad = [r for r in primed if r.errors or r.counts["archived"] != ITEMS_PER_FEED]
            if bad:
                sys.exit(f"priming failed: {bad[0].source}: {bad[0].errors or bad[0].counts}")
            repolls, bares = [], []
            for run in range(RUNS):
                later = NOW + dt.timedelta(minutes=5 * (run + 1))
                started = time.perf_counter()
                again = jobs.fetch_sources(ws, ws.store, later)
                repolls.append(time.perf_counter() - started)
                if not all(r.not_modified and not r.errors for r in again):
                    sys.exit("re-poll: a feed was not answered 304 Not Modified")
                started = time.perf_counter()
                for url in urls:
                    answer = requests.get(url, timeout=10)
                    answer.raise_for_status()
                bares.append(time.perf_counter() - started)
        finally:
            ws.close()
            server.shutdown()
            server.server_close()
        repoll, bare = statistics.median(repolls), statistics.median(bares)
        print(
            f"first poll of {FEEDS} feeds x {ITEMS_PER_FEED} items over loopback: {prime_s:.2f} s"
        )
        print(
            f"re-poll {FEEDS} unchanged feeds (conditional GET, 304, state saved): "
            f"{repoll * 1000:.0f} ms = {repoll / FEEDS * 1000:.1f} ms per feed; "
            f"bare requests.get of the same {FEEDS} URLs: {bare * 1000:.0f} ms; "
            f"ratio {repoll / bare:.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
