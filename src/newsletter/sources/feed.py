"""RSS 2.0, RSS 1.0 and Atom feeds: parse bytes already fetched into article dicts.

feedparser reads the bytes; it is never given a URL or a path, so it never
fetches anything itself (a ``str`` or ``bytes`` argument that happens to name
a file would be opened as one, so the body goes in as a stream).
"""

from __future__ import annotations

import codecs
import io
import re
import xml.sax
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin
from xml.parsers import expat

import feedparser

from newsletter.errors import SourceError
from newsletter.sources import (
    assign_keys,
    canonical_url,
    content_hash,
    content_kind,
    plain_text,
)
from newsletter.sources.feed_entry import byline, entry_article, parse_date

# Declarations of this form only name a character or a short literal, so they
# can never expand into more than a few bytes; anything else in a DTD (nested
# references, parameter or external entities) is refused before parsing.
_SAFE_ENTITY = re.compile(
    rb"""^<!ENTITY\s+[A-Za-z_][\w.-]*\s+
         ("(?:[^"&%<]{0,16}|&\#x?[0-9A-Fa-f]{1,6};)"|'(?:[^'&%<]{0,16}|&\#x?[0-9A-Fa-f]{1,6};)')
         \s*>$""",
    re.X,
)
# <!ENTITY name SYSTEM "uri"> and <!ENTITY % name PUBLIC "id" "uri">: entities
# whose text lives elsewhere (a file, a URL).
_EXTERNAL_ENTITY = re.compile(
    rb"""<!ENTITY\s+(?:%\s+)?[^\s>]+\s+(SYSTEM|PUBLIC)\s+(?:["'][^"']*["']\s+)?
         ["']?([^"'>]*)""",
    re.X,
)
# In the prolog: a comment, a processing instruction, the DOCTYPE, or the root element.
_PROLOG_MARK = re.compile(rb"<!--|<\?|<!DOCTYPE|<[A-Za-z_]")
# Inside the DOCTYPE: comments, processing instructions, quoted literals, the
# brackets of the internal subset, and the closing ">".
_DOCTYPE_MARK = re.compile(rb"""<!--|<\?|["'\[\]>]""")
_CLOSING = {b"<!--": b"-->", b"<?": b"?>", b'"': b'"', b"'": b"'"}
_FEED_ROOT = re.compile(rb"<(rss|feed|rdf:RDF|RDF)\b", re.I)
# How many items of one feed are read: a feed of fifty thousand items would
# otherwise take feedparser half a minute and hundreds of megabytes, for
# posts no newsletter will announce. [sources] max_items_per_feed.
DEFAULT_MAX_ITEMS = 200
_ITEM_NAMES = frozenset({"item", "entry"})
# RSS 2.0 pubDate, Atom published/updated, RSS 1.0 dc:date (and dcterms).
_DATE_NAMES = frozenset({"pubDate", "published", "updated", "date", "issued", "modified"})


