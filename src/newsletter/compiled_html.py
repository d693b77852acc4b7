"""A campaign's HTML part compiled once: its wire bytes, with a few slots per subscriber.

A spliced campaign (``splice.py``) is the same document for every subscriber
but for a few values. Per message, tracking then rewrote every registered
link in it (``LinkRewriter.rewrite_html``), put the open pixel before
</body> and ``mime.html_body`` encoded it, each over the whole document.
Compiled, all of that is done once per campaign plan: the static pieces are
rewritten, placed and encoded (7bit: character references, CRLF) as bytes,
and per message only the slots are worked out, encoded the same way and
joined: the subscriber's values (as the splice escapes them), each click
URL and the pixel URL.

Compiled only where the bytes are provably the full path's (``compile_html``
raises NotCompilable otherwise), by what the values can be: escaped by
Jinja (or ``html.escape``), they hold no quote, ``<`` or ``>`` (a message
with one that does, written raw by a text template that an HTML one
includes, takes the full path), so the quotes and tags of the document with
markers are those of every message:

- the rewriter replaces ``href=`` + a quote + a registered spelling + the same
  quote. With no quote in a spelling, that is the text between one quote and
  the next; where that text holds a value (an href made of values) it is
  looked up per message, exactly as the rewriter would find it;
- a quote whose five characters before it hold a value could be preceded by
  ``href=`` spelt by that value: checked per message;
- a value inside <style>, <script> or a comment (where character references
  are not read), at a tag's or comment's delimiter, a non-ASCII character in
  such a block (quoted-printable), a line over 990 bytes without any value,
  a carriage return, ``</BODY>`` in capitals: the campaign keeps the full path.

Per message, a value with a carriage return, a quote, ``<`` or ``>``, or a
line that grows past 990 bytes, sends that message through the full path
(``body`` returns None).
Pure: no I/O.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from newsletter.mime import RAW_TEXT, has_long_line
from newsletter.tracking import pixel_tag


class NotCompilable(Exception):
    """The HTML part cannot be compiled with bytes provably the full path's."""


# What fills a slot per message.
_VALUE, _CLICK, _HREF, _PIXEL, _CHECK = range(5)
# A slot of the document: its kind and what it needs (a value's index, a link id,
# the pieces of an href made of values); _CHECK takes no room.
_Slot = tuple[int, Any]

# Markers for values while the document is analysed: private-use characters, which
# a campaign's own text is checked not to hold.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKER = re.compile("\ue000(\\d+)\ue001")
_QUOTE = re.compile("[\"']")
# What no escaped value holds; a carriage return would be normalised over the document.
_UNSAFE = re.compile("[\"'<>\r]")
# A value right after "<", "</sty", "<!-" … or right before ">" or "->" could make
# or unmake a tag, a comment or </body>: the structure would depend on it.
_TAG_START = re.compile(r"<[!/a-zA-Z\s-]*\Z")
_TAG_END = re.compile(r"-?>")
# SMTP's limit on a line, without its CRLF (as ``mime.html_body`` checks it).
_LINE = 990


def _encode(text: str) -> bytes:
    """Text as the 7bit HTML part carries it (``mime.html_body``): non-ASCII as
    character references, CRLF line ends. Character by character, so the pieces
    of a document encode to the pieces of its bytes."""
    return text.encode("ascii", "xmlcharrefreplace").replace(b"\n", b"\r\n")


def _tail(chunks: list[bytes], size: int) -> bytes:
    """The last ``size`` bytes of what ``chunks`` join to."""
    found = b""
    for chunk in reversed(chunks):
        found = chunk[-size:] + found
        if len(found) >= size:
            break
    return found[-size:]


