"""What real platforms put in feeds that must not reach an email as it is: tracking
pixels, addresses as bylines, dates in local spellings, items told apart only by
their link's #fragment. Each feed is served over loopback HTTP and stored."""

from __future__ import annotations

import datetime as dt

import pytest

from clocks import FETCH_NOW as NOW
from newsletter.config import SourceSpec
from newsletter.sources import assign_keys, feed, intake, sanitize_html
from newsletter.sources.feed_entry import parse_date
from newsletter.sources.images import drop_tracking_images, is_decoration, is_tracking_image
from test_sources_feed import Elements, Intake


@pytest.fixture
def run(httpserver_ipv4, store, fetcher, tmp_path) -> Intake:
    return Intake(httpserver_ipv4, store, fetcher, tmp_path)


def images(body: str) -> list[str]:
    return [attrs["src"] or "" for tag, attrs in Elements(body).found if tag == "img"]


# -- 3. tracking pixels ---------------------------------------------------------------

MEDIUM_FEED = """<?xml version="1.0" encoding="UTF-8"?><rss \
xmlns:dc="http://purl.org/dc/elements/1.1/" \
xmlns:content="http://purl.org/rss/1.0/modules/content/" \
xmlns:media="http://search.yahoo.com/mrss/" version="2.0"><channel>
<title><![CDATA[Stories by Dana Ruiz on Medium]]></title><link>{base}/@dana</link>
<item><title><![CDATA[Tmux and Regex]]></title>
<link>{base}/tmux-regex-a37741c4842b?source=rss-3c5c31a7d1d7------2</link>
<guid isPermaLink="false">https://medium.com/p/a37741c4842b</guid>
<dc:creator><![CDATA[Dana Ruiz]]></dc:creator><pubDate>Mon, 28 Sep 2026 12:22:01 GMT</pubDate>
<content:encoded><![CDATA[<figure><img alt="A terminal" \
src="https://cdn-images-1.medium.com/max/1024/0*hero" /></figure><p>Regex &amp; tmux.</p>\
<img src="https://medium.com/_/stat?event=post.clientViewed&amp;referrerSource=full_rss&amp;\
postId=a37741c4842b" width="1" height="1" alt="">]]></content:encoded></item>
<item><title><![CDATA[Only Words]]></title><link>{base}/only-words-b1</link>
<guid isPermaLink="false">https://medium.com/p/b1</guid>
<pubDate>Sun, 27 Sep 2026 09:00:00 GMT</pubDate>
<content:encoded><![CDATA[<p>No picture in this one.</p><img \
src="https://medium.com/_/stat?event=post.clientViewed&amp;referrerSource=full_rss&amp;postId=b1" \
width="1" height="1" alt="">]]></content:encoded></item>
<item><title>Pixel as media</title><link>{base}/pixel-as-media</link><guid>pm-1</guid>
<pubDate>Sat, 26 Sep 2026 09:00:00 GMT</pubDate>
<media:content url="https://pixel.wp.com/b.gif?host=x&amp;blog=1&amp;post=2" medium="image"/>
<enclosure url="https://feeds.feedburner.com/~r/Example/~4/abc.gif" type="image/gif" length="0"/>
<description><![CDATA[<p>Text first.</p><a href="https://feeds.feedburner.com/~ff/Example?a=x">\
<img src="https://feeds.feedburner.com/~ff/Example?d=yIl2AUoC8zA" border="0"></a>\
<img src="{base}/spacer.png" width="1px" height="1px">\
<img src="{base}/photos/river.jpg" alt="The river" width="600" height="400">]]></description>
</item></channel></rss>"""


def test_tracking_pixels_leave_the_body_and_are_never_the_lead_image(run):
    result, articles = run(MEDIUM_FEED)
    assert result.errors == []
    tmux = articles["Tmux and Regex"]
    assert tmux["image"] == "https://cdn-images-1.medium.com/max/1024/0*hero"
    assert tmux["image_alt"] == "A terminal"
    assert images(tmux["body_html"]) == ["https://cdn-images-1.medium.com/max/1024/0*hero"]
    assert "medium.com/_/stat" not in tmux["body_html"]
    # A post whose only image is the pixel has no lead image at all.
    words = articles["Only Words"]
    assert words["image"] is None and images(words["body_html"]) == []
    # Media RSS and enclosure pixels are passed over for the first real image of the body;
    # a FeedBurner flare goes with the link around it.
    media = articles["Pixel as media"]
    assert media["image"] == f"{run.base}/photos/river.jpg"
    assert images(media["body_html"]) == [f"{run.base}/photos/river.jpg"]
    assert "feedburner" not in media["body_html"] and "<a" not in media["body_html"]