@dataclass
class ParsedFeed:
    title: str
    link: str | None
    articles: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse(
    body: bytes, url: str, content_type: str = "", max_items: int = DEFAULT_MAX_ITEMS
) -> ParsedFeed:
    """Turn a fetched feed body into article dicts, newest first as the feed lists them. Pure.

    ``url`` is where the body came from (after redirects): relative links
    resolve against it and every message names it. Only the newest
    ``max_items`` items are read; a problem line says how many were left out.
    """
    check_entities(body, url)
    body = _without_leading_space(body)
    head = body[:1024].removeprefix(codecs.BOM_UTF8).lstrip()
    utf16 = body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or head[:2] == b"\x00<"
    if not head.startswith(b"<") and not utf16:
        kind = content_kind(body, content_type)
        what = f"the answer is {kind}" if kind else "the answer is not XML"
        raise SourceError(f"{url}: not an RSS or Atom feed ({what})")
    if looks_like_html(body, content_type):
        found = discover_feeds(body.decode("utf-8", "replace"), url)
        hint = f"; the page names its feed: {found[0]}" if found else ""
        raise SourceError(f"{url}: this is an HTML page, not a feed{hint}")
    listed = None
    try:
        spans = None if utf16 else _item_spans(body)
    except expat.ExpatError as exc:
        raise SourceError(
            f"{url}: malformed XML at line {exc.lineno}, column {exc.offset}: "
            f"{expat.ErrorString(exc.code)}; nothing was read from it"
        ) from None
    if spans is not None and len(spans) > max_items:
        # Cut the older items out of the bytes before feedparser sees them: its
        # time and memory grow with every item, the quick scan's do not.
        listed = len(spans)
        keep = _newest([_date_key(date) for _, _, date in spans], max_items)
        body = _without(
            body, [(start, end) for i, (start, end, _) in enumerate(spans) if i not in keep]
        )
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers={
            "content-location": url,
            "content-type": content_type or "application/xml",
        },
        # Every fragment is sanitized with nh3 below; feedparser's own pass
        # would only repeat that work. Its resolving of relative links (xml:base,
        # the feed's address) is kept.
        sanitize_html=False,
    )
    error = parsed.get("bozo_exception")
    if isinstance(error, xml.sax.SAXParseException):
        # feedparser puts an XML declaration on its own line in front of a
        # document that has none; the line numbers count it.
        declared = _prolog(body).lstrip(b"\xef\xbb\xbf").startswith(b"<?xml")
        line = (error.getLineNumber() or 1) - (0 if declared else 1)
        raise SourceError(
            f"{url}: malformed XML at line {line}, column "
            f"{error.getColumnNumber()}: {error.getMessage()}; nothing was read from it"
        )
    if not parsed.get("version") and not parsed.entries:
        reason = f" ({error})" if error else ""
        raise SourceError(f"{url}: not an RSS or Atom feed{reason}")
    channel = parsed.feed
    result = ParsedFeed(
        title=plain_text(channel.get("title", "")),
        link=canonical_url(channel.get("link"), url),
    )
    entries = parsed.entries
    if len(entries) > max_items:
        # The bytes could not be scanned (UTF-16, or XML feedparser mends but
        # expat refuses): the same choice, made on feedparser's entries.
        listed = len(entries)
        keep = _newest([_entry_date_key(entry) for entry in entries], max_items)
        entries = [entry for i, entry in enumerate(entries) if i in keep]
    if listed is not None:
        result.problems.append(
            f"{url}: the feed lists {listed:,} items; only the newest {max_items:,} were read "
            f"([sources] max_items_per_feed)"
        )
    # Atom: the feed's <author> is the author of every entry that names none.
    is_atom = str(parsed.get("version") or "").startswith("atom")
    feed_author = byline(channel.get("author", "") or "") if is_atom else None
    items = []
    for position, entry in enumerate(entries, start=1):
        unread: list[str] = []
        try:
            item = entry_article(entry, url, unread)
        except Exception as exc:  # noqa: BLE001 - one item's failure is that item's alone
            result.problems.append(
                f"{url}: item {position} could not be read ({type(exc).__name__}: {exc}); skipped"
            )
            continue
        result.problems.extend(f"{url}: {problem}" for problem in unread)
        if item is None:
            result.problems.append(f"{url}: item {position} has no title, text or link; skipped")
            continue
        if not item["author"]:
            item["author"] = feed_author
        items.append(item)
    result.articles, duplicates = assign_keys(items)
    result.problems.extend(f"{url}: {p}" for p in duplicates)
    for article in result.articles:
        article["content_hash"] = content_hash(article)
    return result


def _without_leading_space(body: bytes) -> bytes:
    """The body without blank lines before its XML declaration.

    A stray newline ahead of ``<?xml`` (a WordPress theme or plugin file
    ending in one) makes the document malformed to the letter; every feed
    reader reads it anyway.
    """
    bom = codecs.BOM_UTF8 if body.startswith(codecs.BOM_UTF8) else b""
    rest = body[len(bom) :]
    stripped = rest.lstrip(b" \t\r\n")
    if stripped is not rest and len(stripped) != len(rest) and stripped.startswith(b"<?xml"):
        return bom + stripped
    return body


