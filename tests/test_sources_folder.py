"""The article folder source: fetch, parse, and save through the store."""

import datetime as dt
import os
from html.parser import HTMLParser

import pytest

from clocks import IMPORT_NOW as NOW
from newsletter.config import SourceSpec
from newsletter.errors import SourceError
from newsletter.sources import (
    content_hash,
    folder,
    intake,
    plain_text,
    sanitize_html,
    summarize,
)

FULL = """\
---
title: "Back on the Trail: Running After a Knee Injury"
date: 2026-10-22
updated: 2026-10-29 14:30:00
author: "Marcus Oyelaran, PT"
tags:
  - running
  - knee-pain
summary: "How to build back gradually."
image: "https://clinic.example.com/images/trail.jpg"
image_alt: "A runner on a riverside path"
url: "https://clinic.example.com/post/trail"
---

Intro paragraph.

## Week one

1. Walk for twenty minutes.
2. Add one minute of easy jogging.
3. Rest the next day.

### Warning signs

Swelling that lasts overnight.
"""


class Elements(HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, attrs))


def test_markdown_with_front_matter():
    article = folder.parse("2026-10-22-trail.md", FULL)

    assert article["title"] == "Back on the Trail: Running After a Knee Injury"
    assert article["published"] == dt.date(2026, 10, 22).isoformat()
    assert article["updated"] == dt.date(2026, 10, 29).isoformat()
    assert article["author"] == "Marcus Oyelaran, PT"
    assert article["tags"] == ["running", "knee-pain"]
    assert article["summary"] == "How to build back gradually."
    assert article["image"] == "https://clinic.example.com/images/trail.jpg"
    assert article["image_alt"] == "A runner on a riverside path"
    assert article["url"] == "https://clinic.example.com/post/trail"
    assert article["content_hash"] == content_hash(article)


def test_markdown_body_becomes_html():
    body = folder.parse("trail.md", FULL)["body_html"]
    assert "<p>Intro paragraph.</p>" in body
    assert "<h2>Week one</h2>" in body
    assert "<h3>Warning signs</h3>" in body
    assert "<ol>" in body and body.count("<li>") == 3
    assert "<li>Walk for twenty minutes.</li>" in body
    # The front matter itself is not part of the body.
    assert "author:" not in body and "---" not in body


def test_dates_may_be_quoted_strings_or_timestamps():
    text = '---\ntitle: T\ndate: "2026-03-04"\nupdated: 2026-03-05T22:10:00Z\n---\nBody\n'
    article = folder.parse("t.md", text)
    assert article["published"] == "2026-03-04"
    assert article["updated"] == "2026-03-05"


def test_tags_may_be_a_comma_separated_string():
    article = folder.parse("t.md", "---\ntitle: T\ntags: running, knee-pain ,\n---\nBody\n")
    assert article["tags"] == ["running", "knee-pain"]


def test_summary_is_taken_from_the_body_when_not_given():
    article = folder.parse("t.md", "---\ntitle: T\n---\nA *short* body &amp; more.\n")
    assert article["summary"] == "A short body & more."


def test_hostile_html_inside_markdown_is_removed():
    text = (
        "---\ntitle: Hostile\n---\n\n"
        "Safe paragraph.\n\n"
        "<script>alert('script')</script>\n\n"
        '<img src="https://clinic.example.com/x.png" onerror="alert(\'img\')">\n\n'
        "<a href=\"javascript:alert('href')\">click me</a>\n\n"
        "[markdown link](javascript:alert('md'))\n\n"
        '<p onclick="steal()" style="background:url(javascript:x)">styled</p>\n\n'
        '<iframe src="https://evil.example.org/"></iframe>\n\n'
        '<a href="https://clinic.example.com/ok">fine link</a>\n'
    )
    body = folder.parse("hostile.md", text)["body_html"]
    elements = Elements()
    elements.feed(body)

    assert not {"script", "iframe", "style"} & {tag for tag, _ in elements.found}
    for tag, attrs in elements.found:
        for attr, value in attrs:
            assert not attr.startswith("on"), (tag, attr)
            assert "javascript:" not in (value or "").lower(), (tag, attr, value)
    assert "alert('script')" not in body
    assert "Safe paragraph." in body
    assert "click me" in body and "styled" in body
    assert ("img", [("src", "https://clinic.example.com/x.png")]) in elements.found
    assert ("a", [("href", "https://clinic.example.com/ok"), ("rel", "noopener")]) in (
        elements.found
    )
    assert "click me" in body and "styled" in body


