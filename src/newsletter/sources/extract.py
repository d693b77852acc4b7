"""The article body of a page, by the first extractor that finds one. Pure.

trafilatura reads the parsed tree first. It can find nothing in a tree and
an article in the same page as text, which it decodes, repairs and parses its
own way, so the text comes second; readability (readability-lxml, Arc90's
algorithm) is the last try. Each gets its own copy: the caller's tree is
not changed.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import lxml.html
from lxml import etree

from newsletter.sources import plain_text

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_INLINE = {"#b": "strong", "#i": "em", "#u": "u", "#sub": "sub", "#sup": "sup", "#t": "code"}


@dataclass(frozen=True)
class Body:
    """An article's body HTML (unsanitized), and what found it."""

    html: str
    # trafilatura's Document: title, author, date, image, tags (its body unused).
    metadata: Any
    by: str  # "trafilatura" or "readability"


def _body_html(body: Any) -> str:
    """trafilatura's extracted tree (TEI-like) as plain HTML, keeping numbered lists numbered."""
    for element in body.iter():
        tag = element.tag
        rend = element.get("rend", "")
        if tag == "list":
            element.tag = "ol" if rend == "ol" else "ul"
        elif tag == "item":
            element.tag = "li"
        elif tag == "head":
            element.tag = rend if rend in _HEADINGS else "h3"
        elif tag == "hi":
            element.tag = _INLINE.get(rend, "em")
        elif tag == "ref":
            element.tag = "a"
            element.set("href", element.get("target", ""))
        elif tag == "graphic":
            element.tag = "img"
        elif tag == "lb":
            element.tag = "br"
        elif tag == "quote":
            element.tag = "blockquote"
        elif tag == "code":
            element.tag = "pre"
        elif tag == "row":
            element.tag = "tr"
        elif tag == "cell":
            element.tag = "th" if element.get("role") == "head" else "td"
        keep = {"href"} if element.tag == "a" else {"src", "alt"} if element.tag == "img" else set()
        for name in list(element.attrib):
            if name not in keep:
                del element.attrib[name]
    inner = body.text or ""
    inner += "".join(etree.tostring(child, encoding="unicode") for child in body)
    return inner


_EXTRACT_OPTIONS: dict[str, Any] = {
    "with_metadata": True,
    "include_images": True,
    "include_links": True,
    "include_formatting": True,
    "include_comments": False,
    "include_tables": True,
}


def _trafilatura(source: Any, url: str | None) -> Any:
    """trafilatura's Document for a tree or an HTML text, or None when it finds no article."""
    # trafilatura pulls in lxml, justext and date parsing; imported here so
    # commands that never read a page do not pay for it.
    import trafilatura
    from trafilatura.settings import Document

    # trafilatura works on its own copy of a tree.
    document = trafilatura.bare_extraction(source, url=url, **_EXTRACT_OPTIONS)
    # A Document unless as_dict is asked for, which it is not.
    if not isinstance(document, Document) or document.body is None:
        return None
    return document


def _readability(html: str, url: str | None) -> str | None:
    """The main content as readability (Arc90's algorithm, readability-lxml) finds it."""
    from readability import Document as Readable
    from readability.readability import Unparseable

    try:
        found = str(Readable(html, url=url).summary(html_partial=True))
    except Unparseable:
        return None
    # readability wraps what it keeps in a <body> of its own.
    found = re.sub(r"^\s*<body[^>]*>|</body>\s*$", "", found)
    return found if plain_text(found) else None


def article_body(tree: Any, url: str | None, html: str | None = None) -> Body | None:
    """The article of a page: from the tree, else its text, else readability; None if none.

    ``html`` is the page's text when the caller has it; otherwise the tree is
    written out as text for the fallbacks.
    """
    document = _trafilatura(tree, url)
    if document is None:
        text = html if html is not None else lxml.html.tostring(tree, encoding="unicode")
        document = _trafilatura(text, url)
        if document is None:
            found = _readability(text, url)
            if found is None:
                return None
            # The page's title, date and author, read without its body.
            from trafilatura import extract_metadata

            return Body(found, extract_metadata(copy.deepcopy(tree), url), "readability")
    return Body(_body_html(document.body), document, "trafilatura")