@pytest.mark.parametrize(
    ("src", "width", "height", "tracking"),
    [
        ("https://medium.com/_/stat?event=post.clientViewed&postId=1", None, None, True),
        ("https://pixel.wp.com/b.gif?host=a&blog=1", None, None, True),
        ("https://stats.wordpress.com/b.gif?v=noscript", None, None, True),
        ("https://blogger.googleusercontent.com/tracker/123-456?l=x", None, None, True),
        ("https://x.us1.list-manage.com/track/open.php?u=1", None, None, True),
        ("https://cdn.example.com/a.png?event=email_open&id=9", None, None, True),
        ("https://example.com/anything.png", "1", "1", True),
        ("https://example.com/anything.png", "0", None, True),
        ("https://example.com/photo.jpg", "600", "400", False),
        ("https://example.com/photo.jpg?w=600&fit=crop", None, None, False),
        ("https://miro.medium.com/v2/resize:fit:1024/1*abc.png", None, None, False),
        ("https://blogger.googleusercontent.com/img/b/R29v/s1600/knee.png", None, None, False),
        ("https://example.com/10.gif", "10", "10", False),
    ],
)
def test_which_images_are_tracking_pixels(src, width, height, tracking):
    assert is_tracking_image(src, width, height) is tracking


EMOJI_FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>WP</title>
<link>{base}/</link><description>d</description>
<item><title>Emoji First</title><link>{base}/emoji-first</link><guid>e-1</guid>
<description><![CDATA[<p>Shipped <img \
src="https://s.w.org/images/core/emoji/14.0.0/72x72/1f680.png" \
alt="🚀" class="wp-smiley"> today. <img src="https://secure.gravatar.com/avatar/ab12?s=48" \
alt="Dana"> <img src="{base}/icons/pdf.png" width="32" height="32" alt="PDF">
<img src="{base}/uploads/launch.jpg" alt="The launch"></p>]]></description></item>
</channel></rss>"""


def test_emoji_avatars_and_icons_stay_in_the_text_but_are_not_the_lead_image(run):
    _, articles = run(EMOJI_FEED)
    post = articles["Emoji First"]
    assert post["image"] == f"{run.base}/uploads/launch.jpg"
    assert post["image_alt"] == "The launch"
    assert len(images(post["body_html"])) == 4


@pytest.mark.parametrize(
    ("src", "width", "height", "decoration"),
    [
        ("https://s.w.org/images/core/emoji/2.2.1/72x72/1f483.png", None, None, True),
        ("https://0.gravatar.com/avatar/abc?s=96", None, None, True),
        ("https://example.com/logo.png", "40", "40", True),
        ("https://example.com/strip.png", "503", "88", False),
        ("https://example.com/photo.jpg", None, None, False),
    ],
)
def test_which_images_are_decoration(src, width, height, decoration):
    assert is_decoration(src, width, height) is decoration


def test_a_real_image_and_a_plain_empty_body_are_left_as_they_are():
    body = '<p>Hi</p><img src="https://example.com/a.jpg" alt="a">'
    assert drop_tracking_images(body) == body
    assert drop_tracking_images("<p>no images</p>") == "<p>no images</p>"


# -- 4. bylines -----------------------------------------------------------------------

BLOGGER_AUTHORS = """<?xml version='1.0' encoding='UTF-8'?>\
<feed xmlns='http://www.w3.org/2005/Atom'><id>tag:blogger.com,1999:blog-1</id>\
<title type='text'>Knees</title><link rel='alternate' type='text/html' href='{base}/'/>
<entry><id>tag:blogger.com,1999:blog-1.post-1</id><published>2026-11-24T08:30:00.001-08:00</published>\
<title type='text'>Named</title><content type='html'>one</content>\
<link rel='alternate' type='text/html' href='{base}/2026/11/named.html'/>\
<author><name>Ravi Menon</name><uri>https://www.blogger.com/profile/1</uri>\
<email>noreply@blogger.com</email></author></entry>
<entry><id>tag:blogger.com,1999:blog-1.post-2</id><published>2026-11-23T08:30:00Z</published>\
<title type='text'>Only an address</title><content type='html'>two</content>\
<link rel='alternate' type='text/html' href='{base}/2026/11/address.html'/>\
<author><email>noreply@blogger.com</email></author></entry>
</feed>"""

RSS_AUTHORS = """<?xml version="1.0"?><rss version="2.0"><channel><title>A</title>
<link>{base}/</link><description>d</description>
<item><title>Address then name</title><link>{base}/a</link><guid>a</guid>
<author>ana@example.com (Ana Costa)</author></item>
<item><title>Just a name</title><link>{base}/b</link><guid>b</guid>
<author>Mo Haddad</author></item>
</channel></rss>"""


def test_bylines_are_names_never_addresses(run):
    _, articles = run(BLOGGER_AUTHORS, content_type="application/atom+xml")
    assert articles["Named"]["author"] == "Ravi Menon"
    assert articles["Named"]["published"] == "2026-11-24T16:30:00+00:00"
    assert articles["Only an address"]["author"] is None
    _, articles = run(RSS_AUTHORS, path="/rss.xml")
    assert articles["Address then name"]["author"] == "Ana Costa"
    assert articles["Just a name"]["author"] == "Mo Haddad"


# -- 5. dates -------------------------------------------------------------------------

ODD_DATES = """<?xml version="1.0"?><rss version="2.0"><channel><title>Odd Dates</title>
<link>{base}/</link><description>d</description>
<item><title>Slashes</title><link>{base}/slashes</link><pubDate>2020/1/10 14:33:00</pubDate></item>
<item><title>Afternoon</title><link>{base}/afternoon</link>
<pubDate>Fri, 10 Jan 2020 3:33 PM CDT</pubDate></item>
<item><title>Time only</title><link>{base}/time-only</link><pubDate>03:00 PM CDT</pubDate></item>
<item><title>Day or month</title><link>{base}/which</link><pubDate>01/02/2020</pubDate></item>
<item><title>Unknown zone</title><link>{base}/zone</link>
<pubDate>Fri, 10 Jan 2020 14:33:00 XYZ</pubDate></item>
</channel></rss>"""


def test_dates_are_read_right_or_not_at_all_and_each_unread_one_is_named(run):
    result, articles = run(ODD_DATES)
    assert result.errors == [] and result.counts["new"] == 5
    assert articles["Slashes"]["published"] == "2020-01-10T14:33:00+00:00"
    # 3:33 PM Central Daylight Time, not 3:33 AM with the zone dropped.
    assert articles["Afternoon"]["published"] == "2020-01-10T20:33:00+00:00"
    feed_url = run.server.url_for("/feed.xml")
    for title, value in (
        ("Time only", "03:00 PM CDT"),
        ("Day or month", "01/02/2020"),
        ("Unknown zone", "Fri, 10 Jan 2020 14:33:00 XYZ"),
    ):
        assert articles[title]["published"] is None
        [line] = [w for w in result.warnings if repr(title) in w]
        assert line.startswith(f"{feed_url}: ") and repr(value) in line
        assert "stored without it" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tue, 10 Jun 2003 04:00:00 GMT", "2003-06-10T04:00:00+00:00"),
        ("Wed, 02 Oct 2002 08:00:00 EST", "2002-10-02T13:00:00+00:00"),
        ("Mon, 1 Jan 2007 0:00:00 +0100", "2006-12-31T23:00:00+00:00"),
        ("2003-12-13T18:30:02.25+01:00", "2003-12-13T17:30:02.250000+00:00"),
        ("2020-01-10", "2020-01-10T00:00:00+00:00"),
        ("January 10, 2020 3:00 PM", "2020-01-10T15:00:00+00:00"),
        ("13/02/2020", "2020-02-13T00:00:00+00:00"),
        ("2020.1.10", "2020-01-10T00:00:00+00:00"),
        ("Fri, 10 Jan 2020 14:33:00 CEST", "2020-01-10T12:33:00+00:00"),
        ("Seg, 24 Set 2018 19:42:40 -0300", "2018-09-24T22:42:40+00:00"),
        ("24 de setembro de 2018", "2018-09-24T00:00:00+00:00"),
        ("mar., 24 sept. 2018 10:00 CEST", "2018-09-24T08:00:00+00:00"),
        ("Di, 24. Okt 2019 10:00:00 +0200", "2019-10-24T08:00:00+00:00"),
        ("5 mei 2020 12:00", "2020-05-05T12:00:00+00:00"),
        ("Fri, 10 Jan 2020 14:33:00 IST", None),
        ("Fri, 10 Jan 2020 14:33:00 GMT+3", None),
        ("10/01/20", None),
        ("Jan 10", None),
        ("yesterday", None),
    ],
)
def test_reading_a_feed_date(text, expected):
    """Each spelling read right, or not at all."""
    when = parse_date(text)
    assert (when.astimezone(dt.UTC).isoformat() if when else None) == expected


NEWER_UNDATED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Odd Dates</title>
<link>{base}/</link><description>d</description>
<item><title>Brand new, time only</title><link>{base}/brand-new</link>
<pubDate>04:00 PM CDT</pubDate></item>
<item><title>Slashes</title><link>{base}/slashes</link><pubDate>2020/1/10 14:33:00</pubDate></item>
<item><title>Time only</title><link>{base}/time-only</link><pubDate>03:00 PM CDT</pubDate></item>
<item><title>Back in the window</title><link>{base}/old-one</link>
<pubDate>05:00 PM CDT</pubDate></item>
</channel></rss>"""