def test_html_page_is_extracted_and_its_title_loses_the_site_suffix():
    # A whole page (it has <html>/<body>) is read like a page address, not taken whole.
    text = (
        "<html><head><title>Desk &amp; Neck | Riverbend Clinic</title></head><body>"
        "<nav><a href='/'>Home</a> <a href='/blog'>Blog</a></nav>"
        "<article><h1>Desk &amp; Neck</h1>"
        + "<p>Body text about the desk and the neck, long enough to be an article of its own. "
        "A screen at eye height keeps the head over the shoulders for the whole day.</p>"
        * 4
        + "</article>"
        "<div id='cookie-notice'>We use cookies. Accept all cookies?</div></body></html>"
    )
    article = folder.parse("neck.html", text)
    assert article["title"] == "Desk & Neck"
    assert article["body_html"].startswith("<p>Body text about the desk")
    for outside in ("Home", "cookies", "<h1>"):
        assert outside not in article["body_html"]
    assert article["key"] == "neck.html" and article["url"] is None


def test_html_fragment_is_taken_whole():
    # No <html>, no <body>: written by hand for the newsletter, so nothing is cut.
    text = "<h1>Desk &amp; Neck</h1><p>Body text.</p><p>Book a visit.</p>"
    article = folder.parse("neck.html", text)
    assert article["title"] == "Desk & Neck"
    assert article["body_html"] == text
    assert article["key"] == "neck.html"


def test_html_file_title_from_h1_when_there_is_no_title():
    article = folder.parse("p.htm", "<h1>First <em>visit</em></h1><p>What to expect.</p>")
    assert article["title"] == "First visit"
    assert "<p>What to expect.</p>" in article["body_html"]


def test_text_file_title_from_first_line():
    text = "Stretching at Work\nfirst paragraph continues\n\nSecond <paragraph> & more\n"
    article = folder.parse("notes/stretching.txt", text)
    assert article["title"] == "Stretching at Work"
    assert article["body_html"] == "<p>Second &lt;paragraph&gt; &amp; more</p>"
    assert article["key"] == "notes/stretching.txt"


def test_markdown_title_from_leading_heading():
    article = folder.parse("h.md", "# A Heading Title\n\nBody.\n")
    assert article["title"] == "A Heading Title"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("untitled.md", "---\nauthor: Someone\n---\nJust a body.\n"),
        ("no-front-matter.md", "Just a body without a heading.\n"),
        ("blank-title.md", '---\ntitle: "   "\n---\nBody\n'),
        ("page.html", "<html><body><p>No title anywhere</p></body></html>"),
        ("empty.txt", "  \n\n"),
    ],
)
def test_missing_title_names_the_file(name, text):
    with pytest.raises(SourceError) as excinfo:
        folder.parse(name, text)
    assert name in str(excinfo.value)
    assert "title" in str(excinfo.value)


@pytest.mark.parametrize(
    "front_matter",
    [
        "title: [unclosed\ndate: 2026-01-01",
        "title: T\n  bad: indentation: here",
        'title: "unterminated',
    ],
)
def test_invalid_yaml_names_the_file(front_matter):
    with pytest.raises(SourceError) as excinfo:
        folder.parse("broken.md", f"---\n{front_matter}\n---\nBody\n")
    message = str(excinfo.value)
    assert message.startswith("broken.md")
    assert "YAML" in message


def test_front_matter_that_is_not_a_mapping_names_the_file():
    with pytest.raises(SourceError) as excinfo:
        folder.parse("list.md", "---\n- a\n- b\n---\nBody\n")
    assert str(excinfo.value).startswith("list.md")


