"""The command line: parse options, call the core, print. Errors become one line and exit 1."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import click

from newsletter import __version__, campaigns, config, consent, delivery, jobs, subscribers
from newsletter.errors import InputError, NewsletterError, NotFound
from newsletter.workspace import Workspace, init_workspace


class Group(click.Group):
    """A click group that turns our errors into one clear line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.Error as exc:
            raise click.ClickException(
                f"database: {exc}; check the [database] path and the disk"
            ) from None


def _ws(ctx: click.Context) -> Workspace:
    obj = ctx.find_root().obj
    if "ws" not in obj:
        obj["ws"] = Workspace.open(obj["root"])
        ctx.call_on_close(obj["ws"].close)
    return obj["ws"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="NEWSLETTER_HOME",
    default=".",
    show_default="$NEWSLETTER_HOME or .",
    help="The workspace folder (newsletter.toml, database, articles, outbox).",
)
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, workspace: Path) -> None:
    """Turn a blog's new articles into newsletters, send them, and measure what readers do.

    \b
    Example:
        newsletter init mynews && cd mynews
        newsletter fetch && newsletter subscribers import subscribers/*.csv
        newsletter run
    """
    ctx.ensure_object(dict)
    ctx.obj["root"] = workspace


def main() -> None:
    cli(obj={})


# -- workspace and configuration ------------------------------------------------


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def init(ctx: click.Context, directory: Path | None) -> None:
    """Create a workspace with sample articles, example subscribers and the outbox transport.

    Files that already exist are left alone, so running it twice is safe.

    \b
    Example:
        newsletter init mynews
    """
    target = directory or ctx.obj["root"]
    created = init_workspace(target)
    if created:
        click.echo(f"workspace {target.resolve()}: created {', '.join(created)}")
    else:
        click.echo(f"workspace {target.resolve()}: already set up, nothing changed")


@cli.group(cls=Group)
def config_group() -> None:
    """Inspect the configuration."""


cli.add_command(config_group, "config")