class CompiledHtml:
    """One campaign plan's HTML part: encoded pieces between slots."""

    def __init__(self, items: list[str | _Slot], spellings: Mapping[str, int]) -> None:
        self._spellings = spellings
        # The pieces between slots, encoded now: head, then (slot, piece after it).
        pieces: list[str] = [""]
        self._slots: list[_Slot] = []
        for item in items:
            if isinstance(item, str):
                pieces[-1] += item
            else:
                self._slots.append(item)
                pieces.append("")
        encoded = [_encode(piece) for piece in pieces]
        self._head = encoded[0]
        self._steps = [
            (kind, need, after)
            for (kind, need), after in zip(self._slots, encoded[1:], strict=True)
        ]
        # Hrefs made of values, looked up per message (the tests show they are found).
        self.href_slots = sum(kind == _HREF for kind, _ in self._slots)

    def body(
        self, values: Mapping[int, str], click_url: Callable[[int], str], pixel_url: str
    ) -> bytes | None:
        """The HTML part's 7bit bytes for one message, or None where only the full
        path can build it (a value with a carriage return, a quote, < or >, or that
        spells href= before a quote; a line past 990 bytes).

        ``values`` are the splice's, by index; ``click_url`` makes a link's tracking
        URL, ``pixel_url`` is the open pixel's (unused where there is none).
        """
        out = [self._head]
        append = out.append
        urls: dict[int, bytes | None] = {}  # each link's click URL, escaped and encoded once
        data: bytes | None
        for kind, need, after in self._steps:
            if kind == _CLICK:
                data = urls[need] if need in urls else _url(urls, need, click_url)
            elif kind == _VALUE:
                text = values[need]
                if _UNSAFE.search(text):
                    return None
                data = _encode(text)
            elif kind == _HREF:
                # What the rewriter sees between the quotes: replaced if registered.
                text = "".join(p if isinstance(p, str) else values[p] for p in need)
                if _UNSAFE.search(text):
                    return None
                link = self._spellings.get(text)
                if link is None:
                    data = _encode(text)
                else:
                    data = urls[link] if link in urls else _url(urls, link, click_url)
            elif kind == _PIXEL:
                text = html.escape(pixel_url)
                data = None if "\r" in text else _encode(text)
            else:  # _CHECK: the quote after this must not follow an href= spelt by values
                # Read on the bytes: a character reference ends in ";", so they end in
                # b"href=" exactly where the text ends in "href=".
                if _tail(out, 5) == b"href=":
                    return None
                append(after)
                continue
            if data is None:
                return None  # a URL with a carriage return (made from a setting)
            append(data)
            append(after)
        body = b"".join(out)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        # Checked on the CRLF bytes: each line counts its CR, so the limit is one more.
        return None if has_long_line(body, _LINE + 1) else body


def _url(urls: dict[int, bytes | None], link: int, click_url: Callable[[int], str]) -> bytes | None:
    """A link's click URL as the rewriter writes it (escaped), encoded; None with a CR."""
    text = html.escape(click_url(link))
    data = urls[link] = None if "\r" in text else _encode(text)
    return data


