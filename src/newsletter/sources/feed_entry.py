"""One feed entry as feedparser read it → one article dict: text, dates, author, tags, image.

Pure: the entry is already parsed; HTML is sanitised and links made absolute
against the feed's address.
"""

from __future__ import annotations

import calendar
import datetime as dt
import html
import re
import time
from typing import Any

from newsletter.sources import canonical_url, iso_utc, plain_text, sanitize_html, summarize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


def entry_article(entry: Any, feed_url: str) -> dict[str, Any] | None:
    """One feedparser entry as an article dict (without its key), or None if it is empty."""
    link = canonical_url(entry.get("link"), feed_url)
    base = link or feed_url
    body_html, summary_html = _content(entry)
    body = sanitize_html(body_html, base) if body_html else ""
    if body and "<" not in body:
        # An excerpt given as bare text is still a paragraph.
        body = f"<p>{body.strip()}</p>"
    summary = plain_text(summary_html) if summary_html else ""
    if summary and summary == plain_text(body):
        summary = ""
    title = _text(entry, "title")
    if not title:
        text = summary or plain_text(body)
        if not text and not link:
            return None
        title = summarize(text, 80) if text else link or ""
    image, image_alt = _image(entry, body, base)
    # dict.get: feedparser's own get() maps a missing "updated" to "published"
    # with a DeprecationWarning; the two dates are wanted apart here.
    updated = _when(dict.get(entry, "updated_parsed"))
    published = _when(entry.get("published_parsed")) or updated
    guid = (entry.get("id") or "").strip() or None
    return {
        "guid": guid,
        "url": link,
        "title": title,
        "author": _author(entry),
        "published": published,
        "updated": updated if updated != published else None,
        "summary": summarize(summary or plain_text(body)),
        "body_html": body,
        "image": image,
        "image_alt": image_alt,
        "tags": _tags(entry),
        "comments": _comment_count(entry),
    }


def _content(entry: Any) -> tuple[str, str]:
    """(body HTML, summary HTML) of an entry; a feed with only an excerpt gives it as both."""
    summary = entry.get("summary", "") or ""
    summary_type = (entry.get("summary_detail") or {}).get("type", "text/html")
    if summary_type == "text/plain":
        summary = _paragraphs(summary)
    for part in entry.get("content", []) or []:
        value = part.get("value") or ""
        if not value.strip():
            continue
        if part.get("type") == "text/plain":
            value = _paragraphs(value)
        return value, summary
    return summary, summary


def _text(entry: Any, name: str) -> str:
    """A text field as one line; markup is removed only where the feed says it is HTML."""
    value = entry.get(name, "") or ""
    kind = (entry.get(f"{name}_detail") or {}).get("type", "text/plain")
    if kind in ("text/html", "application/xhtml+xml"):
        return plain_text(value)
    return " ".join(value.split())


_EMAIL_AND_NAME = re.compile(r"^\S+@\S+\s*\((.+)\)$")


def _author(entry: Any) -> str | None:
    # RSS <author> is "email (Name)"; feedparser's own split of it cuts the
    # wrong characters, so the name is taken from the parentheses here.
    name = plain_text(entry.get("author", "") or "")
    match = _EMAIL_AND_NAME.match(name)
    return (match.group(1).strip() if match else name) or None


def _paragraphs(text: str) -> str:
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    return "".join(f"<p>{html.escape(b)}</p>" for b in blocks)


def _when(parsed: time.struct_time | None) -> str | None:
    """feedparser's UTC struct_time as ISO 8601 with an explicit offset."""
    if not parsed:
        return None
    try:
        return iso_utc(dt.datetime.fromtimestamp(calendar.timegm(parsed), dt.UTC))
    except (OverflowError, ValueError, OSError):
        return None


def _tags(entry: Any) -> list[str]:
    tags: list[str] = []
    for tag in entry.get("tags", []) or []:
        term = plain_text(tag.get("term") or tag.get("label") or "")
        if term and term not in tags:
            tags.append(term)
    return tags


def _comment_count(entry: Any) -> int | None:
    # WordPress says <slash:comments>, Blogger says <thr:total>.
    for name in ("slash_comments", "thr_total"):
        value = str(entry.get(name, "")).strip()
        if value.isdigit():
            return int(value)
    return None


def _image(entry: Any, body: str, base: str) -> tuple[str | None, str | None]:
    """The lead image: enclosure, then Media RSS, then the first image in the body.

    An enclosure counts when its type or its file name says image: Wix labels
    every enclosure image/png whatever the file is, and some feeds give no type.
    """
    for link in entry.get("enclosures", []) or []:
        href = link.get("href") or link.get("url")
        kind = (link.get("type") or "").lower()
        if href and (kind.startswith("image/") or _looks_like_image(href)):
            return canonical_url(href, base), None
    for media in entry.get("media_content", []) or []:
        href = media.get("url")
        kind = (media.get("type") or "").lower()
        if href and (media.get("medium") == "image" or kind.startswith("image/")):
            return canonical_url(href, base), None
    for media in entry.get("media_thumbnail", []) or []:
        if media.get("url"):
            return canonical_url(media["url"], base), None
    match = re.search(r"<img\b[^>]*>", body)
    if match:
        src = re.search(r'\bsrc="([^"]+)"', match.group(0))
        alt = re.search(r'\balt="([^"]*)"', match.group(0))
        if src:
            return (
                canonical_url(html.unescape(src.group(1)), base),
                html.unescape(alt.group(1)) if alt and alt.group(1) else None,
            )
    return None, None


def _looks_like_image(href: str) -> bool:
    path = href.split("?", 1)[0].lower()
    return path.endswith(IMAGE_SUFFIXES)
