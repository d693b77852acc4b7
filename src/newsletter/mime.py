"""Wire-format messages, built fast: what is common is encoded once per campaign.

Building and serialising an ``EmailMessage`` per recipient costs ~4 ms; a
campaign's messages differ only in a few headers and the two bodies. So the
common headers are folded and encoded once, and per recipient only the
personal headers and the quoted-printable bodies are produced. The result
parses back with the standard library into the same parts (see the tests).
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
import secrets
from email.policy import SMTP
from email.utils import format_datetime, formataddr

# Headers are folded and RFC 2047-encoded by the standard library, once per campaign.
MAIL_POLICY = SMTP


def _header(name: str, value: str) -> bytes:
    """Fold and encode one header once, as the standard library would."""
    return MAIL_POLICY.fold_binary(name, MAIL_POLICY.header_factory(name, value))


def _ascii_address(address: str) -> str:
    """Punycode an internationalised domain so the header stays ASCII."""
    local, _, domain = address.rpartition("@")
    try:
        domain.encode("ascii")
    except UnicodeEncodeError:
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


_RAW_TEXT = re.compile(r"<(style|script)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)


def _html_body(document: str) -> tuple[bytes, bytes]:
    """Encode the HTML part: 7bit where it can be, quoted-printable otherwise.

    Non-ASCII characters become numeric character references, which every
    HTML reader decodes, so the part is plain ASCII and needs no transfer
    encoding at all — a tenth of the cost of quoted-printable per message.
    Lines too long for SMTP still get quoted-printable.
    """
    text = document.replace("\r\n", "\n").replace("\r", "\n") if "\r" in document else document
    if not text.isascii() and any(
        not block.group(0).isascii() for block in _RAW_TEXT.finditer(text)
    ):
        # Character references mean nothing inside <style>, <script> or comments.
        return b"quoted-printable", _qp(text)
    data = text.encode("ascii", "xmlcharrefreplace")
    if len(data) > 990 and max(map(len, data.split(b"\n"))) > 990:
        return b"quoted-printable", _qp(text)
    data = data.replace(b"\n", b"\r\n")
    return b"7bit", data if data.endswith(b"\r\n") else data + b"\r\n"


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends and lines of at most 76 characters."""
    body = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    if not body.endswith("\r\n"):
        body += "\r\n"
    return binascii.b2a_qp(body.encode("utf-8"), istext=True)


def list_unsubscribe(url: str, mailto: str | None = None) -> str:
    """The List-Unsubscribe value (RFC 2369): the one-click URL, then an optional mailto."""
    value = f"<{url}>"
    if mailto:
        value += f", <mailto:{mailto}?subject=unsubscribe>"
    return value


class MessageFactory:
    """Make every message of one campaign: same sender, subject and structure."""

    def __init__(
        self,
        *,
        from_name: str,
        from_address: str,
        subject: str,
        reply_to: str = "",
        list_id: str | None = None,
        feedback_id: str | None = None,
    ):
        self.boundary = "=_nl_" + secrets.token_hex(12)
        self.subject, self.list_id, self.feedback_id = subject, list_id, feedback_id
        self.sender = _header("From", formataddr((from_name, from_address), charset="utf-8"))
        common = [_header("Subject", subject)]
        if reply_to:
            common.append(_header("Reply-To", reply_to))
        if list_id:
            common.append(_header("List-Id", list_id))
        if feedback_id:
            common.append(_header("Feedback-ID", feedback_id))
        self.common = b"".join(common)
        self.structure = b"MIME-Version: 1.0\r\n" + _header(
            "Content-Type", f'multipart/alternative; boundary="{self.boundary}"'
        )
        b = self.boundary.encode()
        part_head = b'Content-Type: %s; charset="utf-8"\r\nContent-Transfer-Encoding: %s\r\n\r\n'
        self.text_head = b"\r\n--" + b + b"\r\n" + part_head % (b"text/plain", b"quoted-printable")
        self.html_head = b"\r\n--" + b + b"\r\n" + part_head
        self.closing = b"\r\n--" + b + b"--\r\n"

    def build(
        self,
        *,
        to_address: str,
        to_name: str,
        msg_id: str,
        date: dt.datetime,
        text: str,
        html: str,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
    ) -> bytes:
        """One recipient's message as wire bytes."""
        to = formataddr((to_name, _ascii_address(to_address)), charset="utf-8")
        personal = [
            self.sender,
            # formataddr has already encoded a non-ASCII name; only long values need folding.
            f"To: {to}\r\n".encode() if len(to) < 70 else _header("To", to),
            self.common,
            f"Date: {format_datetime(date)}\r\nMessage-ID: {msg_id}\r\n".encode(),
        ]
        if unsubscribe_url:
            personal.append(
                f"List-Unsubscribe: {list_unsubscribe(unsubscribe_url, unsubscribe_mailto)}\r\n"
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n".encode()
            )
        encoding, html_body = _html_body(html)
        return b"".join(
            [
                *personal,
                self.structure,
                self.text_head,
                _qp(text),
                self.html_head % (b"text/html", encoding),
                html_body,
                self.closing,
            ]
        )


def compose(
    *,
    subject: str,
    text: str,
    html: str,
    from_name: str,
    from_address: str,
    to_address: str,
    to_name: str = "",
    reply_to: str = "",
    msg_id: str,
    date: dt.datetime,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    list_id: str | None = None,
    feedback_id: str | None = None,
) -> bytes:
    """Build one message on its own (tests, test sends); campaigns reuse a factory."""
    factory = MessageFactory(
        from_name=from_name,
        from_address=from_address,
        subject=subject,
        reply_to=reply_to,
        list_id=list_id,
        feedback_id=feedback_id,
    )
    return factory.build(
        to_address=to_address,
        to_name=to_name,
        msg_id=msg_id,
        date=date,
        text=text,
        html=html,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
    )