def compile_html(pieces: Sequence[Any], spellings: Mapping[str, int], pixel: bool) -> CompiledHtml:
    """Compile a spliced HTML part (``pieces``: text, then the index of a value, …).

    ``spellings``: the forms of the campaign's registered links the rewriter
    replaces, with their ids (empty: no link is rewritten); ``pixel``: whether
    the open pixel goes in. Raises NotCompilable with the reason where the
    result would not provably be the full path's.
    """
    if len(pieces) % 2 != 1:
        raise ValueError("pieces are text, then the index of a value, …, ending in text")
    texts = [str(p) for p in pieces[0::2]]
    indexes = [int(p) for p in pieces[1::2]]
    if any(_OPEN in t or _CLOSE in t for t in texts):
        raise NotCompilable("the document holds private-use characters U+E000/U+E001")
    if any("\r" in t for t in texts):
        raise NotCompilable("the document holds carriage returns")
    # The document with the n-th value marked as \ue000n\ue001.
    marked = "".join(f"{t}{_OPEN}{n}{_CLOSE}" for n, t in enumerate(texts[:-1])) + texts[-1]

    def split(text: str) -> list[str | _Slot]:
        parts = _MARKER.split(text)
        return [p if i % 2 == 0 else (_VALUE, indexes[int(p)]) for i, p in enumerate(parts)]

    # Edits to the marked document: (start, end, what replaces it).
    edits: list[tuple[int, int, list[str | _Slot]]] = []
    if spellings:
        for url in spellings:
            # A quote would let a replacement span quotes; < or > a tag or comment;
            # and ending in href= two replacements overlap (the rewriter makes one).
            if any(c in url for c in "\"'<>") or url.endswith("href="):
                raise NotCompilable(
                    f"a tracked link's URL holds a quote, < or >, or ends in href=: {url[:80]}"
                )
        edits += _links(marked, spellings, split)
    if pixel:
        # Values hold no "<": the last </body> is the same one in every message.
        at = marked.rfind("</body>")
        if at == -1:
            if "</body>" in marked.lower():
                raise NotCompilable("the document's </body> is not in lower case")
            at = len(marked)
        before, _, after = pixel_tag(f"{_OPEN}{_CLOSE}").partition(f"{_OPEN}{_CLOSE}")
        edits.append((at, at, [before, (_PIXEL, None), after]))
    items: list[str | _Slot] = []
    done = 0
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1])):
        items += split(marked[done:start])
        items += replacement
        done = end
    items += split(marked[done:])
    _check(items)
    return CompiledHtml(items, spellings)


def _links(
    marked: str,
    spellings: Mapping[str, int],
    split: Callable[[str], list[str | _Slot]],
) -> list[tuple[int, int, list[str | _Slot]]]:
    """Where the rewriter would replace a link, as edits of the marked document.

    A replacement spans from one quote to the next (no spelling holds a quote),
    of the same kind, after ``href=``. Values hold no quote, so the quotes of
    the marked document are every message's; only the five characters before
    a quote may differ, where a value ends within them (a _CHECK per message).
    """
    edits: list[tuple[int, int, list[str | _Slot]]] = []
    quotes = [m.start() for m in _QUOTE.finditer(marked)]
    for opening, closing in pairwise(quotes):
        if marked[opening] != marked[closing]:
            continue
        behind = marked[max(0, opening - 5) : opening]
        if _CLOSE in behind:
            # A value ends within five characters before the quote: it may spell href=.
            edits.append((opening, opening, [(_CHECK, None)]))
            continue
        if behind != "href=":
            continue
        inner = marked[opening + 1 : closing]
        if _OPEN not in inner:
            link = spellings.get(inner)
            if link is not None:
                edits.append((opening + 1, closing, [(_CLICK, link)]))
        elif "<" not in inner and ">" not in inner:  # else no spelling can match
            parts = tuple(p if isinstance(p, str) else p[1] for p in split(inner))
            edits.append((opening + 1, closing, [(_HREF, parts)]))
    return edits


def _check(items: list[str | _Slot]) -> None:
    """Refuse a document whose encoding or structure could depend on its slots."""
    slot = f"{_OPEN}{_CLOSE}"
    document = "".join(i if isinstance(i, str) else "" if i[0] == _CHECK else slot for i in items)
    for block in RAW_TEXT.finditer(document):
        if _OPEN in block.group(0):
            raise NotCompilable(
                "a personal value or tracked link is inside <style>, <script> or a comment"
            )
        if not block.group(0).isascii():
            # mime.html_body sends such a document quoted-printable.
            raise NotCompilable("non-ASCII text inside <style>, <script> or a comment")
    between = document.split(slot)
    for before, after in pairwise(between):
        if _TAG_START.search(before) or _TAG_END.match(after):
            raise NotCompilable("a personal value is part of a tag's name or a comment's delimiter")
    for line in document.split("\n"):
        if _OPEN not in line and len(_encode(line)) > _LINE:
            raise NotCompilable(f"a line is longer than {_LINE} bytes: quoted-printable")
