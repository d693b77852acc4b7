"""Subscribers and lists."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from newsletter import consent, people, subscribers
from newsletter.cli.base import Group, audit, cli, cli_actor, subscriber_by_email, utcnow, ws_of
from newsletter.errors import InputError, NewsletterError, StateError
from newsletter.status import SubscriberStatus

# -- subscribers -------------------------------------------------------------------------

# Bad rows shown one per line; a file of garbage should not flood the terminal.
SHOWN_PROBLEMS = 50


@cli.group(cls=Group, name="subscribers")
def subscribers_group() -> None:
    """Import, add, list, export and remove subscribers; show the suppression list."""


class _ImportProgress:
    """One progress bar on stderr per phase (reading, saving) of a large import."""

    MIN_UNITS = 20_000

    def __init__(self, label: str):
        self.label = label
        self.bar: Any = None
        self.phase = ""
        self.done = 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        if total < self.MIN_UNITS:
            return
        if phase != self.phase:
            self.close()
            self.phase, self.done = phase, 0
            self.bar = click.progressbar(
                length=total, label=f"{self.label}: {phase}", file=sys.stderr
            )
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@subscribers_group.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_name", help="Add the imported addresses to this list.")
@click.option(
    "--confirmed",
    is_flag=True,
    help="Rows without a status column count as confirmed (they opted in elsewhere); "
    "the same as --status confirmed.",
)
@click.option(
    "--status",
    "status_word",
    type=click.Choice([str(status) for status in subscribers.FILE_STATUSES]),
    help="What everyone in the file is, for an export without a status column (e.g. a "
    "tool's export of the people who unsubscribed). A row whose own status in the file "
    "says it opted out keeps that: no --status makes it sendable.",
)
@click.option("--strict", is_flag=True, help="Import nothing if any row of any file is bad.")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="Read a column as a field: email, first_name, last_name, name, status, tags, "
    "attributes (a JSON object), subscribed, unsubscribed (filled in or yes: opted out), "
    "unsubscribed_at (when they left), ignore, or attribute:NAME. Repeatable.",
)
@click.pass_context
def subscribers_import(
    ctx: click.Context,
    files: tuple[Path, ...],
    list_name: str | None,
    confirmed: bool,
    status_word: str | None,
    strict: bool,
    mappings: tuple[str, ...],
) -> None:
    """Import subscribers from CSV exports (Mailchimp, beehiiv, Kit, Buttondown, MailerLite,
    Brevo, Sendy, EmailOctopus, listmonk, Ghost, Substack, Keila, plain lists).

    Columns, delimiter and encoding are recognised; every file is read and
    checked before anything is stored, then each goes in as one transaction.
    Addresses already known keep their status: an unsubscribed, bounced,
    complained or erased address is never turned back on by an import. A
    column that says who opted out (unsubscribed, bounced, cancelled ...) and
    is not recognised stops the import until --map says how to read it; the
    time an export gives for an unsubscribe is kept as its time. --status
    says what everyone in a file without a status column is; an unsubscribe
    is dated by the file's own time where it has one.

    \b
    Example:
        newsletter subscribers import subscribers/example.csv --list patients
        newsletter subscribers import members.csv --map "E-Mail=email" --map "Ort=attribute:city"
        newsletter subscribers import emailoctopus-unsubscribed.csv --status unsubscribed
    """
    ws = ws_of(ctx)
    mapping = subscribers.parse_mapping(mappings)
    status = subscribers.file_status(status_word, confirmed)
    if list_name is not None and not list_name.strip():
        raise InputError("--list: give the list a name")
    # Every file's header and encoding (and with --strict every row) is checked
    # before anything is stored; then each is read again as it is stored, a row
    # at a time, so a file of millions of rows is never held in memory. With
    # several files every row is read first too: a cell saying "unsubscribed"
    # in a column nothing reads stops the import before any file is stored.
    every_row = strict or len(files) > 1
    for path in files:
        progress = _ImportProgress(path.name)
        try:
            checked = subscribers.check_file(
                path,
                confirmed,
                mapping,
                progress,
                every_row=every_row,
                eai_refusal=ws.eai_refusal,
                status=status,
            )
            if strict:
                subscribers.check_strict(checked)
        finally:
            progress.close()
    bad = 0
    for path in files:
        progress = _ImportProgress(path.name)
        try:
            report = subscribers.import_file(
                ws.store,
                path,
                utcnow(),
                list_name,
                confirmed,
                mapping=mapping,
                on_progress=progress,
                eai_refusal=ws.eai_refusal,
                status=status,
            )
        finally:
            progress.close()
        for problem in report.problems[:SHOWN_PROBLEMS]:
            click.echo(problem, err=True)
        if report.bad_rows > SHOWN_PROBLEMS:
            more = report.bad_rows - SHOWN_PROBLEMS
            click.echo(f"{path}: and {more} more bad rows", err=True)
        bad += report.bad_rows
        audit(ws, "imported", path.name, report.line(), report.record())
        click.echo(report.line())
    if bad:
        raise click.ClickException(f"{bad} bad row(s) skipped; the good rows were imported")


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name, used once they confirm.")
@click.option(
    "--list",
    "list_names",
    multiple=True,
    help="Put the address on this list when it confirms (repeatable).",
)
@click.pass_context
def subscribers_add(ctx: click.Context, email: str, name: str, list_names: tuple[str, ...]) -> None:
    """Add one address by double opt-in: it gets an email with a link to confirm.

    The address gets no newsletter until the link is clicked. An address on the
    suppression list (unsubscribed, bounced, marked as spam) is refused: only the
    person's own sign-up on the subscribe form takes it off. The consent record
    names this command as its source.

    \b
    Example:
        newsletter subscribers add alice@example.com --name "Alice Moreno" --list patients
    """
    ws = ws_of(ctx)
    for list_name in list_names:
        ws.store.list_id(list_name)  # a typo fails here, before anything is stored
    try:
        address = subscribers.normalize_email(email)
    except Exception as exc:  # noqa: BLE001 - any invalid input is the user's to fix
        raise InputError(f"{email}: not a valid email address ({exc})") from None
    if ws.store.is_suppressed(address):
        # As in the dashboard: mail started by staff to someone who said no is still
        # mail they said no to; their own sign-up on the public form lifts it.
        raise InputError(people.suppressed(address))
    templates = ws.templates(ws.settings.subscribers.confirm_template)
    transport = ws.transport()
    now = utcnow()
    known = ws.store.subscriber_by_email(address)
    try:
        consent_id = consent.request(
            ws.store,
            ws.settings,
            address,
            name=name,
            lists=list(list_names),
            source="cli",
            now=now,
            eai_refusal=ws.eai_refusal,
        )
        added = ws.store.subscriber_by_email(address)
        if added is not None:
            # By id only, as for every subscriber: the log outlives an erasure.
            action = "added" if known is None else "asked to confirm again"
            audit(ws, action, f"subscriber {added['id']}", "confirmation email")
        if consent_id is None:
            click.echo(
                f"{address}: a confirmation email went out less than "
                f"{consent.RESEND_QUIET.seconds // 60} minutes ago; none sent now"
            )
            return
        try:
            consent.send_confirmation(
                ws.store, transport, ws.settings, ws.signer, templates, consent_id, now
            )
        except NewsletterError as exc:
            # The request is recorded (it is the consent proof); say so, and what failed.
            raise StateError(
                f"{address}: recorded as unconfirmed, but the confirmation email could not "
                f"be sent ({exc}); fix that and run this command again"
            ) from None
    finally:
        transport.close()
    click.echo(
        f"{address}: confirmation email sent; subscribed once its link is clicked "
        f"(it works for {ws.settings.subscribers.confirm_days} days)"
    )


@subscribers_group.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in SubscriberStatus]),
)
@click.option("--list", "list_name", help="Only the current members of this list.")
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None, list_name: str | None) -> None:
    """One line per subscriber: address and status.

    \b
    Example:
        newsletter subscribers list --status confirmed --list patients
    """
    store = ws_of(ctx).store
    list_id = store.list_id(list_name) if list_name else None
    for s in store.subscribers(status, list_id):
        click.echo(f"{s['email']}\t{s['status']}")


@subscribers_group.command("suppressed")
@click.pass_context
def subscribers_suppressed(ctx: click.Context) -> None:
    """The suppression list: address, reason and since when; erased people only as a hash.

    Nothing is sent to these addresses, and no import turns them back on; only
    the person's own confirmed opt-in takes an address off the list.

    \b
    Example:
        newsletter subscribers suppressed
    """
    rows = ws_of(ctx).store.suppressions()
    if not rows:
        click.echo("the suppression list is empty")
    for row in rows:
        click.echo(f"{row['email']}\t{row['reason']}\t{row['at']}")


@subscribers_group.command("export")
@click.argument("email", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of CSV.")
@click.pass_context
def subscribers_export(ctx: click.Context, email: str | None, as_json: bool) -> None:
    """Export the list as CSV (spreadsheet-safe), or everything held on one person.

    For one person: the subscriber with attributes, lists joined and left,
    suppression, every consent record, deliveries and events.

    \b
    Example:
        newsletter subscribers export > list.csv
        newsletter subscribers export alice@example.com --json
    """
    ws = ws_of(ctx)
    if email:
        # The person's own copy: staff accounts said as "staff" (people.for_the_person).
        record = people.for_the_person(
            ws.store.subscriber_record(subscriber_by_email(ws, email)["id"])
        )
        click.echo(json.dumps(record, indent=2, ensure_ascii=False))
        return
    rows = ws.store.subscribers()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        click.echo(subscribers.export_csv(rows), nl=False)


@subscribers_group.command("unsubscribe")
@click.argument("email")
@click.pass_context
def subscribers_unsubscribe(ctx: click.Context, email: str) -> None:
    """Unsubscribe an address at once, including from campaigns already sending.

    \b
    Example:
        newsletter subscribers unsubscribe alice@example.com
    """
    ws = ws_of(ctx)
    subscriber = subscriber_by_email(ws, email)
    done = ws.store.unsubscribe(subscriber["id"], None, utcnow(), f"staff:{cli_actor()}")
    # By id only, as the dashboard does: the log must not keep an address its person
    # may later have erased.
    audit(ws, "unsubscribed", f"subscriber {subscriber['id']}")
    if done:
        click.echo(f"{subscriber['email']}: unsubscribed")
    else:
        click.echo(f"{subscriber['email']}: already {subscriber['status']}")


@subscribers_group.command("delete")
@click.argument("email")
@click.pass_context
def subscribers_delete(ctx: click.Context, email: str) -> None:
    """Erase a person; their events stay, anonymised, so campaign totals stay right.

    Consent records stay as proof without the address, IP or browser; the
    address stays suppressed as a hash only, so an old export cannot bring
    the person back.

    \b
    Example:
        newsletter subscribers delete alice@example.com
    """
    ws = ws_of(ctx)
    subscriber = subscriber_by_email(ws, email)
    ws.store.delete_subscriber(subscriber["id"], utcnow())
    audit(ws, "deleted (erased)", f"subscriber {subscriber['id']}")
    click.echo(f"{subscriber['email']}: deleted")


# -- lists -------------------------------------------------------------------------------


@cli.group(cls=Group, name="lists")
def lists_group() -> None:
    """Create and show subscriber lists."""


@lists_group.command("create")
@click.argument("name")
@click.option("--description", default="", help="One line shown on the subscribe form.")
@click.option(
    "--public/--private",
    default=False,
    show_default=True,
    help="Offer the list on the public subscribe form and preference page.",
)
@click.pass_context
def lists_create(ctx: click.Context, name: str, description: str, public: bool) -> None:
    """Create a list, or change the description and visibility of one.

    \b
    Example:
        newsletter lists create back-care --public --description "Exercises for a sore back"
    """
    clean = people.clean_list_name(name)
    new = ws_of(ctx).store.create_list(clean, " ".join(description.split()), public, utcnow())
    visibility = "public" if public else "private"
    click.echo(f"list {clean}: {'created' if new else 'updated'} ({visibility})")


@lists_group.command("list")
@click.pass_context
def lists_list(ctx: click.Context) -> None:
    """One line per list: name, confirmed members, public or private, description.

    \b
    Example:
        newsletter lists list
    """
    rows = ws_of(ctx).store.lists()
    if not rows:
        click.echo("no lists; create one with `newsletter lists create NAME`")
    for row in rows:
        visibility = "public" if row["public"] else "private"
        click.echo(
            f"{row['name']}\t{row['confirmed_members']} confirmed\t{visibility}\t"
            f"{row['description']}".rstrip()
        )
