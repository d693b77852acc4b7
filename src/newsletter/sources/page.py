"""Blog pages: an article page, or a blog index page that links to article pages.

The article is extracted with trafilatura (title, author, date, body, lead
image); structured data the page carries (JSON-LD, Open Graph) is preferred
where it is more exact, and view, comment and like counters are read where the
page shows them. Everything here is pure: a page is parsed once (``load``)
and the tree is handed to each step, which only reads it.

When trafilatura finds no article in the tree, it is given the page's HTML
text to parse its own way, and then readability (readability-lxml) has a go,
before the page is refused: real pages trip one extractor and not another
(see ``extract``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from html import escape
from typing import Any
from urllib.parse import urlsplit

import lxml.html
from lxml import etree

from newsletter.errors import SourceError
from newsletter.sources import (
    canonical_url,
    content_hash,
    content_kind,
    counters_from_lines,
    extract,
    iso_utc,
    parse_count,
    plain_text,
    sanitize_html,
    summarize,
)

ARTICLE_TYPES = {"article", "blogposting", "newsarticle", "posting", "socialmediaposting"}
# Paths blog platforms give their posts: Wix /post/slug, WordPress /2026/11/slug,
# Ghost and others /blog/slug, Substack /p/slug.
_POST_PATH = re.compile(r"/(post|posts|p|blog|article|articles)/[^/]+/?$|/\d{4}/\d{2}/", re.I)
_COMBINED_COUNTERS = re.compile(
    r"(\d[\d,.]*\s*[KkMm]?)\s*views?\s*(\d[\d,.]*\s*[KkMm]?)\s*comments?\b", re.I
)
_LEADING_HEADING = re.compile(r"\s*<(h[1-3])>(.*?)</\1>", re.I | re.DOTALL)
# What separates a page's title from its site's name: "Title | Site", "Title – Site".
_TITLE_SEPARATORS = (" | ", " – ", " — ", " - ", " :: ", " · ", " « ", " » ")
# Text in these is never shown on the page.
_VISIBLE_TEXT = "//text()[not(ancestor::script or ancestor::style or ancestor::noscript)]"


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# Characters XML cannot hold. One in a page's text makes trafilatura drop the
# whole extraction (its output tree is XML), so they are removed on parsing.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def load(page: str, url: str) -> Any:
    """Parse a page's HTML once; every function below takes the tree this returns.

    Comments and processing instructions are dropped, as trafilatura's own
    parser does, so its extraction from this tree matches one from the text.
    """
    # lxml refuses text that starts with an XML declaration naming an encoding
    # (XHTML pages do); the text is decoded already, so the declaration goes.
    page = _XML_DECLARATION.sub("", _NOT_XML.sub("", page), count=1)
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True, collect_ids=False)
    try:
        return lxml.html.document_fromstring(page, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise SourceError(f"{url}: not an HTML page ({exc})") from None


_CDATA = re.compile(r"^\s*(//\s*)?<!\[CDATA\[|(//\s*)?\]\]>\s*$")


def _structured(tree: Any) -> list[dict[str, Any]]:
    """Every JSON-LD object on the page, @graph entries included."""
    found: list[dict[str, Any]] = []
    for script in tree.xpath('//script[@type="application/ld+json"]'):
        # Some sites (Medium) wrap the JSON in CDATA markers, as if it were XHTML.
        text = _CDATA.sub("", script.text_content() or "")
        try:
            data = json.loads(text)
        except ValueError:
            continue
        stack = data if isinstance(data, list) else [data]
        while stack:
            item = stack.pop(0)
            if isinstance(item, dict):
                found.append(item)
                graph = item.get("@graph")
                if isinstance(graph, list):
                    stack.extend(graph)
    return found


def _types(item: dict[str, Any]) -> set[str]:
    kind = item.get("@type", [])
    kinds = kind if isinstance(kind, list) else [kind]
    return {str(k).lower() for k in kinds}


def _meta(tree: Any, *names: str) -> str | None:
    for name in names:
        values = tree.xpath(f'//meta[@property="{name}" or @name="{name}"]/@content')
        if values and values[0].strip():
            return values[0].strip()
    return None


def is_article_page(tree: Any, url: str) -> bool:
    """True when the page is one article; False for an index that lists several."""
    if any(_types(item) & ARTICLE_TYPES for item in _structured(tree)):
        return True
    if (_meta(tree, "og:type") or "").lower() == "article":
        return True
    return len(article_links(tree, url)) < 2


def article_links(tree: Any, url: str) -> list[str]:
    """Links from a blog index page to its article pages, in page order, each once."""
    page_url = canonical_url(url)
    host = urlsplit(url).hostname
    found: list[str] = []
    for anchor in tree.xpath("//a[@href]"):
        href = canonical_url(anchor.get("href"), url)
        if not href or href == page_url or urlsplit(href).hostname != host:
            continue
        rel = (anchor.get("rel") or "").lower().split()
        in_article = any(a.tag == "article" for a in anchor.iterancestors())
        if "bookmark" in rel or in_article or _POST_PATH.search(urlsplit(href).path):
            # Comment and share links are not articles.
            if "#" in (anchor.get("href") or "") or "/tag/" in href or "/category" in href:
                continue
            if href not in found:
                found.append(href)
    return found


def _date(value: Any) -> str | None:
    """An ISO date or date-time from structured data, as UTC ISO 8601 (or a bare date)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return dt.date.fromisoformat(text[:10]).isoformat()
        except ValueError:
            return None
    if when.tzinfo is None:
        if len(text) <= 10:
            return when.date().isoformat()
        when = when.replace(tzinfo=dt.UTC)
    return iso_utc(when)


