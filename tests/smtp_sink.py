"""A real SMTP server on loopback (aiosmtpd) whose replies a test can script."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class SinkHandler:
    messages: list[Received] = field(default_factory=list)
    # address -> SMTP reply for RCPT TO, e.g. "550 5.1.1 No such user"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    # an SMTP reply to every MAIL FROM, e.g. "553 5.7.1 Sender address not owned by user"
    mail_reply: str | None = None
    # recipient -> SMTP reply to the end of the message, e.g. "554 5.7.1 Looks like spam"
    data_replies: dict[str, str] = field(default_factory=dict)
    # recipients whose DATA makes the server drop the connection without a reply
    drop_on_data: set[str] = field(default_factory=set)
    sessions: set[int] = field(default_factory=set)  # distinct client connections seen
    # offer PIPELINING (RFC 2920): aiosmtpd reads commands in order, so it copes
    pipelining: bool = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        if self.pipelining:
            return [responses[0], "250-PIPELINING", *responses[1:]]
        return responses

    # hang up right after answering MAIL or RCPT with a refusal, as blocklists do
    hang_up_after_refusal: bool = False
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each message

    def _refuse(self, server, reply: str) -> str:
        if self.hang_up_after_refusal:
            # The reply is already buffered when this runs; close() flushes it first.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if self.mail_reply:
            return self._refuse(server, self.mail_reply)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.rcpt_replies.get(address)
        if reply:
            return self._refuse(server, reply) if reply.startswith("5") else reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.sessions.add(id(session))
        if self.drop_on_data & set(envelope.rcpt_tos):
            # Hang up without an answer, as a crashing or overloaded server does.
            server.transport.abort()
            return "451 4.3.0 Connection lost"
        for address in envelope.rcpt_tos:
            if address in self.data_replies:
                return self.data_replies[address]
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        self.arrivals.append(time.monotonic())
        return "250 2.0.0 Message accepted"


class SmtpSink:
    def __init__(
        self,
        pipelining: bool = False,
        login: tuple[str, str] | None = None,
        smtputf8: bool = False,
    ) -> None:
        """``login``: (username, password) the server requires over plain text, as a test may.
        ``smtputf8``: offer SMTPUTF8 (RFC 6531), for internationalised mailboxes."""
        self.handler = SinkHandler(pipelining=pipelining)
        self.port = _free_port()
        self.logins: list[tuple[str, bool]] = []  # (username, accepted) per AUTH
        auth = {}
        if login is not None:

            def authenticator(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
                user, password = auth_data.login.decode(), auth_data.password.decode()
                ok = (user, password) == login
                self.logins.append((user, ok))
                # handled=False: aiosmtpd answers 535 itself instead of staying silent
                return AuthResult(success=ok, handled=False)

            auth = {"authenticator": authenticator, "auth_require_tls": False}
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            enable_SMTPUTF8=smtputf8,
            **auth,
        )

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def recipients(self) -> list[str]:
        return [r for m in self.messages for r in m.recipients]


def smtp_env(sink: SmtpSink, **extra: str) -> dict[str, str]:
    """Settings that point the smtp transport at this sink, plus any others."""
    return {
        "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
        "NEWSLETTER_SMTP__HOST": "127.0.0.1",
        "NEWSLETTER_SMTP__PORT": str(sink.port),
        "NEWSLETTER_SMTP__SECURITY": "none",
        **extra,
    }
