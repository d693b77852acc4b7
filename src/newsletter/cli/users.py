"""Staff accounts of the dashboard."""

from __future__ import annotations

import os

import click

from newsletter import staff
from newsletter.cli.base import Group, audit, cli, utcnow, ws_of

PASSWORD_ENV = "NEWSLETTER_USER_PASSWORD"


@cli.group(cls=Group, name="users")
def users_group() -> None:
    """Add, list and remove the staff accounts that sign in to the dashboard."""


@users_group.command("add")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice(staff.ROLES),
    default="editor",
    show_default=True,
    help="editor: campaigns and subscribers; admin: also settings and staff accounts.",
)
@click.pass_context
def users_add(ctx: click.Context, email: str, role: str) -> None:
    """Create a staff account; the password is asked for, or read from $NEWSLETTER_USER_PASSWORD.

    \b
    Example:
        newsletter users add alice@clinic.example.com --role admin
        NEWSLETTER_USER_PASSWORD="$(pass show newsletter)" newsletter users add bob@example.com
    """
    ws = ws_of(ctx)
    password = os.environ.get(PASSWORD_ENV) or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True, err=True
    )
    staff.add_user(ws.store, email, role, password, utcnow())
    address = staff.clean_address(email)
    audit(ws, "added staff account", address, role)
    click.echo(f"{address}: staff account added ({role})")


@users_group.command("list")
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """One line per staff account: address, role, last sign-in.

    \b
    Example:
        newsletter users list
    """
    rows = ws_of(ctx).store.staff_users()
    if not rows:
        click.echo("no staff accounts; add one with `newsletter users add EMAIL --role admin`")
    for row in rows:
        factor = "two-factor" if row.get("has_2fa") else "password only"
        click.echo(
            f"{row['email']}\t{row['role']}\t{factor}\t{row['signed_in_at'] or 'never signed in'}"
        )


@users_group.command("remove")
@click.argument("email")
@click.pass_context
def users_remove(ctx: click.Context, email: str) -> None:
    """Remove a staff account; its sessions end at once.

    \b
    Example:
        newsletter users remove bob@clinic.example.com
    """
    ws = ws_of(ctx)
    ws.store.remove_staff_user(email.strip())
    audit(ws, "removed staff account", email.strip())
    click.echo(f"{email.strip()}: staff account removed")


@users_group.command("reset-2fa")
@click.argument("email")
@click.pass_context
def users_reset_2fa(ctx: click.Context, email: str) -> None:
    """Turn two-factor sign-in off for an account that lost its phone and recovery codes.

    The account's sessions end; it signs in with its password alone and can set
    up a new authenticator app (an admin must, when [web] require_2fa is on).

    \b
    Example:
        newsletter users reset-2fa alice@clinic.example.com
    """
    ws = ws_of(ctx)
    ws.store.reset_totp(email.strip())
    audit(ws, "reset two-factor sign-in", email.strip())
    click.echo(f"{email.strip()}: two-factor sign-in is off; the account's sessions ended")
