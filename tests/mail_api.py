"""Helpers for the email API transport tests: envelopes, and a server that never answers."""

from __future__ import annotations

import socket
import threading

from newsletter.transports import Content, Envelope

SENDER = "news@clinic.example.com"


def envelope(key: str = "c1-d1", to: str = "ann@example.com", name: str = "Ann Lee") -> Envelope:
    """A message as the campaign code builds it: MIME bytes and the same thing as fields."""
    unsubscribe = f"https://news.example.com/u/token-{key}"
    headers = {
        "Message-ID": f"<{key}.1@clinic.example.com>",
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": "Riverbend news <news.clinic.example.com>",
        "Feedback-ID": "c1:newsletter",
        "Reply-To": "frontdesk@clinic.example.com",
    }
    data = (
        f"From: Riverbend <{SENDER}>\r\nTo: {name} <{to}>\r\nSubject: New on the blog\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + f"Hello {name}\r\n"
    ).encode()
    content = Content(
        subject="New on the blog",
        from_name="Riverbend",
        from_address=SENDER,
        to_name=name,
        to_address=to,
        html=f"<p>Hello {name}</p>",
        text=f"Hello {name}",
        headers=headers,
    )
    return Envelope(SENDER, to, data, key, content)


class SilentServer:
    """Accepts connections and reads requests, but never answers: a provider that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = 0
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            try:
                if conn.recv(65536):
                    self.requests += 1
            except OSError:
                pass

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.sock.close()
        for conn in self._conns:
            conn.close()
        self._thread.join(timeout=5)
