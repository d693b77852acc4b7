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
from email.headerregistry import Address
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, formataddr

from newsletter.errors import InputError

# Headers are folded and RFC 2047-encoded by the standard library, once per campaign.
MAIL_POLICY = SMTP

# Characters that must never reach a header: CR and LF would end it (and let the
# rest become headers of its own, or the body), NUL and the other C0/C1 controls
# are refused by servers or read differently by each client, and the Unicode line
# and paragraph separators break lines in some. A tab is plain white space.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\r": "a carriage return", "\n": "a line break", "\x00": "a NUL character"}


class UnsafeHeader(InputError):
    """A header value holds a line break or another control character."""


def header_value(value: str, what: str) -> str:
    """The one gate for every header value: refuse controls, return it as one line.

    ``what`` names where the value came from (a setting, the subject, a
    subscriber's name) for the error, which tells what to change.
    """
    bad = _UNSAFE.search(value)
    if bad is not None:
        char = bad.group()
        name = _NAMED.get(char, "a control character")
        raise UnsafeHeader(
            f"{what}: contains {name} (U+{ord(char):04X}); a mail header must be one "
            f"line of text, so remove it"
        )
    return value.replace("\t", " ")


def needs_smtputf8(address: str) -> bool:
    """Whether an address can only travel with SMTPUTF8: its local part is not ASCII."""
    return not address.rpartition("@")[0].isascii()


def unreachable(address: str, refusal: str) -> str:
    """Why an internationalised mailbox is refused where the transport cannot carry it."""
    return f"{address}: needs SMTPUTF8 (a non-ASCII address), {refusal}; no email could reach it"


def ascii_domain(address: str) -> str:
    """The address with its domain as A-labels (Punycode), as every envelope and API
    body needs; the local part is left as it is. Raises InputError for a domain
    that has no A-label form."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise InputError(f"{address}: the domain cannot be written in ASCII (IDNA)") from None
    return f"{local}@{domain}"


_LINE_END = re.compile(rb"\r\n|\r|\n")


def canonical_crlf(data: bytes) -> bytes:
    """Every line end as CRLF, so no bare CR or LF is left for a server to read as one.

    A bare LF before ``.CRLF`` is the shape of SMTP smuggling: servers that take
    a bare LF as a line end would see the message end there, and the rest as
    new commands. Dot-stuffing only protects lines it can see.

    Messages we build are canonical already: three counts (a few microseconds
    for a newsletter) tell so and return them as they are; only data with a
    bare CR or LF pays for the substitution (ten times as much).
    """
    pairs = data.count(b"\r\n")
    if data.count(b"\r") == pairs and data.count(b"\n") == pairs:
        return data
    return _LINE_END.sub(b"\r\n", data)


def _header(name: str, value: str, what: str | None = None) -> bytes:
    """Fold and encode one header once, as the standard library would."""
    value = header_value(value, what or name)
    return MAIL_POLICY.fold_binary(name, MAIL_POLICY.header_factory(name, value))


def _address_header(field: str, name: str, address: str, names: str, what: str) -> bytes:
    """A From or To header; an internationalised mailbox is written in UTF-8 (RFC 6532).

    ``names`` and ``what`` say where the name and the address came from, for errors.
    """
    header_value(name, names)
    header_value(address, what)
    address = ascii_domain(address)
    if not needs_smtputf8(address):
        value = formataddr((name, address), charset="utf-8")
        # formataddr has already encoded a non-ASCII name; only long values need folding.
        if len(value) < 70:
            return f"{field}: {value}\r\n".encode()
        return MAIL_POLICY.fold_binary(field, MAIL_POLICY.header_factory(field, value))
    local, _, domain = address.rpartition("@")
    value = str(Address(display_name=name, username=local, domain=domain))
    return SMTPUTF8.fold_binary(field, SMTPUTF8.header_factory(field, value))


def _to_header(name: str, address: str) -> bytes:
    return _address_header("To", name, address, f"the name of {address}", "To")


# The raw-text blocks of HTML: what a character reference is not read in.
RAW_TEXT = re.compile(r"<(style|script)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)


def html_body(document: str) -> tuple[bytes, bytes]:
    """Encode the HTML part: 7bit where it can be, quoted-printable otherwise.

    Non-ASCII characters become numeric character references, which every
    HTML reader decodes, so the part is plain ASCII and needs no transfer
    encoding at all — a tenth of the cost of quoted-printable per message.
    Lines too long for SMTP still get quoted-printable.
    """
    text = document.replace("\r\n", "\n").replace("\r", "\n") if "\r" in document else document
    if not text.isascii() and any(
        not block.group(0).isascii() for block in RAW_TEXT.finditer(text)
    ):
        # Character references mean nothing inside <style>, <script> or comments.
        return b"quoted-printable", _qp(text)
    data = text.encode("ascii", "xmlcharrefreplace")
    if has_long_line(data, 990):
        return b"quoted-printable", _qp(text)
    data = data.replace(b"\n", b"\r\n")
    return b"7bit", data if data.endswith(b"\r\n") else data + b"\r\n"


def has_long_line(data: bytes, limit: int) -> bool:
    """Whether a line of ``data`` (split at LF) is longer than ``limit`` bytes.

    Looks for the last line end within each ``limit + 1`` bytes and jumps past
    it: a few calls for a whole message instead of one slice per line, which
    cost a twentieth of each message's rendering.
    """
    start, size = 0, len(data)
    while size - start > limit:
        end = data.rfind(b"\n", start, start + limit + 1)
        if end == -1:
            return True  # limit + 1 bytes from a line's start without its end
        start = end + 1
    return False


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends and lines of at most 76 characters."""
    body = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    if not body.endswith("\r\n"):
        body += "\r\n"
    return binascii.b2a_qp(body.encode("utf-8"), istext=True)