def test_an_undated_item_is_new_above_known_ones_and_old_below_them(
    httpserver_ipv4, store, fetcher, tmp_path
):
    """Undated items follow the feed's order: the clock never gives them a date."""
    run = Intake(httpserver_ipv4, store, fetcher, tmp_path)
    first, _ = run(ODD_DATES, backfill=0)
    # Added now: every item of the first fetch is older or undated, none announced.
    assert first.counts == {"new": 0, "updated": 0, "unchanged": 0, "archived": 5}
    httpserver_ipv4.clear()
    later = NOW + dt.timedelta(hours=1)
    body = NEWER_UNDATED.replace("{base}", run.base)
    httpserver_ipv4.expect_request("/feed.xml").respond_with_data(
        body, content_type="application/rss+xml"
    )
    spec = SourceSpec("feed", httpserver_ipv4.url_for("/feed.xml"), backfill=0)
    second = intake.run_source(spec, store, fetcher, later, root=tmp_path)
    assert second.counts["new"] == 1 and second.counts["archived"] == 1
    new = {a["title"] for a in store.articles(only_new=True)}
    assert new == {"Brand new, time only"}
    stored = {a["title"]: a for a in store.articles()}
    assert stored["Brand new, time only"]["published"] is None
    assert stored["Back in the window"]["published"] is None