@config_group.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate newsletter.toml and the environment; print every problem with its key.

    \b
    Example:
        NEWSLETTER_WEB__PORT=9000 newsletter config check
    """
    ws = Workspace.open(ctx.find_root().obj["root"], strict=False)
    if ws.problems:
        for problem in ws.problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{len(ws.problems)} problem(s) in the configuration")
    click.echo(
        f"{ws.root / config.CONFIG_FILE}: ok (transport {ws.settings.delivery.transport}, "
        f"web on {ws.settings.web.host}:{ws.settings.web.port})"
    )


# -- articles ------------------------------------------------------------------------


@cli.command()
@click.pass_context
def fetch(ctx: click.Context) -> None:
    """Pick up new and updated articles from every source; print counts per source.

    Every source is tried now, even one that is backing off after failures.
    A source that fails is named with the reason; the others are still fetched,
    and the command exits with status 1.

    \b
    Example:
        newsletter fetch
    """
    ws = _ws(ctx)
    results = jobs.fetch_sources(ws, ws.store, _now(), force=True)
    failed = 0
    for result in results:
        # Messages name their URL or file first; the line starts with the
        # source anyway, so it is said once.
        own = f"{result.source}: "
        for kind, messages in (("warning", result.warnings), ("error", result.errors)):
            for message in messages:
                click.echo(f"{own}{kind}: {message.removeprefix(own)}", err=True)
        if result.errors:
            failed += 1
        click.echo(f"{result.source}: {result.summary()}")
    if failed:
        raise click.ClickException(f"{failed} source(s) failed; the others were fetched")


@cli.group(cls=Group)
def articles() -> None:
    """List the articles picked up from the sources."""


@articles.command("list")
@click.option("--new", "only_new", is_flag=True, help="Only articles no campaign has included.")
@click.pass_context
def articles_list(ctx: click.Context, only_new: bool) -> None:
    """List articles, newest first, with blog views and whether they were sent.

    Status is "new" (the next newsletter takes it), "sent DATE", or "archived"
    (recorded from a source's back catalogue, never announced on its own).

    \b
    Example:
        newsletter articles list --new
    """
    rows = _ws(ctx).store.articles(only_new=only_new)
    if not rows:
        click.echo("no articles; run `newsletter fetch`")
        return
    for a in rows:
        views = "-" if a["views"] is None else a["views"]
        comments = "-" if a["comments"] is None else a["comments"]
        if a["is_new"]:
            status = "new"
        elif a["sent_at"]:
            status = f"sent {a['sent_at'][:10]}"
        else:
            status = "archived"
        published = (a["published"] or "")[:10] or "----------"
        click.echo(
            f"{a['id']:>4}  {published}  {status:<15} "
            f"views {views:>5}  comments {comments:>3}  {a['title']}"
        )


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
    help="Rows without a status column count as confirmed (they opted in elsewhere).",
)
@click.option("--strict", is_flag=True, help="Import nothing if any row of any file is bad.")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="COLUMN=FIELD",
    help="Read a column as a field: email, first_name, last_name, name, status, tags, "
    "attributes (a JSON object), subscribed, unsubscribed, ignore, or attribute:NAME. "
    "Repeatable.",
)
@click.pass_context
def subscribers_import(
    ctx: click.Context,
    files: tuple[Path, ...],
    list_name: str | None,
    confirmed: bool,
    strict: bool,
    mappings: tuple[str, ...],
) -> None:
    """Import subscribers from CSV exports (Mailchimp, listmonk, Ghost, Substack, Keila, lists).

    Columns, delimiter and encoding are recognised; every file is read and
    checked before anything is stored, then each goes in as one transaction.
    Addresses already known keep their status: an unsubscribed, bounced,
    complained or erased address is never turned back on by an import.

    \b
    Example:
        newsletter subscribers import subscribers/example.csv --list patients
        newsletter subscribers import members.csv --map "E-Mail=email" --map "Ort=attribute:city"
    """
    ws = _ws(ctx)
    mapping = subscribers.parse_mapping(mappings)
    if list_name is not None and not list_name.strip():
        raise InputError("--list: give the list a name")
    parsed = []
    for path in files:
        progress = _ImportProgress(path.name)
        try:
            parsed.append(subscribers.read_file(path, confirmed, mapping, progress))
        finally:
            progress.close()
    if strict:
        for one in parsed:
            subscribers.check_strict(one)
    bad = 0
    for one in parsed:
        progress = _ImportProgress(Path(one.name).name)
        try:
            report = subscribers.save(ws.store, one, _now(), list_name, progress)
        finally:
            progress.close()
        for problem in report.problems[:SHOWN_PROBLEMS]:
            click.echo(problem, err=True)
        if len(report.problems) > SHOWN_PROBLEMS:
            more = len(report.problems) - SHOWN_PROBLEMS
            click.echo(f"{one.name}: and {more} more bad rows", err=True)
        bad += len(report.problems)
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

    The address gets no newsletter until the link is clicked, and an address
    that unsubscribed stays suppressed until then. The consent record names
    this command as its source.

    \b
    Example:
        newsletter subscribers add alice@example.com --name "Alice Moreno" --list patients
    """
    ws = _ws(ctx)
    for list_name in list_names:
        ws.store.list_id(list_name)  # a typo fails here, before anything is stored
    try:
        address = subscribers.normalize_email(email)
    except Exception as exc:  # noqa: BLE001 - any invalid input is the user's to fix
        raise InputError(f"{email}: not a valid email address ({exc})") from None
    templates = ws.templates(ws.settings.subscribers.confirm_template)
    transport = ws.transport()
    now = _now()
    try:
        consent_id = consent.request(
            ws.store, ws.settings, address, name=name, lists=list(list_names), source="cli", now=now
        )
        if consent_id is None:
            click.echo(
                f"{address}: a confirmation email went out less than "
                f"{consent.RESEND_QUIET.seconds // 60} minutes ago; none sent now"
            )
            return
        consent.send_confirmation(
            ws.store, transport, ws.settings, ws.signer, templates, consent_id, now
        )
    finally:
        transport.close()
    click.echo(
        f"{address}: confirmation email sent; subscribed once its link is clicked "
        f"(it works for {ws.settings.subscribers.confirm_days} days)"
    )


@subscribers_group.command("list")
@click.option(
    "--status",
    type=click.Choice(["unconfirmed", "confirmed", "unsubscribed", "bounced", "complained"]),
)
@click.option("--list", "list_name", help="Only the current members of this list.")
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None, list_name: str | None) -> None:
    """One line per subscriber: address and status.

    \b
    Example:
        newsletter subscribers list --status confirmed --list patients
    """
    store = _ws(ctx).store
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
    rows = _ws(ctx).store.suppressions()
    if not rows:
        click.echo("the suppression list is empty")
    for row in rows:
        click.echo(f"{row['email']}\t{row['reason']}\t{row['at']}")


