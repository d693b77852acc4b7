"""A subscriber file's rows: the header read into roles, each row checked and shaped. Pure.

Every bad row becomes a problem that names its file and line; a file that
cannot be a subscriber list at all raises InputError in one line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from newsletter.addresses import mailbox_key
from newsletter.errors import InputError
from newsletter.mime import needs_smtputf8, unreachable
from newsletter.status import SUPPRESSED, SubscriberStatus
from newsletter.subscriber_csv.cells import (
    FAST_ADDRESS,
    NAME_LIMIT,
    NAMED_ADDRESS,
    clean_name,
    export_time,
    normalize_email,
    split_tags,
)
from newsletter.subscriber_csv.shapes import (
    CONFIRM_TIME,
    CONFIRMED_TIME_HEADERS,
    EVIDENCE,
    MAX_COLUMNS,
    SIGNED_UP_HEADERS,
    NoEmailColumn,
    OptOutColumn,
    column_roles,
    detect_format,
    first_column,
    header_key,
    shape_of,
)
from newsletter.subscriber_csv.statuses import (
    has_own_status,
    is_opt_out_value,
    json_opt_out,
    opt_out_column,
    status_of,
    with_file_status,
)
from newsletter.subscriber_csv.text import decode, sniff_delimiter


@dataclass
class ParsedFile:
    name: str = ""
    format: str = "csv"
    # A list, or rows read one at a time as the import goes (``subscribers.stream_file``).
    rows: list[dict[str, Any]] | Iterator[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duplicates: int = 0
    lines: int = 0  # lines in the file, for progress
    # Every bad row, counted even where only the first ``problems`` are kept.
    bad_rows: int = 0
    # (header, what it is read as) per column, for showing before an import.
    columns: list[tuple[str, str]] = field(default_factory=list)
    # What staff said everyone in the file is (``--status``), and how many people
    # kept their own status against it (an opt-out in the file always wins).
    whole: SubscriberStatus | None = None
    overridden: int = 0


def opts_out_later(kept: dict[str, Any], later: dict[str, Any]) -> bool:
    """True if a later row of a mailbox takes the place of the one kept: it opted out, that one
    did not. Within one file an opt-out always wins, whichever row says it first."""
    return later["status"] in SUPPRESSED and kept["status"] not in SUPPRESSED


def merge_repeats(rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """One row per mailbox (in any capitals), and how many rows repeated one.

    The first row stands, in the spelling it gives, unless a later one says the
    person opted out (``opts_out_later``): that row's status, reason and time
    then stand instead.
    """
    kept: list[dict[str, Any]] = []
    where: dict[str, int] = {}
    repeats = 0
    for row in rows:
        key = mailbox_key(row["email"])
        index = where.get(key)
        if index is None:
            where[key] = len(kept)
            kept.append(row)
            continue
        repeats += 1
        if opts_out_later(kept[index], row):
            kept[index] = {**row, "email": kept[index]["email"]}
    return kept, repeats


Progress = Callable[[str, int, int], None]


def _printable(text: str, limit: int = 40) -> str:
    """A header or cell as it may be shown in one line of an error message."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text.strip())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def parse_csv(
    data: bytes,
    name: str,
    confirmed: bool,
    mapping: dict[str, str] | None = None,
    on_progress: Progress | None = None,
    *,
    eai_refusal: Callable[[], str | None] | None = None,
    guard: bool = True,
    status: SubscriberStatus | None = None,
) -> ParsedFile:
    """Parse a subscriber CSV; every bad row becomes a problem naming its line. Pure.

    ``eai_refusal``: asked (once, lazily) when an internationalised mailbox turns
    up; a reason refuses such rows, as the subscribe form and `subscribers add` do.
    ``guard``: refuse a file with an opt-out column that nothing reads
    (``OptOutColumn``); off only to show such a file's columns for mapping.
    ``status``: what everyone in the file is, as staff said (``with_file_status``).
    """
    text = decode(data, name)
    parsed = ParsedFile(name)
    if not text.strip():
        return parsed
    rows = read_rows(
        parsed,
        io.StringIO(text, newline=""),
        text[:65536],
        confirmed,
        mapping,
        on_progress,
        total_lines=text.count("\n") + 1,
        eai_refusal=eai_refusal,
        guard=guard,
        status=status,
    )
    parsed.rows, parsed.duplicates = merge_repeats(rows)
    # People, not rows: a mailbox given twice is counted once, as the row that stands.
    parsed.overridden = sum(1 for row in parsed.rows if row["overridden"])
    return parsed