# -- 6. identity of items without a guid ----------------------------------------------

CHANGELOG = """<?xml version="1.0"?><rss version="2.0"><channel><title>Changelog</title>
<link>{base}/changelog</link><description>d</description>
<item><title>Version 1.3</title><link>{base}/changelog#v1-3</link>
<description>Faster exports.</description></item>
<item><title>Version 1.2</title><link>{base}/changelog#v1-2</link>
<description>Dark mode.</description></item>
<item><title>Version 1.1</title><link>{base}/changelog#v1-1</link>
<description>First public release.</description></item>
</channel></rss>"""


def test_items_without_a_guid_told_apart_by_their_fragment_are_three_articles(run):
    result, articles = run(CHANGELOG)
    assert result.counts["new"] == 3 and result.warnings == []
    assert articles["Version 1.2"]["key"] == f"{run.base}/changelog#v1-2"
    # The stored link stays the page's one spelling.
    assert articles["Version 1.2"]["url"] == f"{run.base}/changelog"


def test_an_upgrade_does_not_announce_items_once_merged_into_one(
    httpserver_ipv4, store, fetcher, tmp_path
):
    """A database written when the fragment was not part of the identity: one article."""
    run = Intake(httpserver_ipv4, store, fetcher, tmp_path)
    url = httpserver_ipv4.url_for("/feed.xml")
    body = CHANGELOG.replace("{base}", run.base)
    parsed = feed.parse(body.encode(), url)
    # What the earlier version stored: keys without the fragment, repeats dropped.
    before, _ = assign_keys(
        [{k: v for k, v in a.items() if k not in ("key", "url_key")} for a in parsed.articles]
    )
    assert len(before) == 1
    source_id = store.source_id("feed", url, NOW - dt.timedelta(days=30))
    store.save_articles(source_id, before, NOW - dt.timedelta(days=30))
    store.save_source_state(source_id, {"fetched_at": "2026-10-28T10:00:00+00:00"})
    result, articles = run(body, backfill=None)
    assert result.counts == {"new": 0, "updated": 0, "unchanged": 1, "archived": 2}
    assert store.articles(only_new=True)[0]["title"] == "Version 1.3"
    assert len(store.articles(only_new=True)) == 1  # the one it was before, nothing more
    assert articles["Version 1.3"]["key"] == f"{run.base}/changelog#v1-3"
    # Read again: all three known under their own identities.
    store.save_source_state(source_id, {"fetched_at": "2026-11-27T10:00:00+00:00"})
    again, _ = run(body, backfill=None)
    assert again.counts == {"new": 0, "updated": 0, "unchanged": 3, "archived": 0}