def _subscriber(ws: Workspace, email: str) -> dict[str, Any]:
    try:
        address = subscribers.normalize_email(email)
    except Exception:  # noqa: BLE001 - any invalid input means "not ours"
        address = email.strip()
    found = ws.store.subscriber_by_email(address, any_case=True)
    if found is None:
        raise NotFound(f"{email}: no such subscriber; see `newsletter subscribers list`")
    return found


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
    ws = _ws(ctx)
    if email:
        record = ws.store.subscriber_record(_subscriber(ws, email)["id"])
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
    ws = _ws(ctx)
    subscriber = _subscriber(ws, email)
    if ws.store.unsubscribe(subscriber["id"], None, _now(), "staff"):
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
    ws = _ws(ctx)
    subscriber = _subscriber(ws, email)
    ws.store.delete_subscriber(subscriber["id"], _now())
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
    clean = " ".join(name.split())
    if not clean or len(clean) > 100 or not clean.isprintable():
        raise InputError(f"{name!r}: a list name is 1 to 100 printable characters")
    new = _ws(ctx).store.create_list(clean, " ".join(description.split()), public, _now())
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
    rows = _ws(ctx).store.lists()
    if not rows:
        click.echo("no lists; create one with `newsletter lists create NAME`")
    for row in rows:
        visibility = "public" if row["public"] else "private"
        click.echo(
            f"{row['name']}\t{row['confirmed_members']} confirmed\t{visibility}\t"
            f"{row['description']}".rstrip()
        )


# -- campaigns ---------------------------------------------------------------------------


@cli.group(cls=Group)
def campaign() -> None:
    """Create, preview, test, schedule and send campaigns."""


@campaign.command("create")
@click.option("--subject", required=True, help="The subject line.")
@click.option(
    "--articles",
    "article_spec",
    default="new",
    show_default=True,
    help="'new' (articles no campaign has included) or ids such as 3,4.",
)
@click.option("--template", help="Template set name (default: [templates] default).")
@click.option("--list", "list_name", help="Send only to this list (default: everyone confirmed).")
@click.option(
    "--segment",
    "segments",
    multiple=True,
    help="Only subscribers matching tag:NAME, attribute:KEY=VALUE or attribute:KEY "
    "(! in front excludes them). Repeatable; all must match.",
)
@click.option("--preheader", default="", help="The preview text shown after the subject.")
@click.option("--no-tracking", is_flag=True, help="No open pixel and no click tracking.")
@click.pass_context
def campaign_create(
    ctx: click.Context,
    subject: str,
    article_spec: str,
    template: str | None,
    list_name: str | None,
    segments: tuple[str, ...],
    preheader: str,
    no_tracking: bool,
) -> None:
    """Create a draft campaign and print its id.

    Recipients are chosen when it starts sending: confirmed, not suppressed,
    on the list and in the segment if given.

    \b
    Example:
        newsletter campaign create --subject "New on the blog" --articles new
        newsletter campaign create --subject "For your back" --segment tag:back-pain
    """
    ws = _ws(ctx)
    rules = [subscribers.parse_segment(text) for text in segments]
    if template and template != "auto":
        ws.templates(template)  # a missing or broken template fails here, not at send time
    campaign_id = campaigns.create(
        ws.store,
        ws.settings,
        subject,
        article_spec,
        template,
        list_name,
        _now(),
        preheader,
        not no_tracking,
        segment=rules,
    )
    if rules:
        campaign = ws.store.campaign(campaign_id)
        matching = ws.store.count_recipients(campaign["list_id"], rules)
        click.echo(f"campaign {campaign_id}: {matching} subscribers match now", err=True)
    click.echo(campaign_id)


@campaign.command("list")
@click.pass_context
def campaign_list(ctx: click.Context) -> None:
    """List campaigns with status, time (workspace zone) and progress.

    \b
    Example:
        newsletter campaign list
    """
    ws = _ws(ctx)
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(ws.settings.schedule.timezone)
    rows = ws.store.campaigns()
    if not rows:
        click.echo("no campaigns; create one with `newsletter campaign create`")
    for c in rows:
        when = c["finished_at"] or c["started_at"] or c["scheduled_at"] or c["created_at"]
        local = dt.datetime.fromisoformat(when).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        doubt = f", {c['in_doubt']} in doubt" if c["in_doubt"] else ""
        click.echo(
            f"{c['id']:>4}  {c['status']:<9}  {local}  {c['sent']}/{c['recipients']} sent, "
            f"{c['failed']} failed{doubt}  {c['subject']}"
        )
        if c["status"] == "paused" and c["note"]:
            click.echo(f"      {c['note']}")


