"""Staff add and change one person, name lists, and read who did what to a person.

Every rule here is one that other ways in already follow: an address is
checked as the public form checks it (``consent.checked_address``) and is one mailbox by
``addresses.mailbox_key``, names and tags are cleaned as imports clean them,
and a person who has not told staff they want the newsletter gets the double
opt-in of the public form (``consent.request``; the caller sends the email with
``consent.send_confirmation``). Staff neither add nor mail an address on the
suppression list: only the person's own sign-up and confirmation take it off.

Works on the store passed in; no other I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from newsletter import consent
from newsletter.config import Settings
from newsletter.errors import InputError, NotFound, StateError
from newsletter.status import SubscriberStatus
from newsletter.store import Store
from newsletter.store.consent import read_leave_detail
from newsletter.subscriber_csv import clean_name
from newsletter.subscriber_csv.cells import split_tags

# The consent record of a person staff add because the person asked them to.
ASKED_TEXT = "They asked to join; added by {actor}"
JOINED_TEXT = "Put on the list by {actor}"
STAFF_VERSION = "staff"
TAG_LIMIT = 100
ATTRIBUTE_LIMIT = 1000
LIST_NAME_LIMIT = 100


def staff_source(actor: str) -> str:
    """The ``source`` of a consent or subscriber that a staff account added."""
    return f"staff:{actor}"


@dataclass(frozen=True)
class Details:
    """What staff may set on a person besides the address: names, tags, attributes."""

    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = field(default_factory=list)
    # Typed ones are text; imported ones may be any JSON value (numbers, lists, objects).
    attributes: dict[str, Any] = field(default_factory=dict)


def read_details(first_name: str, last_name: str, tags: str, attributes: str) -> Details:
    """Names, tags (separated by commas) and attributes (one ``NAME=VALUE`` a line), cleaned
    by the import's rules; InputError naming the line of an attribute that is not one."""
    read: dict[str, str] = {}
    for number, line in enumerate(attributes.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        name = clean_name(key, TAG_LIMIT)
        if not sep or not name:
            raise InputError(
                f"attributes, line {number}: {line.strip()!r} is not NAME=VALUE; write one "
                f"detail a line, such as city=Springfield"
            )
        read[name] = clean_name(value, ATTRIBUTE_LIMIT)
    return Details(
        first_name=clean_name(first_name) or None,
        last_name=clean_name(last_name) or None,
        tags=[t for t in (clean_name(tag, TAG_LIMIT) for tag in split_tags(tags)) if t],
        attributes=read,
    )


def attribute_lines(attributes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A person's attributes as staff edit them: ``NAME=VALUE`` lines for those that read
    back as they are, and the others (numbers, lists, objects, text of several lines, as an
    import may bring), which are shown but kept as they are."""
    lines, kept = [], {}
    for key, value in attributes.items():
        if (
            isinstance(value, str)
            and "=" not in key
            and clean_name(key, TAG_LIMIT) == key
            and clean_name(value, ATTRIBUTE_LIMIT) == value
        ):
            lines.append(f"{key}={value}")
        else:
            kept[key] = value
    return "\n".join(lines), kept


def edited_attributes(stored: dict[str, Any], typed: str) -> dict[str, Any]:
    """The attributes after staff sent the edit form with ``typed`` in its details box.

    The box untouched leaves every attribute as stored, with its type. Changed, it
    replaces the lines it showed; the attributes kept out of it stay as they are,
    and a line naming one of them is refused rather than turning it into text.
    """
    shown, kept = attribute_lines(stored)
    if _lines(typed) == _lines(shown):
        return dict(stored)
    read = read_details("", "", "", typed).attributes
    for name in read:
        if name in kept:
            raise InputError(
                f"attributes: {name!r} is kept as it was imported (not one line of text) and "
                f"cannot be changed here; remove its line"
            )
    return {**kept, **read}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _list_ids(store: Store, lists: Iterable[str]) -> list[int]:
    """The ids of the lists named (NotFound for one that is not there)."""
    return [store.list_id(name) for name in dict.fromkeys(lists)]


def suppressed(address: str) -> str:
    return (
        f"{address}: on the suppression list (they unsubscribed, or mail to it bounced or was "
        f"marked as spam); only they can sign up again, with the subscribe form"
    )


@dataclass(frozen=True)
class Added:
    subscriber_id: int
    address: str
    # The consent whose confirmation email is to be sent; None when the person asked to
    # join (confirmed now) or when one went out moments ago (consent.RESEND_QUIET).
    consent_id: int | None
    confirmed: bool


def add(
    store: Store,
    settings: Settings,
    typed: str,
    details: Details,
    lists: Iterable[str],
    *,
    asked: bool,
    actor: str,
    now: dt.datetime,
    eai_refusal: Callable[[], str | None] | None = None,
) -> Added:
    """Add one person on behalf of staff account ``actor``.

    ``asked``: the person asked staff to join (in the shop, by phone): they are
    confirmed now, with a consent record naming ``actor``. Otherwise they are
    unconfirmed and get the confirmation email of the double opt-in, as from
    the public form; their lists are joined when they confirm. An address that
    is there already (in any capitals) is refused, as is one on the suppression
    list, both ways: only the person can sign up again.
    """
    address = consent.checked_address(typed, eai_refusal)
    known = store.subscriber_by_email(address)
    if known is not None:
        raise InputError(f"{address}: already a subscriber ({known['status']})")
    if store.is_suppressed(address):
        # Staff may neither add it nor mail it a confirmation: the person said no to
        # email from here (or it bounced); only their own sign-up brings them back.
        raise InputError(suppressed(address))
    names = list(dict.fromkeys(lists))
    list_ids = _list_ids(store, names)
    source = staff_source(actor)
    if asked:
        subscriber_id = store.add_confirmed_subscriber(
            address,
            first_name=details.first_name,
            last_name=details.last_name,
            tags=details.tags,
            attributes=details.attributes,
            list_ids=list_ids,
            source=source,
            text=ASKED_TEXT.format(actor=actor),
            version=STAFF_VERSION,
            now=now,
        )
        if subscriber_id is None:
            if store.subscriber_by_email(address) is not None:  # added since the check above
                raise InputError(f"{address}: already a subscriber")
            raise InputError(suppressed(address))
        return Added(subscriber_id, address, None, True)
    consent_id = consent.request(
        store,
        settings,
        address,
        lists=names,
        source=source,
        detail={"added_by": actor},
        now=now,
        eai_refusal=eai_refusal,
    )
    person = store.subscriber_by_email(address)
    assert person is not None  # consent.request added it
    # What staff know about the person is theirs to set now; the consent's own
    # details (a name typed into the public form) wait for the confirmation.
    store.update_subscriber_details(
        person["id"],
        first_name=details.first_name,
        last_name=details.last_name,
        tags=details.tags,
        attributes=details.attributes,
        now=now,
    )
    return Added(person["id"], address, consent_id, False)


# The sources of a consent that asked for a confirmation email: the public form, a
# reader's request for a new link, the preferences page, the command line, staff.
ASKING_SOURCES = ("form", "resend", "preferences", "cli")


def confirmation_asked(consents: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last consent still to confirm that asked for a confirmation email (one was sent,
    or was to be sent and failed), or None: an import of people staff were not sure of
    promised them no email."""
    asked = [
        c
        for c in consents
        if not c["confirmed_at"]
        and (
            c["confirm_sent_at"]
            or c["source"] in ASKING_SOURCES
            or (c["source"] or "").startswith("staff:")
        )
    ]
    return asked[-1] if asked else None


def may_ask_again(store: Store, person: dict[str, Any], consents: list[dict[str, Any]]) -> bool:
    """Whether staff may send a person their confirmation email again (``ask_again``)."""
    return (
        person["status"] == SubscriberStatus.UNCONFIRMED
        and confirmation_asked(consents) is not None
        and not store.is_suppressed(person["email"])
    )


def ask_again(
    store: Store, settings: Settings, subscriber_id: int, *, actor: str, now: dt.datetime
) -> Added:
    """A new confirmation request for someone still to confirm who was asked to confirm
    before, for the lists asked for then; StateError for anyone else (only an unconfirmed
    person is asked, and only one a confirmation email was meant for)."""
    person = store.subscriber(subscriber_id)
    if person is None:
        raise NotFound(f"subscriber {subscriber_id}: no such subscriber (deleted?)")
    if person["status"] != SubscriberStatus.UNCONFIRMED:
        raise StateError(
            f"subscriber {subscriber_id}: {person['email']} is {person['status']}, not waiting "
            f"for a confirmation"
        )
    if store.is_suppressed(person["email"]):
        raise StateError(suppressed(person["email"]))
    last = confirmation_asked(store.subscriber_record(subscriber_id)["consents"])
    if last is None:
        raise StateError(
            f"subscriber {subscriber_id}: {person['email']} was imported with no confirmation "
            f"email asked for; they were promised none, so none is sent"
        )
    consent_id = consent.request(
        store,
        settings,
        person["email"],
        lists=last["lists"] or [],
        source=staff_source(actor),
        detail={"added_by": actor},
        now=now,
    )
    return Added(subscriber_id, person["email"], consent_id, False)


def edit(
    store: Store,
    subscriber_id: int,
    details: Details,
    lists: Iterable[str],
    *,
    actor: str,
    now: dt.datetime,
) -> list[str]:
    """Change one person's names, tags, attributes and lists; return what changed, in words.

    The address is not changed here: it is who the person is (their consent,
    their suppression, their unsubscribe links). Leaving a list takes effect at
    once, also for its campaigns being sent; joining one is for confirmed
    subscribers only and is recorded as consent given to ``actor``.
    """
    person = store.subscriber(subscriber_id)
    if person is None:
        raise NotFound(f"subscriber {subscriber_id}: no such subscriber (deleted?)")
    names = list(dict.fromkeys(lists))
    wanted = dict(zip(names, _list_ids(store, names), strict=True))
    current = {
        m["name"]: m["id"] for m in store.memberships(subscriber_id) if not m["unsubscribed_at"]
    }
    joining = [name for name in wanted if name not in current]
    own = their_own_leaving(store, subscriber_id)
    for name in joining:
        if name in own:
            raise StateError(
                f"list {name!r}: {person['email']} left it themselves on {own[name][:10]}; "
                f"only they can rejoin it (from their preferences page or a confirmation)"
            )
    if joining and person["status"] != SubscriberStatus.CONFIRMED:
        raise StateError(
            f"list {joining[0]!r}: {person['email']} is {person['status']}; only a confirmed "
            f"subscriber can be put on a list"
        )
    changed = [
        what
        for what, before, after in (
            ("first name", person["first_name"], details.first_name),
            ("last name", person["last_name"], details.last_name),
            ("tags", person["tags"], details.tags),
            ("attributes", person["attributes"], details.attributes),
        )
        if (before or None) != (after or None)
    ]
    if changed:
        store.update_subscriber_details(
            subscriber_id,
            first_name=details.first_name,
            last_name=details.last_name,
            tags=details.tags,
            attributes=details.attributes,
            now=now,
        )
    for name in joining:
        store.join_list(
            subscriber_id,
            wanted[name],
            now,
            staff_source(actor),
            JOINED_TEXT.format(actor=actor),
            STAFF_VERSION,
        )
        changed.append(f"joined {name}")
    for name, list_id in current.items():
        if name not in wanted:
            store.leave_list(subscriber_id, list_id, None, now, by=actor)
            changed.append(f"left {name}")
    return changed


def their_own_leaving(store: Store, subscriber_id: int) -> dict[str, str]:
    """The lists a person left themselves (or nobody recorded who took them off), by name,
    with when: staff cannot put them back; only the person's own choice can."""
    return {
        name: left["at"] for name, left in store.lists_left(subscriber_id).items() if not left["by"]
    }


def clean_list_name(name: str) -> str:
    """A list's name with its spaces made single; InputError if it cannot be one."""
    clean = " ".join(name.split())
    if not clean or len(clean) > LIST_NAME_LIMIT or not clean.isprintable():
        raise InputError(f"{name!r}: a list name is 1 to {LIST_NAME_LIMIT} printable characters")
    return clean


def new_list(store: Store, name: str, description: str, public: bool, now: dt.datetime) -> str:
    """Create a list that is not there yet; return its name (InputError if it is there)."""
    clean = clean_list_name(name)
    if any(row["name"] == clean for row in store.lists()):
        raise InputError(f"list {clean!r}: there is a list of that name already")
    store.create_list(clean, " ".join(description.split()), public, now)
    return clean


def rename_list(store: Store, list_id: int, name: str) -> tuple[str, str]:
    """Rename a list; return its old and new names."""
    found = store.list_by_id(list_id)
    if found is None:
        raise NotFound(f"list {list_id}: no such list (deleted?)")
    clean = clean_list_name(name)
    if not store.rename_list(list_id, clean):
        raise InputError(f"list {clean!r}: there is a list of that name already")
    return found["name"], clean


# -- a person's own copy of their data ----------------------------------------------

# "staff:ACCOUNT" as consents, sources and events name a staff account ("list 3; staff:...").
_STAFF_MARK = re.compile(r"staff:.+$", re.DOTALL)


def for_the_person(record: dict[str, Any]) -> dict[str, Any]:
    """A person's record (``Store.subscriber_record``) as they are given it: the staff
    accounts that acted on it are said as "staff".

    The record is the person's data (GDPR art. 15); a staff account's address is that
    staff member's. The dashboard's history and the audit log keep who it was.
    """
    own = str((record.get("subscriber") or {}).get("email") or "").casefold()
    actors: set[str] = set()

    def gather(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "added_by" and isinstance(item, str):
                    actors.add(item)
                gather(item)
        elif isinstance(value, list):
            for item in value:
                gather(item)
        elif isinstance(value, str):
            found = _STAFF_MARK.search(value)
            if found:
                actors.add(found.group()[len("staff:") :])

    def said(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: said(item) for key, item in value.items()}
        if isinstance(value, list):
            return [said(item) for item in value]
        if isinstance(value, str):
            value = _STAFF_MARK.sub("staff", value)
            for actor in named:
                value = value.replace(actor, "staff")
        return value

    gather(record)
    # Longest first, so an address inside a longer name goes with it; never the person's own.
    named = sorted((a for a in actors if a and a.casefold() != own), key=len, reverse=True)
    return said(record)


# -- who did what to a person ----------------------------------------------------------

SUBSCRIBER = "the subscriber"
# An event's kind as the history says it.
EVENT_WORDS = {
    "unsubscribe": "unsubscribed",
    "confirm": "confirmed",
    "leave_list": "left a list",
    "bounce": "bounced",
    "complaint": "marked as spam",
}


def history(store: Store, subscriber_id: int, record: dict[str, Any]) -> list[dict[str, Any]]:
    """One person's history, oldest first: what happened, when, and who did it.

    Each row: ``at``, ``what``, ``who`` (a staff account, "the subscriber",
    or "" when nobody in particular: the send loop, a provider's report),
    ``campaign_id`` and ``detail``. Staff actions come from the audit log;
    the campaigns' deliveries name who sent or scheduled the campaign.
    """
    rows: list[dict[str, Any]] = []
    person = record["subscriber"] or {}
    source = person.get("source") or ""
    if source.startswith("import:"):
        importer = store.importer_of(source[len("import:") :], person["created_at"])
        rows.append(
            _row(
                person["created_at"],
                f"imported from {source[len('import:') :]}",
                importer["actor"] if importer else "",
            )
        )
    elif source.startswith("staff:"):
        rows.append(_row(person["created_at"], "added", source[len("staff:") :]))
    elif source == "cli":
        # Added by a command; the audit log names who ran it ("added", below).
        pass
    elif person.get("created_at"):
        rows.append(_row(person["created_at"], f"signed up ({source})", SUBSCRIBER))
    for given in record.get("consents") or []:
        # The times an imported file gave for this person's sign-up and confirmation.
        for column, what in (
            ("file_signed_up_at", "signed up, as the imported file says"),
            ("file_confirmed_at", "confirmed, as the imported file says"),
        ):
            if given.get(column):
                rows.append(_row(given[column], what, SUBSCRIBER, detail=given["source"]))
    staff_done = store.staff_actions_on(subscriber_id)
    for entry in staff_done:
        if entry["action"] == "unsubscribed" or (
            entry["action"] == "added" and source.startswith("staff:")
        ):
            continue  # shown by the unsubscribe event and the person's source
        rows.append(_row(entry["at"], entry["action"], entry["actor"], detail=entry["detail"]))
    deliveries = record["deliveries"]
    senders = store.campaign_senders(sorted({d["campaign_id"] for d in deliveries}))
    for delivery in deliveries:
        by = [
            s
            for s in senders.get(delivery["campaign_id"], [])
            if not delivery["done_at"] or s["at"] <= delivery["done_at"]
        ]
        rows.append(
            _row(
                delivery["done_at"],
                f"delivery {delivery['status']}",
                by[-1]["actor"] if by else "",
                campaign_id=delivery["campaign_id"],
                detail=f"{by[-1]['action']} by {by[-1]['actor']}" if by else "",
            )
        )
    list_names = {row["id"]: row["name"] for row in store.lists()}
    for event in record["events"]:
        kind, detail = event["kind"], event["detail"] or ""
        who = SUBSCRIBER if kind in ("open", "click", "view", "confirm", "leave_list") else ""
        if kind == "leave_list":
            # The list by its name; a staff account that took the person off it is named.
            list_id, staff = read_leave_detail(detail)
            if list_id is not None:
                who, detail = staff or SUBSCRIBER, list_names.get(list_id, f"list {list_id}")
        if kind == "unsubscribe":
            # A staff unsubscribe names its staff account ("staff:alice@..."); one from
            # before that was recorded says only "staff": the audit log may know who.
            if detail.startswith("staff:"):
                who, detail = detail[len("staff:") :], ""
            elif detail == "staff":
                who, detail = _nearest_actor(staff_done, "unsubscribed", event["at"]), ""
            else:
                who = SUBSCRIBER
        what = EVENT_WORDS.get(kind, kind)
        if event.get("classification"):
            what += f" ({event['classification']})"
        rows.append(
            _row(
                event["at"],
                what,
                who,
                campaign_id=event["campaign_id"],
                detail=detail if kind not in ("open", "click") else event["user_agent"] or "",
            )
        )
    rows.sort(key=lambda r: r["at"] or "")
    return rows


def _row(
    at: str | None, what: str, who: str, *, campaign_id: int | None = None, detail: str = ""
) -> dict[str, Any]:
    return {"at": at, "what": what, "who": who, "campaign_id": campaign_id, "detail": detail}


def _nearest_actor(entries: list[dict[str, Any]], action: str, at: str) -> str:
    """The actor of the audit entry of ``action`` closest after ``at`` (the audit follows
    the change it records), else ""."""
    later = [e for e in entries if e["action"] == action and e["at"] >= at]
    return later[0]["actor"] if later else ""