def _item_spans(body: bytes) -> list[tuple[int, int, str]] | None:
    """Byte ranges and date text of the feed's items, or None if expat cannot read the body.

    Raises ExpatError for a document that is plainly malformed (see below).

    One quick pass: no item is built, only where each ``<item>`` or
    ``<entry>`` starts and ends and what its first date element says.
    """
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    spans: list[tuple[int, int, str]] = []
    state: dict[str, Any] = {"depth": 0, "start": 0, "date": None, "text": None}

    def start_element(name: str, attrs: Any) -> None:
        local = name.rpartition(" ")[2]
        if state["depth"]:
            state["depth"] += 1
            if state["depth"] == 2 and state["date"] is None and local in _DATE_NAMES:
                state["text"] = []
        elif local in _ITEM_NAMES:
            state.update(depth=1, start=parser.CurrentByteIndex, date=None, text=None)

    def end_element(name: str) -> None:
        if not state["depth"]:
            return
        if state["depth"] == 2 and state["text"] is not None:
            state["date"], state["text"] = "".join(state["text"]), None
        state["depth"] -= 1
        if not state["depth"]:
            end = body.index(b">", parser.CurrentByteIndex) + 1
            spans.append((state["start"], end, state["date"] or ""))

    def text(data: str) -> None:
        if state["text"] is not None:
            state["text"].append(data)

    parser.StartElementHandler = start_element
    parser.EndElementHandler = end_element
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        if _plainly_malformed(body, exc):
            raise
        return None
    except (LookupError, ValueError):
        return None
    return spans


# Errors feedparser might still get past: it re-decodes a document whose
# declared encoding is wrong, and may define entities for an old DTD.
_FORGIVABLE = {
    expat.errors.codes[message]
    for message in (
        expat.errors.XML_ERROR_UNDEFINED_ENTITY,
        expat.errors.XML_ERROR_UNKNOWN_ENCODING,
        expat.errors.XML_ERROR_INCORRECT_ENCODING,
        expat.errors.XML_ERROR_EXTERNAL_ENTITY_HANDLING,
    )
}


def _plainly_malformed(body: bytes, exc: expat.ExpatError) -> bool:
    """Whether feedparser would refuse the document too, so it need not read it first.

    True for valid UTF-8 without a DOCTYPE failing on its structure: feedparser
    would then parse the same text and fail the same way, after reading all of
    it (half a minute for a large feed) before its loose parser gives up.
    """
    if exc.code in _FORGIVABLE or b"<!DOCTYPE" in _prolog(body):
        return False
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        # A chunk at a time: no second copy of a body of megabytes.
        for start in range(0, len(body), 1 << 20):
            decoder.decode(body[start : start + (1 << 20)])
        decoder.decode(b"", True)
    except UnicodeDecodeError:
        return False
    return True


def _date_key(text: str) -> float | None:
    """Seconds since the epoch of a feed's date, or None if it has none that can be read."""
    when = parse_date(text) if text.strip() else None
    return when.timestamp() if when else None


def _entry_date_key(entry: Any) -> float | None:
    return _date_key(entry.get("published") or dict.get(entry, "updated") or "")


def _newest(keys: Sequence[float | None], count: int) -> set[int]:
    """Positions of the ``count`` newest items.

    By date when every item has one; otherwise the first ones listed, as
    feeds list their newest posts first.
    """
    positions = list(range(len(keys)))
    if all(key is not None for key in keys):
        positions.sort(key=lambda i: (-(keys[i] or 0.0), i))
    return set(positions[:count])


def _without(body: bytes, cuts: list[tuple[int, int]]) -> bytes:
    """The body with the given byte ranges (in order, not overlapping) left out."""
    pieces, position = [], 0
    for start, end in cuts:
        pieces.append(body[position:start])
        position = end
    pieces.append(body[position:])
    return b"".join(pieces)


# -- what is refused before parsing ---------------------------------------------------


