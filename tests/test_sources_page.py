"""Blog pages: one article page, or an index page that links to article pages."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import lxml.html
import pytest
from werkzeug import Response

from clocks import FETCH_NOW as NOW
from newsletter.config import SourceSpec
from newsletter.errors import SourceError
from newsletter.sources import intake, page, plain_text

ARTICLE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Shoulder Pain and Sleep | Riverbend Blog</title>
<link rel="canonical" href="{base}/post/shoulder-pain-and-sleep">
<meta property="og:type" content="article">
<meta property="og:image" content="{base}/media/shoulder.jpg">
<meta property="og:description" content="Three changes to try tonight if your shoulder wakes you.">
<script type="application/ld+json">{{"@context": "https://schema.org", "@type": "BlogPosting",
 "headline": "Shoulder Pain and Sleep", "datePublished": "2026-11-03T08:00:00-05:00",
 "dateModified": "2026-11-05T08:00:00Z", "author": {{"@type": "Person", "name": "Dana Whitfield"}},
 "interactionStatistic": [{{"@type": "InteractionCounter",
   "interactionType": "https://schema.org/CommentAction", "userInteractionCount": 4}}]}}</script>
<script>window.analytics = "tracking";</script>
</head><body><a href="#main">top of page</a>
<header><nav><a href="/">Home</a> <a href="/blog">Blog</a></nav></header>
<main id="main"><article>
<h1>Shoulder Pain and Sleep</h1>
<p>Waking up with a sore shoulder is one of the most common things we hear about at the clinic.
The side you sleep on presses on the joint for hours at a time.</p>
<h2>Three changes to try tonight</h2>
<ol><li>Sleep on the other side, hugging a pillow.</li>
<li>Support the sore arm instead of tucking it under you.</li>
<li>Raise your pillow a little so your neck stays level.</li></ol>
<p>If pain wakes you every night for two weeks, <a href="/book">book an assessment</a>.</p>
<img src="/media/pillow.jpg" alt="A pillow on a bed">
</article>
<div class="counters"><span>27 views</span><span>4 comments</span><span>2 likes</span></div>
</main><footer>bottom of page</footer></body></html>"""

INDEX = """<!DOCTYPE html><html><head><title>Blog | Riverbend</title></head><body>
<header><a href="/">Home</a> <a href="/about">About</a></header>
<main><h1>Blog</h1>
<div class="post-card"><a href="/post/knee-first"><h2>Knee First</h2></a><span>12 views</span></div>
<div class="post-card"><a href="/post/back-second"><h2>Back Second</h2></a></div>
<a href="/blog/categories/knees">Knees</a>
</main></body></html>"""


def card(title: str, when: str, text: str) -> str:
    return (
        f'<!DOCTYPE html><html><head><meta property="og:type" content="article">'
        f'<meta property="article:published_time" content="{when}"><title>{title}</title>'
        f"</head><body><article><h1>{title}</h1><p>{text}</p></article></body></html>"
    )


def parse_article(html: str, url: str) -> dict:
    return page.parse_article(page.load(html, url), url)


def counters(html: str) -> dict[str, int]:
    return page.counters(page.load(html, "https://x.example/p"))


def test_article_page_extraction():
    base = "https://clinic.example.com"
    article = parse_article(ARTICLE.format(base=base), f"{base}/post/x?utm_source=mail")

    assert article["title"] == "Shoulder Pain and Sleep"
    assert article["url"] == article["key"] == f"{base}/post/shoulder-pain-and-sleep"
    assert article["author"] == "Dana Whitfield"
    assert article["published"] == "2026-11-03T13:00:00+00:00"
    assert article["updated"] == "2026-11-05T08:00:00+00:00"
    assert article["image"] == f"{base}/media/shoulder.jpg"
    assert article["summary"] == "Three changes to try tonight if your shoulder wakes you."
    body = article["body_html"]
    assert body.startswith("<p>Waking up with a sore shoulder")
    assert "<h2>Three changes to try tonight</h2>" in body
    assert "<ol><li>Sleep on the other side, hugging a pillow.</li>" in body
    assert f'<a href="{base}/book" rel="noopener">book an assessment</a>' in body
    assert f'<img src="{base}/media/pillow.jpg" alt="A pillow on a bed">' in body
    for outside in ("top of page", "Home", "27 views", "bottom of page", "tracking"):
        assert outside not in body
    # Structured data wins for comments; the page text gives views and likes.
    assert (article["views"], article["comments"], article["likes"]) == (27, 4, 2)


