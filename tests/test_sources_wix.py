"""Wix Blog post metrics, from a local server answering as the documented API does."""

from __future__ import annotations

import datetime as dt
import json

from werkzeug import Response

from clocks import FETCH_NOW as NOW
from newsletter.config import SourceSpec
from newsletter.sources import intake, wix

SITE_ID = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
API_KEY = "IST.test-key-not-a-real-one"
POST_IDS = {
    "hip-pain-on-the-stairs": "ccbb6257-ed0e-4521-97df-8b5b207adb00",
    "ice-or-heat": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
}

FEED = """<?xml version="1.0" encoding="UTF-8"?><rss \
xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0"><channel>\
<title><![CDATA[Blog | Riverbend]]></title><link>{base}/blog</link>\
<item><title><![CDATA[Hip Pain on the Stairs? Start Here]]></title>\
<description><![CDATA[Short excerpt.]]></description>\
<link>{base}/post/hip-pain-on-the-stairs</link>\
<guid isPermaLink="false">6750a1c2e4b0f3001a2b3c4d</guid>\
<pubDate>Wed, 25 Nov 2026 15:30:00 GMT</pubDate><dc:creator>Dana Whitfield</dc:creator></item>\
<item><title><![CDATA[Ice or Heat After a Sprain?]]></title>\
<description><![CDATA[Another excerpt.]]></description><link>{base}/post/ice-or-heat</link>\
<guid isPermaLink="false">6741f0aa9c1d2e0012ab34cd</guid>\
<pubDate>Tue, 10 Nov 2026 09:00:00 GMT</pubDate><dc:creator>Marcus Oyelaran</dc:creator></item>\
</channel></rss>"""


class WixApi:
    """Get Post By Slug and Get Post Metrics, answering only with the right key and site id."""

    def __init__(self, server):
        self.server = server
        self.metrics = {
            POST_IDS["hip-pain-on-the-stairs"]: {"comments": 3, "likes": 5, "views": 120},
            # The API leaves out counters that are zero.
            POST_IDS["ice-or-heat"]: {"views": 8},
        }
        auth = {"Authorization": API_KEY, "wix-site-id": SITE_ID}
        for slug, post_id in POST_IDS.items():
            server.expect_request(f"/v3/posts/slugs/{slug}", headers=auth).respond_with_json(
                {"post": {"id": post_id, "slug": slug, "title": slug.replace("-", " ")}}
            )
            server.expect_request(
                f"/v3/posts/{post_id}/metrics", headers=auth
            ).respond_with_handler(lambda request, post_id=post_id: self.answer(post_id))

    def answer(self, post_id: str) -> Response:
        return Response(
            json.dumps({"metrics": self.metrics[post_id]}), content_type="application/json"
        )

    def calls(self, kind: str) -> int:
        return sum(1 for r, _ in self.server.log if r.path.startswith("/v3/") and kind in r.path)


def _spec(server) -> SourceSpec:
    return SourceSpec(
        "feed",
        server.url_for("/blog-feed.xml"),
        backfill=None,
        wix_site_id=SITE_ID,
        wix_api_base=server.url_for("").rstrip("/"),
    )


def _serve_feed(server) -> None:
    base = server.url_for("").rstrip("/")
    server.expect_request("/blog-feed.xml").respond_with_data(
        FEED.replace("{base}", base), content_type="application/rss+xml"
    )


def test_views_comments_and_likes_from_the_metrics_api(httpserver_ipv4, store, fetcher, tmp_path):
    _serve_feed(httpserver_ipv4)
    api = WixApi(httpserver_ipv4)
    spec = _spec(httpserver_ipv4)

    result = intake.run_source(spec, store, fetcher, NOW, root=tmp_path, wix_api_key=API_KEY)

    assert result.errors == [] and result.warnings == []
    assert result.metrics == 2 and "blog counters updated for 2 articles" in result.summary()
    by_title = {a["title"]: a for a in store.articles()}
    hip = by_title["Hip Pain on the Stairs? Start Here"]
    assert (hip["views"], hip["comments"]) == (120, 3)
    assert store.article_stats(hip["id"]) == [
        {"observed_at": "2026-11-27T10:00:00+00:00", "views": 120, "comments": 3, "likes": 5}
    ]
    ice = by_title["Ice or Heat After a Sprain?"]
    assert store.article_stats(ice["id"])[0] == {
        "observed_at": "2026-11-27T10:00:00+00:00",
        "views": 8,
        "comments": 0,
        "likes": 0,
    }
    state = store.source(store.source_id("feed", spec.location, NOW))["state"]
    assert state["wix_post_ids"] == POST_IDS

    # Within the hour nothing is asked; after it, only the metrics (ids are known).
    intake.run_source(
        spec, store, fetcher, NOW + dt.timedelta(minutes=10), root=tmp_path, wix_api_key=API_KEY
    )
    assert api.calls("/metrics") == 2 and api.calls("/slugs/") == 2
    api.metrics[POST_IDS["hip-pain-on-the-stairs"]] = {"comments": 4, "likes": 5, "views": 150}
    later = NOW + dt.timedelta(hours=1, minutes=5)
    intake.run_source(spec, store, fetcher, later, root=tmp_path, wix_api_key=API_KEY)
    assert api.calls("/metrics") == 4 and api.calls("/slugs/") == 2
    assert [s["views"] for s in store.article_stats(hip["id"])] == [120, 150]
    # An unchanged counter adds no snapshot.
    assert len(store.article_stats(ice["id"])) == 1


