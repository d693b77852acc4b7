"""Engagement reports."""

from __future__ import annotations

import json

import click

from newsletter import results
from newsletter.cli.base import cli, ws_of

# -- stats ------------------------------------------------------------------------------


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
    ws = ws_of(ctx)
    ids = [campaign_id] if campaign_id else [c["id"] for c in ws.store.campaigns()]
    rows = [results.campaign_stats(ws.store, i) for i in ids]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if as_csv:
        click.echo(results.stats_csv(rows), nl=False)
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