def test_counters_need_a_line_of_their_own():
    text = (
        "<html><body><article><h1>T</h1><p>The river path had 200 views of the hills and 3 "
        "comments from passers-by.</p></article></body></html>"
    )
    assert counters(text) == {}
    assert counters("<p>1,204 views</p><p>1 comment</p>") == {"views": 1204, "comments": 1}
    assert counters("<div>9 views0 comments</div>") == {"views": 9, "comments": 0}
    assert counters("<div><script>var s = '12 views';</script>4 views</div>") == {"views": 4}


def test_one_parsed_page_serves_every_step_and_is_not_changed_by_them():
    base = "https://clinic.example.com"
    url = f"{base}/post/shoulder-pain-and-sleep"
    tree = page.load(ARTICLE.format(base=base), url)
    before = lxml.html.tostring(tree)
    assert page.is_article_page(tree, url)
    assert page.counters(tree) == {"views": 27, "comments": 4, "likes": 2}
    article = page.parse_article(tree, url)
    assert article["title"] == "Shoulder Pain and Sleep" and "<ol>" in article["body_html"]
    # The counters read the page's text without removing its scripts, and
    # trafilatura works on its own copy: the tree is as it was.
    assert lxml.html.tostring(tree) == before
    assert page.parse_article(tree, url)["body_html"] == article["body_html"]


def test_index_page_links_and_kind():
    base = "https://clinic.example.com"
    index = page.load(INDEX, f"{base}/blog")
    assert page.article_links(index, f"{base}/blog") == [
        f"{base}/post/knee-first",
        f"{base}/post/back-second",
    ]
    assert not page.is_article_page(index, f"{base}/blog")
    article = page.load(ARTICLE.format(base=base), f"{base}/post/x")
    assert page.is_article_page(article, f"{base}/post/x")


def test_a_page_without_a_title_is_an_error_naming_it():
    with pytest.raises(SourceError, match="https://x.example/p: "):
        parse_article("<html><body></body></html>", "https://x.example/p")


def test_what_is_not_html_is_an_error_naming_the_url():
    with pytest.raises(SourceError, match="^https://x.example/p: not an HTML page"):
        page.load("", "https://x.example/p")


def test_decode_uses_the_declared_charset():
    body = "<html><head><meta charset='iso-8859-1'></head><p>Café</p></html>".encode("latin-1")
    assert "Café" in page.decode(body, "text/html")
    assert "Café" in page.decode("Café".encode("cp1252"), "text/html; charset=windows-1252")


def test_article_page_source_over_http(httpserver_ipv4, store, fetcher, tmp_path):
    base = httpserver_ipv4.url_for("").rstrip("/")
    served = {"html": ARTICLE.format(base=base)}
    httpserver_ipv4.expect_request("/post/shoulder-pain-and-sleep").respond_with_handler(
        lambda request: _html(served["html"])
    )
    spec = SourceSpec("page", f"{base}/post/shoulder-pain-and-sleep", backfill=1)

    first = intake.run_source(spec, store, fetcher, NOW, root=tmp_path)
    assert first.errors == [] and first.counts["new"] == 1
    [article] = store.articles()
    assert (article["views"], article["comments"]) == (27, 4)

    # Views went up: a new snapshot, the article itself unchanged.
    served["html"] = served["html"].replace("27 views", "31 views")
    later = NOW + dt.timedelta(hours=2)
    second = intake.run_source(spec, store, fetcher, later, root=tmp_path)
    assert second.counts == {"new": 0, "updated": 0, "unchanged": 1, "archived": 0}
    assert [s["views"] for s in store.article_stats(article["id"])] == [27, 31]
    assert store.articles()[0]["views"] == 31


