"""What a row's status cells say, and which words and columns say that someone opted out.

The common status words (each tool's own are its Shape's), a row's status
from its cells (``status_of``), what staff said of a whole file
(``with_file_status``), and the safety rule's tests: a column named like an
opt-out that nothing reads (``opt_out_column``), a cell or a JSON value that
says someone left (``is_opt_out_value``, ``json_opt_out``). Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from newsletter.status import SubscriberStatus
from newsletter.subscriber_csv.shapes import OPT_IN_HEADERS, header_key, shape_of

_CONFIRMED = SubscriberStatus.CONFIRMED
_UNCONFIRMED = SubscriberStatus.UNCONFIRMED
_UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
_BOUNCED = SubscriberStatus.BOUNCED
_COMPLAINED = SubscriberStatus.COMPLAINED

FALSE_WORDS = {"false", "0", "no", "n", "off"}
CONFIRMED_WORDS = {"confirmed", "subscribed", "active", "enabled", "yes", "true", "opted in"}
UNSUBSCRIBED_WORDS = {
    "unsubscribed",
    "unsubscribe",
    "blocklisted",
    "blacklisted",
    "blocked",
    "opted out",
    "opt out",
    "optout",
    "cancelled",
    "canceled",
    "suppressed",
    # Never confirmed or no longer wanted: either way not to be sent to.
    "inactive",
}
BOUNCED_WORDS = {
    "bounced",
    "cleaned",
    "hard bounce",
    "hardbounce",
    "hard bounced",
    "unreachable",
    "undeliverable",
    "invalid",
}
COMPLAINED_WORDS = {
    "complained",
    "complaint",
    "spam",
    "abuse",
    "spam complaint",
    "marked as spam",
    "junk",
}
# A column named like this says who opted out: it is read as a status, an
# opt-out flag or a time, never dropped or kept as a plain attribute.
OPT_OUT_NAME = re.compile(
    r"unsub|opt(?:ed)? ?out|bounce|complain|suppress|cancel|block|blacklist|inactive"
)
# A cell that says on its own that the person is not to be sent to; seen in a
# column that is not read as a status, it stops the import.
OPT_OUT_VALUES = (
    (UNSUBSCRIBED_WORDS | BOUNCED_WORDS | COMPLAINED_WORDS) - {"invalid", "spam", "abuse"}
) | {"soft bounced", "soft bounce"}
# The same words as a cell may spell them (lower-cased by the reader): one set
# lookup per cell, cheap enough for every cell of a million-row file.
_OPT_OUT_CELLS = frozenset(
    spelt
    for word in OPT_OUT_VALUES
    for spelt in (word, word.replace(" ", "_"), word.replace(" ", "-"), word.replace(" ", ""))
)


def opt_out_column(keys: list[str], headers: list[str], used: set[int], fmt: str) -> int | None:
    """The first column named like an opt-out that nothing reads as one, or None.

    Such a column (unsubscribed, bounced, complained, suppressed, cancelled,
    blocked, inactive ...) must be read as a status, an opt-out flag or a
    time: kept as a plain attribute, the people it marks would come in
    sendable. A tool's known companions of its opt-out columns are fine.
    """
    companions = shape_of(fmt).companions
    for index, key in enumerate(keys):
        if index in used or not headers[index] or key in companions:
            continue
        # An unsubscribe link or page is a place, not a sign that someone left.
        if OPT_OUT_NAME.search(key) and not {"url", "link", "page"} & set(key.split()):
            return index
    return None


def is_opt_out_value(cell: str) -> bool:
    """True if a cell says by itself that the person is not to be sent to."""
    return len(cell) <= 24 and cell.strip().lower() in _OPT_OUT_CELLS


def opted_out(cell: str) -> bool:
    """An opt-out flag's cell: empty or no means still in; yes, a time or anything else, out."""
    value = cell.strip().lower()
    return bool(value) and value not in FALSE_WORDS


