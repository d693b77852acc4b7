"""Internationalised mailboxes are taken or refused the same way everywhere a person comes in.

Where the transport can carry a non-ASCII local part (an SMTP server offering
SMTPUTF8, the outbox, Mailgun), the import, the subscribe form and `subscribers
add` all take it and the mail goes out. Where it cannot, all three refuse it
with the same reason, before anything is stored.
"""

from __future__ import annotations

import html
from pathlib import Path

from conftest import import_in_dashboard, serving, signed_in, subscribe_form
from newsletter import clock, jobs
from smtp_sink import SmtpSink, smtp_env

EAI = "jürgen@example.com"


def _people(ws_dir: Path) -> Path:
    path = ws_dir / "people.csv"
    path.write_text(f"email,first_name\nann@example.com,Ann\n{EAI},Jürgen\n", encoding="utf-8")
    return path


def test_without_smtputf8_every_way_in_refuses_it_with_the_same_reason(cli, ws_dir: Path) -> None:
    with SmtpSink() as sink:
        reason = (
            f"{EAI}: needs SMTPUTF8 (a non-ASCII address), which the server "
            f"127.0.0.1:{sink.port} does not offer; no email could reach it"
        )
        cli.env = {**cli.env, **smtp_env(sink)}
        imported = cli("subscribers", "import", str(_people(ws_dir)), check=False)
        assert f"people.csv:3: {reason}" in imported.stderr
        added = cli("subscribers", "add", EAI, check=False)
        assert added.returncode == 1
        assert added.stderr.strip().splitlines() == [f"Error: {reason}"]

        with serving(ws_dir, {**cli.env}) as server:
            answer = subscribe_form(server.url, EAI)
            server.app.state.subscriber_pages.mail.flush()
        assert answer.status_code == 400
        assert "cannot deliver to an address with non-ASCII characters" in answer.text
        assert "check your inbox" not in answer.text.lower()

        listed = cli("subscribers", "list").stdout
        assert "ann@example.com" in listed and EAI not in listed  # nothing of it stored
        assert sink.messages == []  # and no confirmation was tried


def test_with_smtputf8_every_way_in_takes_it_and_the_mail_arrives(cli, ws_dir: Path) -> None:
    with SmtpSink(smtputf8=True) as sink:
        cli.env = {**cli.env, **smtp_env(sink)}
        imported = cli("subscribers", "import", str(_people(ws_dir)))
        assert "2 added" in imported.stdout and "needs SMTPUTF8" not in imported.stderr
        other = "zoë@example.com"
        added = cli("subscribers", "add", other)
        assert "confirmation email sent" in added.stdout

        with serving(ws_dir, {**cli.env}) as server:
            third = "renée@example.com"
            answer = subscribe_form(server.url, third)
            server.app.state.subscriber_pages.mail.flush()
        assert answer.status_code == 200
        assert sorted(sink.recipients()) == sorted([other, third])
        listed = cli("subscribers", "list").stdout
        assert all(a in listed for a in (EAI, other, third))


def test_subscribers_add_says_what_was_stored_when_its_confirmation_cannot_go(cli) -> None:
    from conftest import free_port

    cli.env = {
        **cli.env,
        "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
        "NEWSLETTER_SMTP__HOST": "127.0.0.1",
        "NEWSLETTER_SMTP__PORT": str(free_port()),  # nobody listens there
        "NEWSLETTER_SMTP__SECURITY": "none",
    }
    added = cli("subscribers", "add", "ann@example.com", check=False)
    assert added.returncode == 1 and "Traceback" not in added.stderr
    (line,) = added.stderr.strip().splitlines()
    assert line.startswith(
        "Error: ann@example.com: recorded as unconfirmed, but the confirmation email could "
        "not be sent (ann@example.com: smtp 127.0.0.1:"
    )
    assert "ann@example.com\tunconfirmed" in cli("subscribers", "list").stdout


def test_without_smtputf8_the_folder_the_strict_import_and_the_dashboard_refuse_it(
    cli, dashboard, ws_dir: Path
) -> None:
    """The streamed imports (folder job, --strict, the dashboard's upload) refuse it as well."""
    reason = (
        f"{EAI}: needs SMTPUTF8 (a non-ASCII address), which the server "
        f"127.0.0.1:{dashboard.sink.port} does not offer; no email could reach it"
    )
    ws = dashboard.ws
    cli.env = {**cli.env, **smtp_env(dashboard.sink)}
    strict = cli("subscribers", "import", "--strict", str(_people(ws_dir)), check=False)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert f"people.csv:3: {reason} (--strict: nothing imported" in strict.stderr
    assert ws.store.subscriber_by_email("ann@example.com") is None

    folder = ws.path(ws.settings.subscribers.folder)
    for old in folder.glob("*.csv"):
        old.unlink()
    _people(ws_dir).rename(folder / "people.csv")
    (report,) = jobs.import_subscriber_folder(ws, ws.store, clock.utcnow())
    assert report.added == 1 and report.problems == [f"{folder / 'people.csv'}:3: {reason}"]

    session, csrf = signed_in(dashboard.url)
    upload = f"email\nbo@example.org\n{EAI}\nBO@EXAMPLE.ORG\n".encode()
    done = import_in_dashboard(session, dashboard.url, csrf, "more.csv", upload, timeout=30)
    assert done.status_code == 200
    assert f"more.csv:3: {html.escape(reason)}" in done.text
    assert "1 added" in done.text and "1 duplicate rows" in done.text
    assert ws.store.subscriber_by_email(EAI) is None
    assert ws.store.subscriber_by_email("BO@example.org")["email"] == "bo@example.org"
