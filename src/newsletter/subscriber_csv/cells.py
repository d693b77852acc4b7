"""One cell of a subscriber row: an address, a name, a tag list. Pure."""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import UTC, datetime

# "Ann Lee <ann@example.com>": the name and the address of one cell.
NAMED_ADDRESS = re.compile(r"^(.*?)\s*<([^<>]+)>\s*$")
_TAG_SPLIT = re.compile(r"[,;|]")

# The common shape of an address: ASCII dot-atom local part, a host name with
# a letter-only top-level domain. email-validator accepts every address this
# matches (tests compare the two on thousands of samples) and normalises it
# by lower-casing the domain and the role mailboxes of RFC 2142, which
# ``normalize_email`` does itself; anything else goes to email-validator.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
FAST_ADDRESS = re.compile(
    rf"({_ATEXT}(?:\.{_ATEXT})*)@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z])?)",
    re.ASCII,
)
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")


# email-validator is loaded by the first address read, not with this module: compiling
# its patterns would cost every command and sending process its start-up.
@functools.cache
def _role_mailboxes() -> frozenset[str]:
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

    return frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


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
    match = FAST_ADDRESS.fullmatch(address)
    if match is not None and len(address) <= 254:
        local, domain = match.group(1), match.group(2)
        tld = domain.rpartition(".")[2].lower()
        if len(local) <= 64 and "--" not in domain and tld not in _SPECIAL_USE:
            if local.lower() in _role_mailboxes():
                local = local.lower()
            return f"{local}@{domain.lower()}"
    from email_validator import validate_email  # see _role_mailboxes

    return validate_email(address, check_deliverability=False).normalized


def split_tags(cell: str) -> list[str]:
    tags: dict[str, None] = {}
    for part in _TAG_SPLIT.split(cell):
        tag = part.strip().strip('"').strip()
        if tag:
            tags.setdefault(tag, None)
    return list(tags)


# "+00" at the end of a time, as PostgreSQL writes it; fromisoformat wants "+00:00".
_SHORT_OFFSET = re.compile(r"([+-]\d\d)$")


def export_time(cell: str) -> str | None:
    """A time written in an export, as stored (ISO 8601 in UTC), or None if it is not one.

    The tools write ISO 8601 with or without a zone ("2024-02-01 12:00:00",
    "2023-08-27T15:06:27.713Z", "2024-01-10 10:00:00+00"), beehiiv adds
    " UTC", some write seconds since 1970, Sendy "2024/01/05, 10:00AM". A
    time without a zone is taken as UTC, as the tools that write them mean it.
    """
    text = cell.strip()
    if not text or len(text) > 40:
        return None
    if text[-4:].upper() in (" UTC", " GMT"):
        text = text[:-4].rstrip()
    try:
        if text.isdigit() and len(text) in (10, 13):
            when = datetime.fromtimestamp(int(text[:10]), UTC)
        elif text[4:5] == "/" and ", " in text:
            when = datetime.strptime(text, "%Y/%m/%d, %I:%M%p")
        else:
            if ":" in text[10:]:
                text = _SHORT_OFFSET.sub(r"\1:00", text)
            when = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds")