def read_rows(
    parsed: ParsedFile,
    stream: Iterable[str],
    sample: str,
    confirmed: bool,
    mapping: dict[str, str] | None = None,
    on_progress: Progress | None = None,
    *,
    total_lines: int = 0,
    max_problems: int | None = None,
    eai_refusal: Callable[[], str | None] | None = None,
    guard: bool = True,
    status: SubscriberStatus | None = None,
) -> Iterator[dict[str, Any]]:
    """Read the header now and return the rows as they are read, one at a time.

    ``stream`` yields the text line by line (a file opened with
    ``newline=""``), ``sample`` is its first 64 KiB for guessing the
    delimiter. A file that cannot be a subscriber list raises InputError
    here, before any row is read; bad rows become ``parsed.problems`` as the
    iterator reaches them. Repeats of a mailbox (in any capitals) are all
    yielded: the caller chooses the row that stands (``merge_repeats``, or the
    store as it imports). Each row says whether its own status won against the
    whole file's (``overridden``). With ``max_problems`` only the first bad
    rows' lines are kept (all are counted in ``bad_rows``), so memory does not
    grow with the file.
    ``eai_refusal``, ``guard`` and ``status`` are as for ``parse_csv``.

    A column that says who opted out (its name, or a cell such as
    "unsubscribed") must be read as a status, an opt-out flag or a time:
    otherwise the file is refused (``OptOutColumn``, before any row is
    stored: the import is one transaction), never imported with those people
    sendable.
    """
    mapping = mapping or {}
    name = parsed.name
    parsed.whole = status
    if status is not None:
        # Rows that say only part of it (an opt-out flag left empty) are what
        # the whole file is said to be, unless they say otherwise.
        confirmed = status == SubscriberStatus.CONFIRMED
    delimiter, sep_line = sniff_delimiter(sample)
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    try:
        if sep_line:
            next(reader)
        first = next(reader)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise InputError(
                f"{name}:1: the header line has a field larger than the limit of "
                f"{csv.field_size_limit():,} characters; check that this is a CSV file"
            ) from None
        raise InputError(f"{name}:1: cannot read the header line ({exc})") from None
    except StopIteration:
        return iter(())
    header_line = reader.line_num
    if len(first) > MAX_COLUMNS:
        raise InputError(
            f"{name}:{header_line}: {len(first):,} columns; a subscriber list has at most "
            f"{MAX_COLUMNS:,} — check that this is the right file, or remove the unused columns"
        )
    keys = [header_key(h) for h in first]
    for column in mapping:
        if column not in keys:
            shown = ", ".join(_printable(h) for h in first[:12])
            raise InputError(f"--map: {name} has no column {column!r}; its columns: {shown}")
    fmt = detect_format(keys)
    roles = column_roles(keys, mapping, fmt)
    pending: list[tuple[int, list[str]]] = []
    if "email" in roles:
        headers = [h.strip() for h in first]
        parsed.format = fmt
    elif len(first) == 1 and "@" in first[0]:
        # A bare list of addresses without a header line.
        headers, keys, roles = ["email"], ["email"], {"email": 0}
        pending = [(header_line, first)]
        parsed.format = "plain"
    elif any("@" in cell for cell in first):
        raise InputError(
            f"{name}:{header_line}: this line holds an address, not column names; add a header "
            f"line such as email,first_name,last_name"
        )
    else:
        shown = ", ".join(_printable(h) for h in first[:8]) + (", …" if len(first) > 8 else "")
        hint = ""
        if len(first) == 1 and "mail" in keys[0]:
            hint = " (its columns seem not to be separated by a comma, semicolon, tab or |)"
        raise NoEmailColumn(
            f"{name}:{header_line}: no email column found in the header ({shown}){hint}; "
            f"name one of: email, Email Address, or use --map COLUMN=email",
            [h.strip() for h in first],
        )

    evidence_cols = [(i, EVIDENCE[k]) for i, k in enumerate(keys) if k in EVIDENCE]
    # Every other column is kept as an attribute under its header (or the
    # name --map gave it); recognised and ignored columns are not, and opt-in
    # evidence (times, IP addresses) goes to the consent record instead.
    used = set(roles.values()) | {i for i, _ in evidence_cols}
    attribute_cols = []
    for i, header in enumerate(headers):
        target = mapping.get(keys[i], "")
        if target == "ignore":
            continue
        if target.startswith("attribute:"):
            attribute_cols.append((i, target[10:].strip()))
        elif i not in used and header:
            attribute_cols.append((i, header))
    if guard:
        out_col = opt_out_column(keys, headers, used, parsed.format)
        if out_col is not None:
            header = _printable(headers[out_col])
            raise OptOutColumn(
                f"{name}:{header_line}: column {header!r} says who opted out, and nothing "
                f"reads it; nothing was imported; read it with --map '{header}=unsubscribed' "
                f"(filled in or yes: opted out), '{header}=unsubscribed_at' (when they left) "
                f"or '{header}=status' (words such as unsubscribed), and import again",
                headers[out_col],
            )
    role_of = {i: role for role, i in roles.items()}
    role_of.update({i: "consent evidence" for i, _ in evidence_cols})
    role_of.update({i: f"attribute:{name}" for i, name in attribute_cols})
    parsed.columns = [(h, role_of.get(i, "ignored")) for i, h in enumerate(headers)]
    return _rows(
        parsed,
        reader,
        pending,
        delimiter,
        headers,
        keys,
        roles,
        mapping,
        attribute_cols,
        evidence_cols,
        confirmed,
        on_progress,
        total_lines,
        max_problems,
        eai_refusal,
        guard,
        status,
    )


