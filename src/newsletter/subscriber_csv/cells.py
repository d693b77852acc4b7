"""One cell of a subscriber row: an address, a name, a tag list. Pure."""

from __future__ import annotations

import re
import unicodedata

from email_validator import validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

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
    match = FAST_ADDRESS.fullmatch(address)
    if match is not None and len(address) <= 254:
        local, domain = match.group(1), match.group(2)
        tld = domain.rpartition(".")[2].lower()
        if len(local) <= 64 and "--" not in domain and tld not in _SPECIAL_USE:
            if local.lower() in _ROLE_MAILBOXES:
                local = local.lower()
            return f"{local}@{domain.lower()}"
    return validate_email(address, check_deliverability=False).normalized


def split_tags(cell: str) -> list[str]:
    tags: dict[str, None] = {}
    for part in _TAG_SPLIT.split(cell):
        tag = part.strip().strip('"').strip()
        if tag:
            tags.setdefault(tag, None)
    return list(tags)
