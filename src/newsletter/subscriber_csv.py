"""Reading subscriber CSV files: encodings, delimiters, the export shapes of common tools.

Pure: bytes in, rows and problems out. Every bad row becomes a problem that
names its file and line; a file that cannot be a subscriber list at all raises
InputError in one line. ``normalize_email`` validates an address.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from newsletter.addresses import mailbox_key
from newsletter.errors import InputError
from newsletter.mime import needs_smtputf8, unreachable

# Header names seen in the exports of common tools, lower-cased, with runs of
# spaces, dashes and underscores written as one space.
EMAIL_HEADERS = {
    "email",
    "email address",
    "e mail",
    "e mail address",
    "mail",
    "emailaddress",
    "subscriber email",
}
FIRST_HEADERS = {"first name", "firstname", "fname", "given name"}
LAST_HEADERS = {"last name", "lastname", "lname", "surname", "family name"}
NAME_HEADERS = {"name", "full name"}
STATUS_HEADERS = {"status", "subscription status", "member status"}
TAG_HEADERS = {"tags", "labels", "tag"}
# listmonk's "attributes" and Keila's "Data": a JSON object of custom fields.
JSON_HEADERS = {"attributes", "data", "attribs"}
# Ghost's yes/no "receives newsletters": no means the member opted out.
OPT_IN_HEADERS = {"subscribed to emails", "subscribed"}
# Substack's "email_disabled": yes means the reader turned emails off.
OPT_OUT_HEADERS = {"email disabled"}
# Mailchimp puts each status in its own export; these columns tell them apart,
# and its consent evidence (opt-in and confirmation time and IP) is kept.
UNSUB_TIME, CLEAN_TIME, CONFIRM_TIME = "unsub time", "clean time", "confirm time"
EVIDENCE = {
    "optin time": "optin_time",
    "optin ip": "optin_ip",
    "confirm time": "confirm_time",
    "confirm ip": "confirm_ip",
}
FALSE_WORDS = {"false", "0", "no", "n", "off"}
TRUE_WORDS = {"true", "1", "yes", "y", "on"}
CONFIRMED_WORDS = {"confirmed", "subscribed", "active", "enabled", "yes", "true", "opted in"}
UNSUBSCRIBED_WORDS = {"unsubscribed", "blocklisted", "blacklisted", "blocked", "opted out"}
BOUNCED_WORDS = {"bounced", "cleaned", "hard bounce", "hardbounce", "unreachable", "invalid"}
COMPLAINED_WORDS = {"complained", "complaint", "spam", "abuse", "spam complaint"}
# A subscriber export has tens of columns; thousands mean the wrong file.
MAX_COLUMNS = 1000
# --map targets; "attribute:NAME" keeps a column under another name.
MAP_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "name",
    "status",
    "tags",
    "attributes",
    "subscribed",
    "unsubscribed",
    "ignore",
)
FORMATS = {
    "mailchimp": "Mailchimp export",
    "listmonk": "listmonk export",
    "ghost": "Ghost members export",
    "substack": "Substack export",
    "keila": "Keila export",
    "plain": "plain list of addresses",
    "csv": "CSV",
}
_MAGIC = (
    (b"PK\x03\x04", "a zip archive or Excel workbook"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SEPARATORS = re.compile(r"[\s_\-]+")
_NAMED_ADDRESS = re.compile(r"^(.*?)\s*<([^<>]+)>\s*$")
_TAG_SPLIT = re.compile(r"[,;|]")

# The common shape of an address: ASCII dot-atom local part, a host name with
# a letter-only top-level domain. email-validator accepts every address this
# matches (tests compare the two on thousands of samples) and normalises it
# by lower-casing the domain and the role mailboxes of RFC 2142, which
# ``normalize_email`` does itself; anything else goes to email-validator.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_FAST_ADDRESS = re.compile(
    rf"({_ATEXT}(?:\.{_ATEXT})*)@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z])?)",
    re.ASCII,
)
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")
_ROLE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


# A person's name is kept to this many characters (each of first and last name).
NAME_LIMIT = 100
# Invisible joiners that some scripts (Persian, Indic, emoji sequences) need
# inside a name: kept, though Python does not count them printable.
_NAME_JOINERS = frozenset("\u200c\u200d")


def clean_name(value: str | None, limit: int = NAME_LIMIT) -> str:
    """A name as given at intake (import, form, CLI), made safe to put in a mail header.

    Line breaks, tabs and other control characters become single spaces (a
    CR/LF in a name would make every message to the person fail), other
    invisible characters are dropped, runs of spaces become one, and the
    ends are trimmed. One rule for every way a name comes in.
    """
    if not value:
        return ""
    if not value.isprintable():
        value = "".join(
            ch
            if ch.isprintable() or ch in _NAME_JOINERS
            else " "
            if ch.isspace() or unicodedata.category(ch) in ("Cc", "Zl", "Zp")
            else ""
            for ch in value
        )
    return " ".join(value.split())[:limit].rstrip()


def normalize_email(address: str) -> str:
    """Validate syntax only (no DNS) and return the normalised address.

    The result is the spelling stored and sent to; whether two addresses are
    one mailbox is ``addresses.mailbox_key``'s to say. Raises
    ``EmailNotValidError`` naming what is wrong.
    """
    address = address.strip()
    match = _FAST_ADDRESS.fullmatch(address)
    if match is not None and len(address) <= 254:
        local, domain = match.group(1), match.group(2)
        tld = domain.rpartition(".")[2].lower()
        if len(local) <= 64 and "--" not in domain and tld not in _SPECIAL_USE:
            if local.lower() in _ROLE_MAILBOXES:
                local = local.lower()
            return f"{local}@{domain.lower()}"
    return validate_email(address, check_deliverability=False).normalized


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


Progress = Callable[[str, int, int], None]


def _printable(text: str, limit: int = 40) -> str:
    """A header or cell as it may be shown in one line of an error message."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text.strip())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _refuse_known_binary(head: bytes, name: str) -> None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise InputError(
                f"{name}: binary content ({what}), not CSV text; save or export the list "
                f"as CSV (UTF-8) and import that file"
            )