def _sample_subscriber(ws: Workspace, email: str | None) -> dict[str, Any]:
    if email:
        return _subscriber(ws, email)
    confirmed = ws.store.subscribers("confirmed")
    return confirmed[0] if confirmed else dict(campaigns.SAMPLE_SUBSCRIBER)


def _mail(ws: Workspace, campaign_id: int) -> campaigns.CampaignMail:
    c = ws.store.campaign(campaign_id)
    return campaigns.load_mail(
        ws.store, campaign_id, ws.templates(c["template"]), ws.settings, ws.signer
    )


@campaign.command("preview")
@click.argument("campaign_id", type=int)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML here (default: campaign-ID.html).",
)
@click.option("--subscriber", "email", help="Render for this subscriber (default: the first).")
@click.pass_context
def campaign_preview(
    ctx: click.Context, campaign_id: int, out: Path | None, email: str | None
) -> None:
    """Write the HTML for one subscriber to a file and print the text part.

    \b
    Example:
        newsletter campaign preview 1 --out preview.html
    """
    ws = _ws(ctx)
    rendered = _mail(ws, campaign_id).render(_sample_subscriber(ws, email), tracked=False)
    out = out or Path(f"campaign-{campaign_id}.html")
    try:
        out.write_text(rendered.html, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write ({exc.strerror})") from None
    click.echo(f"Subject: {rendered.subject}\nHTML: {out}\n")
    click.echo(rendered.text)


@campaign.command("test")
@click.argument("campaign_id", type=int)
@click.option("--to", "to_address", required=True, help="Any address; need not be a subscriber.")
@click.pass_context
def campaign_test(ctx: click.Context, campaign_id: int, to_address: str) -> None:
    """Send one test message ([TEST] in the subject); it is not counted in the campaign.

    \b
    Example:
        newsletter campaign test 1 --to me@example.com
    """
    from newsletter.transports import Envelope

    ws = _ws(ctx)
    try:
        address = subscribers.normalize_email(to_address)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"--to: {to_address!r} is not a valid address ({exc})") from None
    mail = _mail(ws, campaign_id)
    sample = dict(_sample_subscriber(ws, None), id=0)
    key = f"test-c{campaign_id}-{_now():%Y%m%d%H%M%S%f}"
    data = mail.test_message(sample, address, key, _now())
    transport = ws.transport()
    try:
        transport.send(Envelope(ws.settings.sender.from_address, address, data, key))
    finally:
        transport.close()
    click.echo(f"test message for campaign {campaign_id} sent to {address}")


@campaign.command("schedule")
@click.argument("campaign_id", type=int)
@click.option("--at", "at", required=True, help='Local time "YYYY-MM-DD HH:MM".')
@click.option("--tz", help="IANA time zone (default: [schedule] timezone).")
@click.pass_context
def campaign_schedule(ctx: click.Context, campaign_id: int, at: str, tz: str | None) -> None:
    """Schedule a campaign; `newsletter run` sends it when the time comes.

    \b
    Example:
        newsletter campaign schedule 1 --at "2026-12-01 09:00" --tz Europe/Berlin
    """
    ws = _ws(ctx)
    zone = tz or ws.settings.schedule.timezone
    when = campaigns.parse_local_time(at, zone)
    campaigns.schedule(ws.store, campaign_id, when, _now())
    click.echo(f"campaign {campaign_id} scheduled for {at} {zone} ({when:%Y-%m-%d %H:%M} UTC)")


@campaign.command("send")
@click.argument("campaign_id", type=int)
@click.pass_context
def campaign_send(ctx: click.Context, campaign_id: int) -> None:
    """Send a campaign now, in the foreground, with a progress bar.

    Interrupted sends continue where they stopped when run again.

    \b
    Example:
        newsletter campaign send 1
    """
    ws = _ws(ctx)
    mail, transport = jobs.prepare_send(ws, ws.store, campaign_id, _now())
    counts = ws.store.delivery_counts(campaign_id)
    todo = counts["pending"] + counts["deferred"]
    try:
        with click.progressbar(
            length=todo, label=f"campaign {campaign_id}", file=sys.stderr, show_eta=True
        ) as bar:
            done = [0]

            def on_progress(p: Any) -> None:
                total = p.sent + p.failed + p.deferred + p.skipped
                bar.update(total - done[0])
                done[0] = total

            progress = delivery.send_campaign(
                ws.store, transport, mail, _now, on_progress=on_progress
            )
    finally:
        transport.close()
    click.echo(
        f"campaign {campaign_id}: {progress.sent} sent, {progress.failed} failed, "
        f"{progress.deferred} deferred, {progress.skipped} skipped"
        + ("" if progress.finished else " (not finished; run again to continue)")
    )
    for status, count in progress.settled.items():
        if count:
            click.echo(f"campaign {campaign_id}: {count} in-flight deliveries settled as {status}")
    if ws.settings.delivery.transport == "outbox":
        click.echo(f"outbox: {jobs.outbox_path(ws)}")


