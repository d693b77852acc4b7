"""HTML to plain text written for people: headings, lists and links kept readable. Pure.

Used for the plain-text part of emails, where an article body arrives as
sanitized HTML. Links become numbered references ("[1]") listed after the
text, so sentences stay readable and long tracking URLs do not break them.
"""

from __future__ import annotations

import functools
import re
import textwrap
from html.parser import HTMLParser

WIDTH = 72
_BLOCKS = {"p", "div", "section", "article", "blockquote", "pre", "table", "tr", "figure"}
_SKIP = {"script", "style", "head", "title"}
_SPACE = re.compile(r"[ \t\r\n\f\v]+")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, int]] = []  # (text, id of its outermost list or 0)
        self.current: list[str] = []
        self.prefix = ""
        self.heading: str | None = None
        self.lists: list[list[int | None]] = []  # a counter per open list; None = bullets
        self.links: list[str] = []
        self.href: str | None = None
        self.link_text_start = 0
        self.skip = 0
        self.pre = 0

    def _flush(self) -> None:
        text = "".join(self.current)
        self.current = []
        if self.pre:
            if text.strip("\n"):
                self.blocks.append((text.strip("\n"), 0))
            return
        text = _SPACE.sub(" ", text).strip()
        if not text:
            return
        if self.heading is not None:
            underline = "=" if self.heading in ("h1", "h2") else "-"
            self.blocks.append((f"{text}\n{underline * min(len(text), WIDTH)}", 0))
            return
        indent = "   " * max(len(self.lists) - 1, 0)
        first = indent + self.prefix
        rest = indent + " " * len(self.prefix)
        wrapped = textwrap.fill(
            text,
            WIDTH,
            initial_indent=first,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        )
        in_list = id(self.lists[0]) if self.lists and self.prefix else 0
        self.blocks.append((wrapped, in_list))
        self.prefix = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag in _BLOCKS or tag in ("ul", "ol"):
            self._flush()
            if tag == "pre":
                self.pre += 1
            if tag == "ol":
                self.lists.append([0])
            elif tag == "ul":
                self.lists.append([None])
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush()
            self.heading = tag
        elif tag == "li":
            self._flush()
            if self.lists and self.lists[-1][0] is not None:
                self.lists[-1][0] += 1
                self.prefix = f"{self.lists[-1][0]}. "
            else:
                self.prefix = "- "
        elif tag == "br":
            self.current.append("\n" if self.pre else " ")
            if not self.pre:
                self._flush()
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self.href = href if href.startswith(("http://", "https://", "mailto:")) else None
            self.link_text_start = len("".join(self.current))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self.current.append(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(self.skip - 1, 0)
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush()
            self.heading = None
        elif tag in _BLOCKS or tag in ("ul", "ol", "li"):
            self._flush()
            if tag == "pre":
                self.pre = max(self.pre - 1, 0)
            if tag in ("ul", "ol") and self.lists:
                self.lists.pop()
        elif tag == "a" and self.href:
            text = "".join(self.current)[self.link_text_start :].strip()
            if self.href.startswith("mailto:"):
                address = self.href[len("mailto:") :]
                if address and address not in text:
                    self.current.append(f" <{address}>")
            elif text != self.href:
                if self.href not in self.links:
                    self.links.append(self.href)
                self.current.append(f" [{self.links.index(self.href) + 1}]")
            self.href = None

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.current.append(data)

    def result(self) -> str:
        self._flush()
        parts: list[str] = []
        previous = 0
        for block, in_list in self.blocks:
            if parts:
                # Items of one list stay together; everything else is a paragraph.
                parts.append("\n" if in_list and in_list == previous else "\n\n")
            parts.append(block)
            previous = in_list
        text = "".join(parts)
        if self.links:
            refs = "\n".join(f"[{i}] {url}" for i, url in enumerate(self.links, 1))
            text += "\n\n" + refs
        return text


def html_to_text(fragment: str) -> str:
    """Turn an HTML fragment into readable plain text with numbered link references."""
    converter = _Converter()
    converter.feed(fragment)
    converter.close()
    return converter.result()


# RFC 5322 asks for lines of at most 78 characters; mail programs show longer ones
# as they are, running off a phone's screen.
LINE_WIDTH = 78
_LEAD = re.compile(r"(\s*)((?:\d+\.|[-*•]|>+|\[\d+\])\s+)?")
_RULE = re.compile(r"(=+|-+)")


@functools.lru_cache(maxsize=4096)
def _wrap_line(line: str, width: int) -> tuple[str, ...]:
    """One long line wrapped, its list marker or quote continued under its own text.

    Cached: a campaign's long lines (its articles' paragraphs) are the same in
    every subscriber's message, and textwrap is the slowest step of the text
    part. A tuple, so no caller can change what the cache holds.
    """
    lead = _LEAD.match(line)
    assert lead is not None  # every part of _LEAD is optional: it matches any line
    indent, marker = lead.group(1), lead.group(2) or ""
    follow = indent + ("> " if marker.startswith(">") else " " * len(marker))
    wrapped = textwrap.wrap(
        line[len(indent) + len(marker) :],
        width,
        initial_indent=indent + marker,
        subsequent_indent=follow,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return tuple(wrapped) or (line,)


def wrap_lines(text: str, width: int = LINE_WIDTH) -> str:
    """Wrap every line of a plain-text email at ``width`` characters, at spaces only.

    A list item or quote continues under its own text; a URL or any other
    word longer than the width stays whole on a line of its own (cutting it
    would break it). An underline (=== or ---) under a wrapped title is made
    as long as the title's longest line.
    """
    lines = text.split("\n")
    if max(map(len, lines)) <= width:
        return text  # no line is wrapped, so no underline is redrawn either
    out: list[str] = []
    previous_wrapped: tuple[str, ...] = ()
    for line in lines:
        if len(line) <= width and not (previous_wrapped and _RULE.fullmatch(line)):
            out.append(line)
            previous_wrapped = ()
            continue
        if _RULE.fullmatch(line):
            longest = max(len(w) for w in previous_wrapped) if previous_wrapped else width
            out.append(line[0] * min(longest, width))
            previous_wrapped = ()
            continue
        wrapped = _wrap_line(line, width)
        out.extend(wrapped)
        previous_wrapped = wrapped if len(wrapped) > 1 else ()
    return "\n".join(out)


def is_rule(line: str) -> bool:
    """Whether ``wrap_lines`` reads a line as an underline (=== or ---)."""
    return _RULE.fullmatch(line) is not None


def sets_rule_length(line: str, width: int = LINE_WIDTH) -> bool:
    """Whether ``wrap_lines`` draws an underline right after this line at its wrapped
    length: the one way a line's wrapping depends on the line before it. Said by
    the line alone, so a text can be wrapped in parts cut where this is false."""
    return len(line) > width and not is_rule(line) and len(_wrap_line(line, width)) > 1