def _person(value: Any) -> str | None:
    if isinstance(value, list):
        names = [_person(v) for v in value]
        return ", ".join(n for n in names if n) or None
    if isinstance(value, dict):
        value = value.get("name")
    return plain_text(str(value)) if value else None


def _image_url(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("url") or value.get("contentUrl")
    return value if isinstance(value, str) else None


# How blog platforms word their counters, each as the whole text of one element
# (a heading, a link, a button), so a sentence that mentions comments is not one.
_N = r"(\d[\d,.]*\s*[KkMm]?)"
_CMS_COUNTERS = [
    # Squarespace: "Show 6 comments" (the link that opens the comment thread).
    (re.compile(rf"^show\s+{_N}\s+comments?$", re.I), "comments"),
    # WordPress themes: "2 comments", "2 responses", '2 comments on "Title"',
    # '12 thoughts on "Title"', "3 replies to "Title""; Blogger: "5 comments:";
    # Ghost: "4 comments"; Medium: "12 responses".
    (
        re.compile(
            rf"^{_N}\s+(comments?|responses?|thoughts?|replies|reply)(\s+(on|to)\s+.+)?\s*:?$",
            re.I,
        ),
        "comments",
    ),
    # Blogger and WordPress with none yet: "No comments:", "No responses yet".
    (re.compile(r"^(no)\s+(comments|responses|replies)(\s+yet)?\s*[:.]?$", re.I), "comments"),
    # Medium: "193 claps" (its likes).
    (re.compile(rf"^{_N}\s+claps?$", re.I), "likes"),
]
# Elements short enough to be a counter and holding a digit or "No".
_COUNTER_ELEMENTS = (
    "//body//*[not(self::script or self::style or self::noscript)]"
    "[string-length(normalize-space(.)) <= 200]"
    "[contains(translate(., '0123456789', '##########'), '#') or contains(., 'No') "
    "or contains(., 'no')]"
)


def _cms_counters(tree: Any) -> dict[str, int]:
    """Comment and like counters as Squarespace, WordPress, Blogger, Ghost and Medium word them."""
    found: dict[str, int] = {}
    for element in tree.xpath(_COUNTER_ELEMENTS):
        text = " ".join(element.text_content().split())
        for pattern, name in _CMS_COUNTERS:
            match = pattern.match(text)
            if match and name not in found:
                count = 0 if match.group(1).lower() == "no" else parse_count(match.group(1))
                if count is not None:
                    found[name] = count
    return found


def counters(tree: Any, structured: list[dict[str, Any]] | None = None) -> dict[str, int]:
    """Views, comments and likes the page shows, from structured data or its text."""
    found: dict[str, int] = {}
    for item in structured if structured is not None else _structured(tree):
        if not _types(item) & ARTICLE_TYPES:
            continue
        if isinstance(item.get("commentCount"), int):
            found.setdefault("comments", item["commentCount"])
        stats = item.get("interactionStatistic") or []
        for stat in stats if isinstance(stats, list) else [stats]:
            if not isinstance(stat, dict):
                continue
            action = str(stat.get("interactionType", "")).rsplit("/", 1)[-1].lower()
            name = {
                "commentaction": "comments",
                "viewaction": "views",
                "watchaction": "views",
                "likeaction": "likes",
            }.get(action)
            count = parse_count(str(stat.get("userInteractionCount", "")))
            if name and count is not None:
                found.setdefault(name, count)
    texts = [t.strip() for t in tree.xpath(_VISIBLE_TEXT) if t.strip()]
    for name, value in counters_from_lines(texts).items():
        found.setdefault(name, value)
    for name, value in _cms_counters(tree).items():
        found.setdefault(name, value)
    if "views" not in found:
        match = _COMBINED_COUNTERS.search(" ".join(texts))
        if match:
            views, comments = parse_count(match.group(1)), parse_count(match.group(2))
            if views is not None:
                found["views"] = views
            if comments is not None:
                found.setdefault("comments", comments)
    return found


_LEADING_IMAGE = re.compile(r"\s*<img\b[^>]*>", re.I)
_LEADING_PARAGRAPH = re.compile(r"\s*<p>(.*?)</p>", re.I | re.DOTALL)
# Medium's "Oct 15, 2015 · 18 min read", or a reading time alone.
_READING_TIME = re.compile(r"(^|·)\s*\d+\s*min(ute)?s?\s+read$", re.I)


def _without_byline(body: str, author: str | None) -> str:
    """The body without the byline some pages start their article with.

    The author's picture (an image whose alt text is their name) and a
    "date · N min read" line are the page's furniture, not the article.
    """
    while True:
        image = _LEADING_IMAGE.match(body)
        if image and author and f'alt="{escape(author)}"' in image.group(0):
            body = body[image.end() :]
            continue
        paragraph = _LEADING_PARAGRAPH.match(body)
        if paragraph and _READING_TIME.search(plain_text(paragraph.group(1))):
            body = body[paragraph.end() :]
            continue
        return body


def _without_names(title: str, *names: str | None) -> str:
    """The title without the site's (or author's) name that pages add before or after it.

    "These Weeks in Firefox: Issue 85 – Firefox Nightly News" is the article
    "These Weeks in Firefox: Issue 85"; Medium adds " - Author" as well.
    """
    for name in names:
        name = plain_text(name or "")
        if not name or title == name:
            continue
        for separator in _TITLE_SEPARATORS:
            if title.endswith(separator + name):
                title = title[: -len(separator + name)].strip()
            elif title.startswith(name + separator):
                title = title[len(name + separator) :].strip()
    return title


def page_address(tree: Any, base: str | None = None) -> str | None:
    """The address a page gives for itself: ``<link rel=canonical>``, else ``og:url``.

    A page saved from a browser keeps these, so they are where its relative
    links point and what the article's own URL is. Relative ones are taken
    against ``base``; None when the page names no http(s) address.
    """
    for value in (*tree.xpath('//link[@rel="canonical"]/@href'), _meta(tree, "og:url")):
        url = canonical_url(value, base)
        if url:
            return url
    return None


def drop_relative_links(fragment: str) -> str:
    """Unwrap links and drop images with a relative address: without a base they lead nowhere.

    For the body of a page saved without its address (no canonical link, no
    ``og:url``): in an email a relative link or image is dead.
    """
    if not fragment.strip():
        return fragment
    holder = lxml.html.fragment_fromstring(fragment, create_parent="div")
    for element in list(holder.iter("a", "img")):
        attribute = "href" if element.tag == "a" else "src"
        value = (element.get(attribute) or "").strip()
        if urlsplit(value).scheme or (value.startswith("#") and element.tag == "a"):
            continue
        if element.tag == "a":
            element.drop_tag()
        else:
            element.drop_tree()
    inner = escape(holder.text or "", quote=False)
    return inner + "".join(lxml.html.tostring(child, encoding="unicode") for child in holder)


def parse_article(
    tree: Any, url: str | None, html: str | None = None, where: str | None = None
) -> dict[str, Any]:
    """Extract the article of an article page. Pure; raises SourceError naming the page.

    ``url`` is where the page was read (None for a saved file, whose own
    address is then the one it names); ``html`` its text, when the caller has
    it (else the tree is written out for the fallbacks); ``where`` names the
    page in errors (the URL by default).
    """
    where = where or url or "the page"
    structured = [i for i in _structured(tree) if _types(i) & ARTICLE_TYPES]
    data = structured[0] if structured else {}
    link = page_address(tree, url) if url is None else None
    link = link or canonical_url((tree.xpath('//link[@rel="canonical"]/@href') or [None])[0], url)
    link = link or canonical_url(url)
    found_body = extract.article_body(tree, url or link, html)
    if found_body is None:
        raise SourceError(f"{where}: no article text found on the page")
    document = found_body.metadata
    title = plain_text(str(data.get("headline") or _meta(tree, "og:title") or document.title or ""))
    author = _person(data.get("author")) or document.author or None
    title = _without_names(title, _meta(tree, "og:site_name"), author)
    if not title:
        raise SourceError(f"{where}: the page has no title")
    body = found_body.html
    if found_body.by == "readability" and not plain_text(body).replace(title, "").strip():
        # readability falls back to the page's title when it finds no text.
        raise SourceError(f"{where}: no article text found on the page")
    # The extracted body often starts with the page's own <h1> title.
    lead = _LEADING_HEADING.match(body)
    if lead and plain_text(lead.group(2)).lower() == title.lower():
        body = body[lead.end() :]
    body = _without_byline(body, author)
    # A <base href> is where the page's relative links point; else its own address.
    base = canonical_url((tree.xpath("//base/@href") or [None])[0], url or link) or link
    body = sanitize_html(body, base)
    published = (
        _date(data.get("datePublished"))
        or _date(_meta(tree, "article:published_time"))
        or _date(document.date)
    )
    updated = _date(data.get("dateModified")) or _date(_meta(tree, "article:modified_time"))
    image = canonical_url(
        _image_url(data.get("image")) or _meta(tree, "og:image") or document.image, link
    )
    summary = plain_text(_meta(tree, "og:description", "description") or "")
    tags = [str(t) for t in (document.tags or []) if t] if document.tags else []
    found = counters(tree, structured)
    article = {
        "guid": None,
        "url": link,
        "title": title,
        "author": author,
        "published": published,
        "updated": updated if updated != published else None,
        "summary": summarize(summary or plain_text(body)),
        "body_html": body,
        "image": image,
        "image_alt": None,
        "tags": tags,
        "views": found.get("views"),
        "comments": found.get("comments"),
        "likes": found.get("likes"),
    }
    article["key"] = link
    article["content_hash"] = content_hash(article)
    return article


_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([\w.:-]+)""", re.I)


def declared_charset(body: bytes) -> str | None:
    """The charset a page's own ``<meta>`` names in its first 4 KiB, or None."""
    meta = _META_CHARSET.search(body[:4096])
    return meta.group(1).decode("ascii", "ignore") if meta else None


def decode(body: bytes, content_type: str = "", url: str = "") -> str:
    """HTML bytes as text: the charset the server names, else the page's own, else UTF-8.

    An answer that is plainly not a page (an image, JSON, a PDF) is refused
    as what it is, with ``url``, rather than parsed into "the page has no title".
    """
    kind = content_kind(body, content_type)
    if kind is not None:
        raise SourceError(
            f"{url or 'the page'}: the answer is {kind}, not an HTML page; "
            f"give the address of the article or blog page itself"
        )
    names = []
    match = re.search(r"charset=([\w.:-]+)", content_type, re.I)
    if match:
        names.append(match.group(1))
    declared = declared_charset(body)
    if declared:
        names.append(declared)
    for name in [*names, "utf-8"]:
        try:
            return body.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("utf-8", "replace")
