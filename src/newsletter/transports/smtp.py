"""SMTP with a pool of persistent connections: STARTTLS, implicit TLS or plain, with AUTH.

Many messages go over one connection (RSET after a refusal). What a failure
means depends on when it happens:

- before DATA is accepted (a stale pooled connection, 421): the server cannot
  have taken the message, so it is retried at once on a fresh connection;
- while the body is being sent: transient, tried again later;
- after the final dot, waiting for the answer: the server may have taken it,
  so the message is in doubt — never resent blindly.

Refusals: 550/551/553 (or 5.1.x) to RCPT bounce the address; other 5xx to
RCPT or to the message fail that message only; a refused login, a refused
sender (5xx to MAIL) or a missing STARTTLS stop the campaign (AccountError).
"""

from __future__ import annotations

import dataclasses
import queue
import re
import smtplib
import ssl
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from newsletter.errors import (
    AccountError,
    AddressUnusable,
    InDoubtError,
    InputError,
    MessageRejected,
    PermanentError,
    TransientError,
)
from newsletter.mime import ascii_domain, canonical_crlf, needs_smtputf8
from newsletter.transports.base import MIME, Envelope, Outcome, outcomes_one_by_one

if TYPE_CHECKING:
    from newsletter.transports.signing import DkimSigning

_BOUNCE_CODES = {550, 551, 553}
_ENHANCED_ADDRESS = re.compile(rb"^5\.1\.\d")
# What would end a MAIL or RCPT command line early: a control character or an angle bracket.
_COMMAND_BREAKING = re.compile(r"[\x00-\x1f<>]")


class _Retry(Exception):
    """The message cannot have been taken: try once more on a fresh connection."""


