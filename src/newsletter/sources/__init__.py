"""Article sources. Each intake path is three steps: fetch, parse (pure), save.

Parsers return plain article dicts with at least ``key``, ``title`` and
``content_hash``; ``Store.save_articles`` decides what is new or changed.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from typing import Any

import nh3

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
SUMMARY_CHARS = 280


def sanitize_html(fragment: str) -> str:
    """Strip scripts, styles, event handlers and any URL scheme but http(s) and mailto."""
    return nh3.clean(fragment, url_schemes={"http", "https", "mailto"}, link_rel="noopener")


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
