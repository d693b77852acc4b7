"""What the benchmarks share: a free loopback port, and waiting for a server they started."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    """Until ``url`` answers; the bench stops with the server's output if it exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    sys.exit(f"{url} did not answer")
