"""Subscriber import and export: recognise common CSV shapes, validate, never resurrect.

Fetch, parse and save are separate steps: ``stream_file`` (``stream_data``
for an upload) opens a file and reads its header (``subscriber_csv``, pure),
``save`` hands the good rows to the store in one transaction as they are
read. ``import_file`` and ``import_data`` do both, so memory does not grow
with the file.
"""

from __future__ import annotations

import collections
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from newsletter.errors import InputError
from newsletter.status import SubscriberStatus
from newsletter.store import Store
from newsletter.subscriber_csv import (
    FILE_STATUSES,
    FORMATS,
    ParsedFile,
    Progress,
    check_sample,
    decode,
    normalize_email,
    parse_csv,
    parse_mapping,
    read_rows,
    sniff_encoding,
)

__all__ = [
    "ImportReport",
    "ParsedFile",
    "check_file",
    "check_strict",
    "csv_cell",
    "export_csv",
    "file_status",
    "import_data",
    "import_file",
    "normalize_email",
    "parse_csv",
    "parse_mapping",
    "parse_segment",
    "save",
    "stream_data",
    "stream_file",
]
IMPORT_CONSENT = "Added by staff import from {source}"
# Kept in the consent record when staff said what everyone in the file is:
# the record then says on whose word the people came in as they did.
IMPORT_SAID = "; staff said everyone in the file is {status}"


@dataclass
class ImportReport:
    name: str
    format: str = "csv"
    added: int = 0
    existing: int = 0
    suppressed: int = 0
    opted_out: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    bad_rows: int = 0  # may be more than the problems kept
    # Why the whole file was not imported (a folder import goes on to the
    # next file): one line naming the file and what to do. None when imported.
    failed: str | None = None
    # What staff said everyone in the file is, and the rows whose own status won.
    whole: SubscriberStatus | None = None
    overridden: int = 0
    # When the rows were stored: the ``created_at`` of everyone it added.
    at: datetime | None = None

    def line(self) -> str:
        said = ""
        if self.whole is not None:
            # Counted once per person (the store's count), however many rows name them.
            people = "person" if self.overridden == 1 else "people"
            said = (
                f"; everyone taken as {self.whole} but {self.overridden} {people} whose own "
                f"status in the file said otherwise (an opt-out or a missing confirmation "
                f"in the file always wins)"
            )
        return (
            f"{self.name} ({FORMATS.get(self.format, self.format)}): {self.added} added, "
            f"{self.existing} already present, {self.suppressed} suppressed (unsubscribed, "
            f"bounced, complained or erased; left as they are), {self.opted_out} opted out in "
            f"the file (kept on the suppression list), {self.duplicates} duplicate rows "
            "(a mailbox already given, in any capitals), "
            f"{max(self.bad_rows, len(self.problems))} bad rows{said}"
        )

    def record(self) -> dict[str, Any]:
        """What the audit log keeps of an import beside its ``line()``, for programs: the
        file's name as its people's ``source`` gives it, when they were stored and the
        counts. The history finds who imported a person by this, not by the words."""
        return {
            "file": Path(self.name).name,
            "at": self.at,
            "format": self.format,
            "added": self.added,
            "existing": self.existing,
            "suppressed": self.suppressed,
            "opted_out": self.opted_out,
            "duplicates": self.duplicates,
            "bad_rows": max(self.bad_rows, len(self.problems)),
            "overridden": self.overridden,
        }


def file_status(word: str | None, confirmed: bool = False) -> SubscriberStatus | None:
    """``--status WORD`` as what everyone in a file is, or None if not given.

    One of FILE_STATUSES. ``--confirmed`` alone says less (rows without a
    status count as confirmed) and may go with ``--status`` only if they agree.
    """
    if word is None:
        return None
    if word not in FILE_STATUSES:
        raise InputError(f"--status {word!r}: use one of {', '.join(FILE_STATUSES)}")
    status = SubscriberStatus(word)
    if confirmed and status != SubscriberStatus.CONFIRMED:
        raise InputError(
            f"--confirmed with --status {word}: say what everyone in the file is once, with "
            f"--status"
        )
    return status


