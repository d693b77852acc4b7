# ruff: noqa: E501  (the corpus table: one feed a line, with its long image addresses)
"""The corpus: real feeds from other feed readers' and parsers' test suites, each run
through the whole intake (served over loopback HTTP, fetched by the real fetcher, stored).

Sources and licences: tests/fixtures/README. One row a feed: how many articles, and the
first one's title, date, byline and lead image; every article of every feed is checked for
absolute links, sanitised HTML, no tracking pixels and no address as a byline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest

from clocks import FETCH_NOW as NOW
from newsletter.config import SourceSpec
from newsletter.sources import intake
from newsletter.sources.images import is_tracking_image
from test_sources_feed import Elements

FEEDS = Path(__file__).parent / "fixtures" / "feeds"


class Row(NamedTuple):
    file: str
    count: int = 0
    title: str = ""  # the first article's title begins so
    published: str | None = None
    author: str | None = None
    image: str | None = None  # {base}: the test server's address
    undated: int = 0  # articles without a date
    unread: int = 0  # dates that cannot be read for certain (each named in a warning)
    error: str | None = None  # the feed is refused with this message


# fmt: off
CORPUS = [
    Row('feedjira-AmazonWebServicesBlog.xml', 10, 'AWS Job: Architect & Designer Position in Turkey', '2009-01-16T18:21:00+00:00', 'AWS Editor', None),
    Row('feedjira-FeedBurnerXHTML.xml', 10, "Stock Watch: April's Finest", '2014-04-30T13:00:00+00:00', 'Alex Steers McCrum', None),
    Row('feedjira-FeedjiraBlog.xml', 1, 'Feedjira Goes One-Point-Oh', '2014-03-17T00:00:00+00:00', 'Jon Allured', None),
    Row('feedjira-GiantRobotsSmashingIntoOtherGiantRobots.xml', 3, '"Tell, Don\'t Ask" in Elixir: A Story of Pattern-Matching', '2016-12-21T00:00:00+00:00', 'Josh Clayton', None),
    Row('feedjira-HREFConsideredHarmful.xml', 10, 'Chrome, V8 and Strongtalk', '2008-09-02T19:50:07+00:00', 'Avi', 'http://www.avibryant.com/files/picture_19.png'),
    Row('feedjira-HuffPostCanada.xml', 2, 'Winnipeg High School Orders Custom Hijabs For Muslim Athlete', '2017-10-17T22:17:00+00:00', 'Canadian Press', 'http://o.aolcdn.com/hss/storage/midas/b1726dd5e5cde1fb967d92d963537957/205775479/Untitled+design+%2857%29.png'),
    Row("feedjira-InvalidDateFormat.xml", error="malformed XML at line 21, column 0: no e"),
    Row('feedjira-PaulDixExplainsNothing.xml', 5, 'Making a Ruby C library even faster', '2009-01-22T15:50:22+00:00', 'Paul Dix', None),
    Row('feedjira-RSSWithComments.xml', 30, 'AWS Lambda Function URLs: Built-In HTTPS Endpoints for Lambd', '2022-04-06T21:07:47+00:00', None, None),
    Row('feedjira-SamRuby.xml', 20, 'Plex', '2013-01-30T18:12:03+00:00', 'Sam Ruby', None),
    Row('feedjira-TechCrunch.xml', 20, 'Angie’s List Sets Price Range IPO At $11 To $13 Per Share; V', '2011-11-02T17:25:27+00:00', 'Leena Rao', 'http://tctechcrunch2011.files.wordpress.com/2011/11/angies-list.jpeg?w=150'),
    Row('feedjira-TenderLovemaking.xml', 10, 'Nokogiri’s Slop Feature', '2008-12-04T17:17:49+00:00', 'Aaron Patterson', None),
    Row('feedjira-TrotterCashionHome.xml', 14, 'Data Urls and document.domain', '2008-12-13T17:43:00+00:00', 'trotter', None),
    Row('feedjira-TypePadNews.xml', 10, 'Spotlight: Friday Favorites!', '2013-02-22T17:47:09+00:00', 'The Typepad Team', 'http://everything.typepad.com/.a/6a00d83451c82369e2017c37087e65970b-600wi'),
    Row('feedjira-google_alerts_atom.xml', 20, 'Report offers Prediction of Automotive Slack Market by Top k', '2019-07-10T11:53:37+00:00', None, None),
    Row('feedjira-youtube_atom.xml', 15, 'The Google app: Questions Title', '2015-05-04T00:01:27+00:00', 'Google', 'https://i2.ytimg.com/vi/5shykyfmb28/hqdefault.jpg'),
    Row('netnewswire-draw-down.atom', 25, 'Revue Faire — no. 56 (Reading Until I Sleep: Manuel Raeder)', '2026-05-15T19:53:50+00:00', 'Draw Down', 'https://cdn.shopify.com/s/files/1/1681/2497/files/RevueFaire_no.56_ReadingUntilISleepManuelRaeder.jpg?v=1778874818'),
    Row('netnewswire-markdown1.rss', 25, 'WordPress and AI', '2025-10-25T15:05:02+00:00', None, None),
    Row('netnewswire-medscape.rss', 20, 'Caution Urged for Virtual Care Partnerships in Canada', '2025-11-05T18:52:10+00:00', None, None),
    Row('netnewswire-neverworkintheory.atom', 20, 'Retrospective', '2024-03-21T00:00:00+00:00', 'Greg Wilson', None),
    Row('netnewswire-pappacoda.atom', 3, 'Le favicon non sono difficili', '2026-05-24T11:02:30+00:00', 'Andrea Pappacoda', None),
    Row('netnewswire-qemu.atom', 10, 'QEMU version 10.1.0 released', '2025-08-26T23:25:00+00:00', None, None),
    Row('netnewswire-root-author.atom', 2, 'RAW Power 3: an affordable digital photo development app for', '2021-01-10T23:00:00+00:00', 'Florens Verschelde', 'https://fvsch.com/articles/raw-power-mac/rawpower-ui.png'),
    Row('netnewswire-shopify-namespace.rss', 1, 'Real Product Title', None, 'Jane Maker', None, undated=1),
    Row('rsparser-489.rss', 10, 'Hodl Hodl closes funding round', '2018-11-19T08:10:26+00:00', 'Hodl Hodl', None),
    Row('rsparser-4fsodonline.atom', 25, '4FSOD Documentary: Bloopers and Stuff', '2007-12-15T07:15:00+00:00', 'Anthony', None),
    Row('rsparser-DaringFireball.atom', 48, 'The Talk Show: ‘I Do Like Throwing a Baby’', '2017-06-27T00:54:17+00:00', 'John Gruber', None),
    Row('rsparser-DaringFireball.rss', 47, 'Apple Product Event: Monday March 21', '2016-02-27T21:59:47+00:00', 'John Gruber', None),
    Row('rsparser-EMarley.rss', 10, 'UI Automation & screenshots', '2016-05-07T23:53:30+00:00', 'Liz Marley', None),
    Row('rsparser-KatieFloyd.rss', 20, 'Special Mac Power Users for Relay FM Members', '2016-08-25T22:20:00+00:00', 'Katie Floyd', 'http://static1.squarespace.com/static/50c628b3e4b07b56461546c5/t/57bcc05915d5db62fcd50f32/1471987830419/?format=1000w'),
    Row('rsparser-OneFootTsunami.atom', 25, 'Link: Pillow Fight Leaves 24 Concussed', '2015-09-08T14:21:41+00:00', 'Paul Kafasis', None),
    Row('rsparser-aktuality.rss', 30, 'Analytici Goldman Sachs zvýšili odhad rastu ekonomiky USA', '2021-01-17T18:27:00+00:00', None, 'https://t.aimg.sk/magaziny/vUw5YHzvQKDCkNw6PtXtAg.320.jpg?t=LzE1OHgxMDYvc21hcnQ&h=OcgUSVfIJOH9QPOW-nqQxQ&e=2145916800&v=3'),
    Row('rsparser-allthis.atom', 12, 'Last thoughts on modifier keys', '2017-11-23T21:08:29+00:00', 'Dr. Drang', 'http://leancrew.com/all-this/images2017/20171123-Safari%20File%20menu.png'),
    Row('rsparser-bio.rdf', 30, 'Wheat inositol pyrophosphate kinase (TaVIH2-3B) interacts wi', '2019-08-27T00:00:00+00:00', 'Kaur, M., Shukla, A., Kanwar, S., Shukla, V., Kaur, G., Sharma, S., Kumar, A., Aggarwal, S., Bhati, K. K., Pandey, P., Mazumder, K., Rishi, V., Pandey, A. K.', None),
    Row('rsparser-donthitsave.xml', 10, 'Skipping Around', '2019-05-24T07:00:00+00:00', None, 'https://donthitsave.com/comicimages/dhs_2019-05-24_skipping-around.png'),
    Row('rsparser-expertopinionent.atom', 43, 'Advances and Testing in Vestibular Pathology', '2017-04-07T01:50:50+00:00', 'ENTexpertopinion', None),
    Row('rsparser-kc0011.rss', 20, '建国35周年纪念，华表，和平鸽', '2020-01-10T14:33:00+00:00', '大鱼儿', '{base}/skins/default/filetype/jpg.gif'),
    Row('rsparser-livemint.xml', 25, 'PM Modi-Xi Jinping informal summit in Varanasi this October:', '2019-05-29T10:16:00+00:00', 'Elizabeth Roche', None),
    Row('rsparser-macworld.rss', 30, 'Best smart lock', '2017-11-28T23:40:00+00:00', 'Christopher Null', 'https://images.idgesg.net/images/article/2017/08/best-smart-locks-100730768-medium.jpg'),
    Row('rsparser-manton.rss', 10, 'This week’s Core Intuition is out with a discussion about ne', '2015-09-25T14:26:40+00:00', 'manton', None),
    Row('rsparser-monkeydom.rss', 13, 'TCMPortMapper 2018 Edition', '2018-09-06T13:27:00+00:00', None, '{base}/assets/posts/PortMapAppIcon-512.png'),
    Row('rsparser-natasha.xml', 10, 'The Easiest Way to Get a URL for your Apple Wallet Passkit P', '2017-07-07T11:06:10+00:00', 'Natasha Murashev', 'https://www.natashatherobot.com/wp-content/uploads/Screen-Shot-2017-07-07-at-12.27.33-PM.png'),
    Row('rsparser-phpxml.rss', 20, 'Serdar Gözübüyük scheidsrechter bij FC Twente - FC Utrecht', '2021-09-06T10:17:00+00:00', None, '{base}/pictures/100/scheids.jpg'),
    Row('rsparser-rubenerd.rss', 10, 'The great Commodore/Atari engineer swap', '2023-01-10T21:53:01+00:00', 'Ruben Schade', None),
    Row('rsparser-scriptingNews.rss', 48, 'Good morning students and teachers! 🍏', '2017-06-26T12:20:05+00:00', None, None),
    Row('rsparser-theomnishow.rss', 4, 'Andrea McVittie, User Experience Designer', '2017-12-06T14:00:00+00:00', 'The Omni Group', None),
    Row('rss-parser-craigslist.rss', 25, 'Bright, Spacious Beautiful Victorian (oakland north / temesc', '2017-06-21T17:33:10+00:00', None, None),
    Row('rss-parser-encoding.rss', 40, 'Mãe de utente é a nova presidente da Raríssimas', '2018-01-03T13:47:00+00:00', None, None),
    Row('rss-parser-feedburner.atom', 25, 'AdWords and DFP Java client library will soon require Java 7', '2016-06-03T14:38:00+00:00', 'Google Ads Developer Advisor', None),
    Row('rss-parser-guardian.rss', 55, 'Trump State of the Union address promised unity but emphasiz', '2018-01-31T07:26:05+00:00', 'David Smith in Washington', None),
    Row('rss-parser-heise.atom', 15, 'Java-Anwendungsserver: Red Hat gibt WildFly 10 frei', '2016-02-01T16:22:00+00:00', 'heise online', 'http://www.heise.de/scale/geometry/264/q80/imgs/18/1/7/3/9/9/2/1/wildfly-2bf4ffd2935e38b6-90200def80b152e9-5ba35d3770232d92.jpeg'),
    Row('rss-parser-narro.rss', 1, 'FAQ for Narro', '2015-02-20T09:51:15+00:00', None, None),
    Row('rss-parser-reddit.rss', 24, 'The water is too deep, so he improvises', '2015-11-12T21:16:39+00:00', None, 'https://b.thumbs.redditmedia.com/z4zzFBqZ54WT-rFfKXVor4EraZtJVw7AodDvOZ7kitQ.jpg'),
    Row('rss-parser-rss-1.rss', 69, 'Food for fungi', '2017-06-15T17:29:47+00:00', 'Hines, P. J.', None),
    Row('rss-parser-uolNoticias.rss', 15, 'Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulaçõ', '2018-09-24T22:42:40+00:00', None, 'https://conteudo.imguol.com.br/c/noticias/5f/2018/09/17/presidenciaveis-1537211917356_142x100.jpg'),
]
# fmt: on

_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00$")
_ADDRESS = re.compile(r"\S+@\S+\.\w+")


def test_the_corpus_holds_every_fixture_and_at_least_thirty_feeds():
    files = sorted(p.name for p in FEEDS.iterdir() if p.name != "README")
    assert files == sorted(row.file for row in CORPUS)
    assert len(files) >= 30


def _content_type(name: str) -> str:
    if name.endswith(".atom"):
        return "application/atom+xml"
    if name.endswith(".rdf"):
        return "application/rdf+xml"
    return "application/rss+xml"


@pytest.mark.parametrize("row", CORPUS, ids=lambda row: row.file)
def test_a_real_feed_through_the_whole_intake(row, httpserver_ipv4, store, fetcher, tmp_path):
    path = f"/{row.file}"
    httpserver_ipv4.expect_request(path).respond_with_data(
        (FEEDS / row.file).read_bytes(), content_type=_content_type(row.file)
    )
    url = httpserver_ipv4.url_for(path)
    base = httpserver_ipv4.url_for("").rstrip("/")
    spec = SourceSpec("feed", url, backfill=None)
    result = intake.run_source(spec, store, fetcher, NOW, root=tmp_path)
    articles = store.articles()
    if row.error:
        assert len(result.errors) == 1 and row.error in result.errors[0]
        assert result.errors[0].startswith(url) and articles == []
        return
    assert result.errors == []
    assert result.counts["new"] == row.count == len(articles)
    first = articles_in_feed_order(articles)[0]
    assert first["title"].startswith(row.title)
    assert first["published"] == row.published
    assert first["author"] == row.author
    assert first["image"] == (row.image.replace("{base}", base) if row.image else None)
    assert sum(1 for a in articles if not a["published"]) == row.undated
    unread = [w for w in result.warnings if "cannot be read for certain" in w]
    assert len(unread) == row.unread and all(w.startswith(url) for w in unread)
    for article in articles:
        check_article(article)


def articles_in_feed_order(articles: list[dict]) -> list[dict]:
    # Stored in the feed's order in one transaction: the lowest id is the feed's first item.
    return sorted(articles, key=lambda a: a["id"])


def check_article(article: dict) -> None:
    title = article["title"]
    assert title and "<" not in title, title
    assert article["url"] is None or article["url"].startswith(("http://", "https://"))
    assert article["published"] is None or _ISO_UTC.match(article["published"])
    assert article["author"] is None or not _ADDRESS.search(article["author"]), article["author"]
    for tag, attributes in Elements(article["body_html"]).found:
        assert tag not in ("script", "style", "iframe", "object", "embed", "form"), (title, tag)
        for name, value in attributes.items():
            assert not name.startswith("on"), (title, tag, name)
            if name in ("href", "src", "cite"):
                assert (value or "").startswith(("http://", "https://", "mailto:")), (
                    title,
                    tag,
                    value,
                )
        if tag == "img":
            assert not is_tracking_image(
                attributes.get("src"), attributes.get("width"), attributes.get("height")
            ), (title, attributes)
    if article["image"]:
        assert article["image"].startswith(("http://", "https://"))
        assert not is_tracking_image(article["image"])