def status_of(
    key: tuple[Any, ...], confirmed: bool, words: Mapping[str, SubscriberStatus] | None = None
) -> SubscriberStatus:
    """A row's status from its status cells, as the tool that wrote the file meant it.

    ``key``: the status word, whether a bounce time (Mailchimp's CLEAN_TIME)
    and an unsubscribe time are filled, the opt-in (Ghost) and opt-out
    (Substack, Brevo) cells, whether a confirm time is filled. ``confirmed``:
    rows without a status word count as confirmed. ``words``: the tool's own
    status words, read before the common ones.
    """
    word, clean, unsub, opt_in, opt_out, confirm = key
    word = header_key(word)
    if clean:
        return _BOUNCED
    if unsub:
        return _UNSUBSCRIBED
    own = words.get(word) if words else None
    if own is not None and own != _CONFIRMED and own != _UNCONFIRMED:
        return own
    if own is None and word in BOUNCED_WORDS:
        return _BOUNCED
    if own is None and word in COMPLAINED_WORDS:
        return _COMPLAINED
    if (
        (own is None and word in UNSUBSCRIBED_WORDS)
        or opt_in.strip().lower() in FALSE_WORDS
        or opted_out(opt_out)
    ):
        return _UNSUBSCRIBED
    if own is not None:
        return own
    if word in CONFIRMED_WORDS or confirm or (confirmed and not word):
        return _CONFIRMED
    return _UNCONFIRMED


# What staff may say of a whole file (``--status``, the dashboard's question):
# a tool's export of its unsubscribed people (EmailOctopus's has no status
# column) comes in as what it is, not as the default.
FILE_STATUSES = (_CONFIRMED, _UNCONFIRMED, _UNSUBSCRIBED, _BOUNCED, _COMPLAINED)
_OUT = frozenset({_UNSUBSCRIBED, _BOUNCED, _COMPLAINED})


def has_own_status(key: tuple[Any, ...]) -> bool:
    """True if a row's status cells (``status_of``'s key) say anything at all."""
    word, clean, unsub, opt_in, opt_out, confirm = key
    return bool(word.strip() or clean or unsub or opt_in.strip() or opt_out.strip() or confirm)


def with_file_status(
    own: SubscriberStatus, has_own: bool, whole: SubscriberStatus
) -> tuple[SubscriberStatus, bool]:
    """A row's status when staff said what everyone in the file is; True if the row's own won.

    A row that says nothing of itself takes the file's status. A row that
    says it opted out (unsubscribed, bounced, complained) keeps that, with
    its own reason and time, whatever the file is said to be: no answer about
    the whole file makes an opted-out person sendable. A row that never
    confirmed stays unconfirmed in a file said to be confirmed. Otherwise the
    file's status stands (said opted out or unconfirmed, nobody is sendable).
    """
    if not has_own or own == whole:
        return whole, False
    if own in _OUT:
        return own, True
    if whole in _OUT:
        return whole, False
    if own == _UNCONFIRMED:
        return own, True
    return whole, False


def _says_no(value: Any) -> bool:
    """An opt-in flag's JSON value that says no: false, 0, or a word such as "no" or "off"."""
    if isinstance(value, int | float):  # bool is an int
        return not value
    return isinstance(value, str) and value.strip().lower() in FALSE_WORDS


def json_opt_out(value: Any, path: str = "") -> tuple[str, str] | None:
    """Where a JSON attribute value says that someone opted out: (field path, value), or None.

    A string value such as "unsubscribed" anywhere in it, a field whose
    name speaks of leaving (unsubscribed_at, bounced, opted_out ...) that is
    filled in and not false, or an opt-in field (subscribed, email_opt_in ...)
    that is false or no: as for a column of its own.
    """
    if isinstance(value, dict):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            words = header_key(str(key))
            if words in OPT_IN_HEADERS and _says_no(inner):
                return where, inner if isinstance(inner, str) else json.dumps(inner)
            if (
                OPT_OUT_NAME.search(words)
                and not {"url", "link", "page"} & set(words.split())
                and inner not in (None, False, 0, "", [], {})
                and not (isinstance(inner, str) and not opted_out(inner))
            ):
                return where, inner if isinstance(inner, str) else json.dumps(inner)
            found = json_opt_out(inner, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found = json_opt_out(inner, f"{path}[{index}]")
            if found is not None:
                return found
    elif isinstance(value, str) and is_opt_out_value(value):
        return path or "(value)", value
    return None