EXCERPT_FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>Excerpts</title>
<link>{base}/</link><description>d</description>
<item><title>Knee Strength</title><link>{base}/post/knee-strength</link><guid>ks-1</guid>
<pubDate>Wed, 25 Nov 2026 15:30:00 GMT</pubDate>
<description><![CDATA[<img src="{base}/media/avatar-48.png" alt="Dana"> Two exercises.]]>\
</description></item>
</channel></rss>"""

EXCERPT_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Knee Strength</title><link rel="canonical" href="{base}/post/knee-strength">
<meta property="og:type" content="article"><meta property="og:title" content="Knee Strength">
<meta property="og:image" content="{base}/media/knee-hero.jpg">
</head><body><main><article><h1>Knee Strength</h1>
<p>Strong thighs carry the knee. Two exercises do most of the work, and neither needs a gym:
a slow sit-to-stand from a chair, and a step-up onto the bottom stair, ten of each a day.</p>
<p>Start with what you can do without pain and add one repetition a week; in a month the
stairs feel different. Stop and ask us if the knee swells the next morning.</p>
</article></main></body></html>"""


def test_a_full_text_page_s_own_picture_beats_the_first_image_of_the_excerpt(httpserver_ipv4, run):
    httpserver_ipv4.expect_request("/post/knee-strength").respond_with_data(
        EXCERPT_PAGE.replace("{base}", run.base), content_type="text/html; charset=utf-8"
    )
    result, articles = run(EXCERPT_FEED, full_text=True)
    assert result.errors == [] and result.warnings == []
    assert articles["Knee Strength"]["image"] == f"{run.base}/media/knee-hero.jpg"
    assert "Strong thighs carry the knee" in articles["Knee Strength"]["body_html"]


def test_a_date_past_what_a_datetime_holds_in_utc_is_unread_not_a_crash():
    body = ODD_DATES.replace("2020/1/10 14:33:00", "9999-12-31T23:59:59-14:00")
    parsed = feed.parse(body.replace("{base}", "http://blog.example").encode(), "http://f.example/")
    assert next(a for a in parsed.articles if a["title"] == "Slashes")["published"] is None
    assert any("'9999-12-31T23:59:59-14:00'" in p for p in parsed.problems)


def test_every_source_s_sanitiser_drops_tracking_pixels():
    """Pages and folders share the sanitiser with feeds: a pixel goes whatever brought it."""
    body = sanitize_html(
        '<p>Hi</p><img src="/_/stat?event=post.clientViewed&amp;postId=1" width="1" height="1">'
        '<a href="https://feeds.feedburner.com/~ff/X?a=1"><img src="https://feeds.feedburner.com'
        '/~ff/X?d=2"></a><img src="/photo.jpg" alt="p">',
        "https://medium.com/@dana/post",
    )
    assert body == '<p>Hi</p><img src="https://medium.com/photo.jpg" alt="p">'


ODD_ITEM_FEED = """<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>
<title>Clinic news</title><link>http://blog.example/</link>
<item><title>Broken enclosure</title><link>http://blog.example/broken</link><guid>b-1</guid>
<enclosure url="http://[blog.example/a.jpg" type="image/jpeg" length="0"/>
<description><![CDATA[<p>Text.</p><img src="http://blog.example/w.jpg" width="&#178;">]]>\
</description></item>
<item><title>Fine</title><link>http://blog.example/fine</link><guid>f-1</guid>
<description><![CDATA[<p>All well.</p>]]></description></item>
</channel></rss>"""


def test_an_item_with_a_malformed_image_address_or_size_is_still_read_with_the_others():
    """An unclosed "[" host and a width in superscript digits: neither fails the feed."""
    parsed = feed.parse(ODD_ITEM_FEED.encode(), "http://f.example/")
    assert [a["title"] for a in parsed.articles] == ["Broken enclosure", "Fine"]
    assert parsed.problems == []
    body = parsed.articles[0]["body_html"]
    assert "Text." in body and images(body) == ["http://blog.example/w.jpg"]
