"""Article sources. Each intake path is three steps: fetch, parse (pure), save.

Parsers return plain article dicts with at least ``key``, ``title`` and
``content_hash``; ``Store.save_articles`` decides what is new or changed.

The rules every source shares live here, pure: sanitizing HTML, the
identity of an article (``assign_keys``), which articles of a first fetch
count as new (``archived_keys``), and reading view and comment counters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3

from newsletter.sources.images import drop_tracking_images

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
SUMMARY_CHARS = 280
URL_SCHEMES = {"http", "https", "mailto"}
# Attributes whose value is a URL a mail client may follow or load. nh3 checks
# the scheme of href and src only; cite (blockquote, q, del, ins) it lets
# through as it is. The others are refused by nh3 today and listed so that a
# wider allow-list later cannot let them in unchecked.
URL_ATTRIBUTES = frozenset(
    {"href", "src", "cite", "longdesc", "action", "formaction", "poster", "background"}
)
# What browsers ignore around and inside a URL (WHATWG URL: C0 controls and
# space at the ends, tab and newline anywhere), so " java\tscript:" is javascript:.
_URL_TRIM = "".join(chr(c) for c in range(0x21))
_URL_INSIDE = re.compile(r"[\t\n\r]")
HASH_PREFIX = "sha256:"
# Query parameters that only say where a click came from; two URLs that differ
# only in these are the same article.
_TRACKING_PARAMS = re.compile(r"^(utm_[a-z]+|fbclid|gclid|mc_cid|mc_eid)$", re.I)


def sanitize_html(fragment: str, base_url: str | None = None) -> str:
    """Strip scripts, styles, event handlers, tracking pixels and any URL scheme but http(s)/mailto.

    Every URL-bearing attribute (``URL_ATTRIBUTES``) is checked here, not only
    the ones nh3 checks itself. With ``base_url``, relative URLs are made
    absolute, so links and images still work inside an email.
    """

    def checked(tag: str, attribute: str, value: str) -> str | None:
        if attribute not in URL_ATTRIBUTES:
            return value
        url = _URL_INSIDE.sub("", value.strip(_URL_TRIM))
        if base_url is not None:
            url = urljoin(base_url, url)
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            return None
        # urljoin keeps a foreign scheme as it is; check after joining. A
        # relative URL (no scheme) stays only when there is no base for it.
        allowed = scheme in URL_SCHEMES or (not scheme and base_url is None)
        return url if allowed else None

    cleaned = nh3.clean(
        fragment, url_schemes=URL_SCHEMES, link_rel="noopener", attribute_filter=checked
    )
    # After nh3, whose output spells every tag one way: tracking pixels go.
    return drop_tracking_images(cleaned)


def iso_utc(when: dt.datetime) -> str:
    """A moment as UTC ISO 8601 to the second: the one spelling stored and compared."""
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def plain_text(fragment: str) -> str:
    """Collapse an HTML fragment to one line of readable text."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", fragment))).strip()


def summarize(text: str, limit: int = SUMMARY_CHARS) -> str:
    """Cut text at a word boundary near ``limit`` characters."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",.;:")
    return cut + "…"


def content_hash(article: dict[str, Any]) -> str:
    """A hash over what readers see, so an edit is noticed and a re-save is not."""
    parts = {k: article.get(k) for k in ("title", "summary", "body_html", "image", "url")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """An absolute http(s) URL in one spelling, or None if there is none.

    Lower-case scheme and host, no default port, no fragment, no click-tracking
    parameters: the same article reached by two spellings gets one identity.
    """
    if not url or not url.strip():
        return None
    try:
        # urljoin and urlsplit both refuse some strings (an unclosed "[" host).
        joined = urljoin(base, url.strip()) if base else url.strip()
        parts = urlsplit(joined)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not _TRACKING_PARAMS.match(k)
        ]
    )
    return urlunsplit((scheme, host, parts.path or "/", query, ""))


def hash_key(article: dict[str, Any]) -> str:
    """The identity of an item with neither guid nor link: a hash of its title and text."""
    text = f"{article.get('title') or ''}\n{plain_text(article.get('body_html') or '')}"
    return HASH_PREFIX + hashlib.sha256(text.encode()).hexdigest()


def assign_keys(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Give each item its identity and drop repeats; return the items and what was dropped.

    The rule: the source's guid, else the canonical URL, else a hash of title
    and text. A guid shared by items with different links is not trusted (some
    feeds give every item the blog's address as its guid), so those items fall
    back to their URL. Items that still share a key are one article said twice;
    the first (newest, in feed order) is kept.
    """
    links_by_guid: dict[str, set[str | None]] = {}
    for item in items:
        if item.get("guid"):
            links_by_guid.setdefault(item["guid"], set()).add(item.get("url"))
    keyed = []
    for item in items:
        guid = item.get("guid")
        trusted = guid and len(links_by_guid[guid]) == 1
        # url_key: the link with its #fragment, where the source keeps one.
        fallback = item.get("url_key") or item.get("url") or hash_key(item)
        item = dict(item, key=guid if trusted else fallback)
        keyed.append(item)
    counts = Counter(item["key"] for item in keyed)
    seen: set[str] = set()
    kept, problems = [], []
    for item in keyed:
        if item["key"] in seen:
            continue
        seen.add(item["key"])
        if counts[item["key"]] > 1:
            problems.append(
                f"{counts[item['key']]} items share the identity {item['key']!r}; "
                f"kept the first ({item['title']!r})"
            )
        kept.append(item)
    return kept, problems


