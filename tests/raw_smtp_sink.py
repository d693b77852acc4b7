"""An SMTP server on a raw socket that records the exact bytes it is sent.

aiosmtpd reads lines with any line end and hands over normalised data, so it
cannot show a bare LF or CR on the wire; this sink keeps every byte.
"""

from __future__ import annotations

import socket
import threading


class RawSmtpSink:
    """Answers EHLO, MAIL, RCPT, DATA, RSET, NOOP and QUIT; keeps the whole transcript."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.transcript = bytearray()  # everything every client sent, in order
        self.commands: list[bytes] = []  # each command line, as the server read it
        self.messages: list[bytes] = []  # each DATA body up to (not including) CRLF.CRLF
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawSmtpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        buffer = b""

        def read() -> bytes:
            nonlocal buffer
            chunk = conn.recv(65536)
            self.transcript.extend(chunk)
            buffer += chunk
            return chunk

        with conn:
            conn.sendall(b"220 raw sink ready\r\n")
            while True:
                # A command ends at CRLF, as RFC 5321 says; a server that took a bare
                # LF as a line end is what smuggling exploits, and this one does not.
                while b"\r\n" not in buffer:
                    if not read():
                        return
                line, buffer = buffer.split(b"\r\n", 1)
                self.commands.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-raw sink\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    while b"\r\n.\r\n" not in buffer:
                        if not read():
                            return
                    body, buffer = buffer.split(b"\r\n.\r\n", 1)
                    self.messages.append(body)
                    conn.sendall(b"250 accepted\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
