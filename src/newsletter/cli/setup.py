"""Workspace, configuration, fetching and articles."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter import config, jobs
from newsletter.cli.base import Group, cli, utcnow, ws_of
from newsletter.workspace import Workspace, init_workspace

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
@click.option(
    "--transport",
    "try_transport",
    is_flag=True,
    help="Also connect to the transport (SMTP: connect and log in) without sending.",
)
@click.pass_context
def config_check(ctx: click.Context, try_transport: bool) -> None:
    """Validate newsletter.toml and the environment; print every problem with its key.

    \b
    Example:
        NEWSLETTER_WEB__PORT=9000 newsletter config check --transport
    """
    ws = Workspace.open(ctx.find_root().obj["root"], strict=False)
    if ws.problems:
        for problem in ws.problems:
            click.echo(problem, err=True)
        raise click.ClickException(f"{len(ws.problems)} problem(s) in the configuration")
    for warning in jobs.config_warnings(ws):
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{ws.root / config.CONFIG_FILE}: ok (transport {ws.settings.delivery.transport}, "
        f"web on {ws.settings.web.host}:{ws.settings.web.port})"
    )
    if try_transport:
        click.echo(jobs.check_transport(ws))


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
    ws = ws_of(ctx)
    results = jobs.fetch_sources(ws, ws.store, utcnow(), force=True)
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
@click.option("--new", "only_new", is_flag=True, help="Only articles no campaign has sent yet.")
@click.pass_context
def articles_list(ctx: click.Context, only_new: bool) -> None:
    """List articles, newest first, with blog views and whether they were sent.

    Status is "new" (the next newsletter takes it; a draft or a cancelled campaign
    leaves it new), "sent DATE", or "archived"
    (recorded from a source's back catalogue, never announced on its own).

    \b
    Example:
        newsletter articles list --new
    """
    rows = ws_of(ctx).store.articles(only_new=only_new)
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
