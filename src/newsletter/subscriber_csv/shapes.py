"""The export shapes of common tools: which header is which column, what a status word means.

Mailchimp, listmonk, Ghost, Substack, Keila, beehiiv, Kit, Buttondown,
MailerLite, Brevo, Sendy and EmailOctopus name their columns and statuses
differently; this module holds their vocabularies and reads a header line
into column roles (statuses.py reads what the status cells say, and which
columns say that someone opted out, so that none is dropped without a word).
Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
    # Mailchimp's export in German (github.com/knadh/listmonk issue 688).
    "emailadresse",
    "e mail adresse",
}
FIRST_HEADERS = {"first name", "firstname", "fname", "given name", "vorname"}
LAST_HEADERS = {"last name", "lastname", "lname", "surname", "family name", "nachname"}
NAME_HEADERS = {"name", "full name"}
STATUS_HEADERS = {"status", "subscription status", "member status", "subscriber status"}
TAG_HEADERS = {"tags", "labels", "tag"}
# listmonk's "attributes" and Keila's "Data": a JSON object of custom fields.
JSON_HEADERS = {"attributes", "data", "attribs"}
# Ghost's yes/no "receives newsletters", and the plain names people give such a
# column: no (false, 0, off) means the person opted out.
OPT_IN_HEADERS = {
    "subscribed to emails",
    "subscribed",
    "opt in",
    "opted in",
    "optin",
    "email opt in",
    "email optin",
}
# Yes (or a time) means the person opted out: Substack's "email_disabled",
# Brevo's email blacklist flag, and the plain names people give such a column.
OPT_OUT_HEADERS = {
    "email disabled",
    "email blacklisted",
    "emailblacklisted",
    "blacklisted",
    "blocklisted",
    "unsubscribed",
    "opted out",
}
# When someone left: filled in means unsubscribed, at that time. Mailchimp's
# UNSUB_TIME, beehiiv's and MailerLite's unsubscribed_at, Kit's canceled_at.
UNSUB_TIME_HEADERS = {
    "unsub time",
    "unsubscribed at",
    "unsubscribed on",
    "unsubscribe date",
    "unsubscribed date",
    "unsubscription date",
    "opted out at",
    "opt out date",
    "optout date",
    "canceled at",
    "cancelled at",
}
# When an address bounced: Mailchimp's CLEAN_TIME ("cleaned" is its hard bounce),
# Buttondown's "Undeliverability date" (a column of its subscriber list,
# docs.buttondown.com/subscriber-dashboard).
BOUNCE_TIME_HEADERS = {"clean time", "bounced at", "bounce date", "undeliverability date"}
# Mailchimp's confirmation time: a filled one is a confirmed double opt-in.
CONFIRM_TIME = "confirm time"
# When the person signed up and confirmed, as the file says: kept in the consent
# record beside the import's own time. Mailchimp's OPTIN_TIME, MailerLite's
# subscribed_at, Squarespace's "Date Subscribed"; the tools' own names (a
# Shape's ``signed_up``) come first.
SIGNED_UP_HEADERS = (
    "optin time",
    "opt in time",
    "subscribed at",
    "subscribed on",
    "date subscribed",
    "subscription date",
    "signup date",
    "signed up at",
)
CONFIRMED_TIME_HEADERS = ("confirm time", "confirmed at", "confirmed on", "confirmation date")
# Mailchimp's consent evidence (opt-in and confirmation time and IP) is kept.
EVIDENCE = {
    "optin time": "optin_time",
    "optin ip": "optin_ip",
    "confirm time": "confirm_time",
    "confirm ip": "confirm_ip",
}
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
    "unsubscribed_at",
    "ignore",
)

_CONFIRMED = SubscriberStatus.CONFIRMED
_UNCONFIRMED = SubscriberStatus.UNCONFIRMED
_UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
_BOUNCED = SubscriberStatus.BOUNCED
_COMPLAINED = SubscriberStatus.COMPLAINED


@dataclass(frozen=True)
class Shape:
    """One tool's export: its name in reports, and what is its own in it.

    ``roles``: header names that play a part only in this tool's files (Kit's
    "state" is a status; elsewhere it is a place). ``words``: status words
    that mean something else here than elsewhere (beehiiv's "inactive" is an
    unsubscribe, Kit's an unconfirmed address). ``companions``: columns that
    go with a recognised opt-out column (why, after which campaign) and are
    kept as attributes. ``signed_up``: the column that holds when a person
    joined the tool's list (its creation time), for the consent record.
    ``changed``: the column that holds when a row last changed, the time a
    person left when the whole file is said to have left (EmailOctopus's
    export of its unsubscribed contacts has no status, only this).
    """

    label: str
    roles: Mapping[str, str] = field(default_factory=dict)
    words: Mapping[str, SubscriberStatus] = field(default_factory=dict)
    companions: frozenset[str] = frozenset()
    signed_up: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


SHAPES: dict[str, Shape] = {
    # Mailchimp: one export per status (subscribed, unsubscribed, cleaned);
    # UNSUB_TIME and CLEAN_TIME tell them apart, and hold when the person
    # left. Headers as in the Mailchimp exports of Ghost's migration tool's
    # tests (github.com/TryGhost/migrate, packages/mg-mailchimp-members/src/
    # test/fixtures/{subscribed,unsubscribed,cleaned}.csv); the same export
    # in German (Emailadresse,Vorname,Nachname,"Erlaubnis zum Marketing",
    # MEMBER_RATING,OPTIN_TIME,...) as posted in github.com/knadh/listmonk
    # issue 688.
    "mailchimp": Shape(
        "Mailchimp export",
        companions=frozenset(
            {
                "unsub campaign title",
                "unsub campaign id",
                "unsub reason",
                "unsub reason other",
                "clean campaign title",
                "clean campaign id",
            }
        ),
    ),
    # listmonk: status enabled / disabled / blocklisted.
    "listmonk": Shape("listmonk export"),
    # Ghost: subscribed_to_emails true/false.
    "ghost": Shape("Ghost members export", signed_up=("created at",)),
    # Substack: email_disabled true/false.
    "substack": Shape("Substack export", signed_up=("created at",)),
    "keila": Shape("Keila export"),
    # beehiiv: email,First Name,Last Name,status,tier,created_at,
    # stripe_customer_id,Free Tier,Premium Tier,unsubscribed_at,...; status
    # active / inactive / pending. Header from the beehiiv export in Ghost's
    # migration tool's tests (github.com/TryGhost/migrate,
    # packages/mg-beehiiv-members/src/test/fixtures/members.csv); "Subscribers
    # that you unsubscribe but do not delete will be marked as Inactive"
    # (beehiiv.com/support/article/12428610562327). A filled unsubscribed_at
    # is an unsubscribe whatever the status says.
    "beehiiv": Shape(
        "beehiiv export",
        words={"active": _CONFIRMED, "pending": _UNCONFIRMED, "inactive": _UNSUBSCRIBED},
        signed_up=("created at",),
    ),
    # Kit (ConvertKit): a subscriber's first_name, email_address, state,
    # created_at, canceled_at; state active / inactive / cancelled / bounced /
    # complained (Kit API v4's subscriber object, as described in
    # github.com/api-evangelist/convertkit, json-schema/get_a_subscriber_
    # response.json; states as
    # in help.convertkit.com/article/12-convertkit-subscribers: Confirmed,
    # Unconfirmed, Cancelled, Cold, Bounced, Complained). Kit's "inactive" is
    # an address that never confirmed; "cold" still receives email. No export
    # file's own header line was found in public sources: the CSVs found
    # (id,email_address,first_name,state,tags,created_at) are written by
    # third-party command-line clients of Kit's API, not by Kit.
    "kit": Shape(
        "Kit (ConvertKit) export",
        roles={"state": "status", "subscriber state": "status"},
        words={
            "active": _CONFIRMED,
            "inactive": _UNCONFIRMED,
            "cold": _CONFIRMED,
            "cancelled": _UNSUBSCRIBED,
            "canceled": _UNSUBSCRIBED,
        },
        signed_up=("created at",),
    ),
    # Buttondown: email_address, creation_date, notes, metadata (JSON), tags,
    # referrer_url, secondary_id, type (tap-buttondown's subscriber schema,
    # pypi.org/project/tap-buttondown). Buttondown renamed subscriber_type and
    # email to type and email_address (docs.buttondown.com/api-subscribers-
    # introduction), so older files say subscriber_type. No export file's own
    # header line was found in public sources.
    # Types from Buttondown's API (github.com/buttondown/openapi, enums.json,
    # SubscriberType): regular, premium, trialed, unpaid, gifted, churning and
    # paused still receive email; unactivated never confirmed; unsubscribed,
    # spammy and removed do not.
    "buttondown": Shape(
        "Buttondown export",
        roles={"type": "status", "subscriber type": "status", "metadata": "attributes"},
        words={
            **dict.fromkeys(
                (
                    "regular",
                    "premium",
                    "trialed",
                    "unpaid",
                    "gifted",
                    "churning",
                    "churned",
                    "paused",
                    "past due",
                ),
                _CONFIRMED,
            ),
            "unactivated": _UNCONFIRMED,
            "unsubscribed": _UNSUBSCRIBED,
            "spammy": _UNSUBSCRIBED,
            "removed": _UNSUBSCRIBED,
            "blocked": _UNSUBSCRIBED,
            "undeliverable": _BOUNCED,
            "complained": _COMPLAINED,
        },
        signed_up=("creation date",),
    ),
    # MailerLite: email, name, last_name, status, subscribed_at,
    # unsubscribed_at; status active / unsubscribed / unconfirmed / bounced /
    # junk (developers.mailerlite.com/docs/subscribers.html);
    # "junk" is a spam complaint. These are its API's field names: no export
    # file's own header line was found in public sources.
    # Its export from the app names the address "Subscriber", the sign-up
    # time "Subscribed" (Y-m-d H:i:s, no zone) and the groups "Groups",
    # ";"-separated, beside "Name" and "Last name": the columns that
    # github.com/headwalluk/heads-up-mailer reads from MailerLite's export
    # (includes/class-csv-importer.php @ 1854dffe795caa0bbd0aa77c2a1031a2a7b9d8e3).
    # An export of one segment (unsubscribed, bounced) has no status column:
    # say what it is (``--status``).
    "mailerlite": Shape(
        "MailerLite export",
        roles={"subscriber": "email", "subscribed": "signed_up", "groups": "tags"},
        signed_up=("subscribed",),
        words={
            "active": _CONFIRMED,
            "unconfirmed": _UNCONFIRMED,
            "unsubscribed": _UNSUBSCRIBED,
            "bounced": _BOUNCED,
            "junk": _COMPLAINED,
        },
    ),
    # Brevo (Sendinblue): attributes EMAIL, FIRSTNAME, LASTNAME, SMS
    # (help.brevo.com/hc/en-us/articles/208729849), with ADDED_TIME and
    # MODIFIED_TIME in every export (developers.brevo.com/reference/
    # request-contact-export) and the email blacklist flag (the API's
    # emailBlacklisted). Brevo blacklists whoever unsubscribed, complained or
    # hard-bounced (help.sendinblue.com/hc/en-us/articles/208773869). No
    # export file's own header line was found in public sources.
    "brevo": Shape("Brevo (Sendinblue) export"),
    # Sendy: "Name","Email","Joined","Last activity","Added via","Opt-in
    # method","IP address","Country","Country code","Signed up from",
    # "Status","GDPR", then the list's custom fields; Status is Active,
    # Unsubscribed, Unconfirmed, Bounced or Marked as spam. As Sendy's own
    # includes/subscribers/export-csv.php writes them (a copy of Sendy's
    # source at github.com/tidvn/sendy, commit 6bdb2455c6d1d1992fd754b7d2ec86
    # ccd86a0fda). Its API's subscription-status call (sendy.co/api) also says
    # Subscribed, Soft bounced and Complained: a soft bounce is not proof of
    # a dead address, nor of a live one, so it comes in unconfirmed.
    "sendy": Shape(
        "Sendy export",
        words={
            "soft bounced": _UNCONFIRMED,
            "soft bounce": _UNCONFIRMED,
            "marked as spam": _COMPLAINED,
        },
        signed_up=("joined",),
    ),
    # EmailOctopus: its own export is Identifier,Email address,First name,
    # Last name,Tags,Created,Last changed (the columns of a real export listed
    # in github.com/florianherrengt/blog, listmonk.md, commit 1145602a7c49bd47d1
    # efbe3680da1430e0930ac4), with no status column: the export holds whom
    # its filter chose. Tools that export through the API write a contact's
    # email_address, status, created_at (emailoctopus.com/api-documentation,
    # contacts, as replicated by github.com/webhookdb/docs, _integrations/
    # email_octopus_contact_v1.md), its fields FirstName and LastName, tags;
    # status SUBSCRIBED / UNSUBSCRIBED / PENDING.
    "emailoctopus": Shape(
        "EmailOctopus export",
        words={
            "subscribed": _CONFIRMED,
            "pending": _UNCONFIRMED,
            "unsubscribed": _UNSUBSCRIBED,
            "bounced": _BOUNCED,
        },
        signed_up=("created", "created at"),
        changed=("last changed", "last updated at"),
    ),
}
FORMATS = {
    **{name: shape.label for name, shape in SHAPES.items()},
    "plain": "plain list of addresses",
    "csv": "CSV",
}
_NO_SHAPE = Shape("CSV")
_SEPARATORS = re.compile(r"[\s_\-]+")


class NoEmailColumn(InputError):
    """No column of a file's header holds the addresses: the file is not imported as it is.

    ``headers``: its column names, for the dashboard to offer them in its
    column mapper (one of them may hold the addresses under a name of its own).
    """

    def __init__(self, message: str, headers: list[str]):
        super().__init__(message)
        self.headers = headers


class OptOutColumn(InputError):
    """A column says who opted out and nothing reads it as such: the file is not imported.

    ``column``: its header, for the dashboard to show the column mapper at it.
    """

    def __init__(self, message: str, column: str):
        super().__init__(message)
        self.column = column


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
    """Name the tool that wrote a header, for the import report and its own vocabulary."""
    found = set(keys)
    if found & {"email address", "emailadresse"} and found & {
        "member rating",
        "optin time",
        "leid",
        "euid",
    }:
        return "mailchimp"
    if {"uuid", "attributes"} <= found:
        return "listmonk"
    if "subscribed to emails" in found:
        return "ghost"
    if found & {"email disabled", "active subscription"}:
        return "substack"
    if {"data", "first name", "last name"} <= found:
        return "keila"
    if "status" in found and found & {"free tier", "premium tier", "subscription date (substack)"}:
        return "beehiiv"
    if {"status", "tier", "unsubscribed at"} <= found:
        return "beehiiv"
    if (
        "state" in found
        and found & {"email address", "email"}
        and found & {"first name", "canceled at", "cancelled at"}
    ):
        return "kit"
    if "subscriber type" in found or {"secondary id", "type"} <= found:
        return "buttondown"
    if {"subscriber", "subscribed"} <= found and found & {"name", "last name", "groups"}:
        return "mailerlite"
    if {"status", "subscribed at"} <= found and found & {"unsubscribed at", "last name"}:
        return "mailerlite"
    if "email" in found and found & {"email blacklisted", "emailblacklisted", "added time"}:
        return "brevo"
    if (
        {"identifier", "email address", "last changed"} <= found
        or found & {"last updated at"}
        or {"email address", "firstname", "status"} <= found
    ):
        return "emailoctopus"
    if {"name", "email", "status", "joined"} <= found:
        return "sendy"
    if len(keys) == 1:
        return "plain"
    return "csv"


def shape_of(fmt: str) -> Shape:
    return SHAPES.get(fmt, _NO_SHAPE)


def column_roles(keys: list[str], mapping: dict[str, str], fmt: str = "csv") -> dict[str, int]:
    """Which column plays which part: --map first, then the tool's own names, then common ones."""
    roles: dict[str, int] = {}
    for index, key in enumerate(keys):
        target = mapping.get(key, "")
        if target and target != "ignore" and not target.startswith("attribute:"):
            roles.setdefault(target, index)
    mapped = set(mapping)
    for index, key in enumerate(keys):
        role = shape_of(fmt).roles.get(key)
        if role and key not in mapped:
            roles.setdefault(role, index)
    # A column the tool's own names gave a part plays no other.
    mapped |= {keys[i] for i in roles.values()}
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
        ("unsubscribed_at", UNSUB_TIME_HEADERS),
        ("bounced_at", BOUNCE_TIME_HEADERS),
    )
    for role, names in vocab:
        if role in roles:
            continue
        found = next(
            (i for i, k in enumerate(keys) if k in names and k not in mapped),
            None,
        )
        if found is not None:
            roles[role] = found
    if "name" in roles and "last_name" in roles and "first_name" not in roles:
        # MailerLite's "name" beside "last_name" is the first name.
        roles["first_name"] = roles.pop("name")
    return roles


def first_column(keys: list[str], names: Iterable[str]) -> int | None:
    """The index of the first of ``names`` (in their order) found among ``keys``."""
    for wanted in names:
        if wanted in keys:
            return keys.index(wanted)
    return None
