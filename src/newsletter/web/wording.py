"""The core's error messages in the words of the people who use the dashboard.

The core words its errors for the command line: it names the flag that was
wrong (``--subject: ...``) and the command that helps (``run `newsletter
fetch```). A dashboard user has a form, not a shell, so every message a page
shows passes through ``for_people``: the one table below turns a message of
the core into what to do on the page, and says which form field it belongs
to, so the page can show it next to that field.

The table is read top down and the first match wins; the last rows catch a
flag or a command the rows above have not reworded yet, so none ever reaches
a page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What a column can be read as, in the words of the people who import (the
# column mapper's choices and its "Read as" column), not the core's field names.
FIELD_WORDS = {
    "email": "Email address",
    "first_name": "First name",
    "last_name": "Last name",
    "name": "Full name",
    "status": "Status (words such as active or unsubscribed)",
    "tags": "Tags",
    "attributes": "Extra fields written as JSON",
    "subscribed": "Receives email (yes or no)",
    "unsubscribed": "Opted out (filled in or yes)",
    "unsubscribed_at": "Time they unsubscribed",
    "bounced_at": "Time the address bounced",
    "signed_up": "Time they signed up (consent record)",
    "consent evidence": "Consent record (opt-in time or IP)",
    "ignore": "Leave out",
    "ignored": "Left out",
    "unread": "Not read yet",
}


def _field(*roles: str) -> str:
    """Column roles as the column mapper offers them, quoted, for a message that names them."""
    quoted = [f"“{FIELD_WORDS[role]}”" for role in roles]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# (a message of the core, the form field it is about or None, what the page says).
# Replacements may use the pattern's groups as \g<name>.
WORDS: list[tuple[str, str | None, str]] = [
    # -- creating a campaign ------------------------------------------------------
    (r"^--subject: .*", "subject", "Write a subject for the email."),
    (
        r"^subject: contains (?P<what>.+?) \(U\+(?P<code>[0-9A-F]+)\);.*",
        "subject",
        r"The subject contains \g<what> (U+\g<code>): a subject is one line of text, "
        r"so remove it.",
    ),
    (
        r"^--articles new: there are no new articles.*",
        "articles",
        "There are no new articles: every article is in a campaign already. Tick the "
        "articles to send, or wait for new ones (the sources are read on every poll).",
    ),
    (
        r"^--articles: '' names no article.*",
        "articles",
        "Tick the articles to send, or write your text below to send it without articles.",
    ),
    (
        r"^template '(?P<name>[^']+)': \S+ does not show (?P<what>.+?) \(campaign\..*",
        "template",
        r"The design \g<name> is a copy kept in this workspace that does not show "
        r"\g<what>: choose another design, or have the copy updated as the templates "
        r"guide describes.",
    ),
    (
        r"^--(intro|body)-file: the text has nothing to show once cleaned.*",
        "content",
        "Your text has nothing to show once cleaned: script, empty links and images "
        "without an address are left out. Write the message in it.",
    ),
    (
        r"^--intro-file: .*",
        "content",
        "Your text goes above the ticked articles, or is the whole email with none ticked.",
    ),
    (
        r"^--body-file: .*",
        "content",
        "Your text goes above the ticked articles, or is the whole email with none ticked.",
    ),
    (
        r"^--articles: .*",
        "articles",
        "Tick the articles to send, or choose the new ones.",
    ),
    (
        r"^article (?P<id>\d+): no such article.*",
        "articles",
        r"Article \g<id> no longer exists; tick others.",
    ),
    (
        r"^--segment (?P<rule>.+?): (?P<value>.+?) is not a number of days; "
        r"write (?P<kind>\w+):DAYS with DAYS a whole number from 1 to (?P<most>\d+).*",
        "segment",
        r"\g<rule> is not a rule: after \g<kind>: comes a number of days from 1 to \g<most>, "
        r"such as \g<kind>:90 for the last 90 days. Or choose the days under Engagement.",
    ),
    (
        r"^--segment (?P<rule>.+?): use .*",
        "segment",
        r"\g<rule> is not a rule. Write one rule a line: tag:NAME, attribute:KEY=VALUE, "
        r"attribute:KEY or engaged:DAYS, with ! in front to exclude (for example tag:back-pain).",
    ),
    (
        r"^list (?P<name>'.*?'): no such list.*",
        "list",
        r"There is no list \g<name>. Create it under Subscribers, Lists, or import "
        r"subscribers into it.",
    ),
    # -- scheduling, sending, the campaign's state ----------------------------------
    (
        r"^--tz: unknown time zone (?P<zone>.+?); use .*",
        "tz",
        r"\g<zone> is not a time zone. Write one such as Europe/Berlin or America/New_York.",
    ),
    (r"^--tz: (?P<rest>.*)", "tz", r"Time zone: \g<rest>"),
    (
        r"^--at: (?P<when>.+? UTC) is in the past.*",
        "date",
        r"\g<when> is in the past: choose a later date and time, or press Send now.",
    ),
    (r"^--at: .*", "date", "Choose a date and a time."),
    (
        r"^campaign (?P<id>\d+): paused part-way through its send.*",
        None,
        r"Campaign \g<id> stopped part-way through its send: press Resume to go on "
        r"with it, rather than scheduling it again.",
    ),
    (
        r"^--to: (?P<address>.+?) is not a valid address (?P<why>.*)",
        "to",
        r"\g<address> is not a valid email address \g<why>.",
    ),
    (
        r"^campaign (?P<id>\d+): cannot (?P<action>\w+) a campaign that is (?P<status>[\w ]+)$",
        None,
        r"Campaign \g<id>: you cannot \g<action> a campaign that is \g<status>. This page may "
        r"be older than the campaign: open the campaign again to see what you can do.",
    ),
    (r"^campaign (?P<id>\d+): no such campaign.*", None, r"There is no campaign \g<id>."),
    (
        r"^subscriber (?P<id>\d+): no such subscriber.*",
        None,
        r"There is no subscriber \g<id>: erased, or never there.",
    ),
    (r"^(?P<email>.+?): no such subscriber.*", None, r"There is no subscriber \g<email>."),
    # -- importing subscribers ------------------------------------------------------
    (
        r"^(?P<where>.+?): no email column found in the header (?P<cols>\(.*?\))"
        r"(?P<hint>.*?); name one of.*",
        "map",
        r"\g<where>: no column of email addresses found among \g<cols>\g<hint>. Choose "
        rf"{_field('email')} below for the column that holds them, then check again.",
    ),
    (
        r"^--map (?P<pair>.+?): unknown field (?P<field>.+?); use one of (?P<fields>.*)",
        "map",
        r"\g<field> is not something a column can be read as; choose one of \g<fields>.",
    ),
    (r"^--map (?P<pair>.+?): write .*", "map", r"Choose what each column is read as."),
    (
        r"^(?P<where>.+?): column (?P<col>'.*?'|\".*?\") says who opted out, .*",
        "map",
        r"Column \g<col> says who opted out, and nothing reads it yet, so nothing can be "
        r"imported. Read it below as "
        rf"{_field('unsubscribed', 'unsubscribed_at', 'status')}, then check again.",
    ),
    (
        r"^(?P<where>.+?):(?P<line>\d+): column (?P<col>'.*?'|\".*?\") holds (?P<cell>.+?) "
        r"in its JSON, which says someone opted out.*",
        "map",
        r"Line \g<line>: column \g<col> holds \g<cell> in its JSON, which says someone "
        r"opted out, and nothing here reads it, so nothing can be imported. Give that field a "
        r"column of its own in the file, or leave those people out of it, then choose the "
        r"file again.",
    ),
    (
        r"^(?P<where>.+?):(?P<line>\d+): column (?P<col>'.*?'|\".*?\") holds (?P<cell>.+?), "
        r"which says someone opted out.*",
        "map",
        r"Line \g<line>: column \g<col> holds \g<cell>, which says someone opted out, and "
        r"nothing reads it yet, so nothing can be imported. Read it below as "
        rf"{_field('status', 'unsubscribed')}, then check again.",
    ),
    (
        r"^--map: (?P<file>.+?) has no column (?P<column>.+?); its columns: (?P<cols>.*)",
        "map",
        r"\g<file> has no column \g<column>; its columns are \g<cols>.",
    ),
    # -- one person added or changed, lists --------------------------------------------
    (
        r"^(?P<typed>'.*'|\".*\") is not a valid email address \((?P<why>.*)\)$",
        "email",
        r"\g<typed> is not a valid email address: \g<why>",
    ),
    (
        r"^(?P<email>[^ ]+): already a subscriber(?: \((?P<status>\w+)\))?$",
        "email",
        r"\g<email> is already a subscriber. Search for them under Subscribers to change them.",
    ),
    (
        r"^(?P<email>[^ ]+): on the suppression list .*",
        "email",
        "This address asked not to get email from you: only they can sign up again, on your "
        "subscribe form.",
    ),
    (
        r"^(?P<email>[^ ]+): needs SMTPUTF8 .*",
        "email",
        r"\g<email> has characters outside English letters before the @, and the mail "
        r"service set up here cannot deliver to such an address.",
    ),
    (
        r"^consent: sending email is not set up yet.*",
        "consent",
        "Sending email is not set up yet, so no confirmation email can go out and nobody was "
        "added. Set up sending (see Settings, Check) first; add them as someone who asked to "
        "join only if they did.",
    ),
    (
        r"^sending email is not set up yet.*",
        None,
        "Sending email is not set up yet, so no confirmation email can go out. Set up sending "
        "(see Settings, Check) first.",
    ),
    (
        r"^subscriber \d+: (?P<email>[^ ]+) was imported with no confirmation email asked .*",
        None,
        r"\g<email> was imported as someone you were not sure agreed to your email, and the "
        r"import promised them no email: no confirmation email is sent to them.",
    ),
    (
        r"^consent: choose .*",
        "consent",
        "Choose whether they asked to join, or get a confirmation email first.",
    ),
    (
        r"^attributes, line (?P<n>\d+): (?P<line>.+?) is not NAME=VALUE.*",
        "attributes",
        r"Line \g<n> of the details, \g<line>, has no = sign: write one detail a line, a name, "
        r"= and its value, such as city=Springfield.",
    ),
    (
        r"^attributes: (?P<name>'.*?') is kept as it was imported .*",
        "attributes",
        r"The detail \g<name> is not plain text (it came from an import) and is kept as it "
        r"is, shown below the box: remove its line from the box.",
    ),
    (
        r"^list (?P<name>'.*?'): (?P<email>[^ ]+) left it themselves on (?P<day>\S+); .*",
        "list",
        r"\g<email> left \g<name> themselves on \g<day>: only they can rejoin it, from the "
        r"preferences page their emails link to. Nothing was changed.",
    ),
    (
        r"^list (?P<name>'.*?'): (?P<email>[^ ]+) is (?P<status>\w+); only a confirmed .*",
        "list",
        r"\g<email> is \g<status>, so they cannot be put on \g<name>: only a confirmed "
        r"subscriber can. Someone waiting to confirm joins the lists they asked for when "
        r"they confirm.",
    ),
    (
        r"^(?P<name>'.*'|\".*\"): a list name is (?P<rule>.*)",
        "name",
        "Give the list a name of 1 to 100 letters, digits, spaces or punctuation marks.",
    ),
    (
        r"^list (?P<name>'.*?'): there is a list of that name already.*",
        "name",
        r"There is a list \g<name> already: choose another name.",
    ),
    # -- staff accounts ---------------------------------------------------------------
    (
        r"^(?P<email>.+?): already a staff account.*",
        "email",
        r"\g<email> has a dashboard account already.",
    ),
    (r"^(?P<email>.+?): no such staff account.*", None, r"There is no account \g<email>."),
    (r"^--role: (?P<role>.+?) is not a role.*", "role", r"\g<role> is not a role."),
    # -- settings ---------------------------------------------------------------------
    (
        r"^(?P<head>.*) \(and (?P<n>\d+) more; run `newsletter config check`\)(?P<tail>.*)",
        None,
        r"\g<head> (and \g<n> more: see Check)\g<tail>",
    ),
    # -- anything else with a flag or a command in it -----------------------------
    (
        r"^(?P<head>.*?)[;,]? *\(?(?:run|see|use|with|create it with|remove it first with|"
        r"reset it with)? *`newsletter [^`]*`\)?(?P<tail>.*)",
        None,
        r"\g<head>\g<tail>",
    ),
    (r"^--[a-z][a-z-]*(?: [^:]*)?: (?P<rest>.*)", None, r"\g<rest>"),
]
_TABLE = [(re.compile(pattern, re.DOTALL), field, words) for pattern, field, words in WORDS]
# What must never reach a page, whatever a new message of the core says.
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
_COMMAND = re.compile(r"`?newsletter [a-z-]+`?")


@dataclass(frozen=True)
class Said:
    """A message for a page, and the form field it is about (None: the page as a whole)."""

    text: str
    field: str | None = None


def for_people(message: object) -> Said:
    """A core error (or its message) as the dashboard says it."""
    text, field = str(message), None
    # Reworded until no row applies, so a message with two commands loses both.
    for _ in range(4):
        for pattern, row_field, words in _TABLE:
            match = pattern.match(text)
            if match:
                text = match.expand(words).strip()
                field = field or row_field
                break
        else:
            break
    if _FLAG.search(text) or _COMMAND.search(text):
        text = _COMMAND.sub("", _FLAG.sub("", text))
    return Said(text, field)


def words(message: object) -> str:
    """Only the text of ``for_people``, for a page with no field to put it by."""
    return for_people(message).text
