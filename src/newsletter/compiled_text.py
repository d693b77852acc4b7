"""A campaign's text part compiled once: its quoted-printable bytes, line by line.

Per message, the full path wraps the spliced text (``render``: ``wrap_lines``
of the stripped text), tracking rewrites its registered links and wraps it
again (``wrap_lines(rewrite_text(…))``, longer URLs), and ``mime`` encodes it
quoted-printable, each over the whole part. Each of those steps works line by
line:

- ``wrap_lines`` wraps each line on its own, but for one thing: an underline
  (=== or ---) after a title it wrapped is drawn at the title's length
  (``textify.sets_rule_length``);
- ``rewrite_text`` replaces whole URLs (none holds a line break here): the
  character before one and what follows it (punctuation, then space or the
  end) are read on its own line, and a line's start or end reads as a line
  break does;
- quoted-printable encodes each CRLF line on its own (soft breaks within it).

So the unit is the line. Lines without a personal value or a tracked link
are worked out once, in runs, as final bytes; the others (with, around them,
the lines whose wrapping could depend on them or they on it) are joined per
message with its values and go through the same functions, all in one call
each: the runs are kept apart by a line of their own (``_SEPARATOR``), which
no step changes and which resets the underline rule. A run whose only
personal parts are tracked links is wrapped and rewritten once, with a slot
for each click URL; per message only its second wrap and encoding remain.

A value with a line break (or the separator) sends that message through the
full path (``body`` returns None), as does a blank value where the text's
ends are stripped past its lines. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from newsletter.compiled_html import NotCompilable
from newsletter.mime import quoted_printable
from newsletter.textify import is_rule, sets_rule_length, wrap_lines
from newsletter.tracking import LinkRewriter

# Markers for values while the text is analysed, as in compiled_html.py.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKER = re.compile("\ue000(\\d+)\ue001")
# The line between two runs of personal lines per message, and its bytes: short,
# not an underline, holding no URL, so each step leaves it as it is.
_SEPARATOR = "\ue002"
_SEPARATOR_BYTES = quoted_printable(_SEPARATOR + "\n")
# What a value may not hold: a line break would move lines between runs (and the
# full path reads a CR as one), the separator would cut a run in two.
_UNSAFE = re.compile("[\n\r\ue002]")


def _has_link(rewriter: LinkRewriter, text: str) -> bool:
    """Whether ``rewrite_text`` replaces a link in ``text``."""
    found: list[int] = []

    def click(link: int) -> str:
        found.append(link)
        return ""

    rewriter.rewrite_text(text, click)
    return bool(found)


def _no_click(link: int) -> str:
    raise NotCompilable(f"link {link} was found in a line thought to hold no link")


# Where a run of personal lines goes in the part: one with values, or one whose
# only personal parts are tracked links.
_VALUES, _LINKS = 0, 1


def _format(runs: list[list[str | int]]) -> tuple[str, list[int]]:
    """Runs (text, then the index of what fills a slot, …) joined between separator
    lines as one format string, and what fills its slots ({0}, {1}, …) in order:
    one call per message joins them all."""
    used = sorted({i for run in runs for i in run if isinstance(i, int)})
    where = {index: n for n, index in enumerate(used)}
    form = f"\n{_SEPARATOR}\n".join(
        "".join(
            p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else f"{{{where[p]}}}"
            for p in run
        )
        for run in runs
    )
    return form, used


class CompiledText:
    """One campaign plan's text part: bytes made once, and the runs of lines
    worked out per message."""

    def __init__(
        self,
        layout: list[bytes | int],
        value_runs: list[list[str | int]],
        link_runs: list[list[str | int]],
        strip: tuple[bool, bool],
        rewriter: LinkRewriter | None,
    ) -> None:
        # The part in order: bytes, or _VALUES / _LINKS where the next such run goes.
        self._layout = layout
        self._strip_start, self._strip_end = strip
        self._rewriter = rewriter
        # Runs with values (text, value index, …): wrapped, their links rewritten and
        # wrapped again per message. Runs with links only were wrapped and rewritten
        # once (text, link id, …): per message their click URLs go in, then the
        # second wrap.
        self._values, self._used = _format(value_runs)
        self._links, self._link_ids = _format(link_runs)
        self._value_runs, self._link_runs = len(value_runs), len(link_runs)
        # Lines worked out per message: how many runs there are.
        self.personal_runs = len(value_runs) + len(link_runs)

    def body(self, values: Mapping[int, str], click_url: Callable[[int], str]) -> bytes | None:
        """The text part's quoted-printable bytes for one message, or None where only
        the full path can build it (a value with a line break; a text whose start or
        end, stripped, takes more than its first or last run).

        ``values`` are the splice's, by index; ``click_url`` makes a link's tracking
        URL (unused untracked).
        """
        made: list[list[bytes]] = [[], []]
        if self._value_runs:
            found = self._with_values(values, click_url)
            if found is None:
                return None
            made[_VALUES] = found
        if self._link_runs:
            text = self._links.format(*[click_url(link) for link in self._link_ids])
            found = self._encoded(text, self._link_runs)
            if found is None:
                return None
            made[_LINKS] = found
        if not self.personal_runs:
            return b"".join(b for b in self._layout if isinstance(b, bytes))
        taken = [0, 0]
        out = []
        for piece in self._layout:
            if isinstance(piece, bytes):
                out.append(piece)
            else:
                out.append(made[piece][taken[piece]])
                taken[piece] += 1
        return b"".join(out)

    def _with_values(
        self, values: Mapping[int, str], click_url: Callable[[int], str]
    ) -> list[bytes] | None:
        used = [values[i] for i in self._used]
        if _UNSAFE.search("".join(used)):
            return None
        text = self._values.format(*used)
        # Where the full path's stripping of the whole text reaches past the first
        # or last run (it is blank), it would take lines made once: the full path.
        if self._strip_start:
            text = text.lstrip()
            if not text or text[0] == _SEPARATOR:
                return None
        if self._strip_end:
            text = text.rstrip()
            if not text or text[-1] == _SEPARATOR:
                return None
        text = wrap_lines(text)
        if self._rewriter is not None:
            text = self._rewriter.rewrite_text(text, click_url)
        return self._encoded(text, self._value_runs)

    def _encoded(self, text: str, runs: int) -> list[bytes] | None:
        """Runs wrapped and rewritten (``text``): wrapped again where tracked (a tracked
        link is longer than the one it replaces, mail.py), encoded, cut apart."""
        if self._rewriter is not None:
            text = wrap_lines(text)
        made = quoted_printable(text + "\n").split(_SEPARATOR_BYTES)
        return made if len(made) == runs else None  # else a click URL spelt the separator


def compile_text(pieces: Sequence[Any], rewriter: LinkRewriter | None) -> CompiledText:
    """Compile a spliced text part (``pieces``: text, then the index of a value, …).

    ``rewriter``: the campaign's, for a tracked part (links rewritten, then
    wrapped again); None untracked. Raises NotCompilable with the reason where
    the result would not provably be the full path's.
    """
    if len(pieces) % 2 != 1:
        raise ValueError("pieces are text, then the index of a value, …, ending in text")
    texts = [str(p) for p in pieces[0::2]]
    indexes = [int(p) for p in pieces[1::2]]
    if any(c in t for t in texts for c in (_OPEN, _CLOSE, _SEPARATOR)):
        raise NotCompilable("the text holds private-use characters U+E000 to U+E002")
    if any("\r" in t for t in texts):
        raise NotCompilable("the text holds carriage returns")
    if rewriter is not None and any("\n" in u or "\r" in u for u in rewriter.link_ids):
        raise NotCompilable("a tracked link's URL holds a line break")
    marked = "".join(f"{t}{_OPEN}{n}{_CLOSE}" for n, t in enumerate(texts[:-1])) + texts[-1]
    # The full path strips the whole text: where a value is at either end, so is
    # the stripping, per message (the static blanks around it go now).
    marked = marked.strip()
    strip = (marked.startswith(_OPEN), marked.endswith(_CLOSE))
    lines = marked.split("\n")
    personal = [_OPEN in line for line in lines]
    first: list[list[str]] = []  # each line's wrapped lines, as wrap_lines makes them on its own
    for n, line in enumerate(lines):
        wrapped = wrap_lines(line).split("\n")
        first.append(wrapped)
        if rewriter is not None and not personal[n]:
            personal[n] = _has_link(rewriter, "\n".join(wrapped))  # its click URLs vary

    def independent(n: int) -> bool:
        """Whether a line wraps the same whatever line is before it (both wraps)."""
        return not is_rule(lines[n]) and (rewriter is None or not is_rule(first[n][0]))

    def passes_nothing(n: int) -> bool:
        """Whether the line after this one wraps as if this one were not there."""
        return not sets_rule_length(lines[n]) and (
            rewriter is None or not sets_rule_length(first[n][-1])
        )

    changed = True
    while changed:
        changed = False
        for n in range(1, len(lines)):
            if personal[n - 1] and not personal[n] and not independent(n):
                personal[n] = changed = True
            elif not personal[n - 1] and personal[n] and not passes_nothing(n - 1):
                personal[n - 1] = changed = True

    layout: list[bytes | int] = []
    value_runs: list[list[str | int]] = []
    link_runs: list[list[str | int]] = []
    start = 0
    for n in range(1, len(lines) + 1):
        if n < len(lines) and personal[n] == personal[start]:
            continue
        text = "\n".join(lines[start:n])
        if personal[start] and _OPEN in text:
            parts = _MARKER.split(text)
            value_runs.append([p if i % 2 == 0 else indexes[int(p)] for i, p in enumerate(parts)])
            layout.append(_VALUES)
        elif personal[start]:
            # Links only: wrapped and rewritten now, a slot for each click URL.
            assert rewriter is not None  # untracked, only values make a line personal
            text = rewriter.rewrite_text(wrap_lines(text), lambda link: f"{_OPEN}{link}{_CLOSE}")
            parts = _MARKER.split(text)
            link_runs.append([p if i % 2 == 0 else int(p) for i, p in enumerate(parts)])
            layout.append(_LINKS)
        else:
            text = wrap_lines(text)
            if rewriter is not None:
                text = wrap_lines(rewriter.rewrite_text(text, _no_click))
            layout.append(quoted_printable(text + "\n"))
        start = n
    # A run at either end is stripped per message only where a value is at that end
    # (then it is a run with values, the first or the last of them).
    return CompiledText(
        layout,
        value_runs,
        link_runs,
        (strip[0] and personal[0], strip[1] and personal[-1]),
        rewriter,
    )
