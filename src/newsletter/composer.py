"""A campaign's own words: its Markdown intro or body as sanitised HTML and plain text.

Staff write Markdown; it is rendered with the same Markdown reader as the
article files of a folder source and cleaned by the same sanitiser as every
article (``sources.sanitize_html``): no script, no event handler, no
javascript: link, nothing but http(s) and mailto. The result is data for the
templates, never template code, so ``{{ ... }}`` in the text stays text.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markupsafe import Markup

from newsletter.sources import plain_text, sanitize_html
from newsletter.textify import html_to_text

# As a folder source reads Markdown: CommonMark with tables; raw HTML is allowed
# in and then cleaned with the rest.
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table")


@dataclass(frozen=True)
class Content:
    """One piece of a campaign's own text, ready for the templates."""

    html: Markup
    text: str
    # One line of its words, for an inbox's preview text.
    summary: str = ""


EMPTY = Content(Markup(""), "")


def markdown_html(source: str, base_url: str) -> str:
    """Markdown as sanitised HTML; relative links and images made absolute on ``base_url``."""
    if not source.strip():
        return ""
    return sanitize_html(_markdown.render(source), base_url.rstrip("/") + "/")


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
