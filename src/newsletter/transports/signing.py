"""DKIM signing for SMTP and the outbox, done by a helper process so it uses another core.

Signing a campaign message costs the sender about 0.1 ms with Ed25519 (the
relaxed body, its hash, the headers) and 0.5 ms with RSA-2048, whose OpenSSL
signature runs holding the interpreter lock: time added to every message of
a process that renders and sends on one core. A helper process signs instead,
while the sender renders the next message: the sender hands it the message
over a pipe and reads back the DKIM-Signature headers to put in front.

The helper is started by the first message and used once it has loaded the
keys; until then, and for good if it ever fails, messages are signed in this
process, so none waits for the helper to start or fails with it. The keys go
down the helper's stdin, never on its command line. The helper ends when this
process closes the transport or ends (its stdin closes). With one core there
is nothing to gain, and no helper is started.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from newsletter.dkim import DkimSigner

log = logging.getLogger(__name__)
_LENGTH = struct.Struct(">I")
_READY = b"R"
# How long a sender waits for one answer before it gives up on the helper; a signature
# takes about a millisecond, so only a helper that is stuck ever reaches it.
ANSWER_TIMEOUT = 30.0

Start = Callable[[bytes, bool], Callable[[], bytes]]


class DkimSigning:
    """Signs messages with every configured key (``dkim.sign_all``), in a helper process
    where another core can do it; ``close`` ends the helper."""

    def __init__(self, signers: list[DkimSigner]):
        # Here, not at the top: every sending process imports this module (usable_cores),
        # and DKIM's libraries (dkimpy, dnspython, cryptography) are for those that sign.
        from cryptography.hazmat.primitives import serialization

        from newsletter.dkim import sign_all

        self._sign_all = sign_all
        self.signers = signers
        self.helper: SigningHelper | None = None
        if signers and usable_cores() > 1:  # no other core to sign on: sign here
            keys = [
                {
                    "domain": s.domain,
                    "selector": s.selector,
                    "pem": s.key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode("ascii"),
                }
                for s in signers
            ]
            self.helper = SigningHelper(json.dumps(keys).encode(), self.sign_here)

    def __call__(self, message: bytes, crlf: bool) -> bytes:
        """``message`` signed here and now (``crlf``: CRLF throughout): one message on
        its own starts no helper."""
        return self._sign_all(self.signers, message, crlf)

    def start(self, message: bytes, crlf: bool) -> Callable[[], bytes]:
        """Start signing one of a campaign's messages, by the helper where there is one
        (started by the first); the returned function gives it signed."""
        if self.helper is not None:
            return self.helper.start(message, crlf)
        return self.sign_here(message, crlf)

    def sign_here(self, message: bytes, crlf: bool) -> Callable[[], bytes]:
        signed = self._sign_all(self.signers, message, crlf)
        return lambda: signed

    def close(self) -> None:
        if self.helper is not None:
            self.helper.close()


def usable_cores() -> int:
    """The cores this process may use (a container's share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class SigningHelper:
    """Signs messages in a helper process; ``sign_here`` does the same in this one.

    ``start`` sends a message and returns what waits for its signatures, so the
    sender can render the next message meanwhile; answers come back in the
    order of the requests and are handed to whichever thread waits for each.
    """

    def __init__(self, keys: bytes, sign_here: Start, timeout: float = ANSWER_TIMEOUT):
        self.keys, self.sign_here, self.timeout = keys, sign_here, timeout
        self.lock = threading.Lock()  # requests, and the helper's state
        self.answers = threading.Lock()  # one reader of the answers at a time
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.failed = False
        self.asked = 0  # requests sent
        self.heard = 0  # answers read
        self.unclaimed: dict[int, bytes] = {}  # answers read for another waiter
        self.inbox = bytearray()  # bytes read from the helper, not yet taken

    def start(self, message: bytes, crlf: bool) -> Callable[[], bytes]:
        with self.lock:
            if not self.failed:
                try:
                    if self._usable():
                        stdin = _pipe(self.process.stdin if self.process else None)
                        flag = b"1" if crlf else b"0"
                        stdin.write(flag + _LENGTH.pack(len(message)) + message)
                        stdin.flush()
                        number, self.asked = self.asked, self.asked + 1
                        return _once(lambda: self._answer(number, message, crlf))
                except (OSError, ValueError, EOFError) as exc:
                    self._give_up(exc)
        return self.sign_here(message, crlf)

    def _usable(self) -> bool:
        """Start the helper on the first call; True once it has said it is ready."""
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "newsletter.transports.signing"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            stdin = _pipe(self.process.stdin)
            stdin.write(_LENGTH.pack(len(self.keys)) + self.keys)
            stdin.flush()
            return False
        if not self.ready:
            if not self._fill(len(_READY), 0):
                return False  # still starting: sign here meanwhile
            if self._take(len(_READY)) != _READY:
                raise EOFError("the signing helper stopped before it was ready")
            self.ready = True
        return True

    def _fill(self, count: int, timeout: float) -> bool:
        """Read from the helper until ``count`` bytes wait in the inbox; False if they did
        not come within ``timeout`` seconds.

        Read from the descriptor, not a buffered file: a buffered read takes in what
        follows too, where waiting on the descriptor for more would not see it.
        """
        fd = _pipe(self.process.stdout if self.process else None).fileno()
        deadline = time.monotonic() + timeout
        while len(self.inbox) < count:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return False
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("the signing helper stopped")
            self.inbox += chunk
        return True

    def _take(self, count: int) -> bytes:
        taken = bytes(self.inbox[:count])
        del self.inbox[:count]
        return taken

    def _answer(self, number: int, message: bytes, crlf: bool) -> bytes:
        """Request ``number``'s message signed; signed here if the helper failed."""
        with self.answers:
            try:
                while number not in self.unclaimed and not self.failed:
                    process = self.process
                    # A helper that hangs must not hold the campaign: past the timeout
                    # it is killed (which also frees a request blocked on its full
                    # pipe, holding the lock) and this message is signed here.
                    size = _LENGTH.size
                    if not self._fill(size, self.timeout) or not self._fill(
                        size + _LENGTH.unpack(bytes(self.inbox[:size]))[0], self.timeout
                    ):
                        if process is not None:
                            process.kill()
                        raise EOFError(f"the signing helper gave no answer in {self.timeout:g} s")
                    (length,) = _LENGTH.unpack(self._take(size))
                    answer = self._take(length)
                    if not answer.startswith(b"DKIM-Signature:"):
                        # Anything else on its pipe would shift every answer after it.
                        if process is not None:
                            process.kill()
                        raise ValueError("the signing helper gave something else than signatures")
                    self.unclaimed[self.heard] = answer
                    self.heard += 1
            except (OSError, ValueError, EOFError) as exc:
                with self.lock:
                    self._give_up(exc)
            headers = self.unclaimed.pop(number, None)
        if headers is None:
            return self.sign_here(message, crlf)()
        return headers + message

    def _give_up(self, exc: BaseException) -> None:
        if not self.failed:
            self.failed = True
            log.warning("DKIM: the signing helper failed (%s); signing in this process", exc)
        self.close()

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            if not self.ready:
                process.kill()  # still loading: a small campaign need not wait for it
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:
                        pass
            try:
                process.wait(timeout=5)  # it ends when its stdin closes
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _once(answer: Callable[[], bytes]) -> Callable[[], bytes]:
    """``answer`` read from the helper once, and the same bytes on every later call:
    reading again would take the answer of a later request."""
    got: list[bytes] = []

    def signed() -> bytes:
        if not got:
            got.append(answer())
        return got[0]

    return signed


def _pipe(pipe: IO[bytes] | None) -> IO[bytes]:
    if pipe is None:
        raise EOFError("the signing helper has no pipe")
    return pipe


def _exactly(stream: IO[bytes], count: int) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise EOFError("the signing helper stopped")
    return data


def main() -> None:
    """The helper: read the keys, say ready, then answer each message with the
    DKIM-Signature headers that go in front of it."""
    from newsletter.dkim import DkimSigner, sign_all  # see DkimSigning.__init__

    # Ctrl-C is for the sender, which stops in order; this ends when its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The answers get a descriptor of their own; anything printed by mistake (a library,
    # a site hook) goes to stderr instead of into the framing the sender reads.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    try:
        (length,) = _LENGTH.unpack(_exactly(requests, _LENGTH.size))
        signers = [
            DkimSigner.from_pem(key["domain"], key["selector"], key["pem"].encode(), "the helper")
            for key in json.loads(_exactly(requests, length))
        ]
        answers.write(_READY)
        answers.flush()
        while True:
            head = requests.read(1 + _LENGTH.size)
            if len(head) != 1 + _LENGTH.size:
                return  # the sender has gone
            (length,) = _LENGTH.unpack(head[1:])
            message = _exactly(requests, length)
            signed = sign_all(signers, message, head[:1] == b"1")
            headers = signed[: len(signed) - len(message)]
            answers.write(_LENGTH.pack(len(headers)) + headers)
            answers.flush()
    except (BrokenPipeError, EOFError):
        # The sender closed its end (it finished, or stopped) before reading it all.
        os._exit(0)  # nothing left to flush to a closed pipe


if __name__ == "__main__":
    main()
