"""Real saved blog pages, read through the page intake and the folder intake alike.

Each page in tests/fixtures/pages/ (sources and licences in tests/fixtures/README)
is served over HTTP by pytest-httpserver and read by the real fetcher as a
``page`` source, and dropped into a folder and read as a ``folder`` source.
Both must give the same article: its title without the site's name, its
own address, a body of about the right length without the page's menus,
sign-up boxes and cookie notices, with absolute links and nothing active,
its date, byline, lead image and the counters the page shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from werkzeug import Response

from clocks import FETCH_NOW as NOW
from newsletter.config import SourceSpec
from newsletter.sources import intake, plain_text

PAGES = Path(__file__).parent / "fixtures" / "pages"


@dataclass(frozen=True)
class Page:
    """What a reader should get from one saved page."""

    file: str
    title: str
    url: str | None  # None: the page names no address of its own
    text: tuple[int, int]  # bounds on the length of the body's text, in characters
    published: str | None  # the start of the stored date
    author: str | None
    image: str | None
    counters: dict[str, int] = field(default_factory=dict)
    says: str = ""  # words from the article's text
    leaves_out: tuple[str, ...] = ()  # menus, sign-up boxes, cookie notices, comments
    # A page listing many links without saying it is one article: at its
    # address it is read as a blog index; saved in a folder it is one article.
    index: bool = False


CORPUS = [
    Page(
        "squarespace-befifty-montauk.html",
        "Das vielleicht schönste Ende der Welt: Montauk",
        "https://www.befifty.de/home/2017/7/12/unter-uns-montauk",
        (4500, 6500),
        "2019-06-17",
        "Beate Finken",
        "http://static1.squarespace.com/static/576a60ce2e69cf8e27a0eebf/576a612ee4fcb565b23e0642/"
        "59664e30d2b857305d40790b/1560981204948/IMG_8880.jpeg?format=1500w",
        {"comments": 6},
        "Ein Strand, ist ein Strand, ist ein Strand",
        ("Jetzt abonnieren", "Datenschutzerklärung", "Alles in 'Travel'"),
    ),
    Page(
        "wordpress-com-buchperlen.html",
        "Leandra Lou – Der etwas andere Modeblog jetzt auch zwischen Buchdeckeln. Leandra Lou "
        "schreibt über all die Themen, die echte Fashion Junkies bewegen von A wie Abnehmen bis "
        "Z wie Zicke über Botox, Collection, Do-it-yourself",
        "https://buchperlen.wordpress.com/2013/10/20/"
        "leandra-lou-der-etwas-andere-modeblog-jetzt-auch-zwischen-buchdeckeln/",
        (3000, 4500),
        "2013-10-20",
        None,
        "https://buchperlen.files.wordpress.com/2013/10/leandra-lou.jpg?w=617",
        {},
        "Lesen Sie Modeblogs?",
        ("Diese Website verwendet Cookies", "Beitrags-Feed (RSS)", "um Buchperlen zu folgen"),
    ),
    Page(
        "wordpress-com-diverse.html",
        "Want to See a More Diverse WordPress Contributor Community? So Do We.",
        "https://en.blog.wordpress.com/2019/06/19/"
        "want-to-see-a-more-diverse-wordpress-contributor-community-so-do-we/",
        (3000, 4500),
        "2019-06-19",
        "Andrea Middleton",
        "https://en-blog.files.wordpress.com/2019/06/wcsf13-audience-photo.jpg?w=1200",
        {"comments": 13},
        "More diverse speakers at WordCamps",
        ("Missing out on the latest WordPress.com developments", "Sign Up Log In"),
    ),
    Page(
        "wordpress-wptavern.html",
        "Stack Overflow Jobs Data Shows ReactJS Skills in High Demand, "
        "WordPress Market Oversaturated with Developers",
        "https://wptavern.com/stack-overflow-jobs-data-shows-reactjs-skills-in-high-demand-"
        "wordpress-market-oversaturated-with-developers",
        (3000, 4500),
        "2017-03-09",
        "Sarah Gooding",
        "https://i0.wp.com/wptavern.com/wp-content/uploads/2016/07/stack-overflow.png"
        "?fit=1200%2C470&ssl=1",
        {},
        "Stack Overflow published its analysis of 2017 hiring trends",
        ("Secondary Menu", "Barry Kooij"),
    ),
    Page(
        "wordpress-firefox-nightly.html",
        "These Weeks in Firefox: Issue 85",
        "https://blog.nightly.mozilla.org/2020/12/18/these-weeks-in-firefox-issue-85/",
        (6500, 9000),
        "2020-12-18",
        "Mike Conley",
        "https://blog.nightly.mozilla.org/files/2019/07/nightly-blog-header.jpg",
        {"comments": 2},
        "Here’s our Firefox Year in Review!",
        ("Save my name, email, and website", "Website Privacy Notice", "Download Firefox Nightly"),
    ),
    Page(
        "blogger-python-insider.html",
        "Python 3.6.0 is now available!",
        "http://blog.python.org/2016/12/python-360-is-now-available.html",
        (700, 1200),
        "2016-12-23",
        "Ned Deily",
        None,
        {},
        "Python 3.6.0 is the newest major release of the Python language",
        ("Python Insider - Atom",),
    ),
    Page(
        "blogger-siliconexposed.html",
        "Open Verilog flow for Silego GreenPak4 programmable logic devices",
        "http://siliconexposed.blogspot.com/2016/05/open-verilog-flow-for-silego-greenpak4.html",
        (12000, 16000),
        "2016-05-08",
        "Andrew Zonenberg",
        "https://1.bp.blogspot.com/-YIPC5jkXkDE/Vy7YPSqFKWI/AAAAAAAAAxI/"
        "a7D6Ji2GxoUvcrwUkI4RLZcr2LFQEJCTACLcB/w1200-h630-p-nu/block-diagram.png",
        {"comments": 0},
        "long overdue for one on Silicon Exposed",
        ("Post a Comment", "View my complete profile", "Copyright (C) 2012-2014"),
    ),
    Page(
        "ghost-publikum-hpv.html",
        "Japan und die HPV-Impfungen",
        "https://publikum.net/japan-und-die-hpv-impfungen/",
        (4800, 6500),
        "2023-07-30",
        "Der Spendenteddy",
        "https://publikum.net/content/images/2023/07/impfstoff-injektion_cc-by-20.jpg",
        {},
        "Die unglaubliche Geschichte eines Verbotes, das es nie gab",
        ("Klicke den Link in unserer E-Mail", "Digitalisierung Kultur"),
    ),
    Page(
        "wix-strive-dating.html",
        "Das Dating-Dilemma erfolgreicher Frauen",
        "https://www.strive-magazine.de/post/das-dating-dilemma-erfolgreicher-frauen",
        (5000, 6500),
        "2022-10-02",
        "Bianca Praetorius",
        "https://static.wixstatic.com/media/fcae51_e1ccf227a61447499248c4971981acf0~mv2.jpg/"
        "v1/fit/w_1000%2Ch_1000%2Cal_c%2Cq_80/file.jpg",
        {},
        "Warum haben es erfolgreiche, selbstbewusste Frauen schwerer",
        ("FOLGE STRIVE AUF INSTAGRAM", "CAREER PLANNER"),
    ),
    Page(
        "medium-samantha.html",
        "Samantha and The Great Big Lie",
        "https://medium.com/@johncwelch/samantha-and-the-great-big-lie-d146a92473a1",
        (22000, 30000),
        "2015-10-15",
        "John C. Welch",
        "https://miro.medium.com/max/1200/1*kbPh7V97eyRodSOw2-ALDw.png",
        {"comments": 13, "likes": 193},
        "How to get shanked doing what people say they want",
        # The byline above the article: the author's picture, "Oct 15, 2015 · 18 min read".
        ("Open in app", "Become a member", "18 min read"),
    ),
    Page(
        "medium-open-journalism.html",
        "The Open Journalism Project: Better Student Journalism",
        "https://medium.com/@pippinlee/the-open-journalism-project-better-student-journalism-"
        "fb39f4f701bb",
        (12000, 17000),
        "2015-03-17",
        "Pippin Lee",
        "https://d262ilb51hltx0.cloudfront.net/max/800/1*oBWUXtszDsiv_-Qq2bFLTQ.png",
        {},
        "We pushed out the first version of the Open Journalism site in January",
        (),
    ),
    Page(
        "tumblr-minecraft.html",
        "Minecraft 1.8 - The Bountiful Update",
        "http://mcupdate.tumblr.com/post/96439224994/minecraft-18-the-bountiful-update",
        (2400, 3400),
        "2014-09-02",
        "mcupdate",
        "http://assets.tumblr.com/images/og/fb_landscape_share.png",
        {},
        "Added Granite, Andesite, and Diorite stone blocks",
        (),
    ),
    # XHTML that opens with an XML declaration, and names no address of its own.
    Page(
        "xhtml-dsv-synchronschwimmen.html",
        "Synchronschwimmen - Aktuelles - Synchronschwimmen",
        None,
        (2000, 3000),
        "2022-02-01",
        None,
        None,
        {},
        "Seesterne sind nicht nur wunderschön anzuschauen",
        (),
        index=True,
    ),
]
ARTICLE_PAGES = [page for page in CORPUS if not page.index]
# Pages with no article in their HTML (it is drawn by scripts): refused, by name.
REFUSED = ["script-only-business-punk.html"]

ACTIVE_TAGS = {"script", "style", "iframe", "form", "input", "button", "object", "embed"}


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def _html(text: str) -> Response:
    return Response(text, content_type="text/html; charset=utf-8")


def _read_as_page(case: str, httpserver, store, fetcher, tmp_path):
    text = (PAGES / case).read_text(encoding="utf-8")
    path = f"/blog/{case.removesuffix('.html')}"
    httpserver.expect_request(path).respond_with_handler(lambda request: _html(text))
    spec = SourceSpec("page", httpserver.url_for(path), backfill=1)
    return intake.run_source(spec, store, fetcher, NOW, root=tmp_path), spec.location


def _read_from_folder(case: str, store, fetcher, tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / case).write_text((PAGES / case).read_text(encoding="utf-8"), encoding="utf-8")
    spec = SourceSpec("folder", "articles", backfill=None)
    return intake.run_source(spec, store, fetcher, NOW, root=tmp_path)


def _check(expected: Page, article: dict, likes: int | None, address: str | None) -> None:
    assert article["title"] == expected.title
    assert article["url"] == address
    body = article["body_html"]
    text = plain_text(body)
    low, high = expected.text
    assert low <= len(text) <= high, len(text)
    assert expected.says in text
    for outside in expected.leaves_out:
        assert outside not in text, outside
    assert (article["published"] or "").startswith(expected.published or "") and (
        bool(article["published"]) == bool(expected.published)
    )
    assert article["author"] == expected.author
    assert article["image"] == expected.image
    counters = {"views": article["views"], "comments": article["comments"], "likes": likes}
    assert {k: v for k, v in counters.items() if v is not None} == expected.counters
    elements = Elements()
    elements.feed(body)
    assert not ACTIVE_TAGS & {tag for tag, _ in elements.found}
    for tag, attrs in elements.found:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src"):
                # Every link and image works from inside an email.
                assert re.match(r"(https?|mailto):", value or ""), (tag, name, value)


def _stored(store) -> tuple[dict, int | None]:
    [article] = store.articles()
    stats = store.article_stats(article["id"])
    return article, stats[-1]["likes"] if stats else None


@pytest.mark.parametrize("expected", ARTICLE_PAGES, ids=lambda page: page.file)
def test_a_saved_page_read_from_its_address(expected, httpserver_ipv4, store, fetcher, tmp_path):
    result, location = _read_as_page(expected.file, httpserver_ipv4, store, fetcher, tmp_path)
    assert result.errors == [] and result.counts["new"] == 1
    article, likes = _stored(store)
    # A page that names no address of its own is known by the one it was read from.
    _check(expected, article, likes, expected.url or location)


@pytest.mark.parametrize("expected", CORPUS, ids=lambda page: page.file)
def test_a_saved_page_read_from_a_folder(expected, store, fetcher, tmp_path):
    result = _read_from_folder(expected.file, store, fetcher, tmp_path)
    assert result.errors == [] and result.counts["new"] == 1
    article, likes = _stored(store)
    _check(expected, article, likes, expected.url)


@pytest.mark.parametrize("expected", [p for p in CORPUS if p.index], ids=lambda page: page.file)
def test_a_page_of_many_links_is_read_as_an_index(
    expected, httpserver_ipv4, store, fetcher, tmp_path
):
    result, _ = _read_as_page(expected.file, httpserver_ipv4, store, fetcher, tmp_path)
    # Its links are followed as articles (here they lead nowhere), the page is not one.
    assert result.errors == [] and store.articles() == []
    assert result.warnings and all(
        "the next poll tries it again" in w or "more linked" in w for w in result.warnings
    )


@pytest.mark.parametrize("case", REFUSED)
def test_a_page_without_article_text_is_refused_by_name(
    case, httpserver_ipv4, store, fetcher, tmp_path
):
    result, location = _read_as_page(case, httpserver_ipv4, store, fetcher, tmp_path)
    assert result.errors == [f"{location}: no article text found on the page"]
    assert store.articles() == []


@pytest.mark.parametrize("case", REFUSED)
def test_a_saved_page_without_article_text_is_that_file_s_error(case, store, fetcher, tmp_path):
    result = _read_from_folder(case, store, fetcher, tmp_path)
    assert result.errors == [f"articles/{case}: no article text found on the page"]
    assert store.articles() == []


def test_every_fixture_page_is_in_the_table():
    listed = {page.file for page in CORPUS} | set(REFUSED)
    assert {path.name for path in PAGES.glob("*.html")} == listed


def test_the_byline_above_an_article_is_not_its_text(httpserver_ipv4, store, fetcher, tmp_path):
    _read_as_page("medium-samantha.html", httpserver_ipv4, store, fetcher, tmp_path)
    [article] = store.articles()
    # Medium starts the article with the author's picture and the reading time.
    assert article["body_html"].startswith(
        "<p>How to get shanked doing what people say they want</p>"
    )
    assert 'alt="John C. Welch"' not in article["body_html"]