def _state_command(name: str, action: Any, help_text: str) -> None:
    @campaign.command(name, help=help_text)
    @click.argument("campaign_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, campaign_id: int) -> None:
        ws = _ws(ctx)
        result = action(ws.store, campaign_id, _now())
        status = result if isinstance(result, str) else ws.store.campaign_status(campaign_id)
        click.echo(f"campaign {campaign_id}: {status}")


_state_command(
    "pause",
    campaigns.pause,
    "Pause a sending or scheduled campaign within a second.\n\n"
    "\b\nExample:\n    newsletter campaign pause 1",
)
_state_command(
    "resume",
    campaigns.resume,
    "Resume a paused campaign where it stopped.\n\n\b\nExample:\n    newsletter campaign resume 1",
)
_state_command(
    "cancel",
    campaigns.cancel,
    "Cancel a campaign; nothing more of it is sent.\n\n"
    "\b\nExample:\n    newsletter campaign cancel 1",
)


@campaign.command("retry")
@click.argument("campaign_id", type=int)
@click.option(
    "--in-doubt",
    is_flag=True,
    help="Resend the rows whose fate is unknown (may reach some people twice).",
)
@click.pass_context
def campaign_retry(ctx: click.Context, campaign_id: int, in_doubt: bool) -> None:
    """Put failed (or, with --in-doubt, in-doubt) deliveries back in the queue.

    \b
    Example:
        newsletter campaign retry 1 --in-doubt && newsletter campaign send 1
    """
    ws = _ws(ctx)
    store = ws.store
    store.campaign(campaign_id)
    count = store.retry_in_doubt(campaign_id) if in_doubt else store.retry_failed(campaign_id)
    if count:
        store.set_campaign_status(campaign_id, "sending", ("sent", "paused"), _now())
    click.echo(f"campaign {campaign_id}: {count} deliveries queued again")


# -- DKIM ------------------------------------------------------------------------------


@cli.group(cls=Group, name="dkim")
def dkim_group() -> None:
    """Sign outgoing mail with DKIM."""


@dkim_group.command("keygen")
@click.option("--domain", help="The signing domain (default: [dkim] domain or the sender's).")
@click.option("--selector", default="newsletter", show_default=True, help="The DKIM selector.")
@click.option(
    "--algorithm",
    type=click.Choice(["rsa", "ed25519"]),
    default="rsa",
    show_default=True,
    help="rsa (2048 bits, understood everywhere) or ed25519.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the private key (keep it outside any repository).",
)
@click.pass_context
def dkim_keygen(
    ctx: click.Context, domain: str | None, selector: str, algorithm: str, out: Path
) -> None:
    """Make a DKIM key pair and print the DNS TXT record to publish.

    \b
    Example:
        newsletter dkim keygen --selector nl2026 --out ~/.config/newsletter/dkim.pem
    """
    from newsletter.dkim import generate_key, txt_record_chunks

    ws = _ws(ctx)
    domain = domain or ws.settings.dkim.domain or ws.settings.sender.from_address.rpartition("@")[2]
    if out.exists():
        raise InputError(f"--out {out}: already exists; choose another file or remove it")
    pem, record = generate_key(algorithm)
    try:
        out.write_bytes(pem)
        out.chmod(0o600)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot write ({exc.strerror})") from None
    click.echo(f"private key written to {out} (readable only by you)")
    click.echo("publish this DNS TXT record:")
    click.echo(f"{selector}._domainkey.{domain}. IN TXT {txt_record_chunks(record)}")
    click.echo("then set in newsletter.toml:")
    click.echo(f'[dkim]\ndomain = "{domain}"\nselector = "{selector}"\nprivate_key_file = "{out}"')


# -- running -----------------------------------------------------------------------------


def _serve(ws: Workspace, with_scheduler: bool) -> None:
    from newsletter.scheduler import build_scheduler
    from newsletter.web.app import create_app
    from newsletter.web.server import listen, make_server

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    log = logging.getLogger("newsletter")
    sock = listen(ws.settings.web.host, ws.settings.web.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "web server on http://%s:%d (public links use %s)", shown, port, ws.settings.site.base_url
    )
    if ws.settings.delivery.transport == "outbox":
        log.info("outbox transport: messages are written to %s", jobs.outbox_path(ws))
    server = make_server(create_app(ws))  # migrates the database before any job runs
    stop = threading.Event()
    scheduler = build_scheduler(ws, stop) if with_scheduler else None
    if scheduler:
        scheduler.start()
        log.info(
            "scheduler started: polling sources every %ds, mode %s",
            ws.settings.schedule.poll_interval,
            ws.settings.schedule.mode,
        )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the main job is meant to stop
    finally:
        stop.set()
        if scheduler:
            scheduler.shutdown(wait=True)
        log.info("stopped")


@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """The main job: the scheduler (poll sources, send due campaigns) plus the web server.

    Runs until Ctrl-C.

    \b
    Example:
        newsletter --workspace mynews run
    """
    _serve(_ws(ctx), with_scheduler=True)


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """The web server only: tracking, unsubscribe and subscriber pages.

    \b
    Example:
        NEWSLETTER_WEB__PORT=9000 newsletter serve
    """
    _serve(_ws(ctx), with_scheduler=False)


# -- stats ------------------------------------------------------------------------------

STAT_FIELDS = [
    "campaign_id",
    "recipients",
    "sent",
    "failed",
    "in_doubt",
    "pending",
    "bounces_total",
    "unsubscribes_total",
    "opens_total",
    "opens_unique",
    "clicks_total",
    "clicks_unique",
    "views_total",
    "open_rate",
    "click_rate",
    "click_to_open_rate",
]


def _rates(stats: dict[str, Any]) -> dict[str, Any]:
    delivered = stats["sent"]
    opens, clicks = stats["opens_unique"], stats["clicks_unique"]
    stats["open_rate"] = round(opens / delivered, 4) if delivered else 0.0
    stats["click_rate"] = round(clicks / delivered, 4) if delivered else 0.0
    stats["click_to_open_rate"] = round(clicks / opens, 4) if opens else 0.0
    return stats


@cli.command()
@click.argument("campaign_id", type=int, required=False)
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one row per campaign.")
@click.option("--json", "as_json", is_flag=True, help="JSON, with per-link counts.")
@click.pass_context
def stats(ctx: click.Context, campaign_id: int | None, as_csv: bool, as_json: bool) -> None:
    """Sends, opens, clicks and unsubscribes per campaign. Unique = distinct subscribers.

    \b
    Example:
        newsletter stats 1 --json
    """
    ws = _ws(ctx)
    ids = [campaign_id] if campaign_id else [c["id"] for c in ws.store.campaigns()]
    for i in ids:
        ws.store.campaign(i)
    rows = [_rates(ws.store.campaign_stats(i)) for i in ids]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(STAT_FIELDS)
        for row in rows:
            writer.writerow([subscribers.csv_cell(row[f]) for f in STAT_FIELDS])
        click.echo(out.getvalue(), nl=False)
        return
    if not rows:
        click.echo("no campaigns yet")
    for s in rows:
        c = ws.store.campaign(s["campaign_id"])
        doubt = f", {s['in_doubt']} in doubt" if s["in_doubt"] else ""
        click.echo(f"campaign {s['campaign_id']}: {c['subject']} [{c['status']}]")
        click.echo(
            f"  recipients {s['recipients']}, sent {s['sent']}, failed {s['failed']}"
            f"{doubt}, bounced {s['bounces_total']}, unsubscribed "
            f"{s['unsubscribes_total']}"
        )
        click.echo(
            f"  opens {s['opens_total']} total, {s['opens_unique']} unique "
            f"({s['open_rate']:.1%}); clicks {s['clicks_total']} total, "
            f"{s['clicks_unique']} unique ({s['click_rate']:.1%}); "
            f"click-to-open {s['click_to_open_rate']:.1%}"
        )
        for link in s["links"]:
            click.echo(
                f"  link {link['id']}: {link['clicks']} clicks, "
                f"{link['unique_clicks']} unique  {link['url']}"
            )
