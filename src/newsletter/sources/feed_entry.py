"""One feed entry as feedparser read it → one article dict: text, dates, author, tags, image.

Pure: the entry is already parsed; HTML is sanitised and links made absolute
against the feed's address.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import warnings
from typing import Any
from urllib.parse import urljoin, urlsplit

from dateutil import parser as dateparser
from dateutil import tz

from newsletter.sources import canonical_url, iso_utc, plain_text, sanitize_html, summarize
from newsletter.sources.images import image_attributes, is_decoration, is_tracking_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


def entry_article(
    entry: Any, feed_url: str, problems: list[str] | None = None
) -> dict[str, Any] | None:
    """One feedparser entry as an article dict (without its key), or None if it is empty.

    A date that cannot be read for certain is left out and named in ``problems``.
    """
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
    image, image_alt, image_in_body = _image(entry, body, base)
    # From the feed's own text, not feedparser's reading of it: feedparser
    # reads "2020/1/10 14:33:00" as the 1st of December and "3:00 PM CDT" as
    # 3 AM today. dict.get: feedparser's own get() maps a missing "updated" to
    # "published" with a DeprecationWarning; the two dates are wanted apart here.
    unread: list[str] = []
    updated = _when(dict.get(entry, "updated"), unread)
    published = _when(entry.get("published"), unread) or updated
    if problems is not None:
        problems.extend(
            f"item {title!r} has the date {value!r}, which cannot be read for certain; "
            f"stored without it" + (", dated by its other date" if published else "")
            for value in unread
        )
    guid = (entry.get("id") or "").strip() or None
    return {
        "guid": guid,
        "url": link,
        # The identity of an item without a guid keeps its link's #fragment:
        # comment feeds and one-page changelogs link every item to one page.
        "url_key": _with_fragment(link, entry.get("link"), base),
        "title": title,
        "author": _author(entry),
        "published": published,
        "updated": updated if updated != published else None,
        "summary": summarize(summary or plain_text(body)),
        "body_html": body,
        "image": image,
        "image_alt": image_alt,
        # Taken from the text, not chosen as the item's picture: a full-text
        # page's own og:image is a better lead (see intake._merge).
        "image_in_body": image_in_body,
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
# feedparser's spelling of an Atom author with an <email>: "Name (address)".
_NAME_AND_EMAIL = re.compile(r"^(.+?)\s*\(\s*\S+@\S+\s*\)$")
_EMAIL = re.compile(r"^\S+@\S+\.\S+$")


def _author(entry: Any) -> str | None:
    """The byline: a name, never an address (Blogger gives noreply@blogger.com to every author)."""
    # RSS <author> is "email (Name)"; feedparser's own split of it cuts the
    # wrong characters, so the name is taken from the parentheses here.
    return byline(entry.get("author", "") or "")


def byline(author: str) -> str | None:
    """A name from an author field: ``Name``, ``Name (address)`` or ``address (Name)``."""
    name = plain_text(author)
    match = _EMAIL_AND_NAME.match(name) or _NAME_AND_EMAIL.match(name)
    if match:
        name = match.group(1).strip()
    return None if not name or _EMAIL.match(name) else name


def _with_fragment(link: str | None, raw: str | None, base: str) -> str | None:
    """The canonical link with the item's own ``#fragment``, if it has one."""
    if not link or not raw:
        return link
    try:
        fragment = urlsplit(urljoin(base, raw.strip())).fragment
    except ValueError:
        return link
    return f"{link}#{fragment}" if fragment else link


def _paragraphs(text: str) -> str:
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]
    return "".join(f"<p>{html.escape(b)}</p>" for b in blocks)


def _when(text: str | None, unread: list[str]) -> str | None:
    """A feed's date text as UTC ISO 8601, or None; text that is there but unreadable is noted."""
    if not text or not text.strip():
        return None
    when = parse_date(text)
    try:
        found = iso_utc(when) if when else None
    except (OverflowError, ValueError):
        # Year 9999 a few hours behind UTC is past what a datetime holds.
        found = None
    if found is None:
        unread.append(" ".join(text.split()))
    return found


class _UnknownZone(ValueError):
    pass


# Zone names with one meaning in feeds: RFC 822's own, and the common ones
# that name a single offset. IST, BST and AST are left out (India or Ireland,
# British Summer or Bangladesh, Atlantic or Arabia): such a date is unread.
_ZONES = {
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0,
    "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
    "AKST": -9, "AKDT": -8, "HST": -10, "NST": -3.5, "NDT": -2.5,
    "WET": 0, "WEST": 1, "CET": 1, "CEST": 2, "MEZ": 1, "MESZ": 2, "EET": 2, "EEST": 3,
    "MSK": 3, "JST": 9, "KST": 9, "HKT": 8, "SGT": 8,
    "AWST": 8, "ACST": 9.5, "ACDT": 10.5, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
}  # fmt: skip


def _zone(name: str | None, offset: int | None) -> dt.tzinfo | None:
    if name is None:
        return None if offset is None else tz.tzoffset(None, offset)
    hours = _ZONES.get(name.upper())
    if hours is None or (offset and hours == 0):
        # An unknown name, or "GMT+3", which dateutil reads the POSIX way round.
        raise _UnknownZone(name)
    return tz.tzoffset(name.upper(), int(hours * 3600))