def test_blog_index_page_source_reads_each_new_article_once(
    httpserver_ipv4, store, fetcher, tmp_path
):
    base = httpserver_ipv4.url_for("").rstrip("/")
    served = {"index": INDEX}
    httpserver_ipv4.expect_request("/blog").respond_with_handler(
        lambda request: _html(served["index"])
    )
    httpserver_ipv4.expect_request("/post/knee-first").respond_with_data(
        card("Knee First", "2026-11-20T09:00:00Z", "Knees first, always, in this clinic."),
        content_type="text/html",
    )
    httpserver_ipv4.expect_request("/post/back-second").respond_with_data(
        card("Back Second", "2026-11-10T09:00:00Z", "Backs come second, but not by much."),
        content_type="text/html",
    )
    httpserver_ipv4.expect_request("/post/neck-third").respond_with_data(
        card("Neck Third", "2026-11-28T09:00:00Z", "Necks, finally, after the source was added."),
        content_type="text/html",
    )
    spec = SourceSpec("page", f"{base}/blog")

    first = intake.run_source(spec, store, fetcher, NOW, root=tmp_path)
    # Both were published before the source was added: recorded, not announced.
    assert first.counts == {"new": 0, "updated": 0, "unchanged": 0, "archived": 2}

    served["index"] = INDEX.replace(
        "<main><h1>Blog</h1>",
        '<main><h1>Blog</h1><div><a href="/post/neck-third"><h2>Neck Third</h2></a></div>',
    )
    second = intake.run_source(spec, store, fetcher, NOW + dt.timedelta(days=2), root=tmp_path)
    assert second.counts["new"] == 1
    assert [a["title"] for a in store.articles(only_new=True)] == ["Neck Third"]
    fetched = [r.path for r, _ in httpserver_ipv4.log]
    assert fetched.count("/post/knee-first") == 1 and fetched.count("/post/neck-third") == 1


def test_an_index_with_more_links_than_one_poll_reads_finishes_on_the_next_polls(
    httpserver_ipv4, store, fetcher, tmp_path
):
    """The rest of the links are read even though the index answers 304 Not Modified."""
    base = httpserver_ipv4.url_for("").rstrip("/")
    cards = "".join(
        f'<div class="post-card"><a href="/post/p{i}"><h2>Post {i}</h2></a></div>'
        for i in range(35)
    )
    index = f"<!DOCTYPE html><html><head><title>Blog</title></head><body>{cards}</body></html>"

    def serve_index(request) -> Response:
        if request.headers.get("If-None-Match") == '"index-1"':
            return Response(status=304, headers={"ETag": '"index-1"'})
        return Response(index, headers={"ETag": '"index-1"'}, content_type="text/html")

    def serve_post(request) -> Response:
        number = request.path.rsplit("p", 1)[1]
        # Undated, as many blog pages are: only the first fetch's rule keeps them unannounced.
        return _html(
            f'<html><head><meta property="og:type" content="article"><title>Post {number}'
            f"</title></head><body><article><h1>Post {number}</h1><p>The text of post "
            f"number {number}, long enough to be read as an article.</p></article></body></html>"
        )

    httpserver_ipv4.expect_request("/blog").respond_with_handler(serve_index)
    httpserver_ipv4.expect_request(re.compile(r"^/post/p\d+$")).respond_with_handler(serve_post)
    spec = SourceSpec("page", f"{base}/blog")

    def posts_fetched() -> int:
        return sum(1 for r, _ in httpserver_ipv4.log if r.path.startswith("/post/"))

    first = intake.run_source(spec, store, fetcher, NOW, root=tmp_path)
    assert first.counts == {"new": 0, "updated": 0, "unchanged": 0, "archived": 30}
    assert first.warnings == [f"{base}/blog: 5 more linked articles are read on the next polls"]

    second = intake.run_source(spec, store, fetcher, NOW + dt.timedelta(hours=1), root=tmp_path)
    assert second.not_modified
    # Undated leftovers of the first fetch still follow its rule: recorded, not announced.
    assert second.counts == {"new": 0, "updated": 0, "unchanged": 0, "archived": 5}
    assert second.warnings == []
    assert len(store.articles()) == 35 and store.articles(only_new=True) == []
    assert posts_fetched() == 35

    third = intake.run_source(spec, store, fetcher, NOW + dt.timedelta(hours=2), root=tmp_path)
    assert third.not_modified and posts_fetched() == 35
    state = store.source(store.source_id("page", spec.location, NOW))["state"]
    assert "index_pending" not in state


