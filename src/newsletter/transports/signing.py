"""RSA signatures for DKIM made in a helper process, so that they use another core.

An RSA-2048 signature takes OpenSSL about 0.4 ms, and ``cryptography`` holds
the interpreter lock while it runs: in the sending process it adds to every
message's time. A helper process makes them while the sender renders the next
message: the sender hands it the bytes to sign (the canonical headers, about a
kilobyte) over a pipe and reads the signature back.

The helper is started by the first signature and used once it has loaded the
key; until then, and for good if it ever fails, the signature is made in this
process, so no message waits for the helper to start or fails with it. The key
goes down the helper's stdin, never on its command line. The helper ends when
this process does (its stdin closes). With one core there is nothing to gain,
and no helper is started.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.dkim import DkimSigner, start_all

log = logging.getLogger(__name__)
_LENGTH = struct.Struct(">I")
_READY = b"R"


class DkimSigning:
    """Signs messages with every configured key (``dkim.start_all``), RSA ones by a
    helper process where another core can make them; ``close`` ends the helpers."""

    def __init__(self, signers: list[DkimSigner]):
        self.signers = signers
        self.helpers: list[RsaHelper] = []
        if worth_a_helper():
            for signer in signers:
                if isinstance(signer.key, rsa.RSAPrivateKey):
                    pem = signer.key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                    helper = RsaHelper(pem, signer.sign_rsa_here)
                    signer.rsa_start = helper.start
                    self.helpers.append(helper)

    def __call__(self, message: bytes, crlf: bool) -> Callable[[], bytes]:
        """Start signing ``message`` (``crlf``: CRLF throughout); the returned function
        gives it signed."""
        return start_all(self.signers, message, crlf)

    def close(self) -> None:
        for helper in self.helpers:
            helper.close()


def worth_a_helper() -> bool:
    """Whether another core can make the signatures: not on a one-core machine."""
    try:
        return len(os.sched_getaffinity(0)) > 1
    except AttributeError:
        return (os.cpu_count() or 1) > 1


class RsaHelper:
    """Signs bytes in a helper process; ``sign_here`` is the same signature made here.

    ``start`` sends a request and returns what waits for its answer, so the
    sender can render the next message meanwhile; answers come back in the
    order of the requests and are handed to whichever thread waits for each.
    """

    def __init__(self, pem: bytes, sign_here: Callable[[bytes], bytes]):
        self.pem, self.sign_here = pem, sign_here
        self.lock = threading.Lock()  # requests, and the helper's state
        self.answers = threading.Lock()  # one reader of the answers at a time
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.failed = False
        self.asked = 0  # requests sent
        self.heard = 0  # answers read
        self.unclaimed: dict[int, bytes] = {}  # answers read for another waiter

    def __call__(self, data: bytes) -> bytes:
        return self.start(data)()

    def start(self, data: bytes) -> Callable[[], bytes]:
        with self.lock:
            if not self.failed:
                try:
                    if self._usable():
                        stdin = _pipe(self.process.stdin if self.process else None)
                        stdin.write(_LENGTH.pack(len(data)) + data)
                        stdin.flush()
                        number, self.asked = self.asked, self.asked + 1
                        return lambda: self._answer(number, data)
                except (OSError, ValueError, EOFError) as exc:
                    self._give_up(exc)
        signature = self.sign_here(data)
        return lambda: signature

    def _usable(self) -> bool:
        """Start the helper on the first call; True once it has said it is ready."""
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "newsletter.transports.signing"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            stdin = _pipe(self.process.stdin)
            stdin.write(_LENGTH.pack(len(self.pem)) + self.pem)
            stdin.flush()
            return False
        if not self.ready:
            stdout = _pipe(self.process.stdout)
            if not select.select([stdout], [], [], 0)[0]:
                return False  # still starting: sign here meanwhile
            if stdout.read(1) != _READY:
                raise EOFError("the signing helper stopped before it was ready")
            self.ready = True
        return True

    def _answer(self, number: int, data: bytes) -> bytes:
        """The answer to request ``number``; made here if the helper failed."""
        with self.answers:
            try:
                while number not in self.unclaimed and not self.failed:
                    stdout = _pipe(self.process.stdout if self.process else None)
                    (length,) = _LENGTH.unpack(_exactly(stdout, _LENGTH.size))
                    self.unclaimed[self.heard] = _exactly(stdout, length)
                    self.heard += 1
            except (OSError, ValueError, EOFError) as exc:
                with self.lock:
                    self._give_up(exc)
            signature = self.unclaimed.pop(number, None)
        return signature if signature is not None else self.sign_here(data)

    def _give_up(self, exc: BaseException) -> None:
        if not self.failed:
            self.failed = True
            log.warning("DKIM: the signing helper failed (%s); signing in this process", exc)
        self.close()

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None:
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
    """The helper: read the key, say ready, then answer each request with its signature."""
    # Ctrl-C is for the sender, which stops in order; this ends when its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    (length,) = _LENGTH.unpack(_exactly(requests, _LENGTH.size))
    key = serialization.load_pem_private_key(_exactly(requests, length), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        return
    answers.write(_READY)
    answers.flush()
    while True:
        head = requests.read(_LENGTH.size)
        if len(head) != _LENGTH.size:
            return  # the sender has gone
        (length,) = _LENGTH.unpack(head)
        signature = key.sign(_exactly(requests, length), padding.PKCS1v15(), hashes.SHA256())
        answers.write(_LENGTH.pack(len(signature)) + signature)
        answers.flush()


if __name__ == "__main__":
    main()