def test_a_refused_api_key_is_a_warning_that_never_shows_the_key(
    httpserver_ipv4, store, fetcher, tmp_path
):
    _serve_feed(httpserver_ipv4)
    httpserver_ipv4.expect_request("/v3/posts/slugs/hip-pain-on-the-stairs").respond_with_json(
        {"message": "unauthorized"}, status=401
    )
    result = intake.run_source(
        _spec(httpserver_ipv4), store, fetcher, NOW, root=tmp_path, wix_api_key=API_KEY
    )
    assert result.errors == [] and result.counts["new"] == 2
    [warning] = result.warnings
    assert "HTTP 401" in warning and "check NEWSLETTER_WIX_API_KEY and wix_site_id" in warning
    assert API_KEY not in warning


def test_the_http_status_decides_not_the_words_of_the_message(
    httpserver_ipv4, store, fetcher, tmp_path
):
    """A 500 whose reason phrase says "HTTP 404" is a failure, not a missing post."""
    _serve_feed(httpserver_ipv4)
    httpserver_ipv4.expect_request("/v3/posts/slugs/hip-pain-on-the-stairs").respond_with_response(
        Response("{}", status="500 Upstream said HTTP 404", content_type="application/json")
    )
    result = intake.run_source(
        _spec(httpserver_ipv4), store, fetcher, NOW, root=tmp_path, wix_api_key=API_KEY
    )
    [warning] = result.warnings
    assert "HTTP 500" in warning and "no post" not in warning
    # A failing call stops the rest: the second post is not asked about.
    assert not any("ice-or-heat" in r.path for r, _ in httpserver_ipv4.log)


def test_an_unknown_post_is_skipped_and_the_others_are_read(
    httpserver_ipv4, store, fetcher, tmp_path
):
    _serve_feed(httpserver_ipv4)
    # Registered first, so it answers before the API's own handler for this slug.
    httpserver_ipv4.expect_request("/v3/posts/slugs/hip-pain-on-the-stairs").respond_with_json(
        {"message": "post not found"}, status=404
    )
    WixApi(httpserver_ipv4)
    result = intake.run_source(
        _spec(httpserver_ipv4), store, fetcher, NOW, root=tmp_path, wix_api_key=API_KEY
    )
    [warning] = result.warnings
    assert warning.startswith("Wix metrics: no post 'hip-pain-on-the-stairs'")
    assert result.metrics == 1


def test_without_an_api_key_the_feed_is_read_and_the_missing_key_reported(
    httpserver_ipv4, store, fetcher, tmp_path
):
    _serve_feed(httpserver_ipv4)
    result = intake.run_source(_spec(httpserver_ipv4), store, fetcher, NOW, root=tmp_path)
    assert result.counts["new"] == 2
    assert result.warnings == [
        f"{httpserver_ipv4.url_for('/blog-feed.xml')}: wix_site_id is set but "
        f"NEWSLETTER_WIX_API_KEY is not; no Wix metrics"
    ]


def test_slugs_and_answers():
    assert wix.post_slug("https://clinic.example.com/post/ice-or-heat") == "ice-or-heat"
    assert wix.post_slug("https://clinic.example.com/blog/post/a-b/") == "a-b"
    assert wix.post_slug("https://clinic.example.com/about") is None
    assert wix.post_id({"post": {"id": "abc"}}) == "abc"
    assert wix.post_id({"post": {}}) is None and wix.post_id([]) is None
    assert wix.metrics({"metrics": {"views": 3}}) == (3, 0, 0)
    assert wix.metrics({"metrics": {"views": "3"}}) == (None, 0, 0)
    assert wix.metrics({}) is None
