"""Subscriber import and export: recognise common CSV shapes, validate, never resurrect.

Parsing is pure (text in, rows and problems out); ``import_file`` reads the
file and hands the good rows to the store in one transaction.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import InputError
from newsletter.store import Store

# Header names seen in the exports of common tools, lower-cased.
EMAIL_HEADERS = {"email", "email address", "e-mail", "e-mail address", "mail", "email_address"}
FIRST_HEADERS = {"first_name", "first name", "firstname", "fname", "given name"}
LAST_HEADERS = {"last_name", "last name", "lastname", "lname", "surname", "family name"}
NAME_HEADERS = {"name", "full name", "full_name"}
STATUS_HEADERS = {"status", "subscription status"}
TAG_HEADERS = {"tags", "labels", "tag"}
# Ghost's yes/no column for "receives newsletters"; false means the member opted out.
OPT_IN_HEADERS = {"subscribed_to_emails", "subscribed"}
FALSE_WORDS = {"false", "0", "no", "n"}
CONFIRMED_WORDS = {"confirmed", "subscribed", "active", "enabled", "yes", "true"}
OUT_WORDS = {"unsubscribed", "cleaned", "blocklisted", "blacklisted", "bounced", "complained"}
IMPORT_CONSENT = "Added by staff import from {source}"


@dataclass
class ParsedFile:
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duplicates: int = 0


def normalize_email(address: str) -> str:
    """Validate syntax only (no DNS) and return the normalised address."""
    result = validate_email(address.strip(), check_deliverability=False)
    return result.normalized


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")


def parse_csv(data: bytes, name: str, confirmed: bool) -> ParsedFile:
    """Parse a subscriber CSV; every bad row becomes a problem naming its line. Pure."""
    if b"\0" in data[:4096]:
        raise InputError(f"{name}: not a CSV file (binary content); export the list as CSV")
    text = _decode(data)
    parsed = ParsedFile()
    if not text.strip():
        return parsed
    sample = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        first = next(reader)
    except csv.Error as exc:
        raise InputError(f"{name}:1: cannot read CSV ({exc})") from None
    lowered = [h.strip().lower() for h in first]
    email_col = next((i for i, h in enumerate(lowered) if h in EMAIL_HEADERS), None)
    if email_col is None:
        if len(first) == 1 and "@" in first[0]:
            # A bare list of addresses without a header line.
            headers, pending = ["email"], [(1, first)]
            email_col = 0
        else:
            raise InputError(
                f"{name}:1: no email column found in the header ({', '.join(first[:8])}); "
                f"name one of: email, Email Address"
            )
    else:
        headers, pending = [h.strip() for h in first], []

    def column(options: set[str]) -> int | None:
        return next((i for i, h in enumerate(h.lower() for h in headers) if h in options), None)

    first_col, last_col = column(FIRST_HEADERS), column(LAST_HEADERS)
    name_col, status_col, tag_col = (
        column(NAME_HEADERS),
        column(STATUS_HEADERS),
        column(TAG_HEADERS),
    )
    opt_in_col = column(OPT_IN_HEADERS)
    known = {
        c
        for c in (email_col, first_col, last_col, name_col, status_col, tag_col, opt_in_col)
        if c is not None
    }
    seen: set[str] = set()

    def rows() -> Iterable[tuple[int, list[str]]]:
        yield from pending
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                parsed.problems.append(f"{name}:{reader.line_num}: cannot read row ({exc})")
                return
            yield reader.line_num, row

    for line, row in rows():
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= email_col:
            parsed.problems.append(f"{name}:{line}: missing email column")
            continue
        raw = row[email_col].strip()
        try:
            email = normalize_email(raw)
        except EmailNotValidError as exc:
            parsed.problems.append(f"{name}:{line}: invalid address {raw!r} ({exc})")
            continue
        if email in seen:
            parsed.duplicates += 1
            continue
        seen.add(email)

        def cell(col: int | None, row: list[str] = row) -> str:
            return row[col].strip() if col is not None and col < len(row) else ""

        first_name, last_name = cell(first_col), cell(last_col)
        if not first_name and not last_name and cell(name_col):
            first_name, _, last_name = cell(name_col).partition(" ")
        status_word = cell(status_col).lower()
        if status_word in OUT_WORDS or cell(opt_in_col).lower() in FALSE_WORDS:
            status = "unsubscribed"
        elif status_word in CONFIRMED_WORDS or (confirmed and not status_word):
            status = "confirmed"
        else:
            status = "unconfirmed"
        tags = [t.strip() for t in cell(tag_col).replace(";", ",").split(",") if t.strip()]
        attributes = {
            headers[i]: row[i]
            for i in range(min(len(headers), len(row)))
            if i not in known and row[i] != ""
        }
        parsed.rows.append(
            {
                "email": email,
                "first_name": first_name or None,
                "last_name": last_name or None,
                "status": status,
                "tags": tags,
                "attributes": attributes,
            }
        )
    return parsed


@dataclass
class ImportReport:
    name: str
    added: int = 0
    existing: int = 0
    suppressed: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.name}: {self.added} added, {self.existing} already present, "
            f"{self.suppressed} suppressed (unsubscribed or bounced, left as they are), "
            f"{self.duplicates} duplicate rows, {len(self.problems)} bad rows"
        )


def import_file(
    store: Store,
    path: Path,
    now: datetime,
    list_name: str | None = None,
    confirmed: bool = False,
    strict: bool = False,
) -> ImportReport:
    """Import one CSV file in one transaction; bad rows are reported, not fatal unless strict."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror})") from None
    parsed = parse_csv(data, str(path), confirmed)
    report = ImportReport(str(path), duplicates=parsed.duplicates, problems=parsed.problems)
    if strict and parsed.problems:
        raise InputError(
            f"{parsed.problems[0]} (--strict: nothing imported; "
            f"{len(parsed.problems)} bad rows in all)"
        )
    counts = store.add_subscribers(
        parsed.rows, list_name, f"import:{path.name}", IMPORT_CONSENT.format(source=path.name), now
    )
    report.added, report.existing = counts["added"], counts["existing"]
    report.suppressed = counts["suppressed"]
    return report


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