# Files are scanned and read this much at a time: an import's memory does not
# grow with the file.
CHUNK = 1 << 20
# The lines of this many bad rows are kept for the report (every one is
# counted): a file of a million bad rows must not fill the memory with them.
MAX_PROBLEMS = 1000


def stream_file(
    path: Path,
    confirmed: bool = False,
    mapping: dict[str, str] | None = None,
    on_progress: Progress | None = None,
    *,
    eai_refusal: Callable[[], str | None] | None = None,
    status: SubscriberStatus | None = None,
) -> ParsedFile:
    """Open one CSV file whose rows are read as they are taken (``rows`` is an iterator).

    The header, the encoding and binary content are checked now (InputError);
    bad rows land in ``problems`` as the rows are read. Repeated mailboxes are
    left to ``save`` to count, so nothing is kept per row. ``eai_refusal`` and
    ``status`` are as for ``import_file``.
    """
    name = str(path)
    try:
        with path.open("rb") as raw:
            encoding, lines = sniff_encoding(iter(lambda: raw.read(CHUNK), b""), name)
        stream = path.open(encoding=encoding, newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror})") from None
    try:
        sample = stream.read(65536)
        check_sample(sample, name)
        stream.seek(0)
        parsed = ParsedFile(name, lines=lines)
        rows = _streamed(
            parsed, stream, sample, confirmed, mapping, on_progress, eai_refusal, status
        )
    except BaseException:
        stream.close()
        raise
    parsed.rows = _Rows(rows, stream, name)
    return parsed


class _Rows:
    """Rows read from an open file, which is closed when they end or on ``close()``."""

    def __init__(self, rows: Iterator[dict[str, Any]], stream: Any, name: str):
        self._rows, self._stream, self._name = rows, stream, name

    def __iter__(self) -> _Rows:
        return self

    def __next__(self) -> dict[str, Any]:
        try:
            return next(self._rows)
        except UnicodeDecodeError:
            # The encoding was checked on the whole file before: it changed since
            # (still being copied in?). The import's transaction is rolled back.
            self.close()
            raise InputError(
                f"{self._name}: the file changed while it was being imported; nothing of it "
                f"was stored; import it again once it is complete"
            ) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._stream.close()


def stream_data(
    data: bytes,
    name: str,
    confirmed: bool = False,
    mapping: dict[str, str] | None = None,
    *,
    eai_refusal: Callable[[], str | None] | None = None,
    status: SubscriberStatus | None = None,
) -> ParsedFile:
    """``stream_file`` for a file already in memory (an upload): the same rows, read as taken.

    The text is held (an upload's size is capped), the rows are not: the
    import dedupes them by mailbox in the store as it does a file's.
    """
    text = decode(data, name)
    parsed = ParsedFile(name, lines=text.count("\n") + 1)
    if text.strip():
        parsed.rows = _streamed(
            parsed,
            io.StringIO(text, newline=""),
            text[:65536],
            confirmed,
            mapping,
            None,
            eai_refusal,
            status,
        )
    return parsed


def _streamed(
    parsed: ParsedFile,
    stream: Iterable[str],
    sample: str,
    confirmed: bool,
    mapping: dict[str, str] | None,
    on_progress: Progress | None,
    eai_refusal: Callable[[], str | None] | None,
    status: SubscriberStatus | None,
) -> Iterator[dict[str, Any]]:
    """The rows of a file read as an import takes them, for ``stream_file`` and ``stream_data``.

    Repeats are left to the store to find (nothing kept per row), and only the
    first MAX_PROBLEMS bad rows' lines are kept (every one is counted).
    """
    return read_rows(
        parsed,
        stream,
        sample,
        confirmed,
        mapping,
        on_progress,
        total_lines=parsed.lines,
        max_problems=MAX_PROBLEMS,
        eai_refusal=eai_refusal,
        status=status,
    )


