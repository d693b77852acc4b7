"""Which images are tracking pixels, and taking them out of sanitised HTML. Pure.

Blog platforms put an invisible image in each feed item (Medium's
``medium.com/_/stat?event=post.clientViewed``, WordPress.com's
``pixel.wp.com/b.gif``, FeedBurner's ``~r/…/~4/`` image): in an email it
pings the platform for every reader, and taken as the lead image it is a
blank box. Such an image is one pixel wide or high, lives on a known
tracking host or path, or has a counting query (an "event" that is a view).
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urlsplit

# Host (and path prefix) of images that only count readers.
_TRACKING_PLACES = (
    ("medium.com", "/_/stat"),
    ("pixel.wp.com", "/"),
    ("stats.wordpress.com", "/"),
    ("feeds.wordpress.com", "/1.0/"),  # WordPress.com's "comments" buttons, counted per view
    ("feeds.feedburner.com", "/~r/"),
    ("feeds.feedburner.com", "/~ff/"),
    ("feeds.feedburner.com", "/~f/"),  # FeedFlare buttons
    ("feedproxy.google.com", "/~r/"),
    ("feeds.feedblitz.com", "/~/i/"),
    ("blogger.googleusercontent.com", "/tracker/"),
    ("www.blogger.com", "/img/blank.gif"),
    ("www.google-analytics.com", "/"),
    ("ssl.google-analytics.com", "/"),
    ("pixel.quantserve.com", "/"),
    ("sb.scorecardresearch.com", "/"),
    ("b.scorecardresearch.com", "/"),
    ("pi.feedsportal.com", "/"),
    ("da.feedsportal.com", "/"),
    ("rss.feedsportal.com", "/c/"),
    ("feeds.lfstmedia.com", "/"),
    ("eotrx.substackcdn.com", "/"),
)
# Hosts whose every subdomain only counts (``mailchimp`` opens, ad servers).
_TRACKING_DOMAINS = ("list-manage.com", "doubleclick.net", "pixel.wp.com", "feedsportal.com")
# File names of counting beacons whatever the host.
_BEACON_NAMES = frozenset(
    {"__utm.gif", "b.gif", "pixel.gif", "beacon.gif", "spacer.gif", "1x1.gif"}
)
# A query that reports a view: Medium's event=post.clientViewed&referrerSource=full_rss.
_VIEW_EVENT = re.compile(r"view|open|impression", re.I)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ATTRIBUTE = re.compile(r'([a-zA-Z-]+)="([^"]*)"')
# A link left around nothing but a removed pixel (FeedBurner's and WordPress's buttons).
_EMPTY_LINK = re.compile(r"<a\b[^>]*>\s*</a>", re.I)


def _tiny(value: str | None) -> bool:
    """A width or height of at most one pixel ("1", "0", "1px")."""
    if value is None:
        return False
    number = value.strip().lower().removesuffix("px").strip()
    # ASCII digits only: "²".isdigit() is true, but int() refuses it.
    return number.isascii() and number.isdigit() and int(number) <= 1


def is_tracking_image(src: str | None, width: str | None = None, height: str | None = None) -> bool:
    """True for an image that only counts readers (see the module's docstring)."""
    if _tiny(width) or _tiny(height):
        return True
    if not src:
        return False
    try:
        parts = urlsplit(src.strip())
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    path = parts.path or "/"
    for place, prefix in _TRACKING_PLACES:
        if host == place and path.startswith(prefix):
            return True
    if any(host == d or host.endswith("." + d) for d in _TRACKING_DOMAINS):
        return True
    if path.rsplit("/", 1)[-1].lower() in _BEACON_NAMES:
        return True
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    event = query.get("event") or query.get("ev") or ""
    return bool(_VIEW_EVENT.search(event)) or "referrerSource" in query


def image_attributes(tag: str) -> dict[str, str]:
    """The attributes of one ``<img>`` tag as nh3 writes it (double-quoted, escaped)."""
    return {name.lower(): html.unescape(value) for name, value in _ATTRIBUTE.findall(tag)}


def drop_tracking_images(fragment: str) -> str:
    """Sanitised HTML without its tracking images (and the empty links they leave)."""
    if "<img" not in fragment.lower():
        return fragment
    dropped = False

    def keep(match: re.Match[str]) -> str:
        nonlocal dropped
        found = image_attributes(match.group(0))
        if is_tracking_image(found.get("src"), found.get("width"), found.get("height")):
            dropped = True
            return ""
        return match.group(0)

    cleaned = _IMG.sub(keep, fragment)
    return _EMPTY_LINK.sub("", cleaned) if dropped else cleaned


# Pictures that belong in the text but are no article's picture: emoji drawn as
# images (WordPress, Twitter's), avatars.
_DECORATION_PLACES = (
    ("s.w.org", "/images/core/emoji/"),
    ("twemoji.maxcdn.com", "/"),
    ("cdn.jsdelivr.net", "/gh/twitter/twemoji"),
    ("gravatar.com", "/avatar/"),
)
# An image smaller than this each way (in pixels, as the tag says) is an icon, not a lead.
LEAD_MIN_PIXELS = 100


def _pixels(value: str | None) -> int | None:
    number = (value or "").strip().lower().removesuffix("px").strip()
    return int(number) if number.isascii() and number.isdigit() else None


def is_decoration(src: str | None, width: str | None = None, height: str | None = None) -> bool:
    """True for an emoji, an avatar or an icon: kept in the text, never the lead image."""
    sizes = [n for n in (_pixels(width), _pixels(height)) if n is not None]
    if sizes and max(sizes) < LEAD_MIN_PIXELS:
        return True
    try:
        parts = urlsplit((src or "").strip())
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return any(
        (host == place or host.endswith("." + place)) and parts.path.startswith(prefix)
        for place, prefix in _DECORATION_PLACES
    )
