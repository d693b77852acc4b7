"""Header injection and SMTP smuggling: no input reaches a header raw, no bare line end the wire."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from newsletter import campaigns, jobs
from newsletter.mime import canonical_crlf
from newsletter.subscribers import import_file
from newsletter.transports import Envelope
from newsletter.transports.smtp import SmtpTransport
from newsletter.workspace import Workspace
from raw_smtp_sink import RawSmtpSink

BARE_LF = re.compile(rb"(?<!\r)\n")
BARE_CR = re.compile(rb"\r(?!\n)")
SMUGGLED = b"MAIL FROM:<attacker@evil.example>"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _raw_env(sink: RawSmtpSink) -> dict[str, str]:
    return {
        "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
        "NEWSLETTER_SMTP__HOST": "127.0.0.1",
        "NEWSLETTER_SMTP__PORT": str(sink.port),
        "NEWSLETTER_SMTP__SECURITY": "none",
    }


def _clean_wire(sink: RawSmtpSink) -> None:
    """Every line end on the wire is CRLF, and no command came from inside a message."""
    assert not BARE_LF.search(sink.transcript), bytes(sink.transcript)
    assert not BARE_CR.search(sink.transcript), bytes(sink.transcript)
    assert not any(c.startswith(SMUGGLED) for c in sink.commands), sink.commands


def test_a_bare_lf_dot_crlf_in_a_message_cannot_end_it_early() -> None:
    # The shape of SMTP smuggling: to a server that takes a bare LF as a line end,
    # "\n.\r\n" ends the message and what follows is a second, forged one.
    data = (
        b"Subject: hello\r\n\r\nfirst line\n.\r\n"
        + SMUGGLED
        + b"\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nforged\r\n.\r\n"
        + b"and a bare CR\r.\r\nlast line\r\n"
    )
    with RawSmtpSink() as sink:
        transport = SmtpTransport("127.0.0.1", sink.port, security="none")
        try:
            transport.send(Envelope("news@example.com", "reader@example.com", data, "k1"))
        finally:
            transport.close()
    assert len(sink.messages) == 1
    _clean_wire(sink)
    # The dot-lines arrived stuffed, inside the one message.
    assert b"\r\n..\r\n" + SMUGGLED in sink.messages[0]


@pytest.mark.parametrize(
    "data",
    [
        b"a\nb\r\n",  # a bare LF
        b"a\rb\r\n",  # a bare CR
        b"a\r\r\nb",  # a CR before a CRLF
        b"a\n\rb",  # LF then CR: as many of each as CRLF pairs would have
        b"\n.\r\n",  # the smuggling shape
        b"a\r\nb\r",  # a CR at the very end
        b"\na\r\n",  # an LF at the very start
    ],
)
def test_every_bare_line_end_becomes_crlf(data: bytes) -> None:
    # The fast path (data already canonical, returned as it is) must not let any
    # of these through: each is one the counts could be fooled by if done wrong.
    fixed = canonical_crlf(data)
    assert not BARE_LF.search(fixed) and not BARE_CR.search(fixed)
    assert fixed.replace(b"\r\n", b"\n") == re.sub(rb"\r\n|\r|\n", b"\n", data)


def test_a_canonical_message_is_passed_through_unchanged() -> None:
    data = b"Subject: hello\r\n\r\nline one\r\n.dot\r\n"
    assert canonical_crlf(data) is data


def test_a_campaign_whose_article_and_names_carry_injections_sends_clean_bytes(
    ws_dir: Path,
) -> None:
    (ws_dir / "articles" / "evil.md").write_text(
        "---\ntitle: Evil\ndate: 2026-01-01\n---\n\nBefore\n.\r\n"
        "MAIL FROM:<attacker@evil.example>\r\n\nAfter\r.\r\n",
        newline="",
    )
    people = ws_dir / "people.csv"
    people.write_text(
        'email,first_name\nann@example.com,Ann\nbob@example.com,"Bob\n.\r\nMAIL FROM:<x@evil>"\n',
        newline="",
    )
    with RawSmtpSink() as sink:
        ws = Workspace.open(ws_dir, env=_raw_env(sink))
        try:
            import_file(ws.store, people, _now(), confirmed=True)
            # Intake folds the line breaks to spaces; the name as an older version
            # stored it tests the send-time gate.
            with ws.store.transaction():
                ws.store.conn.execute(
                    "UPDATE subscribers SET first_name = ? WHERE email = 'bob@example.com'",
                    ["Bob\n.\r\nMAIL FROM:<x@evil>"],
                )
            jobs.fetch_sources(ws, ws.store, _now())
            cid = campaigns.create(ws.store, ws.settings, "Hello", "new", None, None, _now())
            progress = jobs.send_campaign(ws, ws.store, cid)
            failed = {r["email"]: r["error"] for r in ws.store.failed_deliveries(cid)}
        finally:
            ws.close()
    assert progress.finished and progress.sent == 1 and progress.failed == 1
    assert "contains a line break" in failed["bob@example.com"]
    assert len(sink.messages) == 1
    _clean_wire(sink)


def test_a_subject_with_a_line_break_is_refused_in_one_line(cli) -> None:
    cli("fetch")
    result = cli("campaign", "create", "--subject", "Hi\r\nBcc: all@evil.example", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: subject: contains a carriage return (U+000D); a mail header must be one "
        "line of text, so remove it"
    ]
    assert "Traceback" not in result.stderr
    assert "Hi" not in cli("campaign", "list").stdout  # nothing was stored


def test_the_dashboard_refuses_a_forged_subject_with_a_form_error(admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url
    page.goto(url + "/campaigns/new")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    # A browser strips line breaks from a text field; a forged POST does not.
    answer = page.request.post(
        url + "/campaigns/new",
        form={
            "subject": "Hi\nBcc: all@evil.example",
            "csrf": token,
            "articles_mode": "new",
            "template": "auto",
        },
    )
    assert answer.status == 400
    # Said by the subject field, in the dashboard's words.
    assert re.search(
        r'id="subject-error">The subject contains a line break \(U\+000A\)', answer.text()
    )
    assert dashboard.ws.store.campaigns() == []


def test_config_check_names_each_header_setting_with_a_line_break(cli, ws_dir: Path) -> None:
    cli.env = {
        **cli.env,
        "NEWSLETTER_SENDER__FROM_NAME": "News\r\nBcc: all@evil.example",
        "NEWSLETTER_SENDER__REPLY_TO": "reply@example.com\nX-Evil: 1",
        "NEWSLETTER_SENDER__UNSUBSCRIBE_MAILTO": "unsub@example.com\x07",
        "NEWSLETTER_SITE__BASE_URL": "https://news.example.com/\r\nX-Evil: 1",
        "NEWSLETTER_SENDER__FROM_ADDRESS": "news@example.com\rX-Evil: 1",
    }
    result = cli("config", "check", check=False)
    assert result.returncode == 1
    for key in (
        "sender.from_name",
        "sender.reply_to",
        "sender.unsubscribe_mailto",
        "site.base_url",
        "sender.from_address",
    ):
        assert re.search(rf"^{re.escape(key)}: contains ", result.stdout + result.stderr, re.M), (
            key,
            result.stdout,
            result.stderr,
        )
    # Every other command refuses to run on them too, naming the first.
    fetch = cli("fetch", check=False)
    assert fetch.returncode == 1 and "sender.from_name: contains" in fetch.stderr