def _prolog(body: bytes) -> bytes:
    """The bytes before the root element, as ASCII-compatible bytes.

    All of them, however long: a DTD can follow megabytes of comment, and the
    body is already capped by [sources] max_bytes. Comments, processing
    instructions and the DOCTYPE's quoted literals are stepped over, so a
    ``<tag`` written inside one does not end the prolog early; if the root
    element is never found, the whole body counts.
    """
    head = body
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            head = head[len(bom) :].decode(codec, "ignore").encode("utf-8")
            break
    else:
        if head[:4] == b"<\x00?\x00":
            head = head.decode("utf-16-le", "ignore").encode("utf-8")
        elif head[:4] == b"\x00<\x00?":
            head = head.decode("utf-16-be", "ignore").encode("utf-8")
    position: int | None = 0
    while position is not None and (match := _PROLOG_MARK.search(head, position)):
        mark = match.group()
        if mark == b"<!DOCTYPE":
            position = _doctype_end(head, match.end())
        elif mark in _CLOSING:
            position = _after(head, _CLOSING[mark], match.end())
        else:
            return head[: match.start()]
    return head


def _after(head: bytes, closing: bytes, start: int) -> int | None:
    end = head.find(closing, start)
    return None if end == -1 else end + len(closing)


def _doctype_end(head: bytes, start: int) -> int | None:
    """Where the DOCTYPE that starts before ``start`` ends, or None if it does not."""
    position: int | None = start
    depth = 0
    while position is not None and (match := _DOCTYPE_MARK.search(head, position)):
        mark = match.group()
        if mark in _CLOSING:
            position = _after(head, _CLOSING[mark], match.end())
            continue
        if mark == b">" and depth == 0:
            return match.end()
        depth += {b"[": 1, b"]": -1}.get(mark, 0)
        position = match.end()
    return None


def check_entities(body: bytes, url: str) -> None:
    """Refuse a document whose DTD declares entities that could expand (billion laughs)."""
    prolog = _prolog(body)
    start = prolog.find(b"<!ENTITY")
    while start != -1:
        end = prolog.find(b">", start)
        declaration = prolog[start : end + 1] if end != -1 else prolog[start:]
        external = _EXTERNAL_ENTITY.match(declaration)
        if external:
            # XXE: named as such, so whoever reads the log knows it was an attempt
            # to make the fetcher read a file or reach another server.
            target = external.group(2).decode("utf-8", "replace")[:80]
            raise SourceError(
                f"{url}: the document declares an external XML entity "
                f"({external.group(1).decode()} {target!r}), which would read a local file "
                f"or another server; refused (external entities are never loaded)"
            )
        if end == -1 or not _SAFE_ENTITY.match(declaration):
            raise SourceError(
                f"{url}: the document declares XML entities that could expand without limit; "
                f"refused"
            )
        start = prolog.find(b"<!ENTITY", end)


def looks_like_html(body: bytes, content_type: str = "") -> bool:
    """True for an HTML page (a blog's home page where its feed was expected)."""
    start = body[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    while start.startswith(b"<!--"):
        end = start.find(b"-->")
        if end == -1:
            break
        start = start[end + 3 :].lstrip()
    if start.startswith((b"<!doctype html", b"<html")):
        return True
    return "html" in content_type.lower() and not _FEED_ROOT.search(body[:4096])


class _AlternateLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "link":
            return
        values = {k: (v or "") for k, v in attrs}
        rel = values.get("rel", "").lower().split()
        kind = values.get("type", "").lower()
        if "alternate" in rel and kind in (
            "application/rss+xml",
            "application/atom+xml",
            "application/rdf+xml",
        ):
            if values.get("href"):
                self.found.append(values["href"])


def discover_feeds(page: str, url: str) -> list[str]:
    """Feed addresses an HTML page announces with ``<link rel="alternate">``."""
    parser = _AlternateLinks()
    parser.feed(page[:500_000])
    parser.close()
    return [u for u in (canonical_url(urljoin(url, href)) for href in parser.found) if u]