def check_file(
    path: Path,
    confirmed: bool = False,
    mapping: dict[str, str] | None = None,
    on_progress: Progress | None = None,
    every_row: bool = True,
    *,
    eai_refusal: Callable[[], str | None] | None = None,
    status: SubscriberStatus | None = None,
) -> ParsedFile:
    """Check a file before anything is imported, keeping no rows.

    Its encoding and header always (InputError); with ``every_row`` (for
    --strict) every row too, whose problems the result lists.
    """
    parsed = stream_file(
        path, confirmed, mapping, on_progress, eai_refusal=eai_refusal, status=status
    )
    rows = parsed.rows
    assert isinstance(rows, _Rows)
    if every_row:
        collections.deque(rows, maxlen=0)
    else:
        rows.close()
    return parsed


def check_strict(parsed: ParsedFile) -> None:
    """--strict: refuse the file, naming its first bad row, if any row is bad."""
    if parsed.problems:
        raise InputError(
            f"{parsed.problems[0]} (--strict: nothing imported; "
            f"{max(parsed.bad_rows, len(parsed.problems))} bad rows in all)"
        )


def save(
    store: Store,
    parsed: ParsedFile,
    now: datetime,
    list_name: str | None = None,
    on_progress: Progress | None = None,
    *,
    list_id: int | None = None,
) -> ImportReport:
    """Store the good rows of a parsed file in one transaction and report what happened.

    ``list_id``: the list, by id rather than ``list_name`` (NotFound if it is gone).
    """
    report = ImportReport(
        parsed.name,
        parsed.format,
        duplicates=parsed.duplicates,
        problems=parsed.problems,
        whole=parsed.whole,
        at=now,
    )
    label = Path(parsed.name).name
    total = len(parsed.rows) if isinstance(parsed.rows, list) else parsed.lines

    def saving(done: int) -> None:
        if on_progress is not None:
            on_progress("saving", done, total)

    counts = store.add_subscribers(
        parsed.rows,
        list_name,
        f"import:{label}",
        IMPORT_CONSENT.format(source=label)
        + ("" if parsed.whole is None else IMPORT_SAID.format(status=parsed.whole)),
        now,
        on_progress=saving,
        list_id=list_id,
    )
    report.added, report.existing = counts["added"], counts["existing"]
    report.bad_rows = max(parsed.bad_rows, len(parsed.problems))
    # Rows naming a mailbox already there in other capitals are duplicates too,
    # as are a streamed file's repeats.
    report.duplicates += counts["duplicates"]
    report.suppressed, report.opted_out = counts["suppressed"], counts["opted_out"]
    # People whose own status won, counted by the store once per mailbox.
    report.overridden = counts["overridden"]
    return report


def import_file(
    store: Store,
    path: Path,
    now: datetime,
    list_name: str | None = None,
    confirmed: bool = False,
    strict: bool = False,
    mapping: dict[str, str] | None = None,
    on_progress: Progress | None = None,
    *,
    eai_refusal: Callable[[], str | None] | None = None,
    status: SubscriberStatus | None = None,
) -> ImportReport:
    """Import one CSV file in one transaction; bad rows are reported, not fatal unless strict.

    The file is read a row at a time as the rows are stored, so a file of
    millions of rows needs no more memory than one of a hundred (--strict
    reads it once more first, to refuse it before anything is stored).

    ``eai_refusal``: why the transport cannot reach internationalised mailboxes, if it
    cannot (``Workspace.eai_refusal``); such rows are then bad rows with that reason.

    ``status``: what everyone in the file is, as staff said (``file_status``):
    rows that say nothing of themselves take it, an opt-out in the file keeps
    its own status and time (``subscriber_csv.statuses.with_file_status``).
    """
    if strict:
        check_strict(check_file(path, confirmed, mapping, eai_refusal=eai_refusal, status=status))
    parsed = stream_file(
        path,
        confirmed,
        mapping,
        _importing(on_progress),
        eai_refusal=eai_refusal,
        status=status,
    )
    return save(store, parsed, now, list_name)