def test_an_index_link_that_fails_is_tried_again_on_the_next_poll(
    httpserver_ipv4, store, fetcher, tmp_path
):
    base = httpserver_ipv4.url_for("").rstrip("/")
    broken = {"/post/back-second"}

    def serve_index(request) -> Response:
        if request.headers.get("If-None-Match") == '"i"':
            return Response(status=304, headers={"ETag": '"i"'})
        return Response(INDEX, headers={"ETag": '"i"'}, content_type="text/html")

    def serve_post(request) -> Response:
        if request.path in broken:
            return Response("down", status=503)
        title = request.path.rsplit("/", 1)[1].replace("-", " ").title()
        return _html(card(title, "2026-11-20T09:00:00Z", f"{title}: the text of the post."))

    httpserver_ipv4.expect_request("/blog").respond_with_handler(serve_index)
    httpserver_ipv4.expect_request(re.compile(r"^/post/")).respond_with_handler(serve_post)
    spec = SourceSpec("page", f"{base}/blog")

    first = intake.run_source(spec, store, fetcher, NOW, root=tmp_path)
    assert first.counts["archived"] == 1
    assert first.warnings[0].startswith(f"{base}/post/back-second: HTTP 503")
    broken.clear()
    second = intake.run_source(spec, store, fetcher, NOW + dt.timedelta(hours=1), root=tmp_path)
    assert second.not_modified and second.counts["archived"] == 1
    assert sorted(a["title"] for a in store.articles()) == ["Back Second", "Knee First"]


def _html(text: str) -> Response:
    return Response(text, content_type="text/html; charset=utf-8")


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
WP_JSON = b'[{"id": 7, "title": {"rendered": "Shoulder pain"}, "link": "/p/7"}]'


@pytest.mark.parametrize(
    ("body", "content_type", "named"),
    [
        (PNG, "image/png", "a PNG image"),
        (PNG, "text/html", "a PNG image"),  # mislabelled: the bytes decide
        (WP_JSON, "application/json", "JSON"),
        (b'{"posts": []}', "text/html; charset=utf-8", "JSON"),
        (b"%PDF-1.7\n" + bytes(32), "application/octet-stream", "a PDF document"),
    ],
    ids=["png", "png-as-html", "json", "json-as-html", "pdf"],
)
def test_a_page_address_answering_an_image_or_json_says_so(
    httpserver_ipv4, store, fetcher, tmp_path, body, content_type, named
):
    """A page source pointed at a logo or a blog's JSON API: the answer is named, not 'no title'."""
    httpserver_ipv4.expect_request("/blog").respond_with_data(body, content_type=content_type)
    url = httpserver_ipv4.url_for("/blog")
    result = intake.run_source(SourceSpec("page", url), store, fetcher, NOW, root=tmp_path)
    assert result.errors == [
        f"{url}: the answer is {named}, not an HTML page; "
        "give the address of the article or blog page itself"
    ]
    assert store.articles() == []


@pytest.mark.parametrize(
    ("body", "content_type", "named"),
    [(PNG, "image/png", "a PNG image"), (WP_JSON, "application/json", "JSON")],
    ids=["png", "json"],
)
def test_a_feed_address_answering_an_image_or_json_says_so(
    httpserver_ipv4, store, fetcher, tmp_path, body, content_type, named
):
    httpserver_ipv4.expect_request("/feed").respond_with_data(body, content_type=content_type)
    url = httpserver_ipv4.url_for("/feed")
    result = intake.run_source(SourceSpec("feed", url), store, fetcher, NOW, root=tmp_path)
    assert result.errors == [f"{url}: not an RSS or Atom feed (the answer is {named})"]


def test_plain_html_and_text_are_not_mistaken_for_other_content():
    from newsletter.sources import content_kind

    assert content_kind(b"<!doctype html><p>{hi}</p>", "text/html") is None
    assert content_kind(b"[not json", "text/html") is None
    assert content_kind(b"<rss/>", "application/rss+xml") is None


FIXTURES = Path(__file__).parent / "fixtures" / "pages"