@pytest.mark.parametrize("bad_date", ["next tuesday", "2026-13-45", "2026-02-30"])
def test_invalid_date_is_a_source_error_naming_the_file(bad_date):
    with pytest.raises(SourceError) as excinfo:
        folder.parse("dated.md", f"---\ntitle: T\ndate: {bad_date}\n---\nBody\n")
    assert "dated.md" in str(excinfo.value)


def test_fetch_missing_folder(tmp_path):
    missing = tmp_path / "articles"
    with pytest.raises(SourceError) as excinfo:
        folder.fetch(missing)
    assert str(missing) in str(excinfo.value)


def test_fetch_reads_article_files_only(tmp_path):
    root = tmp_path / "articles"
    (root / "2026" / "oct").mkdir(parents=True)
    (root / "a.md").write_text("# A\n", encoding="utf-8")
    (root / "2026" / "oct" / "b.HTML").write_text("<h1>B</h1>", encoding="utf-8")
    (root / "c.txt").write_text("C\n", encoding="utf-8")
    (root / ".hidden.md").write_text("# Hidden\n", encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    (root / "notes.md~").write_text("# Backup\n", encoding="utf-8")

    files, problems = folder.fetch(root)

    assert problems == []
    assert [f.name for f in files] == ["2026/oct/b.HTML", "a.md", "c.txt"]
    assert files[1].text == "# A\n"


def test_fetch_gives_each_file_its_modification_time(tmp_path):
    root = tmp_path / "articles"
    root.mkdir()
    saved = dt.datetime(2026, 12, 24, 18, 0, tzinfo=dt.UTC)
    (root / "page.txt").write_text("Title\n\nBody.\n", encoding="utf-8")
    os.utime(root / "page.txt", (saved.timestamp(), saved.timestamp()))
    [file], _ = folder.fetch(root)
    assert file.modified == saved


def test_a_file_that_is_not_utf8_is_reported_and_the_others_are_read(tmp_path):
    root = tmp_path / "articles"
    root.mkdir()
    (root / "a-good.md").write_text("# Good\n", encoding="utf-8")
    (root / "latin.md").write_bytes("# Café\n".encode("latin-1"))
    (root / "z-good.txt").write_text("Also Good\n", encoding="utf-8")

    files, problems = folder.fetch(root)

    assert [f.name for f in files] == ["a-good.md", "z-good.txt"]
    assert problems == [
        "latin.md: cannot read article: not UTF-8 text (byte 0xe9 at offset 5); "
        "save the file as UTF-8"
    ]


def test_an_unreadable_file_does_not_stop_the_folder_source(tmp_path, store, fetcher):
    root = tmp_path / "articles"
    root.mkdir()
    (root / "good.md").write_text("---\ntitle: Good\n---\nBody\n", encoding="utf-8")
    (root / "latin.md").write_bytes("# Café\n".encode("latin-1"))
    result = intake.run_source(
        SourceSpec("folder", "articles", backfill=None), store, fetcher, NOW, root=tmp_path
    )
    assert result.counts["new"] == 1
    assert [a["title"] for a in store.articles()] == ["Good"]
    [error] = result.errors
    assert error.startswith("articles/latin.md: cannot read article: not UTF-8 text")


def test_file_saved_with_a_byte_order_mark_keeps_its_front_matter(tmp_path):
    root = tmp_path / "articles"
    root.mkdir()
    (root / "bom.md").write_bytes(FULL.encode("utf-8-sig"))

    [file], _ = folder.fetch(root)
    article = folder.parse(file.name, file.text)

    assert article["title"] == "Back on the Trail: Running After a Knee Injury"
    assert article["url"] == "https://clinic.example.com/post/trail"


def test_key_prefers_guid_then_url_then_file_name():
    guid = "---\ntitle: T\nguid: tag:clinic,2026:1\nurl: https://clinic.example.com/p\n---\nB\n"
    url_only = "---\ntitle: T\nurl: https://clinic.example.com/p\n---\nB\n"
    neither = "---\ntitle: T\n---\nB\n"
    assert folder.parse("posts/a.md", guid)["key"] == "tag:clinic,2026:1"
    assert folder.parse("posts/a.md", url_only)["key"] == "https://clinic.example.com/p"
    assert folder.parse("posts/a.md", neither)["key"] == "posts/a.md"


def test_front_matter_url_must_be_http(tmp_path):
    for bad in ("javascript:alert(1)", "data:text/html,x", "clinic.example.com/p", "/post/x"):
        with pytest.raises(SourceError) as excinfo:
            folder.parse("posts/a.md", f"---\ntitle: T\nurl: '{bad}'\n---\nBody\n")
        assert str(excinfo.value).startswith(f"posts/a.md: url {bad!r} is not an http(s) address")


def test_front_matter_url_is_the_base_of_the_body_and_the_image():
    text = (
        "---\ntitle: T\nurl: HTTPS://Clinic.Example.com/post/trail?utm_source=x#top\n"
        "image: images/trail.jpg\n---\n"
        "[About us](../about) and ![a path](/media/path.png)\n\n"
        "<blockquote cite='study.html'>quoted</blockquote>\n"
    )
    article = folder.parse("trail.md", text)
    assert article["url"] == article["key"] == "https://clinic.example.com/post/trail"
    assert article["image"] == "https://clinic.example.com/post/images/trail.jpg"
    body = article["body_html"]
    assert 'href="https://clinic.example.com/about"' in body
    assert 'src="https://clinic.example.com/media/path.png"' in body
    assert 'cite="https://clinic.example.com/post/study.html"' in body


def test_front_matter_image_must_be_http_or_relative_to_the_url():
    with pytest.raises(SourceError, match=r"^t.md: image 'javascript:alert\(1\)' is not"):
        folder.parse("t.md", "---\ntitle: T\nimage: 'javascript:alert(1)'\n---\nB\n")
    with pytest.raises(SourceError, match="a relative image needs the article's `url:`"):
        folder.parse("t.md", "---\ntitle: T\nimage: images/a.png\n---\nB\n")
    article = folder.parse("t.md", "---\ntitle: T\nimage: https://cdn.example/a.png\n---\nB\n")
    assert article["image"] == "https://cdn.example/a.png"


def test_a_bad_url_in_one_file_is_that_file_s_error(tmp_path, store, fetcher):
    root = tmp_path / "articles"
    root.mkdir()
    (root / "good.md").write_text("---\ntitle: Good\n---\nBody\n", encoding="utf-8")
    (root / "bad.md").write_text(
        "---\ntitle: Bad\nurl: javascript:alert(1)\n---\nBody\n", encoding="utf-8"
    )
    result = intake.run_source(
        SourceSpec("folder", "articles", backfill=None), store, fetcher, NOW, root=tmp_path
    )
    assert [a["title"] for a in store.articles()] == ["Good"]
    assert result.errors == [
        "articles/bad.md: url 'javascript:alert(1)' is not an http(s) address; "
        "fix it or remove the line"
    ]


def test_tags_given_as_one_value_are_one_tag():
    assert folder.parse("t.md", "---\ntitle: T\ntags: 2026\n---\nB\n")["tags"] == ["2026"]


def test_content_hash_follows_what_readers_see():
    original = folder.parse("trail.md", FULL)
    same = folder.parse("trail.md", FULL)
    edited_body = folder.parse("trail.md", FULL.replace("Intro paragraph.", "New intro."))
    edited_title = folder.parse("trail.md", FULL.replace("Back on the Trail", "On the Trail"))

    assert same["content_hash"] == original["content_hash"]
    assert edited_body["content_hash"] != original["content_hash"]
    assert edited_title["content_hash"] != original["content_hash"]
    assert edited_body["content_hash"] != edited_title["content_hash"]


def test_save_new_then_unchanged_then_updated(tmp_path, store):
    root = tmp_path / "articles"
    root.mkdir()
    path = root / "trail.md"
    path.write_text(FULL, encoding="utf-8")
    source_id = store.source_id("folder", "articles", NOW)

    def save(now):
        files, _ = folder.fetch(root)
        parsed = [folder.parse(f.name, f.text, f.modified) for f in files]
        return store.save_articles(source_id, parsed, now)

    assert save(NOW) == {"new": 1, "updated": 0, "unchanged": 0, "archived": 0}
    [first] = store.articles()

    assert save(NOW + dt.timedelta(minutes=5)) == {
        "new": 0,
        "updated": 0,
        "unchanged": 1,
        "archived": 0,
    }
    assert store.articles() == [first]

    path.write_text(FULL.replace("Intro paragraph.", "A rewritten intro."), encoding="utf-8")
    later = NOW + dt.timedelta(hours=1)
    assert save(later) == {"new": 0, "updated": 1, "unchanged": 0, "archived": 0}

    [edited] = store.articles()
    assert edited["id"] == first["id"]
    assert edited["key"] == first["key"] == "https://clinic.example.com/post/trail"
    assert "A rewritten intro." in edited["body_html"]
    assert "Intro paragraph." not in edited["body_html"]
    assert edited["content_hash"] != first["content_hash"]
    assert edited["first_seen_at"] == first["first_seen_at"]
    assert edited["changed_at"] > first["changed_at"]
    assert edited["tags"] == ["running", "knee-pain"]


def test_source_id_is_stable(store):
    first = store.source_id("folder", "articles", NOW)
    assert store.source_id("folder", "articles", NOW + dt.timedelta(days=1)) == first
    assert store.source_id("folder", "other", NOW) != first


# -- shared helpers in newsletter.sources ---------------------------------------


def test_sanitize_html_keeps_http_and_mailto_links_only():
    cleaned = sanitize_html(
        '<a href="https://a.example/">web</a><a href="mailto:x@a.example">mail</a>'
        '<a href="data:text/html,x">data</a><a href="vbscript:x">vb</a>'
    )
    assert 'href="https://a.example/"' in cleaned
    assert 'href="mailto:x@a.example"' in cleaned
    assert "data:" not in cleaned and "vbscript:" not in cleaned


@pytest.mark.parametrize("attribute", ["cite", "longdesc", "action", "poster", "background"])
def test_sanitize_html_checks_every_url_attribute(attribute):
    hostile = (
        f'<blockquote {attribute}="javascript:alert(1)">a</blockquote>'
        f'<q {attribute}="&#106;avascript:alert(2)">b</q>'
        f'<del {attribute}=" data:text/html,x">c</del>'
        f'<img src="https://a.example/i.png" {attribute}="javascript:alert(3)">'
    )
    for base in (None, "https://clinic.example.com/post/x"):
        cleaned = sanitize_html(hostile, base)
        assert "javascript" not in cleaned.lower() and "data:" not in cleaned, cleaned


def test_sanitize_html_keeps_a_good_cite_and_makes_it_absolute():
    fragment = '<blockquote cite="/sources/study">q</blockquote>'
    assert sanitize_html(fragment) == fragment
    assert sanitize_html(fragment, "https://clinic.example.com/post/x") == (
        '<blockquote cite="https://clinic.example.com/sources/study">q</blockquote>'
    )


def test_plain_text_collapses_tags_and_entities():
    assert plain_text("<p>One &amp;\n <b>two</b></p>\n<p>three</p>") == "One & two three"


def test_summarize_cuts_at_a_word_boundary():
    words = " ".join(f"word{i}" for i in range(200))
    summary = summarize(words, limit=50)
    assert summary.endswith("…")
    cut = summary[:-1]
    assert len(cut) <= 50
    assert words.startswith(cut + " ")
    assert summarize("short text", limit=50) == "short text"


def _saved_page(head: str, top: str = "") -> str:
    paragraphs = "".join(
        f"<p>Sitting for hours {what}; a screen at eye height keeps the head over the "
        f"shoulders. <a href='/book'>Book a visit</a> or <a href='#tips'>see the tips</a>.</p>"
        for what in ("tightens the neck", "rounds the back", "stiffens the hips")
    )
    return (
        f"{top}<!DOCTYPE html><html><head><title>Desk &amp; Neck | Riverbend Clinic</title>"
        f'<meta property="og:site_name" content="Riverbend Clinic">{head}'
        '<meta property="article:published_time" content="2026-10-20T08:00:00Z">'
        '<meta name="author" content="Dana Whitfield"></head><body>'
        "<nav><a href='/'>Home</a> <a href='/blog'>Blog</a></nav>"
        f"<article><h1>Desk &amp; Neck</h1>{paragraphs}<img src='/media/desk.jpg' alt='A desk'>"
        "</article><form><input name='email'> Sign up for our newsletter</form>"
        "<div class='cookie-banner'>We use cookies.</div></body></html>"
    )


@pytest.mark.parametrize(
    ("head", "top"),
    [
        ('<link rel="canonical" href="https://clinic.example.com/post/desk-neck">', ""),
        ('<meta property="og:url" content="https://clinic.example.com/post/desk-neck">', ""),
        # The mark Chrome, Edge and Internet Explorer write at the top of a saved page.
        ("", "<!-- saved from url=(0042)https://clinic.example.com/post/desk-neck -->\n"),
    ],
    ids=["canonical", "og:url", "saved-from"],
)
def test_a_saved_page_is_the_article_at_the_address_it_names(head, top):
    article = folder.parse("desk-neck.html", _saved_page(head, top))
    url = "https://clinic.example.com/post/desk-neck"
    assert article["url"] == article["key"] == url
    assert article["title"] == "Desk & Neck"
    assert article["published"] == "2026-10-20T08:00:00+00:00"
    assert article["author"] == "Dana Whitfield"
    body = article["body_html"]
    assert '<a href="https://clinic.example.com/book" rel="noopener">Book a visit</a>' in body
    assert '<img src="https://clinic.example.com/media/desk.jpg" alt="A desk">' in body
    text = plain_text(body)
    for outside in ("Home", "Sign up", "cookies", "Riverbend Clinic"):
        assert outside not in text


def test_a_saved_page_without_an_address_keeps_no_dead_link():
    article = folder.parse("desk-neck.html", _saved_page(""))
    assert article["url"] is None and article["key"] == "desk-neck.html"
    body = article["body_html"]
    # A relative link or image would lead nowhere from an email: the words stay.
    assert "href=" not in body.replace('href="#tips"', "") and "<img" not in body
    assert "Book a visit" in body and body.count("Sitting for hours") == 3


def test_a_page_saved_in_its_own_charset_is_read_by_it(tmp_path):
    root = tmp_path / "articles"
    root.mkdir()
    saved = _saved_page('<meta charset="windows-1252">').replace("Desk &amp; Neck", "Café Desk")
    (root / "cafe.html").write_bytes(saved.encode("windows-1252"))
    # A text file is still UTF-8 or an error, whatever it says.
    (root / "latin.txt").write_bytes("Café\n".encode("latin-1"))

    files, problems = folder.fetch(root)

    assert [f.name for f in files] == ["cafe.html"]
    assert problems[0].startswith("latin.txt: cannot read article: not UTF-8 text")
    assert folder.parse(files[0].name, files[0].text)["title"] == "Café Desk"


def test_a_page_saved_complete_keeps_no_image_from_its_files_folder():
    # Browsers save "Webpage, complete" with its images in "<title>_files/" beside
    # it; those are on the disk only, so the email must not point at them.
    saved = _saved_page(
        '<link rel="canonical" href="https://clinic.example.com/post/desk-neck">'
    ).replace(
        "<img src='/media/desk.jpg' alt='A desk'>",
        "<img src='./Desk%20%26%20Neck_files/desk.jpg' alt='A desk'>"
        "<p><a href='Desk%20%26%20Neck_files/chart.png'>The chart</a></p>",
    )
    body = folder.parse("desk-neck.html", saved)["body_html"]
    assert "_files" not in body and "<img" not in body
    assert "The chart" in body
    assert '<a href="https://clinic.example.com/book" rel="noopener">Book a visit</a>' in body
