"""Intake over real loopback HTTP: first fetch, updates, conditional GET, failures, backoff."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import socket
from pathlib import Path

import pytest
from werkzeug import Request, Response

from clocks import FETCH_NOW as NOW
from newsletter import clock, jobs
from newsletter.config import SourceSpec
from newsletter.errors import SourceError
from newsletter.sources import feed, intake
from newsletter.sources.http import Fetcher
from newsletter.sources.policy import FetchPolicy
from newsletter.store import Store
from newsletter.workspace import Workspace

DAY = dt.timedelta(days=1)


def rss(items: list[tuple[str, str, dt.datetime | None, str]]) -> str:
    """An RSS 2.0 feed of (guid, title, published, body) items, in the order given."""
    entries = "".join(
        f"<item><title>{title}</title><link>https://blog.example.com/post/{guid}</link>"
        f'<guid isPermaLink="false">{guid}</guid>'
        + (f"<pubDate>{email.utils.format_datetime(when)}</pubDate>" if when else "")
        + f"<description><![CDATA[<p>{body}</p>]]></description></item>"
        for guid, title, when, body in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Blog</title>'
        f"<link>https://blog.example.com/</link><description>d</description>{entries}"
        "</channel></rss>"
    )


def archive(count: int, newest: dt.datetime) -> list[tuple[str, str, dt.datetime, str]]:
    return [
        (f"old-{i}", f"Old Post {i}", newest - i * DAY, f"Body of old post {i}.")
        for i in range(count)
    ]


class Feed:
    """A feed served on loopback whose content a test can change between polls."""

    def __init__(self, server, path: str = "/feed.xml"):
        self.body = rss([])
        self.etag: str | None = None
        self.status = 200
        self.requests: list[Request] = []
        self.url = server.url_for(path)
        server.expect_request(path).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        self.requests.append(request)
        if self.status != 200:
            return Response("broken", status=self.status)
        if self.etag and request.headers.get("If-None-Match") == self.etag:
            return Response(status=304, headers={"ETag": self.etag})
        headers = {"ETag": self.etag} if self.etag else {}
        return Response(self.body, headers=headers, content_type="application/rss+xml")


@pytest.fixture
def poll(store, fetcher, tmp_path):
    def poll(spec: SourceSpec, now: dt.datetime, force: bool = False) -> intake.SourceResult:
        return intake.run_source(spec, store, fetcher, now, root=tmp_path, force=force)

    return poll


def new_titles(store: Store) -> set[str]:
    return {a["title"] for a in store.articles(only_new=True)}


# -- first fetch ---------------------------------------------------------------------


def test_first_fetch_of_a_long_archive_announces_nothing_old(httpserver_ipv4, store, poll):
    feed = Feed(httpserver_ipv4)
    feed.body = rss(archive(40, NOW - DAY))
    spec = SourceSpec("feed", feed.url)

    first = poll(spec, NOW)

    assert first.counts == {"new": 0, "updated": 0, "unchanged": 0, "archived": 40}
    assert "40 archived" in first.summary()
    assert len(store.articles()) == 40 and new_titles(store) == set()

    # A post published after the source was added is new on the next poll.
    feed.body = rss([("fresh", "Fresh Post", NOW + DAY, "Just out."), *archive(39, NOW - DAY)])
    second = poll(spec, NOW + 2 * DAY)
    assert second.counts == {"new": 1, "updated": 0, "unchanged": 39, "archived": 0}
    assert new_titles(store) == {"Fresh Post"}


def test_backfill_counts_the_newest_items_by_date_not_feed_order(httpserver_ipv4, store, poll):
    feed = Feed(httpserver_ipv4)
    items = archive(10, NOW - DAY)
    feed.body = rss([items[5], items[0], items[9], items[2], items[1], *items[6:9], *items[3:5]])
    result = poll(SourceSpec("feed", feed.url, backfill=3), NOW)
    assert result.counts["new"] == 3 and result.counts["archived"] == 7
    assert new_titles(store) == {"Old Post 0", "Old Post 1", "Old Post 2"}


def test_items_published_after_the_source_was_added_count_on_the_first_fetch(
    httpserver_ipv4, store, poll
):
    feed = Feed(httpserver_ipv4)
    # The source is registered (added) by a first poll that fails.
    feed.status = 500
    spec = SourceSpec("feed", feed.url)
    assert poll(spec, NOW).errors
    feed.status = 200
    feed.body = rss([("new-one", "Posted Meanwhile", NOW + DAY, "x"), *archive(5, NOW - DAY)])
    result = poll(spec, NOW + 2 * DAY, force=True)
    assert result.counts == {"new": 1, "updated": 0, "unchanged": 0, "archived": 5}
    assert new_titles(store) == {"Posted Meanwhile"}


def test_a_deleted_item_does_not_make_an_old_one_look_new(httpserver_ipv4, store, poll):
    feed = Feed(httpserver_ipv4)
    older = archive(6, NOW - DAY)
    # The feed shows a window of three items.
    feed.body = rss(older[:3])
    spec = SourceSpec("feed", feed.url)
    poll(spec, NOW)
    feed.body = rss([("p1", "After Adding", NOW + DAY, "new"), *older[:2]])
    assert poll(spec, NOW + DAY).counts["new"] == 1
    # The new post is deleted: an item from long ago slides back into the window.
    feed.body = rss(older[:2] + [older[4]])
    result = poll(spec, NOW + 2 * DAY)
    assert result.counts == {"new": 0, "updated": 0, "unchanged": 2, "archived": 1}
    assert new_titles(store) == {"After Adding"}
    # Nothing stored is lost when an item leaves the feed.
    assert {"After Adding", "Old Post 4"} <= {a["title"] for a in store.articles()}


def test_a_deleted_item_in_an_undated_feed_does_not_make_an_old_one_look_new(
    httpserver_ipv4, store, poll
):
    feed = Feed(httpserver_ipv4)
    older = [(f"u{i}", f"Undated {i}", None, f"text {i}") for i in range(6)]
    feed.body = rss(older[:3])
    spec = SourceSpec("feed", feed.url)
    assert poll(spec, NOW).counts["archived"] == 3
    feed.body = rss([("n1", "Undated New", None, "new"), *older[:2]])
    assert poll(spec, NOW + DAY).counts["new"] == 1
    # The new post is deleted and an old one, never seen, fills the window:
    # listed below posts already stored, it is old, whatever its missing date.
    feed.body = rss([older[0], older[1], older[4]])
    result = poll(spec, NOW + 2 * DAY)
    assert result.counts == {"new": 0, "updated": 0, "unchanged": 2, "archived": 1}
    assert new_titles(store) == {"Undated New"}
    # A new undated post at the top is still new.
    feed.body = rss([("n2", "Undated Newer", None, "newer"), older[0], older[1], older[4]])
    assert poll(spec, NOW + 3 * DAY).counts["new"] == 1
    assert new_titles(store) == {"Undated New", "Undated Newer"}


# -- updates -------------------------------------------------------------------------


def _campaign(store: Store, article_ids: list[int], now: dt.datetime) -> int:
    """A campaign of these articles that has started sending: it uses them up (a draft
    would leave them new)."""
    campaign_id = store.create_campaign("Hello", "", "digest", article_ids, None, True, now)
    assert store.start_campaign(campaign_id, None, now)
    return campaign_id


def test_an_edited_article_is_updated_in_place_and_not_announced_again(
    httpserver_ipv4, store, poll
):
    feed = Feed(httpserver_ipv4)
    feed.body = rss([("p1", "First Draft Title", NOW + DAY, "Original text.")])
    spec = SourceSpec("feed", feed.url)
    poll(spec, NOW)
    [article] = store.articles(only_new=True)
    _campaign(store, [article["id"]], NOW + DAY)
    assert new_titles(store) == set()

    feed.body = rss([("p1", "Final Title", NOW + DAY, "Rewritten text.")])
    result = poll(spec, NOW + 2 * DAY)

    assert result.counts == {"new": 0, "updated": 1, "unchanged": 0, "archived": 0}
    [edited] = store.articles()
    assert edited["id"] == article["id"]
    assert edited["title"] == "Final Title" and "Rewritten text." in edited["body_html"]
    assert edited["first_seen_at"] == article["first_seen_at"]
    assert new_titles(store) == set()


def test_announce_updates_makes_an_edited_article_new_until_a_later_campaign(
    httpserver_ipv4, store, poll
):
    feed = Feed(httpserver_ipv4)
    feed.body = rss([("p1", "Clinic Hours", NOW + DAY, "Open 8 to 6.")])
    spec = SourceSpec("feed", feed.url, announce_updates=True)
    poll(spec, NOW)
    [article] = store.articles()
    _campaign(store, [article["id"]], NOW + DAY)
    assert new_titles(store) == set()

    feed.body = rss([("p1", "Clinic Hours", NOW + DAY, "Open 7 to 7 from December.")])
    assert poll(spec, NOW + 2 * DAY).counts["updated"] == 1
    assert new_titles(store) == {"Clinic Hours"}

    _campaign(store, [article["id"]], NOW + 2 * DAY)
    assert new_titles(store) == set()
    # Unchanged on the next poll: still not new.
    poll(spec, NOW + 3 * DAY)
    assert new_titles(store) == set()


def test_announce_updates_leaves_an_archived_article_archived(httpserver_ipv4, store, poll):
    feed = Feed(httpserver_ipv4)
    feed.body = rss([("old", "From the Archive", NOW - 30 * DAY, "First version.")])
    spec = SourceSpec("feed", feed.url, announce_updates=True)
    assert poll(spec, NOW).counts["archived"] == 1

    feed.body = rss([("old", "From the Archive", NOW - 30 * DAY, "Edited years later.")])
    assert poll(spec, NOW + DAY).counts["updated"] == 1

    [article] = store.articles()
    assert "Edited years later." in article["body_html"]
    assert article["new_after_campaign"] is None and not article["is_new"]
    assert new_titles(store) == set()


def test_a_changed_guid_with_the_same_link_is_the_same_article(httpserver_ipv4, store, poll):
    feed = Feed(httpserver_ipv4)
    feed.body = rss([("guid-a", "Moved Platforms", NOW + DAY, "Same text.")])
    spec = SourceSpec("feed", feed.url)
    poll(spec, NOW)
    [before] = store.articles()
    feed.body = feed.body.replace(">guid-a<", ">guid-b<").replace("post/guid-b", "post/guid-a")
    result = poll(spec, NOW + 2 * DAY)
    [after] = store.articles()
    assert result.counts["new"] == 0
    assert after["id"] == before["id"] and after["key"] == "guid-b"


# -- conditional GET -------------------------------------------------------------------


def test_an_unchanged_feed_costs_one_small_request(httpserver_ipv4, store, poll):
    feed = Feed(httpserver_ipv4)
    feed.etag = '"rev-1"'
    feed.body = rss([("p1", "Post", NOW + DAY, "text")])
    spec = SourceSpec("feed", feed.url)
    assert poll(spec, NOW).counts["new"] == 1
    state = store.source(store.source_id("feed", feed.url, NOW))["state"]
    assert state["etag"] == '"rev-1"'

    again = poll(spec, NOW + 2 * DAY)

    assert again.not_modified and again.counts["unchanged"] == 0
    assert "not modified" in again.summary()
    assert feed.requests[-1].headers["If-None-Match"] == '"rev-1"'


def test_a_server_without_validators_is_recognised_by_the_body(httpserver_ipv4, store, poll):
    feed = Feed(httpserver_ipv4)
    feed.body = rss([("p1", "Post", NOW + DAY, "text")])
    spec = SourceSpec("feed", feed.url)
    poll(spec, NOW)
    assert poll(spec, NOW + 2 * DAY).not_modified
    assert "If-None-Match" not in feed.requests[-1].headers


# -- failures -------------------------------------------------------------------------


def test_a_failure_is_reported_keeps_what_was_stored_and_backs_off(httpserver_ipv4, store, poll):
    feed = Feed(httpserver_ipv4)
    feed.body = rss([("p1", "Kept", NOW + DAY, "text")])
    spec = SourceSpec("feed", feed.url)
    poll(spec, NOW)

    feed.status = 500
    failed = poll(spec, NOW + 2 * DAY)
    assert failed.errors == [f"{feed.url}: HTTP 500 INTERNAL SERVER ERROR"]
    assert [a["title"] for a in store.articles()] == ["Kept"]
    state = store.source(store.source_id("feed", feed.url, NOW))["state"]
    assert state["failures"] == 1
    assert state["next_try_at"] == (NOW + 2 * DAY + dt.timedelta(minutes=1)).isoformat()

    asked = len(feed.requests)
    skipped = poll(spec, NOW + 2 * DAY + dt.timedelta(seconds=30))
    assert skipped.skipped and "HTTP 500" in skipped.skipped and not skipped.errors
    assert len(feed.requests) == asked

    poll(spec, NOW + 2 * DAY + dt.timedelta(minutes=2))
    state = store.source(store.source_id("feed", feed.url, NOW))["state"]
    assert state["failures"] == 2
    assert len(feed.requests) == asked + 1

    feed.status = 200
    recovered = poll(spec, NOW + 3 * DAY)
    assert recovered.errors == []
    state = store.source(store.source_id("feed", feed.url, NOW))["state"]
    assert "failures" not in state and "next_try_at" not in state


def test_backoff_doubles_up_to_six_hours():
    assert [intake.source_backoff(n).total_seconds() / 60 for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert intake.source_backoff(30) == dt.timedelta(hours=6)


def _workspace(ws_dir: Path, feeds: list[str]) -> Workspace:
    config = ws_dir / "newsletter.toml"
    listed = ", ".join(f'"{url}"' for url in feeds)
    text = config.read_text().replace("feeds = []", f"feeds = [{listed}]")
    text = text.replace("pages = []", "pages = []\nallow_private_addresses = true\ntimeout = 2")
    config.write_text(text)
    return Workspace.open(ws_dir, env={})


def test_broken_sources_are_named_and_the_others_still_fetched(httpserver_ipv4, ws_dir):
    good = Feed(httpserver_ipv4, "/good.xml")
    good.body = rss([("g1", "Good News", NOW + DAY, "fine")])
    httpserver_ipv4.expect_request("/missing.xml").respond_with_data("no", status=404)
    httpserver_ipv4.expect_request("/broken.xml").respond_with_data(
        "<rss><channel><title>x</channel></rss>", content_type="application/rss+xml"
    )
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    slow = f"http://127.0.0.1:{silent.getsockname()[1]}/feed.xml"
    urls = [
        httpserver_ipv4.url_for("/missing.xml"),
        httpserver_ipv4.url_for("/broken.xml"),
        slow,
        good.url,
    ]
    ws = _workspace(ws_dir, urls)
    try:
        results = {r.source: r for r in jobs.fetch_sources(ws, ws.store, NOW)}
    finally:
        silent.close()
        ws.close()
    assert results["articles"].counts["new"] == 3
    assert results[good.url].counts["new"] == 1 and not results[good.url].errors
    assert results[urls[0]].errors == [f"{urls[0]}: HTTP 404 NOT FOUND"]
    assert results[urls[1]].errors[0].startswith(f"{urls[1]}: malformed XML at line 1")
    assert results[slow].errors == [f"{slow}: timed out after 2 s"]


def test_cli_fetch_prints_counts_and_exits_1_when_a_source_failed(httpserver_ipv4, cli, env):
    # The command reads the real clock, so "new" (after the source is added, which is when
    # the command runs) and "old" are dated from it.
    now = dt.datetime.now(dt.UTC)
    good = Feed(httpserver_ipv4, "/good.xml")
    good.body = rss(
        [("g1", "Good News", now + DAY, "fine"), ("g0", "Old News", now - 400 * DAY, "x")]
    )
    missing = httpserver_ipv4.url_for("/gone.xml")
    httpserver_ipv4.expect_request("/gone.xml").respond_with_data("no", status=404)
    env["NEWSLETTER_SOURCES__FEEDS"] = f"{good.url},{missing}"
    env["NEWSLETTER_SOURCES__ALLOW_PRIVATE_ADDRESSES"] = "true"

    result = cli("fetch", check=False)

    assert result.returncode == 1
    assert "articles: 3 new, 0 updated, 0 unchanged" in result.stdout
    assert f"{good.url}: 1 new, 0 updated, 0 unchanged, 1 archived" in result.stdout
    [line] = [line for line in result.stderr.splitlines() if "HTTP 404" in line]
    assert line == f"{missing}: error: HTTP 404 NOT FOUND"
    assert result.stderr.strip().endswith("1 source(s) failed; the others were fetched")
    rows = cli("articles", "list").stdout.splitlines()
    assert any("Good News" in row and " new " in row for row in rows)
    assert any("Old News" in row and " archived " in row for row in rows)


def test_an_unexpected_error_in_a_source_backs_off_and_logs_one_line(
    httpserver_ipv4, ws_dir, caplog
):
    calls = []

    def broken_resolver(host, port, **kwargs):
        calls.append(host)
        raise RuntimeError("resolver crashed")

    url = httpserver_ipv4.url_for("/feed.xml")
    ws = _workspace(ws_dir, [url])
    try:
        with Fetcher(FetchPolicy(allow_private=True), resolver=broken_resolver) as broken:
            first = {r.source: r for r in jobs.fetch_sources(ws, ws.store, NOW, fetcher=broken)}
            again = {
                r.source: r
                for r in jobs.fetch_sources(
                    ws, ws.store, NOW + dt.timedelta(seconds=30), fetcher=broken
                )
            }
        state = ws.store.source(ws.store.source_id("feed", url, NOW))["state"]
    finally:
        ws.close()
    message = (
        f"{url}: unexpected error (RuntimeError: resolver crashed); the other sources were fetched"
    )
    assert first[url].errors == [message]
    assert first["articles"].counts["new"] == 3
    assert state["failures"] == 1 and state["last_error"] == message
    assert state["next_try_at"] == (NOW + dt.timedelta(minutes=1)).isoformat()
    # Within the backoff the source is not tried again.
    assert again[url].skipped and calls == ["127.0.0.1"]
    logged = [r for r in caplog.records if r.levelno >= logging.INFO and r.name == "newsletter"]
    assert [r.getMessage() for r in logged] == [message]
    assert logged[0].exc_info is None


def test_a_feed_refused_by_the_address_guard_is_a_source_error(store, fetcher, tmp_path):
    with Fetcher(FetchPolicy()) as guarded:
        result = intake.run_source(
            SourceSpec("feed", "http://169.254.169.254/latest/meta-data/"),
            store,
            guarded,
            NOW,
            root=tmp_path,
        )
    [error] = result.errors
    assert "refused" in error and "a cloud metadata address" in error


def test_articles_stored_before_the_upgrade_stay_new_and_their_folder_is_no_first_fetch(
    tmp_path, ws_dir
):
    import sqlite3

    from newsletter.store import m001_initial

    path = ws_dir / "newsletter.db"
    conn = sqlite3.connect(path)
    m001_initial(conn)
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    conn.execute("INSERT INTO _migrations VALUES ('m001_initial', '2026-10-01 00:00:00')")
    conn.execute(
        "INSERT INTO sources (kind, location, added_at) VALUES ('folder', 'articles', "
        "'2026-10-01T00:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO articles (source_id, key, title, content_hash, first_seen_at, changed_at) "
        "VALUES (1, 'kept.md', 'Kept From Before', 'h', '2026-10-01', '2026-10-01')"
    )
    conn.commit()
    conn.close()
    ws = Workspace.open(ws_dir, env={})
    try:
        assert [a["title"] for a in ws.store.articles(only_new=True)] == ["Kept From Before"]
        [result] = jobs.fetch_sources(ws, ws.store, NOW)
        # Not a first fetch (the folder had articles): new files are simply new.
        assert result.counts["new"] == 3 and result.counts["archived"] == 0
    finally:
        ws.close()


def test_a_bad_file_in_a_folder_is_named_with_its_line_and_the_rest_are_read(cli, ws_dir):
    (ws_dir / "articles" / "broken.md").write_text(
        "---\ntitle: Fine\ndate: [unclosed\n---\nBody\n", encoding="utf-8"
    )
    result = cli("fetch", check=False)
    assert result.returncode == 1
    assert "articles: 3 new, 0 updated, 0 unchanged" in result.stdout
    [line] = [line for line in result.stderr.splitlines() if "broken.md" in line]
    assert line == (
        "articles: error: articles/broken.md:3: invalid YAML front matter "
        "(expected ',' or ']', but got '<stream end>')"
    )


def test_a_feed_of_thirty_thousand_items_keeps_only_the_newest(httpserver_ipv4, cli, env, ws_dir):
    """A hostile or runaway feed lists 30,000 items; only the newest N are read and stored.

    The items are listed in shuffled order, so "newest" must come from their dates.
    """
    import random

    total, keep = 30_000, 50
    # Dated from the real now, which `fetch` reads: all were published before the
    # feed was added, so all are archived, whatever today's date.
    now = clock.utcnow()
    items = [
        (f"p{i}", f"Post {i}", now - (i + 1) * dt.timedelta(minutes=7), f"Body {i}.")
        for i in range(total)
    ]
    random.Random(14).shuffle(items)
    big = Feed(httpserver_ipv4, "/big.xml")
    big.body = rss(items)
    env["NEWSLETTER_SOURCES__FEEDS"] = big.url
    env["NEWSLETTER_SOURCES__ALLOW_PRIVATE_ADDRESSES"] = "true"
    env["NEWSLETTER_SOURCES__MAX_ITEMS_PER_FEED"] = str(keep)

    result = cli("fetch")

    assert (
        f"{big.url}: warning: the feed lists 30,000 items; only the newest 50 were read "
        "([sources] max_items_per_feed)"
    ) in result.stderr.splitlines()
    assert f"{big.url}: 0 new, 0 updated, 0 unchanged, 50 archived" in result.stdout
    store = Store(ws_dir / "newsletter.db")
    try:
        stored = {a["title"] for a in store.articles() if a["title"].startswith("Post ")}
    finally:
        store.close()
    assert stored == {f"Post {i}" for i in range(keep)}


def test_undated_items_beyond_the_cap_keep_the_first_listed():
    items = [(f"u{i}", f"Undated {i}", None, "x") for i in range(300)]
    parsed = feed.parse(rss(items).encode(), "https://blog.example.com/feed", max_items=20)
    assert [a["title"] for a in parsed.articles] == [f"Undated {i}" for i in range(20)]
    assert "the feed lists 300 items; only the newest 20 were read" in parsed.problems[0]


def test_the_cap_also_holds_where_the_quick_scan_cannot_read_the_bytes():
    items = [(f"w{i}", f"Wide {i}", NOW - i * DAY, "x") for i in range(40)]
    # Listed out of date order: the newest five must be chosen by their dates.
    random.Random(40).shuffle(items)
    body = rss(items).replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    parsed = feed.parse(body, "https://blog.example.com/feed", max_items=5)
    newest = {f"Wide {i}" for i in range(5)}
    assert [a["title"] for a in parsed.articles] == [t for _, t, _, _ in items if t in newest]
    assert "the feed lists 40 items; only the newest 5 were read" in parsed.problems[0]


def test_a_huge_feed_is_read_in_memory_bounded_by_the_cap_not_the_item_count():
    """30,000 items used to cost feedparser hundreds of megabytes; the cap bounds the work."""
    import tracemalloc

    items = [(f"m{i}", f"Many {i}", NOW - i * DAY, f"Body {i}.") for i in range(30_000)]
    body = rss(items).encode()
    tracemalloc.start()
    try:
        parsed = feed.parse(body, "https://blog.example.com/feed", max_items=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(parsed.articles) == 200
    # The body itself and one copy of it with the old items cut out, and room to spare.
    assert peak < 4 * len(body)


def test_a_huge_malformed_feed_is_refused_without_reading_it_all():
    """30,000 items and a broken tag at the end: named by line, in memory bounded by the body.

    feedparser would read every item (and again with its loose parser) before
    giving up; the quick scan finds the fault first.
    """
    import tracemalloc

    items = [(f"b{i}", f"Broken {i}", NOW - i * DAY, f"Body {i}.") for i in range(30_000)]
    text = rss(items).replace("</channel>", "\n<oops></channel>")
    body = text.encode()
    tracemalloc.start()
    try:
        with pytest.raises(SourceError) as caught:
            feed.parse(body, "https://blog.example.com/feed")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    line = text.count("\n", 0, text.index("<oops>")) + 1
    assert str(caught.value).startswith(
        # Column 8: the name in "</channel>", which closes nothing open.
        f"https://blog.example.com/feed: malformed XML at line {line}, column 8: mismatched tag"
    )
    # feedparser's full read took twenty times the body; the scan, a fraction of it.
    assert peak < 3 * len(body)


def test_a_feed_in_windows_1252_that_says_utf8_is_still_read():
    """The quick scan stops at the first bad byte; feedparser's re-decoding still gets its turn."""
    body = rss([("w1", "Café — news", NOW, "x")]).encode("cp1252")
    parsed = feed.parse(body, "https://blog.example.com/feed")
    assert [a["title"] for a in parsed.articles] == ["Café — news"]