def test_a_page_with_a_control_character_in_its_text_is_read():
    # A real WordPress.com post whose text holds a U+001D: trafilatura's output
    # is XML, so one such character made it drop the whole article.
    url = "https://buchperlen.wordpress.com/2013/10/20/leandra-lou/"
    text = (FIXTURES / "wordpress-com-buchperlen.html").read_text(encoding="utf-8")
    assert "\x1d" in text
    article = page.parse_article(page.load(text, url), url)
    assert article["title"].startswith("Leandra Lou – Der etwas andere Modeblog")
    assert 3000 < len(plain_text(article["body_html"])) < 4500
    assert "\x1d" not in article["body_html"]


def test_a_tree_trafilatura_finds_nothing_in_falls_back_to_the_page_text():
    # The same page parsed as it comes (character kept): trafilatura finds no
    # article in that tree, and then reads the page's text its own way.
    url = "https://buchperlen.wordpress.com/2013/10/20/leandra-lou/"
    text = (FIXTURES / "wordpress-com-buchperlen.html").read_text(encoding="utf-8")
    tree = lxml.html.document_fromstring(text)
    for given in (text, None):  # None: the tree itself is written out as text
        article = page.parse_article(tree, url, html=given)
        assert "Lesen Sie Modeblogs?" in plain_text(article["body_html"])


def test_readability_reads_a_page_trafilatura_refuses_both_ways():
    # A control character written as a character reference survives both of
    # trafilatura's parses; readability still finds the article.
    paragraphs = "".join(
        f"<p>The kneecap glides in a groove of the thigh bone&#29; when it tracks badly, "
        f"the front of the knee aches {where}.</p>"
        for where in ("on stairs", "after sitting", "when squatting", "on long walks")
    )
    text = (
        "<html><head><title>Kneecaps | Riverbend Clinic</title>"
        '<meta property="og:site_name" content="Riverbend Clinic">'
        '<meta property="article:published_time" content="2026-10-01T09:00:00Z"></head>'
        "<body><nav><a href='/'>Home</a> <a href='/blog'>Blog</a></nav>"
        f"<article><h1>Kneecaps</h1>{paragraphs}<a href='/book'>Book a visit</a></article>"
        "</body></html>"
    )
    url = "https://clinic.example.com/post/kneecaps"
    article = page.parse_article(page.load(text, url), url)
    assert article["title"] == "Kneecaps"
    assert article["published"] == "2026-10-01T09:00:00+00:00"
    body = article["body_html"]
    assert body.count("The kneecap glides") == 4 and "\x1d" not in body
    assert '<a href="https://clinic.example.com/book" rel="noopener">Book a visit</a>' in body
    assert "Home" not in plain_text(body) and "<h1>" not in body


def test_a_page_without_text_is_refused_after_every_extractor():
    text = "<html><head><title>Loading</title></head><body><div id='app'></div></body></html>"
    with pytest.raises(SourceError) as excinfo:
        parse_article(text, "https://app.example.com/post/1")
    assert str(excinfo.value) == "https://app.example.com/post/1: no article text found on the page"


def test_comment_counters_in_each_platform_s_words():
    def count(html: str) -> dict[str, int]:
        return counters(f"<html><body><article><p>Text.</p></article>{html}</body></html>")

    assert count("<a href='#comments'>Show 6 comments</a>") == {"comments": 6}  # Squarespace
    assert count("<h2>2 comments on “These Weeks in Firefox”</h2>") == {"comments": 2}
    assert count("<h3>12 thoughts on &ldquo;Knees&rdquo;</h3>") == {"comments": 12}
    assert count("<span>2 responses</span>") == {"comments": 2}
    assert count("<h4>5 comments:</h4>") == {"comments": 5}  # Blogger
    assert count("<h4>No comments:</h4>") == {"comments": 0}
    assert count("<button>193<span>&#160;claps</span></button>") == {"likes": 193}  # Medium
    # A sentence is not a counter.
    assert count("<p>We read 6 comments from patients every week.</p>") == {}


def test_relative_links_are_unwrapped_and_relative_images_dropped():
    fragment = (
        'Fish &amp; chips <a href="/menu">menu</a>, <a href="https://x.example/">site</a>,'
        ' <a href="#top">top</a><p><img src="a.png" alt="A">after<br></p>'
    )
    assert page.drop_relative_links(fragment) == (
        'Fish &amp; chips menu, <a href="https://x.example/">site</a>,'
        ' <a href="#top">top</a><p>after<br></p>'
    )
