"""What the scheduler will run next, and what it missed."""

from __future__ import annotations

import datetime as dt

import click

from newsletter import timerules
from newsletter.cli.base import Group, cli, utcnow, ws_of
from newsletter.status import CampaignStatus, StepStatus

# How the stored jobs of `newsletter run` read in the list.
JOB_NAMES = {
    "poll": "poll the sources",
    "due": "look for due campaigns, digests and welcome steps",
    "digest": "digest",
}


@cli.group(cls=Group, name="schedule")
def schedule_group() -> None:
    """See what the scheduler of `newsletter run` will do next."""


@schedule_group.command("list")
@click.option("--limit", default=20, show_default=True, help="Show at most this many entries.")
@click.pass_context
def schedule_list(ctx: click.Context, limit: int) -> None:
    """List what will run next (times in the workspace zone) and what was missed.

    Campaigns, digests and welcome emails come from the database; the
    recurring jobs from the job store `newsletter run` keeps in it. Missed
    due times are never run by themselves: reschedule, send or cancel them.

    \b
    Example:
        newsletter schedule list
    """
    ws = ws_of(ctx)
    store = ws.store
    s = ws.settings.schedule
    zone = timerules.zone(s.timezone)
    now = utcnow()

    def local(when: dt.datetime) -> str:
        return when.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z").ljust(22)

    mode = s.mode
    if mode == "digest":
        mode += f' ("{s.digest_cron}" in {s.timezone})'
    elif mode == "instant" and (s.quiet_period or s.hold_as_draft):
        extras = []
        if s.quiet_period:
            extras.append(f"after {s.quiet_period} s without new articles")
        if s.hold_as_draft:
            extras.append("held as drafts")
        mode += f" ({', '.join(extras)})"
    click.echo(f"mode: {mode}; grace window {s.misfire_grace_time} s")

    upcoming: list[tuple[dt.datetime, str]] = []
    for job in store.scheduler_jobs():
        if job["next_run_time"] is None or job["id"].startswith("campaign-"):
            continue
        when = dt.datetime.fromtimestamp(job["next_run_time"], dt.UTC)
        if job["id"] == "digest":
            continue  # from the rule itself, below
        upcoming.append((when, f"{JOB_NAMES.get(job['id'], job['id'])} (job {job['id']})"))
    if s.mode == "digest":
        fire = timerules.next_fire(timerules.cron_trigger(s.digest_cron, s.timezone), now)
        if fire is not None:
            upcoming.append((fire, "digest of the new articles (no email if there are none)"))
    for c in store.scheduled_campaigns():
        kind = "" if c["kind"] == "manual" else f" [{c['kind']}]"
        upcoming.append(
            (
                dt.datetime.fromisoformat(c["scheduled_at"]),
                f"campaign {c['id']}{kind} {c['subject']}",
            )
        )
    for step in store.pending_steps():
        upcoming.append(
            (
                dt.datetime.fromisoformat(step["due_at"]),
                f"{step['kind']} email to subscriber {step['subscriber_id']}",
            )
        )
    upcoming.sort(key=lambda item: item[0])
    click.echo("next:" if upcoming else "next: nothing scheduled")
    for when, what in upcoming[:limit]:
        late = "  (due now)" if when <= now else ""
        click.echo(f"  {local(when)}  {what}{late}")

    missed: list[tuple[dt.datetime, str]] = []
    for c in store.campaigns():
        if c["status"] == CampaignStatus.SCHEDULED and c["missed_at"]:
            missed.append(
                (dt.datetime.fromisoformat(c["scheduled_at"]), f"campaign {c['id']}: {c['note']}")
            )
    for run in store.job_runs(StepStatus.MISSED, limit):
        missed.append((dt.datetime.fromisoformat(run["due_at"]), run["detail"] or run["job"]))
    for step in store.steps(StepStatus.MISSED, limit):
        missed.append(
            (
                dt.datetime.fromisoformat(step["due_at"]),
                f"{step['kind']} email to subscriber {step['subscriber_id']}: {step['detail']}",
            )
        )
    if missed:
        missed.sort(key=lambda item: item[0], reverse=True)
        click.echo("missed (left for a person):")
        for when, what in missed[:limit]:
            click.echo(f"  {local(when)}  {what}")
