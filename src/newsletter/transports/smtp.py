"""SMTP over one persistent connection: STARTTLS, implicit TLS or plain, with AUTH."""

from __future__ import annotations

import smtplib
import ssl

from newsletter.errors import PermanentError, TransientError
from newsletter.transports import Envelope


class SmtpTransport:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.security == "ssl":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self.ssl_context
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    conn.starttls(context=self.ssl_context)
            if self.username:
                conn.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(
                f"smtp {self.host}:{self.port}: login refused for smtp.username "
                f"{self.username!r} ({exc.smtp_code}); check NEWSLETTER_SMTP_PASSWORD"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"smtp {self.host}:{self.port}: cannot connect ({exc})") from None
        return conn

    def send(self, envelope: Envelope) -> str | None:
        if self._conn is None:
            self._conn = self._connect()
        try:
            refused = self._conn.sendmail(envelope.sender, [envelope.recipient], envelope.data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            self._after_failure(code)
            raise _classify(code, reply, envelope.recipient) from None
        except smtplib.SMTPResponseException as exc:
            self._after_failure(exc.smtp_code)
            raise _classify(exc.smtp_code, exc.smtp_error, envelope.recipient) from None
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            # A dropped connection counts as 451: transient, and the message
            # may or may not have been taken.
            self._drop()
            raise TransientError(f"{envelope.recipient}: connection lost ({exc})") from None
        if refused:
            code, reply = refused[envelope.recipient]
            raise _classify(code, reply, envelope.recipient)
        return None

    def _after_failure(self, code: int) -> None:
        if code == 421:
            self._drop()
        elif self._conn is not None:
            try:
                self._conn.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def was_sent(self, key: str) -> bool | None:
        return None  # SMTP gives no way to ask whether a message was taken

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()


def _classify(code: int, reply: bytes | str, recipient: str) -> TransientError | PermanentError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    message = f"{recipient}: {code} {text}"
    return PermanentError(message) if 500 <= code < 600 else TransientError(message)