def quoted_printable(text: str) -> bytes:
    """The text part as ``MessageFactory.build`` encodes it (see ``compiled_text.py``)."""
    return _qp(text)


def list_unsubscribe(url: str, mailto: str | None = None) -> str:
    """The List-Unsubscribe value (RFC 2369): the one-click URL, then an optional mailto."""
    value = f"<{header_value(url, 'site.base_url')}>"
    if mailto:
        mailto = header_value(mailto, "sender.unsubscribe_mailto")
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
        self.sender = _address_header(
            "From", from_name, from_address, "sender.from_name", "sender.from_address"
        )
        common = [_header("Subject", subject)]
        if reply_to:
            common.append(_header("Reply-To", reply_to, "sender.reply_to"))
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

    def check_personal(self, *, to_address: str, to_name: str, msg_id: str) -> None:
        """Raise what ``build`` would for this recipient's own headers, building nothing:
        for transports that take the message as fields, so it fails the same way."""
        _to_header(to_name, to_address)
        header_value(msg_id, "Message-ID")

    def build(
        self,
        *,
        to_address: str,
        to_name: str,
        msg_id: str,
        date: dt.datetime,
        text: str | bytes,
        html: str | bytes,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
    ) -> bytes:
        """One recipient's message as wire bytes.

        ``html`` as bytes is the HTML part already encoded as ``html_body`` would
        encode it for 7bit (a compiled part, see ``compiled_html.py``); ``text`` as
        bytes the text part already quoted-printable (``compiled_text.py``).

        Raises InputError when a value of this recipient cannot go in a header
        (a line break in the name): only this message fails.
        """
        personal = [
            self.sender,
            _to_header(to_name, to_address),
            self.common,
            f"Date: {format_datetime(date)}\r\n".encode(),
            f"Message-ID: {header_value(msg_id, 'Message-ID')}\r\n".encode(),
        ]
        if unsubscribe_url:
            value = list_unsubscribe(unsubscribe_url, unsubscribe_mailto)
            personal.append(
                f"List-Unsubscribe: {value}\r\n"
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n".encode()
            )
        encoding, body = (b"7bit", html) if isinstance(html, bytes) else html_body(html)
        return b"".join(
            [
                *personal,
                self.structure,
                self.text_head,
                _qp(text) if isinstance(text, str) else text,
                self.html_head % (b"text/html", encoding),
                body,
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