def _rows(
    parsed: ParsedFile,
    reader: Any,
    pending: list[tuple[int, list[str]]],
    delimiter: str,
    headers: list[str],
    keys: list[str],
    roles: dict[str, int],
    mapping: dict[str, str],
    attribute_cols: list[tuple[int, str]],
    evidence_cols: list[tuple[int, str]],
    confirmed: bool,
    on_progress: Progress | None,
    total_lines: int,
    max_problems: int | None = None,
    eai_refusal: Callable[[], str | None] | None = None,
    guard: bool = True,
    whole: SubscriberStatus | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of a file whose header ``read_rows`` has read (a generator)."""
    # Here, not at the top: email-validator is for reading addresses (cells._role_mailboxes).
    from email_validator import EmailNotValidError

    name = parsed.name
    email_col = roles["email"]
    first_col, last_col = roles.get("first_name"), roles.get("last_name")
    name_col, status_col, tag_col = roles.get("name"), roles.get("status"), roles.get("tags")
    json_col = roles.get("attributes")
    opt_in_col, opt_out_col = roles.get("subscribed"), roles.get("unsubscribed")
    unsub_col, clean_col = roles.get("unsubscribed_at"), roles.get("bounced_at")
    shape = shape_of(parsed.format)
    words = shape.words
    # Columns kept as attributes whose cells could say "unsubscribed" on
    # their own: such a cell stops the import (see ``read_rows``).
    scanned = [(i, h) for i, h in attribute_cols if keys[i] not in shape.companions]
    if not guard:
        scanned = []
    confirm_col = keys.index(CONFIRM_TIME) if CONFIRM_TIME in keys else None
    # When the person signed up and confirmed, as the file says (consent record).
    signed_col = first_column(keys, (*shape.signed_up, *SIGNED_UP_HEADERS))
    confirmed_col = first_column(keys, CONFIRMED_TIME_HEADERS)
    # When a row last changed: when the person left, if the whole file left.
    changed_col = first_column(keys, shape.changed)
    problems = _Problems(parsed, max_problems)
    report_every = 5000

    # Status and tags repeat across rows: each distinct cell is worked out once
    # (rows share the tag lists: read-only).
    statuses: dict[tuple[Any, ...], tuple[SubscriberStatus, bool]] = {}
    tag_lists: dict[str, list[str]] = {}
    no_tags: list[str] = []
    status_cols = (status_col, clean_col, unsub_col, opt_in_col, opt_out_col, confirm_col)
    # An absent column reads as the empty cell added at the end of every row.
    pad = len(headers)
    s0, s1, s2, s3, s4, s5 = (pad if c is None else c for c in status_cols)
    first_idx = pad if first_col is None else first_col
    # Only a file said to have left as a whole is dated by its rows' last change.
    changed_idx = pad if changed_col is None or whole not in SUPPRESSED else changed_col
    last_idx = pad if last_col is None else last_col
    normalize = normalize_email

    while True:
        if pending:
            start, row = pending.pop()
        else:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                end = reader.line_num
                span = f"line {start}" if end <= start else f"lines {start}-{end}"
                if "field larger than field limit" in str(exc):
                    # A cell past the csv module's limit: a huge note or a pasted
                    # file, or a quote never closed that swallowed what follows.
                    problems.append(
                        f"{name}:{start}: a field larger than the limit of "
                        f"{csv.field_size_limit():,} characters; {span} not imported; "
                        f"shorten that cell (or close its quote) and import again"
                    )
                else:
                    problems.append(
                        f"{name}:{start}: broken quotes ({exc}); {span} not imported; "
                        f"fix the quotes and import again"
                    )
                continue
            if reader.line_num > start and _swallowed_rows(row, email_col, delimiter):
                problems.append(
                    f"{name}:{start}: a quoted cell runs on to line {reader.line_num} and holds "
                    f"what look like other rows; lines {start}-{reader.line_num} not imported; "
                    f"fix the quotes and import again"
                )
                continue
            if on_progress is not None and start % report_every == 0:
                on_progress("reading", start, total_lines)
        line = start
        if len(row) <= email_col:
            if any(cell.strip() for cell in row):
                problems.append(f"{name}:{line}: missing email column")
            continue
        raw = row[email_col].strip()
        if not raw and not any(cell.strip() for cell in row):
            continue
        display = ""
        if "<" in raw or ":" in raw:
            named = NAMED_ADDRESS.match(raw)
            if named:
                display, raw = named.group(1).strip().strip('"'), named.group(2).strip()
            if raw[:7].lower() == "mailto:":
                raw = raw[7:]
        try:
            email = normalize(raw)
        except EmailNotValidError as exc:
            problems.append(f"{name}:{line}: invalid address {_printable(raw, 80)!r} ({exc})")
            continue
        if eai_refusal is not None and needs_smtputf8(email):
            refusal = eai_refusal()
            if refusal:
                problems.append(f"{name}:{line}: {unreachable(_printable(email, 80), refusal)}")
                continue
        if len(row) != pad:
            row = (row + [""] * pad)[:pad]
        row.append("")
        for i, _header in scanned:
            cell = row[i]
            if not cell:
                continue
            if is_opt_out_value(cell):
                header = _printable(headers[i])
                raise OptOutColumn(
                    f"{name}:{line}: column {header!r} holds {_printable(cell)!r}, which says "
                    f"someone opted out, and nothing reads it; nothing was imported; read it "
                    f"with --map '{header}=status' (or '{header}=unsubscribed') and import again",
                    headers[i],
                )
            if cell.lstrip()[:1] in ("{", "["):
                # JSON kept as an attribute: read as the attributes column is.
                try:
                    said = json_opt_out(json.loads(cell))
                except ValueError:
                    said = None
                if said is not None:
                    raise _json_opt_out(name, line, headers[i], said)
        attributes: dict[str, Any] = {h: row[i] for i, h in attribute_cols if row[i]}
        if json_col is not None and row[json_col].strip():
            try:
                decoded = json.loads(row[json_col])
            except ValueError as exc:
                problems.append(f"{name}:{line}: the attributes column is not valid JSON ({exc})")
                continue
            if not isinstance(decoded, dict):
                problems.append(f"{name}:{line}: the attributes column is not a JSON object")
                continue
            if guard:
                said = json_opt_out(decoded)
                if said is not None:
                    raise _json_opt_out(name, line, headers[json_col], said)
            attributes = {**decoded, **attributes}
        first_name = clean_name(row[first_idx])
        last_name = clean_name(row[last_idx])
        if not first_name and not last_name:
            full = clean_name(row[name_col] if name_col is not None else display, 2 * NAME_LIMIT)
            first_name, _, last_name = full.partition(" ")
            first_name, last_name = first_name[:NAME_LIMIT], last_name[:NAME_LIMIT].rstrip()
        # Of the time columns only whether they are filled matters here.
        key = (
            row[s0],
            row[s1].strip() != "",
            row[s2].strip() != "",
            row[s3],
            row[s4],
            row[s5].strip() != "",
        )
        known = statuses.get(key)
        if known is None:
            own = status_of(key, confirmed, words)
            known = statuses[key] = (
                (own, False) if whole is None else with_file_status(own, has_own_status(key), whole)
            )
        status, overridden = known
        left = None
        if status in SUPPRESSED:
            # When the person left, as the export says: kept as the time of
            # the unsubscribe and of the suppression, not the import's; in a file
            # said to have left as a whole, a row's last change (EmailOctopus).
            for col in (s2, s1, s4, changed_idx):
                if row[col].strip():
                    left = export_time(row[col])
                    if left:
                        break
        if tag_col is None:
            tags = no_tags
        else:
            cell = row[tag_col]
            known_tags = tag_lists.get(cell)
            if known_tags is None:
                known_tags = tag_lists[cell] = split_tags(cell)
            tags = known_tags
        evidence = None
        if evidence_cols:
            evidence = {k: row[i].strip() for i, k in evidence_cols if row[i]}
        yield {
            "file_signed_up_at": None if signed_col is None else export_time(row[signed_col]),
            "file_confirmed_at": None if confirmed_col is None else export_time(row[confirmed_col]),
            "email": email,
            "first_name": first_name or None,
            "last_name": last_name or None,
            "status": status,
            "tags": tags,
            "attributes": attributes,
            "consent": evidence or None,
            "unsubscribed_at": left,
            "overridden": overridden,
        }
    if on_progress is not None:
        on_progress("reading", total_lines, total_lines)


def _json_opt_out(name: str, line: int, column: str, said: tuple[str, str]) -> OptOutColumn:
    """The one line that stops an import at a JSON value saying that someone opted out.

    No --map reads a field inside JSON: the way on is a column of its own, or a
    file without those people.
    """
    header = _printable(column)
    field_name, value = (_printable(part) for part in said)
    return OptOutColumn(
        f"{name}:{line}: column {header!r} holds {field_name}={value!r} in its JSON, which "
        f"says someone opted out, and nothing reads it there; nothing was imported; give "
        f"that field a column of its own and read it with --map (e.g. as status), or leave "
        f"those people out of the file, and import again",
        column,
    )


class _Problems:
    """Where the row reader puts a bad row's line: counted always, kept up to a cap."""

    def __init__(self, parsed: ParsedFile, cap: int | None):
        self.parsed, self.cap = parsed, cap

    def append(self, line: str) -> None:
        self.parsed.bad_rows += 1
        if self.cap is None or len(self.parsed.problems) < self.cap:
            self.parsed.problems.append(line)


def _swallowed_rows(row: list[str], email_col: int, delimiter: str) -> bool:
    """True if a multi-line cell holds lines that look like rows of their own.

    A quote opened and closed in the wrong places makes the csv module read
    several rows as one cell without any error; notes with line breaks are
    fine, lines with an address and a delimiter are not.
    """
    for index, cell in enumerate(row):
        if index == email_col or "\n" not in cell and "\r" not in cell:
            continue
        for part in cell.splitlines()[1:]:
            if delimiter in part and any(
                FAST_ADDRESS.fullmatch(piece.strip().strip('"')) for piece in part.split(delimiter)
            ):
                return True
    return False
