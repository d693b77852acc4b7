"""Engagement reports, and the retention purge of raw tracking events."""

from __future__ import annotations

import json
from typing import Any

import click

from newsletter import jobs, reports
from newsletter.cli.base import cli, utcnow, ws_of

FAILURES_SHOWN = 50  # failed deliveries listed with their reason by `stats ID`


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _print(report: dict[str, Any]) -> None:
    r = report
    tracking = "" if r["tracking"] else " (tracking off)"
    click.echo(f"campaign {r['campaign_id']}: {r['subject']} [{r['status']}]{tracking}")
    # The headline first: people, not machines, out of those the email reached.
    click.echo(
        f"  {r['opens_human_unique']} of {r['delivered']} people opened "
        f"({_pct(r['human_open_rate'])}), {r['clicks_human_unique']} clicked a link "
        f"({_pct(r['human_click_rate'])}); machines left out"
    )
    doubt = f", {r['in_doubt']} in doubt" if r["in_doubt"] else ""
    pending = f", {r['pending']} to go" if r["pending"] else ""
    click.echo(
        f"  recipients {r['recipients']}, sent {r['sent']}, failed {r['failed']}{doubt}"
        f"{pending}, bounced {r['bounced']}, delivered {r['delivered']}, "
        f"complaints {r['complaints']}, unsubscribed {r['unsubscribes']}"
    )
    click.echo(
        f"  opens  {r['opens_total']} total, {r['opens_unique']} unique "
        f"({_pct(r['open_rate'])}), {r['opens_human_unique']} human "
        f"({_pct(r['human_open_rate'])}); {r['opens_machine']} machine, "
        f"{r['opens_unknown']} unknown"
    )
    click.echo(
        f"  clicks {r['clicks_total']} total, {r['clicks_unique']} unique "
        f"({_pct(r['click_rate'])}), {r['clicks_human_unique']} human "
        f"({_pct(r['human_click_rate'])}); {r['clicks_machine']} machine"
    )
    click.echo(
        f"  click-to-open {_pct(r['click_to_open_rate'])}, human "
        f"{_pct(r['human_click_to_open_rate'])}"
        + (f"; {r['anonymous_events']} anonymous events" if r["anonymous_events"] else "")
    )
    for reason, count in r["machine_reasons"].items():
        click.echo(f"  machine: {count} x {reason}")
    for link in r["links"]:
        click.echo(
            f"  link {link['link_id']}: {link['clicks_total']} clicks, "
            f"{link['clicks_unique']} unique, {link['clicks_human_unique']} human  {link['url']}"
        )
    for a in r["articles"]:
        blog = "blog views unknown"
        if a["blog_views_gained"] is not None:
            blog = (
                f"blog views {a['blog_views_before']} before the send, "
                f"{a['blog_views_after']} now (+{a['blog_views_gained']})"
            )
        elif a["blog_views_before"] is not None or a["blog_views_after"] is not None:
            blog = f"blog views {a['blog_views_after'] or a['blog_views_before']}"
        click.echo(
            f"  article {a['article_id']}: {a['clicks_total']} clicks, "
            f"{a['clicks_human_unique']} human readers; {blog}  {a['title']}"
        )
    busy = reports.busy_hours(r)
    if busy:
        click.echo("  hour  opens human/machine/unknown  clicks human/machine/unknown")
        for h in busy:
            click.echo(
                f"  {h['hour']:>4}  {h['opens_human']:>5} / {h['opens_machine']} / "
                f"{h['opens_unknown']:<14}{h['clicks_human']:>6} / {h['clicks_machine']} / "
                f"{h['clicks_unknown']}"
            )


@cli.command()
@click.argument("campaign_id", type=int, required=False)
@click.option("--csv", "as_csv", is_flag=True, help="CSV of one table (see --table).")
@click.option("--json", "as_json", is_flag=True, help="JSON: everything, per campaign.")
@click.option(
    "--table",
    type=click.Choice(sorted([*reports.TABLES, *reports.PEOPLE_TABLES])),
    default="campaigns",
    show_default=True,
    help="With --csv: one row per campaign, link, article, hour of the first 48, or "
    "person who opened or clicked (recipients, of one campaign).",
)
@click.option(
    "--machines",
    is_flag=True,
    help="With --table recipients: also people whose opens and clicks were all machines'.",
)
@click.pass_context
def stats(
    ctx: click.Context,
    campaign_id: int | None,
    as_csv: bool,
    as_json: bool,
    table: str,
    machines: bool,
) -> None:
    """Sends, opens, clicks (human and machine apart), per link, per article, per hour.

    Unique means distinct subscribers; human-unique opens need a human open or
    a human click. Rates are over delivered (sent minus bounced). The recipients
    table lists who opened or clicked: the human-unique people, or with
    --machines everyone with an open or a click.

    \b
    Example:
        newsletter stats 1
        newsletter stats --csv > campaigns.csv
        newsletter stats 1 --csv --table hourly
        newsletter stats 1 --csv --table recipients > who-read-it.csv
    """
    ws = ws_of(ctx)
    if table in reports.PEOPLE_TABLES:
        if campaign_id is None or not as_csv:
            raise click.ClickException(
                f"--table {table} lists the people of one campaign: "
                f"newsletter stats ID --csv --table {table}"
            )
        people = reports.recipients(ws.store, campaign_id, machines)
        click.echo(reports.people_csv(people), nl=False)
        return
    rows = reports.reports(ws.store, campaign_id, reports.KeptReports(ws.store))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if as_csv:
        click.echo(reports.table_csv(rows, table), nl=False)
        return
    if not rows:
        click.echo("no campaigns yet")
    for report in rows:
        _print(report)
        if campaign_id is not None:
            # Why someone did not get it: the reason of each failed or in-doubt delivery.
            for f in ws.store.failed_deliveries(campaign_id, FAILURES_SHOWN):
                status = f["status"].replace("_", " ")
                click.echo(f"  {status}: {f['email'] or '(erased)'}: {f['error'] or ''}")


@cli.group("events")
def events_group() -> None:
    """Raw tracking events: the retention purge.

    \b
    Example:
        newsletter events purge
    """


@events_group.command("purge")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=1),
    help="Days to keep; default: [tracking] retention_days.",
)
@click.pass_context
def events_purge(ctx: click.Context, days: int | None) -> None:
    """Delete raw opens, clicks and views older than the retention period.

    Unsubscribes, bounces, complaints and consent records are never purged.
    The scheduler runs this daily when [tracking] retention_days is set.

    \b
    Example:
        newsletter events purge --older-than 365
    """
    ws = ws_of(ctx)
    result = jobs.purge_events(ws, ws.store, utcnow(), days)
    if result is None:
        click.echo("nothing to purge: [tracking] retention_days is 0 (keep events)")
        return
    click.echo(f"deleted {result.deleted} events recorded before {result.before:%Y-%m-%d %H:%M}")
