"""A campaign builds each message only in the form its transport reads, CRLF throughout."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from clocks import NOW
from newsletter import campaigns, jobs
from newsletter.mime import UnsafeHeader, canonical_crlf, compose
from newsletter.transports import FIELDS, MIME, Envelope
from newsletter.transports.httpapi import content_of
from newsletter.transports.mailgun import MailgunTransport
from newsletter.transports.outbox import OutboxTransport
from newsletter.transports.postmark import PostmarkTransport
from newsletter.transports.sendgrid import SendGridTransport
from newsletter.transports.ses import SesTransport
from newsletter.transports.smtp import SmtpTransport
from newsletter.workspace import Workspace
from workspaces import workspace_with_articles_and_subscribers

READER = {
    "id": 7,
    "email": "zoe@example.org",
    "first_name": "Zoë",
    "last_name": "Brennan",
    "attributes": {},
}


def _plain(text: str) -> str:
    return text.replace("\r\n", "\n").rstrip("\n")


def test_each_transport_says_which_form_it_reads() -> None:
    # JSON APIs take fields; SMTP, the outbox and the raw-MIME APIs take the bytes.
    assert SendGridTransport.needs == PostmarkTransport.needs == FIELDS
    assert SmtpTransport.needs == OutboxTransport.needs == MIME
    assert MailgunTransport.needs == SesTransport.needs == MIME


@pytest.fixture
def mail(ws_dir: Path):
    ws = Workspace.open(ws_dir, env={"NEWSLETTER_SECRET_KEY": "forms-key"})
    workspace_with_articles_and_subscribers(ws, NOW)
    campaign_id = campaigns.create(ws.store, ws.settings, "Fresh", "new", None, None, NOW)
    mail, transport = jobs.prepare_send(ws, ws.store, campaign_id, NOW)
    transport.close()
    yield mail
    ws.close()


def test_fields_carry_what_the_mime_message_says(mail) -> None:
    sender = mail.settings.sender.from_address
    _, as_mime = mail.envelope(READER, "k7", NOW, sender, needs=MIME)
    _, as_fields = mail.envelope(READER, "k7", NOW, sender, needs=FIELDS)
    # Each is built in its own form only.
    assert as_mime.content is None and as_mime.data.startswith(b"From: ")
    assert as_fields.data == b"" and as_fields.content is not None
    # And the two say the same: the MIME message read back gives the fields.
    read_back, fields = content_of(as_mime), as_fields.content
    assert (read_back.subject, read_back.to_name, read_back.to_address) == (
        fields.subject,
        fields.to_name,
        fields.to_address,
    )
    # The MIME part writes non-ASCII letters as character references, with CRLF.
    assert _plain(html.unescape(read_back.html)) == _plain(html.unescape(fields.html))
    assert _plain(read_back.text) == _plain(fields.text)
    for name in ("Message-ID", "List-Unsubscribe", "List-Id", "Feedback-ID"):
        assert read_back.headers[name] == fields.headers[name]


@pytest.mark.parametrize("needs", [MIME, FIELDS])
def test_a_name_that_cannot_go_in_a_header_fails_in_either_form(mail, needs: str) -> None:
    broken = {**READER, "first_name": "Zoë\r\nBcc: everyone@example.org"}
    with pytest.raises(UnsafeHeader, match="the name of zoe@example.org: contains a carriage"):
        mail.envelope(broken, "k7", NOW, mail.settings.sender.from_address, needs=needs)


LINE_ENDS = ["a\rb", "a\nb", "a\r\r\nb", "a\n\rb", "a\r\n.\nb", ".\r\n", "end\r"]


@pytest.mark.parametrize("ends", LINE_ENDS)
def test_what_the_factory_builds_is_crlf_throughout_whatever_its_parts_bring(ends: str) -> None:
    # SMTP trusts a campaign's messages to be CRLF throughout (Envelope.crlf) and does
    # not scan them again for a bare CR or LF: the factory must never let one through,
    # in the 7bit or the quoted-printable HTML part, the text part or the headers.
    for html_part in (f"<p>{ends}</p>", f"<style>/* Zoë {ends} */</style>", "x" * 1200 + ends):
        data = compose(
            subject="Grüße " * 30,  # folded over several lines
            text=f"Hello {ends} Zoë\n" * 3 + "y" * 200,
            html=html_part,
            from_name="Riverbend Physical Therapy",
            from_address="news@clinic.example.com",
            to_address="zoe@example.org",
            to_name="Zoë Brennan " * 8,
            msg_id="<c1.k.1@clinic.example.com>",
            date=NOW,
            unsubscribe_url="https://news.clinic.example.com/u/" + "A" * 60,
            unsubscribe_mailto="leave@clinic.example.com",
            list_id="Riverbend PT <newsletter.clinic.example.com>",
            feedback_id="c1:newsletter:clinic.example.com",
        )
        assert canonical_crlf(data) == data, html_part


def test_a_campaign_message_goes_as_crlf_and_other_data_is_made_so(mail) -> None:
    _, envelope = mail.envelope(READER, "k7", NOW, mail.settings.sender.from_address)
    assert envelope.crlf and canonical_crlf(envelope.data) == envelope.data
    # Data from elsewhere (a test send, a caller's bytes) is not trusted to be.
    assert not Envelope("a@example.org", "b@example.org", b"x\n", "k").crlf