def parse_date(text: str) -> dt.datetime | None:
    """A feed's date as an aware datetime, or None when it cannot be read for certain.

    ISO 8601 and RFC 822 first, then whatever dateutil reads the same way
    whichever of day and month comes first and whatever the missing parts
    would default to: "2020/1/10 14:33:00" and "Jan 10, 2020 3:00 PM CDT"
    are read; "03:00 PM CDT" (no day), "01/02/2020" (which month?) and an
    unknown zone name are not. A date without a zone is UTC.
    """
    text = " ".join(text.split())
    when: dt.datetime | None = None
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        try:
            when = dt.datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
        except ValueError:
            when = None
    if when is None:
        # A weekday before the day ("Seg, 24 Set 2018") says nothing the date
        # does not, and some languages' weekdays spell a month in others.
        text = _LEADING_WEEKDAY.sub("", text)
    if when is None and _ZONE_SIGN.search(text):
        # "GMT+3": dateutil reads it the POSIX way round (three hours behind).
        return None
    if when is None:
        readings = set()
        # After a four-digit year, month comes before day everywhere.
        orders = (False,) if _YEAR_FIRST.match(text) else (False, True)
        for dayfirst in orders:
            # Missing parts come from the default: two different defaults
            # that give two different days mean the text names no day. A
            # missing time is midnight, missing seconds are zero.
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    first, second = (
                        dateparser.parse(
                            text,
                            default=default,
                            dayfirst=dayfirst,
                            yearfirst=not dayfirst,
                            tzinfos=_zone,
                            parserinfo=_NAMES,
                        )
                        for default in (_DEFAULT, _OTHER_DEFAULT)
                    )
            except (ValueError, OverflowError, TypeError, IndexError, Warning):
                # dateutil on text nobody checked: any of these means "not a date".
                return None
            if first.date() != second.date():
                return None
            readings.add(first)
        if len(readings) != 1:
            return None
        when = readings.pop()
    try:
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    except (OverflowError, ValueError):
        return None


class _DateNames(dateparser.parserinfo):
    """English month names, and those of the languages feeds are often written in.

    Portuguese, Spanish, French, German, Italian and Dutch: no name means
    one month in one of them and another month in another.
    """

    MONTHS = [
        (*english, *others)
        for english, others in zip(
            dateparser.parserinfo.MONTHS,
            [
                ("janeiro", "enero", "ene", "janvier", "janv", "januar", "jänner", "gennaio",
                 "gen", "januari"),
                ("fevereiro", "fev", "febrero", "février", "févr", "fevr", "februar",
                 "febbraio", "februari"),
                ("março", "marzo", "mars", "märz", "mär", "mrz", "maart", "mrt"),
                ("abril", "abr", "avril", "avr", "aprile"),
                ("maio", "mai", "mayo", "maggio", "mag", "mei"),
                ("junho", "junio", "juin", "juni", "giugno", "giu"),
                ("julho", "julio", "juillet", "juil", "juli", "luglio", "lug"),
                ("agosto", "ago", "août", "aout", "augustus"),
                ("setembro", "set", "septiembre", "setiembre", "septembre", "settembre"),
                ("outubro", "out", "octubre", "octobre", "oktober", "okt", "ottobre", "ott"),
                ("novembro", "noviembre", "novembre"),
                ("dezembro", "dez", "diciembre", "dic", "décembre", "déc", "dezember",
                 "dicembre"),
            ],
            strict=True,
        )
    ]  # fmt: skip
    # "24 de setembro de 2018", "24 de septiembre de 2018".
    JUMP = [*dateparser.parserinfo.JUMP, "de", "del"]


_NAMES = _DateNames()
_LEADING_WEEKDAY = re.compile(r"^[^\W\d_]{2,12}\.?,\s*(?=\d)")
_ZONE_SIGN = re.compile(r"\b(?:GMT|UTC|UT)\s*[+-]\s*\d", re.I)
_YEAR_FIRST = re.compile(r"^\d{4}[/.-]\d{1,2}[/.-]\d{1,2}\b")
_DEFAULT = dt.datetime(2000, 1, 1)
_OTHER_DEFAULT = dt.datetime(2001, 2, 2, 1, 1, 1)


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


def _image(entry: Any, body: str, base: str) -> tuple[str | None, str | None, bool]:
    """The lead image, its alt text, and whether it was the body's first image.

    Enclosure, then Media RSS, then the first real image in the body: not an
    emoji, an avatar or an icon (see images.is_decoration).

    An enclosure counts when its type or its file name says image: Wix labels
    every enclosure image/png whatever the file is, and some feeds give no type.
    A tracking pixel is never the lead image (the body has none left by now).
    """
    for link in entry.get("enclosures", []) or []:
        href = link.get("href") or link.get("url")
        kind = (link.get("type") or "").lower()
        if href and (kind.startswith("image/") or _looks_like_image(href)):
            if not is_tracking_image(href):
                return canonical_url(href, base), None, False
    for media in entry.get("media_content", []) or []:
        href = media.get("url")
        kind = (media.get("type") or "").lower()
        if href and (media.get("medium") == "image" or kind.startswith("image/")):
            if not is_tracking_image(href, media.get("width"), media.get("height")):
                return canonical_url(href, base), None, False
    for media in entry.get("media_thumbnail", []) or []:
        href = media.get("url")
        if href and not is_tracking_image(href, media.get("width"), media.get("height")):
            return canonical_url(href, base), None, False
    for match in re.finditer(r"<img\b[^>]*>", body):
        found = image_attributes(match.group(0))
        src = canonical_url(found.get("src"), base)
        size = found.get("width"), found.get("height")
        if src and not is_tracking_image(src, *size) and not is_decoration(src, *size):
            return src, found.get("alt") or None, True
    return None, None, False


def _looks_like_image(href: str) -> bool:
    path = href.split("?", 1)[0].lower()
    return path.endswith(IMAGE_SUFFIXES)