def _marked_encoding(data: bytes) -> str | None:
    """The encoding a BOM names, or UTF-16 seen in the zero bytes of the start, or None."""
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return codec
    if len(data) >= 4:
        head = data[:512]
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
    return None


def check_sample(sample: str, name: str) -> None:
    """Refuse text whose start is full of control characters (a binary file read as text)."""
    controls = len(_CONTROL.findall(sample))
    if "\0" in sample or (sample and controls > max(2, len(sample) // 100)):
        raise InputError(
            f"{name}: binary content, not CSV text (control characters); "
            f"export the list as CSV (UTF-8)"
        )


def sniff_encoding(chunks: Iterable[bytes], name: str) -> tuple[str, int]:
    """The encoding ``decode`` would choose for these bytes, and how many lines they hold.

    For a file read a chunk at a time (the first chunk at least 512 bytes):
    memory does not grow with the file. Refuses binary content as ``decode`` does.
    """
    chunks = iter(chunks)
    head = next(chunks, b"")
    _refuse_known_binary(head, name)
    marked = _marked_encoding(head)
    decoders = {
        codec: codecs.getincrementaldecoder(codec)()
        for codec in ([marked] if marked else ["utf-8", "cp1252"])
    }
    lines = 0
    for chunk in itertools.chain([head], chunks, [None]):
        final = chunk is None
        data = b"" if chunk is None else chunk
        lines += data.count(b"\n")
        if marked is None and b"\0" in data:
            raise InputError(
                f"{name}: binary content, not CSV text (it contains NUL bytes); "
                f"export the list as CSV (UTF-8)"
            )
        for codec, decoder in list(decoders.items()):
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError:
                del decoders[codec]
                continue
            if "\0" in text:
                raise InputError(
                    f"{name}: binary content, not CSV text (control characters); "
                    f"export the list as CSV (UTF-8)"
                )
        if marked and not decoders:
            raise InputError(
                f"{name}: binary content, not CSV text ({marked} that does not decode); "
                f"export the list as CSV (UTF-8)"
            )
    # UTF-8 if it decodes, else Windows-1252, else Latin-1 (see ``decode``).
    return next(iter(decoders), "latin-1"), lines + 1


def decode(data: bytes, name: str) -> str:
    """Turn a file's bytes into text: BOMs, UTF-16 without one, UTF-8, else Windows-1252.

    Refuses binary content (spreadsheets, archives, images, random bytes)
    with one line naming the file.
    """
    _refuse_known_binary(data, name)
    # Excel's "Unicode text" without a BOM: every other byte is zero.
    encoding = _marked_encoding(data)
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            raise InputError(
                f"{name}: binary content, not CSV text ({encoding} that does not decode); "
                f"export the list as CSV (UTF-8)"
            ) from None
    elif b"\0" in data:
        raise InputError(
            f"{name}: binary content, not CSV text (it contains NUL bytes); "
            f"export the list as CSV (UTF-8)"
        )
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Windows-1252 is what spreadsheets write when they do not write
            # UTF-8; the five bytes it leaves undefined fall back to Latin-1.
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    if "\0" in text:
        check_sample("\0", name)
    check_sample(text[:65536], name)
    return text


def sniff_delimiter(text: str) -> tuple[str, bool]:
    """Guess the delimiter from the first lines; True if an Excel ``sep=`` line names it."""
    first = text[:8].strip().lower()
    if first.startswith("sep=") and len(first) >= 5 and first[4] in ",;\t|":
        return first[4], True
    lines = [line for line in text[:65536].splitlines()[:30] if line.strip()][:20]
    best, best_score = ",", (0.0, 1)
    for delimiter in (",", ";", "\t", "|"):
        try:
            counts = [len(row) for row in csv.reader(lines, delimiter=delimiter)]
        except csv.Error:
            continue
        if not counts or counts[0] < 2:
            continue
        rest = counts[1:]
        consistent = sum(c == counts[0] for c in rest) / len(rest) if rest else 1.0
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best, False


def _header_key(header: str) -> str:
    cleaned = header.strip().strip('"').replace("\ufeff", "").replace("\u200b", "")
    return _SEPARATORS.sub(" ", cleaned.lower()).strip()


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """Read ``--map COLUMN=FIELD`` options into {column key: field}."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        target = target.strip()
        if not sep or not column.strip() or not target:
            raise InputError(f"--map {pair!r}: write COLUMN=FIELD, e.g. --map 'E-Mail=email'")
        if target.lower() not in MAP_FIELDS and not (
            target.lower().startswith("attribute:") and target[10:].strip()
        ):
            raise InputError(
                f"--map {pair!r}: unknown field {target!r}; use one of "
                f"{', '.join(MAP_FIELDS)} or attribute:NAME"
            )
        if not target.lower().startswith("attribute:"):
            target = target.lower()
        mapping[_header_key(column)] = target
    return mapping


def detect_format(keys: list[str]) -> str:
    """Name the tool that wrote a header, for the import report."""
    found = set(keys)
    if "email address" in found and found & {"member rating", "optin time", "leid", "euid"}:
        return "mailchimp"
    if {"uuid", "attributes"} <= found:
        return "listmonk"
    if "subscribed to emails" in found:
        return "ghost"
    if found & {"email disabled", "active subscription"}:
        return "substack"
    if {"data", "first name", "last name"} <= found:
        return "keila"
    if len(keys) == 1:
        return "plain"
    return "csv"


def _roles(keys: list[str], mapping: dict[str, str]) -> dict[str, int]:
    """Which column plays which part: --map first, then the known header names."""
    roles: dict[str, int] = {}
    for index, key in enumerate(keys):
        target = mapping.get(key, "")
        if target and target != "ignore" and not target.startswith("attribute:"):
            roles.setdefault(target, index)
    vocab = (
        ("email", EMAIL_HEADERS),
        ("first_name", FIRST_HEADERS),
        ("last_name", LAST_HEADERS),
        ("name", NAME_HEADERS),
        ("status", STATUS_HEADERS),
        ("tags", TAG_HEADERS),
        ("attributes", JSON_HEADERS),
        ("subscribed", OPT_IN_HEADERS),
        ("unsubscribed", OPT_OUT_HEADERS),
    )
    mapped = set(mapping)
    for role, names in vocab:
        if role in roles:
            continue
        index = next(
            (i for i, k in enumerate(keys) if k in names and k not in mapped),
            None,
        )
        if index is not None:
            roles[role] = index
    return roles


def _tags(cell: str) -> list[str]:
    tags: dict[str, None] = {}
    for part in _TAG_SPLIT.split(cell):
        tag = part.strip().strip('"').strip()
        if tag:
            tags.setdefault(tag, None)
    return list(tags)


def parse_csv(
    data: bytes,
    name: str,
    confirmed: bool,
    mapping: dict[str, str] | None = None,
    on_progress: Progress | None = None,
    *,
    eai_refusal: Callable[[], str | None] | None = None,
) -> ParsedFile:
    """Parse a subscriber CSV; every bad row becomes a problem naming its line. Pure.

    ``eai_refusal``: asked (once, lazily) when an internationalised mailbox turns
    up; a reason refuses such rows, as the subscribe form and `subscribers add` do.
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
    )
    parsed.rows = list(rows)
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
    dedupe: bool = True,
    max_problems: int | None = None,
    eai_refusal: Callable[[], str | None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Read the header now and return the rows as they are read, one at a time.

    ``stream`` yields the text line by line (a file opened with
    ``newline=""``), ``sample`` is its first 64 KiB for guessing the
    delimiter. A file that cannot be a subscriber list raises InputError
    here, before any row is read; bad rows become ``parsed.problems`` as the
    iterator reaches them. Repeats are the same mailbox in any capitals
    (``mailbox_key``); with ``dedupe=False`` they are left for the caller to
    count, and with ``max_problems`` only the first bad rows' lines are kept
    (all are counted in ``bad_rows``), so memory does not grow with the file.
    ``eai_refusal`` is as for ``parse_csv``.
    """
    mapping = mapping or {}
    name = parsed.name
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
    keys = [_header_key(h) for h in first]
    for column in mapping:
        if column not in keys:
            shown = ", ".join(_printable(h) for h in first[:12])
            raise InputError(f"--map: {name} has no column {column!r}; its columns: {shown}")
    roles = _roles(keys, mapping)
    pending: list[tuple[int, list[str]]] = []
    if "email" in roles:
        headers = [h.strip() for h in first]
        parsed.format = detect_format(keys)
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
        raise InputError(
            f"{name}:{header_line}: no email column found in the header ({shown}){hint}; "
            f"name one of: email, Email Address, or use --map COLUMN=email"
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
        dedupe,
        max_problems,
        eai_refusal,
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
    dedupe: bool,
    max_problems: int | None = None,
    eai_refusal: Callable[[], str | None] | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of a file whose header ``read_rows`` has read (a generator)."""
    name = parsed.name
    email_col = roles["email"]
    first_col, last_col = roles.get("first_name"), roles.get("last_name")
    name_col, status_col, tag_col = roles.get("name"), roles.get("status"), roles.get("tags")
    json_col = roles.get("attributes")
    opt_in_col, opt_out_col = roles.get("subscribed"), roles.get("unsubscribed")
    unsub_col = keys.index(UNSUB_TIME) if UNSUB_TIME in keys else None
    clean_col = keys.index(CLEAN_TIME) if CLEAN_TIME in keys else None
    confirm_col = keys.index(CONFIRM_TIME) if CONFIRM_TIME in keys else None
    seen: set[str] = set()  # mailbox keys: ALICE@ is alice@
    problems = _Problems(parsed, max_problems)
    report_every = 5000

    def status_of(key: tuple[Any, ...]) -> str:
        word, clean, unsub, opt_in, opt_out, confirm = key
        word = _header_key(word)
        if clean:
            return "bounced"
        if unsub:
            return "unsubscribed"
        if word in BOUNCED_WORDS:
            return "bounced"
        if word in COMPLAINED_WORDS:
            return "complained"
        if (
            word in UNSUBSCRIBED_WORDS
            or opt_in.strip().lower() in FALSE_WORDS
            or opt_out.strip().lower() in TRUE_WORDS
        ):
            return "unsubscribed"
        if word in CONFIRMED_WORDS or confirm or (confirmed and not word):
            return "confirmed"
        return "unconfirmed"

    # Status and tags repeat across rows: each distinct cell is worked out once
    # (rows share the tag lists: read-only).
    statuses: dict[tuple[Any, ...], str] = {}
    tag_lists: dict[str, list[str]] = {}
    no_tags: list[str] = []
    status_cols = (status_col, clean_col, unsub_col, opt_in_col, opt_out_col, confirm_col)
    # An absent column reads as the empty cell added at the end of every row.
    pad = len(headers)
    s0, s1, s2, s3, s4, s5 = (pad if c is None else c for c in status_cols)
    first_idx = pad if first_col is None else first_col
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
            named = _NAMED_ADDRESS.match(raw)
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
        if dedupe and mailbox_key(email) in seen:
            parsed.duplicates += 1
            continue
        if len(row) != pad:
            row = (row + [""] * pad)[:pad]
        row.append("")
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
            attributes = {**decoded, **attributes}
        if dedupe:
            seen.add(mailbox_key(email))
        first_name = clean_name(row[first_idx])
        last_name = clean_name(row[last_idx])
        if not first_name and not last_name:
            full = clean_name(row[name_col] if name_col is not None else display, 2 * NAME_LIMIT)
            first_name, _, last_name = full.partition(" ")
            first_name, last_name = first_name[:NAME_LIMIT], last_name[:NAME_LIMIT].rstrip()
        # Of Mailchimp's time columns only whether they are filled matters.
        key = (
            row[s0],
            row[s1].strip() != "",
            row[s2].strip() != "",
            row[s3],
            row[s4],
            row[s5].strip() != "",
        )
        status = statuses.get(key)
        if status is None:
            status = statuses[key] = status_of(key)
        if tag_col is None:
            tags = no_tags
        else:
            cell = row[tag_col]
            tags = tag_lists.get(cell)
            if tags is None:
                tags = tag_lists[cell] = _tags(cell)
        evidence = None
        if evidence_cols:
            evidence = {k: row[i].strip() for i, k in evidence_cols if row[i]}
        yield {
            "email": email,
            "first_name": first_name or None,
            "last_name": last_name or None,
            "status": status,
            "tags": tags,
            "attributes": attributes,
            "consent": evidence or None,
        }
    if on_progress is not None:
        on_progress("reading", total_lines, total_lines)


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
                _FAST_ADDRESS.fullmatch(piece.strip().strip('"')) for piece in part.split(delimiter)
            ):
                return True
    return False
