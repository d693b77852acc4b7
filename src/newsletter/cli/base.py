"""The root command group and what every command module shares."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import click

from newsletter import __version__, clock, subscribers
from newsletter.errors import NewsletterError, NotFound
from newsletter.workspace import Workspace


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


def ws_of(ctx: click.Context) -> Workspace:
    obj = ctx.find_root().obj
    if "ws" not in obj:
        obj["ws"] = Workspace.open(obj["root"])
        ctx.call_on_close(obj["ws"].close)
    return obj["ws"]


utcnow = clock.utcnow


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


def subscriber_by_email(ws: Workspace, email: str) -> dict[str, Any]:
    try:
        address = subscribers.normalize_email(email)
    except Exception:  # noqa: BLE001 - any invalid input means "not ours"
        address = email.strip()
    found = ws.store.subscriber_by_email(address, any_case=True)
    if found is None:
        raise NotFound(f"{email}: no such subscriber; see `newsletter subscribers list`")
    return found
