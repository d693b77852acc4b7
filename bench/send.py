"""Sending speed end to end: render, DKIM, SMTP into a local sink, and memory at scale.

A 20,000-subscriber campaign (the three sample articles as a digest) goes
through the real send loop and SMTP transport into bench/smtp_sink.py. The
ceiling, measured in the same run against the same sink, is a bare smtplib
loop sending one pre-built message of the same size over one connection.
Then the same with RSA-2048 DKIM, and peak memory for 100,000 subscribers.
The campaign goes out with `[delivery] concurrency = 4` (four SMTP
connections) and the default `processes = 0`: one sending process per core,
two connections each on a two-core machine.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from newsletter import campaigns, jobs
from newsletter.dkim import generate_key
from newsletter.workspace import Workspace, init_workspace

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
SUBSCRIBERS = 20_000
MEMORY_SUBSCRIBERS = 100_000
CEILING_MESSAGES = 3_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink(port: int) -> subprocess.Popen[str]:
    sink = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_smtp_sink.py")), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    return sink


def bare_smtplib(port: int, message: bytes) -> float:
    """The best of three runs: a ceiling that a moment's noise cannot lower."""
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port) as conn:
            for _ in range(CEILING_MESSAGES):
                conn.sendmail("news@clinic.example.com", ["reader@example.com"], message)
        best = max(best, CEILING_MESSAGES / (time.perf_counter() - start))
    return best


SEND_ONLY = """
import resource, sys, time
from pathlib import Path
from newsletter import jobs
from newsletter.workspace import Workspace
ws = Workspace.open(Path(sys.argv[1]))
start = time.perf_counter()
progress = jobs.send_campaign(ws, ws.store, int(sys.argv[2]))
rate = progress.sent / (time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# The sending processes a large campaign is shared with count too: the largest of them.
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"peak memory, {progress.sent} subscribers: {peak:.0f} MB the sending process, "
      f"{child:.0f} MB its largest child ({rate:.0f} messages/s)")
"""


def ws_env(port: int) -> dict[str, str]:
    return {
        "NEWSLETTER_SECRET_KEY": "bench",
        "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
        "NEWSLETTER_SMTP__HOST": "127.0.0.1",
        "NEWSLETTER_SMTP__PORT": str(port),
        "NEWSLETTER_SMTP__SECURITY": "none",
        "NEWSLETTER_DELIVERY__CONCURRENCY": "4",
    }


def workspace(root: Path, port: int, subscribers: int, env: dict[str, str]) -> Workspace:
    init_workspace(root)
    ws = Workspace.open(root, env={**ws_env(port), **env})
    jobs.fetch_sources(ws, ws.store, NOW)
    rows = [
        {"email": f"reader{i}@example.com", "first_name": f"Reader{i}", "status": "confirmed"}
        for i in range(subscribers)
    ]
    ws.store.add_subscribers(rows, None, "bench", "bench", NOW)
    return ws


def send(ws: Workspace) -> tuple[float, int, bytes]:
    campaign_id = campaigns.create(ws.store, ws.settings, "Bench", "new", "digest", None, NOW)
    mail, transport = jobs.prepare_send(ws, ws.store, campaign_id, NOW)
    transport.close()
    sample = mail.message(ws.store.subscribers("confirmed")[0], "sample", NOW)[1]
    start = time.perf_counter()
    progress = jobs.send_campaign(ws, ws.store, campaign_id)
    elapsed = time.perf_counter() - start
    assert progress.finished and progress.failed == 0, progress
    return progress.sent / elapsed, progress.sent, sample


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-send-"))
    port = free_port()
    sink = start_sink(port)
    try:
        ws = workspace(work / "plain", port, SUBSCRIBERS, {})
        rate, sent, sample = send(ws)
        ws.close()
        ceiling = bare_smtplib(port, sample)
        print(
            f"ceiling: bare smtplib, one connection, {len(sample) / 1024:.1f} KB message, "
            f"best of 3: {ceiling:.0f} messages/s"
        )
        print(
            f"newsletter, {sent} subscribers, no DKIM: {rate:.0f} messages/s "
            f"= {rate / ceiling:.2f} x ceiling"
        )

        key_file = work / "dkim.pem"
        key_file.write_bytes(generate_key("rsa")[0])
        ws = workspace(
            work / "dkim",
            port,
            SUBSCRIBERS,
            {
                "NEWSLETTER_DKIM__DOMAIN": "clinic.example.com",
                "NEWSLETTER_DKIM__SELECTOR": "bench",
                "NEWSLETTER_DKIM__PRIVATE_KEY_FILE": str(key_file),
            },
        )
        rate, sent, _ = send(ws)
        ws.close()
        print(
            f"newsletter, {sent} subscribers, RSA-2048 DKIM: {rate:.0f} messages/s "
            f"= {rate / ceiling:.2f} x ceiling"
        )

        if os.environ.get("BENCH_SKIP_MEMORY") != "1":
            # Memory is measured in a process that does nothing but send, so the
            # figure is the sender's, not this script's set-up of 100,000 rows.
            ws = workspace(work / "memory", port, MEMORY_SUBSCRIBERS, {})
            campaign_id = campaigns.create(
                ws.store, ws.settings, "Bench", "new", "digest", None, NOW
            )
            env = dict(ws_env(port))
            ws.close()
            child = subprocess.run(
                [sys.executable, "-c", SEND_ONLY, str(work / "memory"), str(campaign_id)],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                check=True,
            )
            print(child.stdout.strip())
    finally:
        sink.terminate()
        out, _ = sink.communicate(timeout=30)
        print(f"sink: {out.strip()}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
