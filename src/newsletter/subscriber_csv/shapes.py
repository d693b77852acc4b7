"""The export shapes of common tools: which header is which column, what a status word means.

Mailchimp, listmonk, Ghost, Substack and Keila name their columns and statuses
differently; this module holds their vocabularies and reads a header line into
column roles. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from newsletter.errors import InputError
from newsletter.status import SubscriberStatus

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
_SEPARATORS = re.compile(r"[\s_\-]+")


def header_key(header: str) -> str:
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
        mapping[header_key(column)] = target
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


def column_roles(keys: list[str], mapping: dict[str, str]) -> dict[str, int]:
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
        found = next(
            (i for i, k in enumerate(keys) if k in names and k not in mapped),
            None,
        )
        if found is not None:
            roles[role] = found
    return roles


def status_of(key: tuple[Any, ...], confirmed: bool) -> SubscriberStatus:
    """A row's status from its status cells, as the tool that wrote the file meant it.

    ``key``: the status word, whether Mailchimp's clean and unsubscribe times
    are filled, Ghost's opt-in and Substack's opt-out cells, whether a confirm
    time is filled. ``confirmed``: rows without a status word count as confirmed.
    """
    word, clean, unsub, opt_in, opt_out, confirm = key
    word = header_key(word)
    if clean:
        return SubscriberStatus.BOUNCED
    if unsub:
        return SubscriberStatus.UNSUBSCRIBED
    if word in BOUNCED_WORDS:
        return SubscriberStatus.BOUNCED
    if word in COMPLAINED_WORDS:
        return SubscriberStatus.COMPLAINED
    if (
        word in UNSUBSCRIBED_WORDS
        or opt_in.strip().lower() in FALSE_WORDS
        or opt_out.strip().lower() in TRUE_WORDS
    ):
        return SubscriberStatus.UNSUBSCRIBED
    if word in CONFIRMED_WORDS or confirm or (confirmed and not word):
        return SubscriberStatus.CONFIRMED
    return SubscriberStatus.UNCONFIRMED