def import_data(
    store: Store,
    data: bytes,
    name: str,
    now: datetime,
    list_name: str | None = None,
    confirmed: bool = False,
    mapping: dict[str, str] | None = None,
    *,
    eai_refusal: Callable[[], str | None] | None = None,
    status: SubscriberStatus | None = None,
    list_id: int | None = None,
) -> ImportReport:
    """``import_file`` for a file already in memory (the dashboard's upload), in one transaction.

    ``list_id``: the list by id (the dashboard keeps a pending import's list so).
    """
    parsed = stream_data(data, name, confirmed, mapping, eai_refusal=eai_refusal, status=status)
    return save(store, parsed, now, list_name, list_id=list_id)


def _importing(on_progress: Progress | None) -> Progress | None:
    """Progress of a file read as it is stored: one phase, counted in lines of the file."""
    if on_progress is None:
        return None
    return lambda _phase, done, total: on_progress("importing", done, total)


# Engagement rules: ``engaged:DAYS`` (opened or clicked as a person), ``clicked:DAYS``.
ENGAGEMENT_KINDS = ("engaged", "clicked")
# Ten years: a window longer than any event is kept is a typing slip, not a rule.
MAX_ENGAGEMENT_DAYS = 3650


def parse_segment(text: str) -> dict[str, Any]:
    """Read one ``--segment`` rule: ``tag:NAME``, ``attribute:KEY=VALUE``, ``attribute:KEY``,
    ``engaged:DAYS`` or ``clicked:DAYS``.

    A leading ``!`` excludes the matching subscribers instead; for an engagement
    rule, ``!`` means "got a campaign in those days and did not" (see
    ``store.base._recipient_filter``), so a newcomer who got nothing yet is in neither.
    """
    rule = text.strip()
    negate = rule.startswith("!")
    rule = rule.lstrip("!").strip()
    kind, _, value = rule.partition(":")
    kind = kind.strip().lower()
    value = value.strip()
    usage = (
        f"--segment {text!r}: use tag:NAME, attribute:KEY=VALUE, attribute:KEY, "
        f"engaged:DAYS or clicked:DAYS (start with ! to exclude), e.g. --segment tag:back-pain"
    )
    if kind == "tag" and value:
        return {"kind": "tag", "value": value, "negate": negate}
    if kind in ("attribute", "attr") and value:
        key, has_value, wanted = value.partition("=")
        if not key.strip():
            raise InputError(usage)
        return {
            "kind": "attribute",
            "key": key.strip(),
            "value": wanted.strip() if has_value else None,
            "negate": negate,
        }
    if kind in ENGAGEMENT_KINDS:
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_ENGAGEMENT_DAYS):
            raise InputError(
                f"--segment {text!r}: {value!r} is not a number of days; write {kind}:DAYS "
                f"with DAYS a whole number from 1 to {MAX_ENGAGEMENT_DAYS}, "
                f"e.g. --segment {kind}:90"
            )
        return {"kind": kind, "days": int(value), "negate": negate}
    raise InputError(usage)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """Make a value safe for spreadsheets: a leading formula character is quoted away."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def export_csv(subscribers: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["email", "first_name", "last_name", "status", "tags", "created_at", "attributes"]
    )
    for s in subscribers:
        writer.writerow(
            [
                csv_cell(v)
                for v in (
                    s["email"],
                    s["first_name"],
                    s["last_name"],
                    s["status"],
                    ";".join(s["tags"]),
                    s["created_at"],
                    json.dumps(s["attributes"], ensure_ascii=False) if s["attributes"] else "",
                )
            ]
        )
    return out.getvalue()
