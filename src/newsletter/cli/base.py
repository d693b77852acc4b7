"""The root command group and what every command module shares."""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from newsletter import __version__, clock, subscribers
from newsletter.errors import NO_SPACE, NewsletterError, NotFound, os_error_line
from newsletter.workspace import Workspace


class Group(click.Group):
    """A click group that turns our errors into one clear line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.Error as exc:
            if _disk_full(exc):
                database = _database_path(ctx)
                full = OSError(errno.ENOSPC, str(exc), database)
                raise click.ClickException(
                    f"{os_error_line(full, label=f'database {database}')} "
                    f"(nothing of this command was stored)"
                ) from None
            raise click.ClickException(
                f"database: {exc}; check the [database] path and the disk"
            ) from None
        except OSError as exc:
            if exc.filename is None and exc.errno in (*NO_SPACE, errno.EPIPE):
                # A write() error names no file: it was the output (`> file`, a pipe).
                output = _output_name()
                _silence_stdout()
                raise click.ClickException(os_error_line(exc, output)) from None
            raise click.ClickException(os_error_line(exc)) from None


def _disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == getattr(sqlite3, "SQLITE_FULL", 13) or "disk is full" in str(exc)


def _database_path(ctx: click.Context) -> str:
    ws = ctx.find_root().obj.get("ws")
    if ws is None:
        return "(the workspace database)"
    return str(ws.path(ws.settings.database.path))


def _output_name() -> str:
    """What standard output is written to: a file's path, or "standard output"."""
    try:
        target = os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}")
    except (OSError, ValueError, AttributeError):
        return "standard output"
    return target if target.startswith("/") else "standard output"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the flush at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def ws_of(ctx: click.Context) -> Workspace:
    obj = ctx.find_root().obj
    if "ws" not in obj:
        obj["ws"] = Workspace.open(obj["root"])
        ctx.call_on_close(obj["ws"].close)
    return obj["ws"]


utcnow = clock.utcnow


def cli_actor() -> str:
    """Who the audit log names for a staff action run here: the command line and the
    operating-system user who ran it. No address: it did not come over the network."""
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment and no passwd entry
        user = f"uid {os.getuid()}"
    return f"command line ({user})"


def audit(
    ws: Workspace,
    action: str,
    target: str = "",
    detail: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """Record a staff action done from the command line, in the dashboard's words."""
    ws.store.audit(utcnow(), cli_actor(), action, target, detail, data=data)


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
    found = ws.store.subscriber_by_email(address)
    if found is None:
        raise NotFound(f"{email}: no such subscriber; see `newsletter subscribers list`")
    return found