class _Refused(Exception):
    """The server refused the message and the connection was reset for the next one."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class SmtpTransport:
    name = "smtp"
    batch_size = 1
    needs = MIME

    def __init__(
        self,
        host: str,
        port: int,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        connections: int = 1,
        ssl_context: ssl.SSLContext | None = None,
        sign: DkimSigning | None = None,
    ):
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        # DKIM: signs a message here, or starts its signing by a helper process for a
        # campaign's messages (``prepare``).
        self.sign = sign
        self.connections = max(1, connections)
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        self._open = 0
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.connections)

    # -- the pool -------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        where = f"smtp {self.host}:{self.port}"
        conn: smtplib.SMTP | None = None
        try:
            if self.security == "ssl":
                conn = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.ssl_context
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    conn.starttls(context=self.ssl_context)
            conn.ehlo_or_helo_if_needed()
            if self.username:
                conn.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            _close(conn)
            raise AccountError(
                f"{where}: login refused for smtp.username {self.username!r} "
                f"({exc.smtp_code}); check NEWSLETTER_SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            _close(conn)
            raise AccountError(
                f"{where}: the server does not offer what smtp.security = "
                f"{self.security!r} or smtp.username needs ({exc}); change [smtp]"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            _close(conn)
            raise TransientError(f"{where}: cannot connect ({exc})") from None
        with self._lock:
            self._open += 1
        return conn

    def _discard(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            self._open -= 1
        _close(conn)

    @property
    def open_connections(self) -> int:
        return self._open

    def check(self) -> str:
        """Connect, STARTTLS or TLS and log in exactly as a send would, then hang up.

        Also says whether the server offers SMTPUTF8, which decides whether
        internationalised mailboxes can be subscribed and mailed.
        """
        conn = self._connect()
        offers = conn.does_esmtp and conn.has_extn("smtputf8")
        self._discard(conn)
        return (
            f"smtp {self.host}:{self.port}: connected ({self.security}) and hung up; "
            f"{'offers' if offers else 'no'} SMTPUTF8 (mailboxes with non-ASCII local parts)"
        )

    def smtputf8_refusal(self) -> str | None:
        """Ask the server (EHLO) whether it takes internationalised mailboxes: None when it
        offers SMTPUTF8 or cannot be reached (each send then decides), else the reason."""
        try:
            with self._slots:
                try:
                    conn = self._idle.get_nowait()
                except queue.Empty:
                    conn = self._connect()
                offered = conn.does_esmtp and conn.has_extn("smtputf8")
                self._idle.put(conn)
        except (TransientError, AccountError):
            return None
        return None if offered else f"which the server {self.host}:{self.port} does not offer"

    # -- sending ----------------------------------------------------------------

    def send(self, envelope: Envelope) -> str | None:
        """Send one message over a pooled connection (at most ``connections`` at once)."""
        return self.start(envelope).finish()

    def start(self, envelope: Envelope) -> _InFlight:
        """Send one message up to its final dot; ``finish`` reads the server's answer.

        Between the two the sender can build its next message while the server
        takes this one in. The connection (one of ``connections``) is held
        until then. Raises what ``send`` raises for a failure before the final dot.
        """
        try:
            # Domains travel as A-labels (Punycode); only the local part may need UTF-8.
            recipient, sender = ascii_domain(envelope.recipient), ascii_domain(envelope.sender)
        except InputError as exc:
            raise AddressUnusable(str(exc)) from None  # this address alone
        if _COMMAND_BREAKING.search(sender) or _COMMAND_BREAKING.search(recipient):
            # Never let an address end a command line early (smtplib's putcmd checks too).
            raise AddressUnusable(f"{recipient!r}: a control character in an address")
        if envelope.signing is not None:
            data = envelope.signing()  # signed as prepared, CRLF throughout
        else:
            # One message on its own (a test send, a confirmation): signed here, with
            # no helper process started for it.
            data = self._crlf(envelope)
            data = self.sign(data, True) if self.sign else data  # True: CRLF throughout
        self._slots.acquire()
        try:
            for fresh in (False, True):
                conn = None
                if not fresh:
                    try:
                        conn = self._idle.get_nowait()
                    except queue.Empty:
                        pass
                if conn is None:
                    conn = self._connect()
                try:
                    self._transaction(conn, sender, recipient, data)
                except _Retry as exc:
                    self._discard(conn)
                    if fresh:
                        raise TransientError(f"{envelope.recipient}: {exc}") from None
                    continue
                except _Refused as refused:
                    self._idle.put(conn)
                    raise refused.error from None
                except BaseException:
                    self._discard(conn)
                    raise
                return _InFlight(self, conn, recipient)
            raise AssertionError("unreachable")
        except BaseException:
            self._slots.release()
            raise

    def _answer(self, conn: smtplib.SMTP, recipient: str) -> None:
        """Read the server's answer to a whole message; the connection goes back to the
        pool when it can carry the next one."""
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._discard(conn)
            raise InDoubtError(
                f"{recipient}: connection lost after the whole message was sent ({exc}); "
                f"the server may have accepted it"
            ) from None
        if code == 250:
            self._idle.put(conn)
            return
        text = f"{recipient}: {code} {_text(reply)}"
        kind = MessageRejected if 500 <= code < 600 else TransientError
        error = self._refuse(conn, kind(text))
        if isinstance(error, _Refused):
            self._idle.put(conn)
            raise error.error from None
        self._discard(conn)
        raise error

    def prepare(self, envelope: Envelope) -> Envelope:
        """Start the DKIM signature of a campaign's message as it is built: a helper
        process signs it while the next message is rendered."""
        if self.sign is None:
            return envelope
        return dataclasses.replace(envelope, signing=self.sign.start(self._crlf(envelope), True))

    @staticmethod
    def _crlf(envelope: Envelope) -> bytes:
        # Every line end as CRLF (no bare LF for SMTP smuggling): already so for what
        # MessageFactory built, which need not be scanned for it again.
        return envelope.data if envelope.crlf else canonical_crlf(envelope.data)

    def _transaction(self, conn: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
        """MAIL, RCPT, DATA and the message on one connection, up to its final dot; the
        server's answer is read by ``_answer``.

        Where the server offers PIPELINING (RFC 2920) the three commands go in
        one write and their replies are read after: one round trip, not three.
        """
        options = ""
        if needs_smtputf8(recipient) or needs_smtputf8(sender):
            # An internationalised mailbox (RFC 6531): only a server that offers
            # SMTPUTF8 can take it; otherwise this one message fails, with that reason.
            if not (conn.does_esmtp and conn.has_extn("smtputf8")):
                if needs_smtputf8(sender):
                    # The sender's own address: no message can go, so the campaign pauses.
                    raise _Refused(
                        AccountError(
                            f"sender.from_address {sender}: needs SMTPUTF8 (a non-ASCII "
                            f"address), which the server {self.host}:{self.port} does not "
                            f"offer; use an ASCII sender address"
                        )
                    )
                raise _Refused(
                    AddressUnusable(
                        f"{recipient}: needs SMTPUTF8 (a non-ASCII address), which the "
                        f"server {self.host}:{self.port} does not offer"
                    )
                )
            options = " SMTPUTF8" + (" BODY=8BITMIME" if conn.has_extn("8bitmime") else "")
        mail, rcpt = f"MAIL FROM:<{sender}>{options}\r\n", f"RCPT TO:<{recipient}>\r\n"
        replies: list[tuple[int, bytes]] = []
        try:
            if conn.does_esmtp and "pipelining" in conn.esmtp_features:
                conn.send(f"{mail}{rcpt}DATA\r\n".encode())
                for _ in range(3):
                    replies.append(conn.getreply())
            else:
                for command in (mail, rcpt, "DATA\r\n"):
                    conn.send(command.encode())
                    replies.append(conn.getreply())
                    if replies[-1][0] not in (250, 251, 354):
                        break
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            if not any(code >= 500 for code, _ in replies):
                raise _Retry(f"connection lost before the message ({exc})") from None
            # A refusal and then a hang-up (a blocklisted sender, say): the refusal is
            # what counts, and the connection is gone.
            try:
                self._check_envelope(conn, sender, recipient, replies)
            except _Refused as refused:
                raise refused.error from None
        self._check_envelope(conn, sender, recipient, replies)
        body = _dot_stuff(data, canonical=True)
        try:
            conn.send(body)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # Without the final dot the server cannot have accepted it.
            raise TransientError(f"{recipient}: connection lost while sending ({exc})") from None

    def _check_envelope(
        self, conn: smtplib.SMTP, sender: str, recipient: str, replies: list[tuple[int, bytes]]
    ) -> None:
        """Raise what the first refused step of MAIL, RCPT, DATA means; pass if DATA said 354."""
        if any(code == 421 for code, _ in replies):
            code, reply = next(r for r in replies if r[0] == 421)
            raise _Retry(f"421 {_text(reply)}")
        code, reply = replies[0]
        if code != 250:
            if 500 <= code < 600:
                error: Exception = AccountError(
                    f"smtp: the server refused the sender {sender}: "
                    f"{code} {_text(reply)}; check sender.from_address"
                )
            else:
                error = TransientError(f"{recipient}: {code} {_text(reply)}")
            raise self._refuse(conn, error, replies)
        code, reply = replies[1]
        if code not in (250, 251):
            text = f"{recipient}: {code} {_text(reply)}"
            if code in _BOUNCE_CODES or _ENHANCED_ADDRESS.match(reply):
                error = PermanentError(text)
            elif 500 <= code < 600:
                error = MessageRejected(text)
            else:
                error = TransientError(text)
            raise self._refuse(conn, error, replies)
        code, reply = replies[2]
        if code != 354:
            text = f"{recipient}: {code} {_text(reply)}"
            kind = MessageRejected if 500 <= code < 600 else TransientError
            raise self._refuse(conn, kind(text), replies)

    def _refuse(
        self, conn: smtplib.SMTP, error: Exception, replies: Sequence[tuple[int, bytes]] = ()
    ) -> Exception:
        """RSET after a refusal so the connection can carry the next message.

        Returns the exception to raise: wrapped in _Refused when the connection
        is fine (it goes back to the pool), bare when it broke (it is dropped).
        """
        if any(code == 354 for code, _ in replies):
            # A pipelining server that took DATA after refusing the recipient waits
            # for a message body now; RSET would be read as body text. Drop it.
            return error
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            return error
        return _Refused(error)

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[Outcome]:
        # A connection dropped after the final dot leaves that one message in
        # doubt; the next goes over a fresh connection, so it need not pause.
        return outcomes_one_by_one(self.send, envelopes, doubt_pauses=False)

    def was_sent(self, key: str) -> bool | None:
        return None  # SMTP gives no way to ask whether a message was taken

    def close(self) -> None:
        if self.sign is not None:
            self.sign.close()  # its signing helper, if it started one
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._discard(conn)


class _InFlight:
    """A message sent up to its final dot, its connection waiting for the answer."""

    def __init__(self, transport: SmtpTransport, conn: smtplib.SMTP, recipient: str):
        self.transport, self.conn, self.recipient = transport, conn, recipient
        self.done = False

    def finish(self) -> str | None:
        """The server's answer: None when it took the message, else what ``send`` raises."""
        if self.done:
            raise RuntimeError("the answer to this message was read already")
        self.done = True
        try:
            self.transport._answer(self.conn, self.recipient)
        finally:
            self.transport._slots.release()
        return None


def _dot_stuff(data: bytes, canonical: bool = False) -> bytes:
    """The DATA body: lines starting with a dot get another, then the final dot.

    ``canonical``: the caller made every line end CRLF already (``send`` does,
    before signing), so the check is not made twice; otherwise it is made here,
    which keeps this function safe on its own.
    """
    body = data if canonical else canonical_crlf(data)
    body = body.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except OSError:
        pass
