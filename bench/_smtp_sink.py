"""A minimal, fast SMTP sink for the benchmarks: accepts everything, counts messages.

It speaks just enough SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT),
finds the end of DATA with bytes.find, and runs in its own process. It is not
the bottleneck: bench/send.py's bare smtplib ceiling, measured against it,
runs faster than the client under test. (Not a benchmark itself: `make bench`
skips files starting with an underscore.)

Usage: python bench/_smtp_sink.py PORT  — prints "messages N" on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

count = 0


class Sink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.in_data = False
        transport.write(b"220 sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        global count
        self.buffer += data
        replies = []
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end == -1:
                    break
                self.buffer = self.buffer[end + 5 :]
                self.in_data = False
                count += 1
                replies.append(b"250 2.0.0 queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end == -1:
                break
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                replies.append(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.in_data = True
                replies.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                replies.append(b"221 bye\r\n")
                self.transport.write(b"".join(replies))
                self.transport.close()
                return
            else:
                replies.append(b"250 OK\r\n")
        if replies:
            self.transport.write(b"".join(replies))


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    print(f"messages {count}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