def _published_sort_key(article: dict[str, Any]) -> str:
    return article.get("published") or ""


def published_after(article: dict[str, Any], when: dt.datetime) -> bool:
    """True if the article gives a publication date and it is after ``when``."""
    return bool(article.get("published") and article["published"] > iso_utc(when))


def listed_after_known(items: Sequence[dict[str, Any]], known: Iterable[str]) -> set[str]:
    """Keys of undated items that a feed lists below an article already stored.

    Feeds list newest first, so a new post appears above everything known.
    An unseen item further down is an old one that came back into the feed's
    window because something above it was deleted; without a date, its place
    in the list is the only sign of its age. (A feed that lists oldest first
    would have its new undated posts held back by this; such feeds are rare.)
    """
    known = set(known)
    found: set[str] = set()
    below_known = False
    for item in items:
        if item["key"] in known:
            below_known = True
        elif below_known and not item.get("published"):
            found.add(item["key"])
    return found


def archived_keys(
    unseen: Sequence[dict[str, Any]],
    *,
    first_fetch: bool,
    added_at: dt.datetime,
    backfill: int | None,
    hold_older: bool,
) -> set[str]:
    """Which articles seen for the first time are recorded without being announced.

    On a source's first fetch, an article counts as new if it was published
    after the source was added, or if it is among the newest ``backfill``
    others (``None``: all of them). On later fetches, a source with
    ``hold_older`` (feeds and pages) keeps an unseen article published before
    the source was added out of the newsletter too: a deleted item can bring
    an old one back into the feed's window, and that must not look new.
    """
    older = [a for a in unseen if not published_after(a, added_at)]
    if first_fetch:
        if backfill is None:
            return set()
        # Newest first by published date; undated items keep their feed order, last.
        ranked = sorted(older, key=_published_sort_key, reverse=True)
        return {a["key"] for a in ranked[backfill:]}
    if hold_older:
        return {a["key"] for a in older if a.get("published")}
    return set()


# -- view, comment and like counters ---------------------------------------------

_COUNT = r"(\d[\d,.]*\s*[KkMm]?)"
_COUNTER_LINE = re.compile(
    rf"^{_COUNT}\s*(views?)\s*(?:{_COUNT}\s*(comments?))?\s*(?:{_COUNT}\s*(likes?))?$", re.I
)
_SINGLE_COUNTER = re.compile(rf"^{_COUNT}\s*(views?|comments?|likes?)$", re.I)


def parse_count(text: str) -> int | None:
    """``"9"`` → 9, ``"1,024"`` → 1024, ``"1.2K"`` → 1200; None if it is not a count."""
    text = text.strip().replace(" ", "")
    scale = 1
    if text[-1:].lower() in ("k", "m"):
        scale = 1000 if text[-1].lower() == "k" else 1_000_000
        text = text[:-1]
        try:
            return int(float(text.replace(",", "")) * scale)
        except ValueError:
            return None
    digits = text.replace(",", "").replace(".", "")
    return int(digits) if digits.isdigit() else None


def counters_from_lines(lines: Iterable[str]) -> dict[str, int]:
    """Read blog counters from lines of page text: ``9 views0 comments``, ``12 views``, ``3 likes``.

    Only lines that are nothing but a counter count, so a sentence that
    mentions "200 views of the river" is not mistaken for one.
    """
    found: dict[str, int] = {}
    for line in lines:
        line = line.strip()
        if not line or len(line) > 60:
            continue
        match = _COUNTER_LINE.match(line)
        if match:
            pairs = [(match.group(i), match.group(i + 1)) for i in (1, 3, 5)]
        else:
            single = _SINGLE_COUNTER.match(line)
            if not single:
                continue
            pairs = [(single.group(1), single.group(2))]
        for number, word in pairs:
            if number is None:
                continue
            name = {"v": "views", "c": "comments", "l": "likes"}[word[0].lower()]
            value = parse_count(number)
            if value is not None and name not in found:
                found[name] = value
    return found


# What an answer is when it is neither HTML nor XML, by its first bytes.
_NOT_TEXT = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


def content_kind(body: bytes, content_type: str = "") -> str | None:
    """Name an answer that cannot be a page or a feed ("a PNG image", "JSON"), else None.

    The bytes decide first (servers mislabel), then the Content-Type.
    """
    for magic, what in _NOT_TEXT:
        if body.startswith(magic):
            return what
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "a WebP image"
    kind = content_type.split(";", 1)[0].strip().lower()
    start = body.lstrip()[:1]
    if "json" in kind or start in (b"{", b"["):
        try:
            json.loads(body)
        except ValueError:
            if "json" in kind:
                return "JSON (not valid)"
        else:
            return "JSON"
    for prefix, what in (("image/", "an image"), ("audio/", "audio"), ("video/", "a video")):
        if kind.startswith(prefix):
            return f"{what} ({kind})"
    if kind == "application/pdf":
        return "a PDF document"
    return None
