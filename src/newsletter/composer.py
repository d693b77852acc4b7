"""A campaign's own words: its Markdown intro or body as sanitised HTML and plain text.

Staff write Markdown; it is rendered with the same Markdown reader as the
article files of a folder source and cleaned by the same sanitiser as every
article (``sources.sanitize_html``): no script, no event handler, no
javascript: link, nothing but http(s) and mailto. The result is data for the
templates, never template code, so ``{{ ... }}`` in the text stays text.
Pure: no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from markupsafe import Markup

from newsletter.sources import plain_text, sanitize_html
from newsletter.textify import html_to_text

if TYPE_CHECKING:
    from markdown_it import MarkdownIt


@functools.cache
def _markdown() -> MarkdownIt:
    """As a folder source reads Markdown: CommonMark with tables; raw HTML is allowed
    in and then cleaned with the rest. Made on first use: a campaign without words of
    its own (and every command's start-up) need not load the Markdown reader."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table")


@dataclass(frozen=True)
class Content:
    """One piece of a campaign's own text, ready for the templates."""

    html: Markup
    text: str
    # One line of its words, for an inbox's preview text.
    summary: str = ""


EMPTY = Content(Markup(""), "")


# In the sanitiser's output, which spells every tag one way and never nests links.
_LINK = re.compile(r"<a\b([^>]*)>(.*?)</a>", re.DOTALL)
_HREF = re.compile(r'\shref="([^"]*)"')
_IMAGE = re.compile(r"<img\b[^>]*>")
_SRC = re.compile(r'\ssrc="[^"]+"')


def _unlinked(found: re.Match[str]) -> str:
    """A link kept only when it has somewhere to go and something to click."""
    href = _HREF.search(found.group(1))
    inner = found.group(2)
    if href and href.group(1).strip() and not shows_nothing(inner):
        return found.group(0)
    return inner


def _pruned(html: str) -> str:
    """No image without an address (a data: one is taken out by the sanitiser), no link
    without an address or words: they show nothing in the HTML and a stray mark in the text."""
    html = _IMAGE.sub(lambda m: m.group(0) if _SRC.search(m.group(0)) else "", html)
    return _LINK.sub(_unlinked, html)


def shows_nothing(html: str) -> bool:
    """Whether clean HTML has neither words nor an image to show."""
    return not plain_text(html) and "<img" not in html


def markdown_html(source: str, base_url: str) -> str:
    """Markdown as sanitised HTML; relative links and images made absolute on ``base_url``.

    Cleaned first without a base, so an empty address stays empty (joined on
    the base it would become the site's home page) and can be dropped; then
    joined on the base.
    """
    if not source.strip():
        return ""
    cleaned = _pruned(sanitize_html(_markdown().render(source)))
    if shows_nothing(cleaned):
        return ""
    return sanitize_html(cleaned, base_url.rstrip("/") + "/")


def content(source: str, base_url: str, shape: Callable[[str], str] | None = None) -> Content:
    """The template data of a Markdown text: HTML (marked safe, as it is clean) and text.

    ``shape`` styles the clean HTML for the email (the template's CSS inlined);
    the text part is read from the clean HTML before it is styled.
    """
    html = markdown_html(source, base_url)
    if not html:
        return EMPTY
    text = html_to_text(html)
    return Content(Markup(shape(html) if shape else html), text, plain_text(html))
