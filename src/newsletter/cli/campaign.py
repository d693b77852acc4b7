"""Campaigns: create, preview, test, schedule, send, pause, retry."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import click

from newsletter import campaigns, delivery, jobs
from newsletter.cli.base import Group, audit, cli, utcnow, ws_of
from newsletter.errors import InputError, os_error_line
from newsletter.status import CampaignStatus

# -- campaigns ---------------------------------------------------------------------------


@cli.group(cls=Group)
def campaign() -> None:
    """Create, preview, test, schedule and send campaigns."""


def read_markdown(option: str, path: str | None) -> str | None:
    """The text of a Markdown file given to ``option``; one line naming the file if unreadable."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{option} {os_error_line(exc, path)}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{option} {path}: not UTF-8 text (byte {exc.start + 1}); save it as UTF-8"
        ) from None


@campaign.command("create")
@click.option("--subject", required=True, help="The subject line.")
@click.option(
    "--articles",
    "article_spec",
    help="'new' (articles no campaign has included, newest first, as in automatic "
    "campaigns), ids such as 3,4, or 'none'. Default: 'new', or 'none' with --body-file.",
)
@click.option(
    "--intro-file",
    metavar="FILE",
    help="Markdown shown above the articles (a greeting, news of your own).",
)
@click.option(
    "--body-file",
    metavar="FILE",
    help="Markdown message of a campaign without articles (closed over the holidays, an event).",
)
@click.option("--template", help="Template set name (default: [templates] default).")
@click.option("--list", "list_name", help="Send only to this list (default: everyone confirmed).")
@click.option(
    "--segment",
    "segments",
    multiple=True,
    help="Only subscribers matching tag:NAME, attribute:KEY=VALUE, attribute:KEY, "
    "engaged:DAYS (opened or clicked as a person in the last DAYS days) or clicked:DAYS; "
    "! in front excludes them (!engaged:90: got a campaign in those 90 days, opened none). "
    "Repeatable; all must match.",
)
@click.option(
    "--preheader",
    default="",
    help="The preview text shown after the subject (default: [templates] preheader, "
    "the article's summary or the titles of several).",
)
@click.option("--no-tracking", is_flag=True, help="No open pixel and no click tracking.")
@click.pass_context
def campaign_create(
    ctx: click.Context,
    subject: str,
    article_spec: str | None,
    intro_file: str | None,
    body_file: str | None,
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
        newsletter campaign create --subject "New on the blog" --intro-file intro.md
        newsletter campaign create --subject "Closed over the holidays" --body-file closed.md
    """
    intro = read_markdown("--intro-file", intro_file) or ""
    body = read_markdown("--body-file", body_file) or ""
    if article_spec is None:
        article_spec = "none" if body_file is not None else "new"
    if body_file is not None and not body.strip() and article_spec.strip() in ("", "none"):
        # The file is the whole message here: say so rather than "no articles".
        raise InputError(f"--body-file {body_file}: the file is empty; write the message in it")
    ws = ws_of(ctx)
    new = campaigns.NewCampaign(
        subject=subject,
        articles=article_spec,
        intro=intro,
        body=body,
        template=template,
        list_name=list_name,
        segment=segments,
        preheader=preheader,
        tracking=not no_tracking,
    )
    created = campaigns.create_draft(ws.store, ws.settings, ws.templates, new, utcnow())
    campaign_id = created.campaign_id
    audit(ws, "created a campaign", f"campaign {campaign_id}", subject)
    if created.matching is not None:
        click.echo(f"campaign {campaign_id}: {matching_now(created.matching)}", err=True)
    if created.announcement_became:
        click.echo(
            f"campaign {campaign_id}: the announcement design shows one article; these "
            f"{created.article_count} articles go out in the {created.announcement_became} "
            f"design",
            err=True,
        )
    for title, url in created.article_pages:
        click.echo(f"article {title!r} has no URL of its own: it links to its page {url}", err=True)
    click.echo(campaign_id)


@campaign.command("edit")
@click.argument("campaign_id", type=int)
@click.option("--subject", help="A new subject line.")
@click.option("--preheader", help='A new preview text ("" for the default).')
@click.option(
    "--articles",
    "article_spec",
    help="'new', ids such as 3,4 in the order the email shows them, or 'none'.",
)
@click.option(
    "--intro-file",
    metavar="FILE",
    help="Markdown shown above the articles (an empty file removes the intro).",
)
@click.option(
    "--body-file",
    metavar="FILE",
    help="Markdown message of a campaign without articles (an empty file removes it).",
)
@click.option("--template", help="Another template set, or 'auto'.")
@click.option("--list", "list_name", help="Send only to this list.")
@click.option("--everyone", is_flag=True, help="Send to everyone confirmed, on no list.")
@click.option(
    "--segment",
    "segments",
    multiple=True,
    help="Replace the segment: tag:NAME, attribute:KEY=VALUE, attribute:KEY, "
    "engaged:DAYS (opened or clicked as a person in the last DAYS days) or clicked:DAYS; "
    "! in front excludes them (!engaged:90: got a campaign in those 90 days, opened none). "
    "Repeatable; all must match.",
)
@click.option("--no-segment", is_flag=True, help="Drop the segment.")
@click.option("--tracking/--no-tracking", default=None, help="Track opens and clicks, or not.")
@click.pass_context
def campaign_edit(
    ctx: click.Context,
    campaign_id: int,
    subject: str | None,
    preheader: str | None,
    article_spec: str | None,
    intro_file: str | None,
    body_file: str | None,
    template: str | None,
    list_name: str | None,
    everyone: bool,
    segments: tuple[str, ...],
    no_segment: bool,
    tracking: bool | None,
) -> None:
    """Change a campaign that has not started sending; what is not given stays.

    The same checks as `campaign create`; a scheduled campaign keeps its time.

    \b
    Example:
        newsletter campaign edit 1 --subject "Back care in winter" --articles 4,2
        newsletter campaign edit 1 --segment tag:back-pain --no-tracking
        newsletter campaign edit 1 --intro-file intro.md
        newsletter campaign edit 2 --body-file closed.md --articles none
    """
    if list_name and everyone:
        raise InputError("--everyone: give either --list NAME or --everyone, not both")
    if segments and no_segment:
        raise InputError("--no-segment: give either --segment RULE or --no-segment, not both")
    intro = read_markdown("--intro-file", intro_file)
    body = read_markdown("--body-file", body_file)
    ws = ws_of(ctx)
    current = campaigns.as_typed(ws.store, campaign_id)
    changes: dict[str, Any] = {
        "subject": subject,
        "preheader": preheader,
        "articles": article_spec,
        "intro": intro,
        "body": body,
        "template": template,
        "list_name": None if everyone else list_name,
        "segment": () if no_segment else (segments or None),
        "tracking": tracking,
    }
    changed = {
        key: value
        for key, value in changes.items()
        if value is not None or (key == "list_name" and everyone)
    }
    if not changed:
        raise InputError(
            f"campaign {campaign_id}: nothing to change; see `newsletter campaign edit --help`"
        )
    updated = campaigns.update_draft(
        ws.store,
        ws.settings,
        ws.templates,
        campaign_id,
        dataclasses.replace(current, **changed),
        utcnow(),
    )
    audit(ws, "changed a campaign", f"campaign {campaign_id}", ", ".join(sorted(changed)))
    if updated.matching is not None:
        click.echo(f"campaign {campaign_id}: {matching_now(updated.matching)}", err=True)
    if updated.announcement_became:
        click.echo(
            f"campaign {campaign_id}: the announcement design shows one article; these "
            f"{updated.article_count} articles go out in the {updated.announcement_became} "
            f"design",
            err=True,
        )
    click.echo(f"campaign {campaign_id}: changed ({', '.join(sorted(changed))})")


@campaign.command("delete")
@click.argument("campaign_id", type=int)
@click.pass_context
def campaign_delete(ctx: click.Context, campaign_id: int) -> None:
    """Delete a draft (unschedule a scheduled one first); its articles stay new.

    \b
    Example:
        newsletter campaign delete 1
    """
    ws = ws_of(ctx)
    subject = campaigns.delete_draft(ws.store, campaign_id)
    audit(ws, "deleted a draft", f"campaign {campaign_id}", subject)
    click.echo(f"campaign {campaign_id}: deleted")


@campaign.command("list")
@click.pass_context
def campaign_list(ctx: click.Context) -> None:
    """List campaigns with status, time (workspace zone) and progress.

    The time is when it finished, started, or is scheduled for. A scheduled
    campaign whose time passed by more than the grace window shows as
    missed: it is never sent until someone reschedules or sends it.

    \b
    Example:
        newsletter campaign list
    """
    ws = ws_of(ctx)
    zone = ZoneInfo(ws.settings.schedule.timezone)
    rows = ws.store.campaigns()
    if not rows:
        click.echo("no campaigns; create one with `newsletter campaign create`")
    for c in rows:
        when = c["finished_at"] or c["started_at"] or c["scheduled_at"] or c["created_at"]
        local = dt.datetime.fromisoformat(when).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        doubt = f", {c['in_doubt']} in doubt" if c["in_doubt"] else ""
        # A scheduled campaign past its grace window shows as missed (not a stored status).
        missed = c["status"] == CampaignStatus.SCHEDULED and c["missed_at"]
        status = "missed" if missed else c["status"]
        kind = "" if c["kind"] == "manual" else f"[{c['kind']}] "
        click.echo(
            f"{c['id']:>4}  {status:<9}  {local}  {c['sent']}/{c['recipients']} sent, "
            f"{c['failed']} failed{doubt}  {kind}{c['subject']}"
        )
        if c["note"] and (status in (CampaignStatus.PAUSED, "missed") or not c["recipients"]):
            click.echo(f"      {c['note']}")


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
    ws = ws_of(ctx)
    mail = jobs.campaign_mail(ws, ws.store, campaign_id)
    rendered = mail.render(campaigns.sample_subscriber(ws.store, email), tracked=False)
    out = out or Path(f"campaign-{campaign_id}.html")
    try:
        out.write_text(rendered.html, encoding="utf-8")
    except OSError as exc:
        raise InputError(os_error_line(exc, out, label=f"--out {out}: cannot write")) from None
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
    ws = ws_of(ctx)
    address = jobs.send_test(ws, ws.store, campaign_id, to_address, utcnow())
    audit(ws, "sent a test", f"campaign {campaign_id}", f"to {address}")
    click.echo(f"test message for campaign {campaign_id} sent to {address}")


DST_RULE = (
    "A time that a daylight-saving change skips (02:30 on a spring-forward night) "
    "is taken with the offset from before the change, so it lands as far after it "
    "(03:30); a time that occurs twice is the first of the two."
)


def _schedule_command(name: str, action: Any, summary: str, example: str, audited: str) -> None:
    @campaign.command(
        name,
        help=f"{summary}\n\nThe time is stored in UTC. {DST_RULE}\n\n\b\nExample:\n    {example}",
    )
    @click.argument("campaign_id", type=int)
    @click.option("--at", "at", required=True, help='Local time "YYYY-MM-DD HH:MM".')
    @click.option("--tz", help="IANA time zone, e.g. Europe/Berlin (default: [schedule] timezone).")
    @click.pass_context
    def command(ctx: click.Context, campaign_id: int, at: str, tz: str | None) -> None:
        ws = ws_of(ctx)
        zone = tz or ws.settings.schedule.timezone
        when, note = campaigns.parse_local_time(at, zone)
        action(ws.store, campaign_id, when, utcnow(), zone=zone)
        if note:
            click.echo(f"note: {note}", err=True)
        local = when.astimezone(ZoneInfo(zone))
        said = f"{at} {zone} ({when:%Y-%m-%d %H:%M} UTC)"
        audit(ws, audited, f"campaign {campaign_id}", f"{audited.capitalize()} for {said}.")
        click.echo(
            f"campaign {campaign_id} scheduled for {local:%Y-%m-%d %H:%M %Z} {zone} "
            f"({when:%Y-%m-%d %H:%M} UTC)"
        )


_schedule_command(
    "schedule",
    campaigns.schedule,
    "Schedule a draft or paused campaign; `newsletter run` sends it when the time comes.",
    'newsletter campaign schedule 1 --at "2026-12-01 09:00" --tz Europe/Berlin',
    "scheduled",
)
_schedule_command(
    "reschedule",
    campaigns.reschedule,
    "Move a scheduled (or missed) campaign to another time.",
    'newsletter campaign reschedule 1 --at "2026-12-02 09:00" --tz Europe/Berlin',
    "rescheduled",
)


@campaign.command("unschedule")
@click.argument("campaign_id", type=int)
@click.pass_context
def campaign_unschedule(ctx: click.Context, campaign_id: int) -> None:
    """Take a scheduled (or missed) campaign back to draft; nothing of it is sent.

    \b
    Example:
        newsletter campaign unschedule 1
    """
    ws = ws_of(ctx)
    campaigns.unschedule(ws.store, campaign_id, utcnow())
    audit(ws, "unscheduled", f"campaign {campaign_id}")
    click.echo(f"campaign {campaign_id}: draft")


class ProgressLine:
    """Sent, failed, left, rate and ETA on one line: redrawn on a terminal, every 5 s in a log."""

    def __init__(self, campaign_id: int, todo: int, out: TextIO):
        self.campaign_id, self.todo, self.out = campaign_id, todo, out
        self.tty = out.isatty()
        self.start = self.shown = time.monotonic()
        self.last: delivery.SendProgress | None = None

    def update(self, progress: delivery.SendProgress) -> None:
        self.last = progress
        now = time.monotonic()
        if now - self.shown >= (0.2 if self.tty else 5.0):
            self.shown = now
            self._show(progress, now)

    def _show(self, p: delivery.SendProgress, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = p.done / elapsed
        left = max(self.todo - p.done, 0)
        eta = f"{dt.timedelta(seconds=round(left / rate))}" if rate > 0 else "?"
        text = (
            f"campaign {self.campaign_id}: {p.sent} sent, {p.failed} failed, {left} left, "
            f"{rate:.0f}/s, ETA {eta}"
        )
        if self.tty:
            self.out.write(f"\r{text}\x1b[K")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        """The final figures, on a terminal and in a log alike."""
        if self.last is not None:
            self._show(self.last, time.monotonic())
            if self.tty:
                self.out.write("\n")
                self.out.flush()


@campaign.command("send")
@click.argument("campaign_id", type=int)
@click.pass_context
def campaign_send(ctx: click.Context, campaign_id: int) -> None:
    """Send a campaign now, in the foreground, showing sent, failed, left, rate and ETA.

    Interrupted sends continue where they stopped when run again.

    \b
    Example:
        newsletter campaign send 1
    """
    ws = ws_of(ctx)
    now = utcnow()
    mail, transport = jobs.prepare_send(ws, ws.store, campaign_id, now)
    # Logged once the send has started, before it runs: an interrupted one is logged too.
    audit(ws, "sent", f"campaign {campaign_id}")
    line = ProgressLine(campaign_id, ws.store.due_count(campaign_id, now), sys.stderr)
    try:
        progress = jobs.send_prepared(
            ws, ws.store, mail, transport, utcnow, on_progress=line.update
        )
    finally:
        transport.close()
        line.finish()
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
    if progress.paused_reason:
        # Paused on an error: the send did not do what was asked, so a script must see it.
        raise click.ClickException(
            f"campaign {campaign_id}: {progress.paused_reason}; fix it, then "
            f"`newsletter campaign resume {campaign_id}` and send again"
        )


def _state_command(name: str, action: Any, help_text: str, audited: str) -> None:
    @campaign.command(name, help=help_text)
    @click.argument("campaign_id", type=int)
    @click.pass_context
    def command(ctx: click.Context, campaign_id: int) -> None:
        ws = ws_of(ctx)
        result = action(ws.store, campaign_id, utcnow())
        audit(ws, audited, f"campaign {campaign_id}")
        status = result if isinstance(result, str) else ws.store.campaign_status(campaign_id)
        click.echo(f"campaign {campaign_id}: {status}")


_state_command(
    "pause",
    campaigns.pause,
    "Pause a sending or scheduled campaign within a second.\n\n"
    "\b\nExample:\n    newsletter campaign pause 1",
    "paused",
)
_state_command(
    "resume",
    campaigns.resume,
    "Resume a paused campaign where it stopped.\n\n\b\nExample:\n    newsletter campaign resume 1",
    "resumed",
)
_state_command(
    "cancel",
    campaigns.cancel,
    "Cancel a campaign; nothing more of it is sent.\n\n"
    "\b\nExample:\n    newsletter campaign cancel 1",
    "cancelled",
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
    ws = ws_of(ctx)
    count = campaigns.retry(ws.store, campaign_id, in_doubt, utcnow())
    audit(
        ws,
        "retried",
        f"campaign {campaign_id}",
        f"{count} deliveries" + (" in doubt" if in_doubt else ""),
    )
    click.echo(f"campaign {campaign_id}: {count} deliveries queued again")


def matching_now(count: int) -> str:
    return f"{count} subscriber matches now" if count == 1 else f"{count} subscribers match now"
