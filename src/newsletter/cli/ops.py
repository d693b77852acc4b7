"""DKIM keys, and the long-running commands: run and serve."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

import click

from newsletter import jobs
from newsletter.cli.base import Group, cli, ws_of
from newsletter.errors import InputError, os_error_line
from newsletter.workspace import Workspace

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

    ws = ws_of(ctx)
    domain = domain or ws.settings.dkim.domain or ws.settings.sender.from_address.rpartition("@")[2]
    if out.exists():
        raise InputError(f"--out {out}: already exists; choose another file or remove it")
    pem, record = generate_key(algorithm)
    try:
        out.write_bytes(pem)
        out.chmod(0o600)
    except OSError as exc:
        raise InputError(os_error_line(exc, out, label=f"--out {out}: cannot write")) from None
    click.echo(f"private key written to {out} (readable only by you)")
    click.echo("publish this DNS TXT record:")
    click.echo(f"{selector}._domainkey.{domain}. IN TXT {txt_record_chunks(record)}")
    click.echo("then set in newsletter.toml:")
    if algorithm == "ed25519":
        # Beside an RSA key: Ed25519 alone is "unsupported algorithm" to many receivers.
        click.echo(
            f'[dkim]\ndomain = "{domain}"\ned25519_selector = "{selector}"\n'
            f'ed25519_private_key_file = "{out}"\n'
            "# and an RSA key (`newsletter dkim keygen`) in selector and private_key_file"
        )
        return
    click.echo(f'[dkim]\ndomain = "{domain}"\nselector = "{selector}"\nprivate_key_file = "{out}"')


# -- running -----------------------------------------------------------------------------


def _serve(ws: Workspace, with_scheduler: bool) -> None:
    from newsletter import job_scheduler as scheduling
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
    # The address to type on this machine: a server listening on every interface is
    # reached here through loopback.
    local = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, shown)
    dashboard = f"http://{local}:{port}/admin/"
    log.info("dashboard on %s", dashboard)
    if not ws.store.staff_users():
        log.info(
            "no dashboard account yet: open %s in a browser on this machine to create the "
            "first admin (or run `newsletter users add`)",
            dashboard,
        )
    stop = threading.Event()
    started: list[Any] = []

    def start_scheduler() -> None:
        # Beside the web server, not before it: the job store's first look at the
        # database must not keep the pages waiting.
        try:
            started.append(scheduling.start(ws, stop))
        except Exception:  # noqa: BLE001 - the web server keeps serving; say why
            log.exception("the scheduler could not start")
            return
        log.info(
            "scheduler started: polling sources every %ds, mode %s",
            ws.settings.schedule.poll_interval,
            ws.settings.schedule.mode,
        )

    starter = threading.Thread(target=start_scheduler, name="scheduler-start", daemon=True)
    if with_scheduler:
        starter.start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the main job is meant to stop
    finally:
        stop.set()
        if with_scheduler:
            starter.join()
        for scheduler in started:
            scheduling.stop_scheduler(ws, scheduler)
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
    ws = ws_of(ctx)
    ws.require_sending()  # the scheduler sends: refuse to start without the provider's key
    _serve(ws, with_scheduler=True)


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """The web server only: tracking, unsubscribe and subscriber pages.

    \b
    Example:
        NEWSLETTER_WEB__PORT=9000 newsletter serve
    """
    _serve(ws_of(ctx), with_scheduler=False)
