"""Plain-text pages, including blog pages saved as text from a browser.

A page saved from a Wix blog reads, top to bottom: a "top of page" banner
(the skip link), the title, ``Updated: Feb 4``, the body (headings are short
lines ending in a colon, numbered lists are ``1.`` lines), the counters as
``9 views0 comments`` (the spans run together when saved), and a "bottom of
page" banner. Any plain ``.txt`` file is read the same way: the first line is
the title and the rest is the body. Pure: text in, fields out.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

from newsletter.errors import SourceError
from newsletter.sources import counters_from_lines

_BANNERS = {"top of page", "bottom of page", "skip to main content", "skip to content"}
_DATE_LINE = re.compile(r"^(updated|published|posted)\s*:?\s+(.+)$", re.I)
_READ_TIME = re.compile(r"^\d+\s*min(ute)?s?\s+read$", re.I)
_NUMBERED = re.compile(r"^(\d{1,3})[.)]\s+(.*)$")
_BULLET = re.compile(r"^[-*•–]\s+(.*)$")
_LEAD = re.compile(r"^([^.:!?]{2,60}):\s+(.+)$")
_AGO = re.compile(r"^(\d+)\s*(minute|min|hour|hr|day|week)s?\s+ago$", re.I)
_MONTHS = {
    name: number
    for number in range(1, 13)
    for name in (
        dt.date(2000, number, 1).strftime("%b").lower(),
        dt.date(2000, number, 1).strftime("%B").lower(),
    )
}
_MONTHS["sept"] = 9
_MONTH_DAY = re.compile(r"^([A-Za-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?$")
_DAY_MONTH = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]+)\.?(?:,?\s+(\d{4}))?$")


def parse_date(value: str, now: dt.datetime | None, where: str) -> str:
    """A date as a blog shows it, as YYYY-MM-DD.

    ``Feb 4`` (no year) is the most recent Feb 4 that is not after ``now``;
    ``3 days ago`` counts back from ``now``. ``now`` is the moment the page
    was saved (a folder file's modification time), never the time of the
    poll, so the same page gives the same date on every poll. Raises
    SourceError naming ``where``.
    """
    text = " ".join(value.split())
    try:
        return dt.date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        pass
    today = now.date() if now else None
    lowered = text.lower()
    if lowered in ("today", "just now") or lowered.endswith("minutes ago"):
        if today:
            return today.isoformat()
    if lowered == "yesterday" and today:
        return (today - dt.timedelta(days=1)).isoformat()
    ago = _AGO.match(text)
    if ago and now:
        amount, unit = int(ago.group(1)), ago.group(2).lower()
        delta = {
            "minute": dt.timedelta(minutes=amount),
            "min": dt.timedelta(minutes=amount),
            "hour": dt.timedelta(hours=amount),
            "hr": dt.timedelta(hours=amount),
            "day": dt.timedelta(days=amount),
            "week": dt.timedelta(weeks=amount),
        }[unit]
        return (now - delta).date().isoformat()
    match = _MONTH_DAY.match(text)
    if match:
        month_name, day, year = match.group(1), match.group(2), match.group(3)
    else:
        match = _DAY_MONTH.match(text)
        if not match:
            raise SourceError(f"{where}: date {value!r} is not a date this reader knows")
        day, month_name, year = match.group(1), match.group(2), match.group(3)
    month = _MONTHS.get(month_name.lower())
    if month is None:
        raise SourceError(f"{where}: date {value!r} has no month this reader knows")
    if year:
        try:
            return dt.date(int(year), month, int(day)).isoformat()
        except ValueError:
            raise SourceError(f"{where}: date {value!r} does not exist") from None
    if today is None:
        raise SourceError(f"{where}: date {value!r} has no year and no current date was given")
    # The page was saved at most a year ago: the latest such day not in the future.
    for year_back in range(0, 9):
        try:
            candidate = dt.date(today.year - year_back, month, int(day))
        except ValueError:
            continue  # 29 February in a year without it
        if candidate <= today:
            return candidate.isoformat()
    raise SourceError(f"{where}: date {value!r} does not exist")


def _paragraphs(text: str) -> list[tuple[int, list[str]]]:
    """Blocks separated by blank lines, each with the line number it starts on."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line:
            if not current:
                start = number
            current.append(line)
        elif current:
            blocks.append((start, current))
            current = []
    if current:
        blocks.append((start, current))
    return blocks


def _inline(text: str) -> str:
    return html.escape(text, quote=False)


def _list_item(text: str) -> str:
    """``Label: explanation`` items get their label in bold, as the page shows it."""
    lead = _LEAD.match(text)
    if lead:
        return f"<li><strong>{_inline(lead.group(1))}:</strong> {_inline(lead.group(2))}</li>"
    return f"<li>{_inline(text)}</li>"


def _body(blocks: list[list[str]]) -> str:
    """Paragraphs, headings and lists as HTML."""
    out: list[str] = []
    open_list: str | None = None
    items: list[str] = []

    def close() -> None:
        nonlocal open_list, items
        if open_list:
            out.append(f"<{open_list}>{''.join(_list_item(i) for i in items)}</{open_list}>")
        open_list, items = None, []

    for lines in blocks:
        kind = None
        if _NUMBERED.match(lines[0]):
            kind = "ol"
        elif _BULLET.match(lines[0]):
            kind = "ul"
        if kind:
            if open_list != kind:
                close()
                open_list = kind
            for line in lines:
                pattern = _NUMBERED if kind == "ol" else _BULLET
                match = pattern.match(line)
                if match:
                    items.append(match.group(match.lastindex or 1))
                elif items:
                    items[-1] += " " + line
            continue
        close()
        if len(lines) == 1 and lines[0].endswith(":") and len(lines[0]) <= 100:
            out.append(f"<h2>{_inline(lines[0][:-1].strip())}</h2>")
        else:
            out.append(f"<p>{'<br>'.join(_inline(line) for line in lines)}</p>")
    close()
    return "".join(out)


def parse(name: str, text: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Title, dates, body HTML and counters of a text page. Pure."""
    blocks = _paragraphs(text)
    # Banners may share a block with the next line when saved without a blank line.
    cleaned: list[tuple[int, list[str]]] = []
    for start, lines in blocks:
        if lines[-1].lower() == "bottom of page":
            lines = lines[:-1]
            if lines:
                cleaned.append((start, lines))
            break
        while lines and lines[0].lower() in _BANNERS:
            lines = lines[1:]
            start += 1
        if lines:
            cleaned.append((start, lines))
    result: dict[str, Any] = {"title": None, "date": None, "updated": None}
    if not cleaned:
        result["body_html"] = ""
        return result
    _, first = cleaned[0]
    result["title"] = first[0]
    rest = cleaned[1:]
    # Byline details right below the title: a date line, a reading time.
    while rest:
        start, lines = rest[0]
        date_match = _DATE_LINE.match(lines[0])
        if date_match:
            day = parse_date(date_match.group(2), now, f"{name}:{start}")
            result["updated" if date_match.group(1).lower() == "updated" else "date"] = day
        elif not _READ_TIME.match(lines[0]):
            break
        lines = lines[1:]
        rest = [(start + 1, lines), *rest[1:]] if lines else rest[1:]
    if result["updated"] and not result["date"]:
        # A saved page shows only its latest date; it is the best date there is.
        result["date"] = result["updated"]
    # The counters close the article; whatever follows them (recent posts) is not its text.
    for index in range(len(rest) - 1, -1, -1):
        found = counters_from_lines(rest[index][1])
        if found and len(rest[index][1]) <= 3:
            result.update(found)
            rest = rest[:index]
            break
    result["body_html"] = _body([lines for _, lines in rest])
    return result
