"""Sending speed end to end, into a receiver that is not the bottleneck.

Everything is sent into one Postfix `smtp-sink` (a C program from the Debian
`postfix` package; `make bench-deps` installs it) on a loopback port; the
Postfix mail service itself is neither started nor needed. In the same run:

- the sink's capacity: Postfix `smtp-source`, four sessions in parallel, sends
  the campaign's own message into the sink. A figure well above the ceiling
  shows the sink is not what limits the rows below it;
- the ceiling: a bare smtplib loop, one connection, the same pre-built message;
- `newsletter campaign send` itself, run as a user runs it (a fresh process on
  a workspace made with `init`, `fetch`, `subscribers import` and `campaign
  create`), at default settings, with `concurrency = 4`, and with RSA-2048 and
  Ed25519 DKIM signing. Each row is the whole command from launch to exit, so
  start-up and planning count; the time before its first message arrives at
  the sink and the peak memory of its largest process are shown beside it.

The ceiling and the capacity are the best of three runs, the campaigns a single
run each, so a moment's noise lowers a campaign's ratio rather than raising it.
On a shared machine whose load changes during the run, each campaign is also
set against one ceiling run made just before it ("x ceiling just before").
The sink's own counters confirm that every message arrived.

To compare two versions of the code on a shared machine, run only the rows that
matter, several rounds in turn (each round runs every chosen row once):
``--only "concurrency = 4" --only "default settings" --rounds 3``.

Usage: python bench/send.py [--quick] [--subscribers N] [--only ROW]... [--rounds N]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _local import free_port

SUBSCRIBERS = 10_000  # per campaign
CEILING_MESSAGES = 5_000  # per ceiling run
SINK_MESSAGES = 20_000  # per capacity run
QUICK = {"subscribers": 1_000, "ceiling": 1_000, "sink": 2_000}
REPEATS = 3  # best of, for the ceiling and the sink's capacity
SOURCE_SESSIONS = 4

FROM = "news@clinic.example.com"  # the sender of `newsletter init`'s workspace
DOMAIN = "clinic.example.com"
TO = "reader@example.com"
SMTP_ENV = {
    "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
    "NEWSLETTER_SMTP__HOST": "127.0.0.1",
    "NEWSLETTER_SMTP__SECURITY": "none",
}
CONCURRENCY_4 = {"NEWSLETTER_DELIVERY__CONCURRENCY": "4"}
# Where Debian puts Postfix's programs; /usr/sbin is not on every user's PATH.
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


@dataclass
class Row:
    what: str
    rate: float
    first: float | None = None  # seconds from launch to the first message at the sink
    memory: float | None = None  # MB, the largest process of the command
    cpu: float | None = None  # microseconds of CPU (user + system, all processes) a message
    beside: float | None = None  # the ceiling's rate in one run made just before this row


def postfix_program(name: str) -> str:
    path = shutil.which(name, path=SBIN)
    if path is None:
        raise BenchError(
            f"{name} not found: it comes with the Debian package postfix; "
            "run `make bench-deps` (the Postfix service need not run)"
        )
    return path


class Sink:
    """Postfix smtp-sink on a loopback port; its running counters go to a file."""

    def __init__(self, work: Path):
        self.port = free_port()
        self.counters = work / "sink-counters"
        command = [postfix_program("smtp-sink"), "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # it refuses to run as root without a user to become
        command += [f"127.0.0.1:{self.port}", "1024"]
        with open(self.counters, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                raise BenchError(f"smtp-sink did not start: {err.decode().strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"smtp-sink did not answer on port {self.port} within 10 s")

    def messages(self) -> int:
        """Messages received so far: smtp-sink -c writes "sess=N quit=N mesg=N\\r" as it goes."""
        with open(self.counters, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 256))
            records = handle.read().split(b"\r")
        for record in reversed(records[:-1]):  # the last piece may be half written
            for field in record.split():
                if field.startswith(b"mesg="):
                    return int(field[5:])
        return 0

    def expect(self, before: int, count: int, who: str) -> None:
        got = self.messages() - before
        if got != count:
            raise BenchError(f"{who}: the sink received {got} messages, not {count}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def capacity(sink: Sink, message_file: Path, count: int) -> float:
    """smtp-source, SOURCE_SESSIONS sessions reusing their connections: best of REPEATS."""
    source = postfix_program("smtp-source")
    best = 0.0
    for _ in range(REPEATS):
        before = sink.messages()
        start = time.perf_counter()
        subprocess.run(
            [
                source,
                *("-s", str(SOURCE_SESSIONS), "-d", "-m", str(count)),
                *("-f", FROM, "-t", TO, "-F", str(message_file)),
                f"127.0.0.1:{sink.port}",
            ],
            check=True,
            capture_output=True,
        )
        best = max(best, count / (time.perf_counter() - start))
        sink.expect(before, count, "smtp-source")
    return best


def ceiling(sink: Sink, message: bytes, count: int, repeats: int = REPEATS) -> float:
    """A bare smtplib loop over one connection, connect to QUIT: best of ``repeats``."""
    best = 0.0
    for _ in range(repeats):
        before = sink.messages()
        start = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", sink.port) as conn:
            for _ in range(count):
                conn.sendmail(FROM, [TO], message)
        best = max(best, count / (time.perf_counter() - start))
        sink.expect(before, count, "the smtplib loop")
    return best


def newsletter_env(sink: Sink, extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without its own NEWSLETTER_* settings, plus the run's.

    Compiled bytecode is kept (in the run's own folder), as an installed package has
    it: a caller's PYTHONDONTWRITEBYTECODE would make every launch compile the
    program's modules again, which no user's start-up pays.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NEWSLETTER_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPYCACHEPREFIX"] = str(sink.counters.parent / "pycache")
    return {**env, **SMTP_ENV, "NEWSLETTER_SMTP__PORT": str(sink.port), **extra}


def newsletter(root: Path, env: dict[str, str], *args: str) -> str:
    """Run one CLI command on a workspace; its output, or a BenchError with its message."""
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "--workspace", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
        raise BenchError(f"`newsletter {' '.join(args)}` failed: {' '.join(said)}")
    return done.stdout


def workspace(root: Path, env: dict[str, str], subscribers: int) -> str:
    """A workspace from `newsletter init` with `subscribers` confirmed readers and a
    draft campaign of its sample articles (as a digest); returns the campaign's id."""
    newsletter(root, env, "init", str(root))
    newsletter(root, env, "fetch")
    export = root / "bench-subscribers.csv"
    with open(export, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name"])
        writer.writerows([f"reader{i}@example.com", f"Reader{i}"] for i in range(subscribers))
    newsletter(root, env, "subscribers", "import", str(export), "--confirmed")
    out = newsletter(root, env, "campaign", "create", "--subject", "New on the blog")
    return out.strip().splitlines()[-1]


def campaign_message(work: Path, env: dict[str, str]) -> bytes:
    """The exact bytes a campaign sends one subscriber: a one-subscriber copy of the
    bench's workspace sent to the outbox transport, which writes each message to a file."""
    root = work / "sample"
    campaign_id = workspace(root, env, 1)
    outbox = {**env, "NEWSLETTER_DELIVERY__TRANSPORT": "outbox"}
    newsletter(root, outbox, "campaign", "send", campaign_id)
    (message,) = (root / "outbox").glob("*.eml")
    return message.read_bytes()


def campaign_send(
    sink: Sink, root: Path, campaign_id: str, env: dict[str, str], count: int, what: str
) -> Row:
    """Run `newsletter campaign send` and watch the sink: when the first message arrives,
    when the command exits, and the peak memory of its largest process."""
    log = root / "bench-send.log"
    before = sink.messages()
    with open(log, "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--workspace", str(root)]
            + ["campaign", "send", campaign_id],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        first = None
        while True:
            # wait4 rather than Popen.wait: it also gives the child's resource usage,
            # whose ru_maxrss covers the sending processes that child waited for.
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            now = time.perf_counter()
            if first is None and sink.messages() > before:
                first = now - start
            if pid:
                break
            time.sleep(0.002 if first is None else 0.01)
    process.returncode = os.waitstatus_to_exitcode(status)
    said = log.read_text()
    if process.returncode != 0 or f"{count} sent, 0 failed" not in said:
        raise BenchError(f"{what}: `newsletter campaign send` said: {said.strip()}")
    sink.expect(before, count, what)
    cpu = (usage.ru_utime + usage.ru_stime) / count * 1e6
    return Row(what, count / (now - start), first, usage.ru_maxrss / 1024, cpu)


def runs(work: Path, env: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """The campaign settings measured, with a DKIM key of each kind from `dkim keygen`."""
    keys = {}
    for algorithm in ("rsa", "ed25519"):
        keys[algorithm] = work / f"dkim-{algorithm}.pem"
        newsletter(
            work / "sample",
            env,
            *("dkim", "keygen", "--algorithm", algorithm, "--domain", DOMAIN),
            *("--selector", f"bench-{algorithm}", "--out", str(keys[algorithm])),
        )
    rsa = {
        "NEWSLETTER_DKIM__DOMAIN": DOMAIN,
        "NEWSLETTER_DKIM__SELECTOR": "bench-rsa",
        "NEWSLETTER_DKIM__PRIVATE_KEY_FILE": str(keys["rsa"]),
    }
    ed25519 = {
        "NEWSLETTER_DKIM__DOMAIN": DOMAIN,
        "NEWSLETTER_DKIM__ED25519_SELECTOR": "bench-ed25519",
        "NEWSLETTER_DKIM__ED25519_PRIVATE_KEY_FILE": str(keys["ed25519"]),
    }
    return [
        ("default settings", {}),
        ("concurrency = 4", CONCURRENCY_4),
        ("RSA-2048 DKIM", rsa),
        ("RSA-2048 DKIM, concurrency = 4", {**rsa, **CONCURRENCY_4}),
        ("Ed25519 DKIM", ed25519),
    ]


def table(rows: list[Row], ceiling_rate: float) -> str:
    head = (
        "",
        "messages/s",
        "x ceiling",
        "x ceiling just before",
        "first message",
        "peak memory",
        "CPU/message",
    )
    lines = [head]
    for row in rows:
        lines.append(
            (
                row.what,
                f"{row.rate:,.0f}",
                f"{row.rate / ceiling_rate:.2f}",
                "" if row.beside is None else f"{row.rate / row.beside:.2f}",
                "" if row.first is None else f"{row.first:.2f} s",
                "" if row.memory is None else f"{row.memory:.0f} MB",
                "" if row.cpu is None else f"{row.cpu:.0f} µs",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    # The first column left-aligned, the figures right-aligned.
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run, to see that it works")
    parser.add_argument("--subscribers", type=int, help=f"per campaign (default {SUBSCRIBERS:,})")
    parser.add_argument(
        "--only",
        action="append",
        metavar="ROW",
        help="run only the campaign rows whose name contains ROW (may be given again)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the chosen campaign rows this many times in turn"
    )
    args = parser.parse_args()
    subscribers = args.subscribers or (QUICK["subscribers"] if args.quick else SUBSCRIBERS)
    ceiling_count = QUICK["ceiling"] if args.quick else CEILING_MESSAGES
    sink_count = QUICK["sink"] if args.quick else SINK_MESSAGES

    work = Path(tempfile.mkdtemp(prefix="bench-send-"))
    load = os.getloadavg()[0]
    sink = None
    try:
        sink = Sink(work)
        env = newsletter_env(sink, {})
        message = campaign_message(work, env)
        message_file = work / "message.txt"  # smtp-source reads lines and ends each with CRLF
        message_file.write_bytes(message.replace(b"\r\n", b"\n"))
        template = work / "campaign"
        campaign_id = workspace(template, env, subscribers)
        settings = [
            (what, extra)
            for what, extra in runs(work, env)
            if not args.only or any(part in what for part in args.only)
        ]
        if not settings:
            raise BenchError(f"no campaign row matches --only {' / '.join(args.only)}")

        sink_rate = capacity(sink, message_file, sink_count)
        ceiling_rate = ceiling(sink, message, ceiling_count)
        rows = [
            Row(f"the sink's capacity: smtp-source, {SOURCE_SESSIONS} sessions", sink_rate),
            Row("the ceiling: bare smtplib loop, one connection", ceiling_rate),
        ]
        for what, extra in [row for _ in range(max(1, args.rounds)) for row in settings]:
            root = work / f"run-{len(rows)}"
            shutil.copytree(template, root)  # each run starts from the same draft
            print(f"sending: {what} ...", file=sys.stderr, flush=True)
            # The ceiling once more, just before: a shared machine's load drifts over a run.
            beside = ceiling(sink, message, ceiling_count, repeats=1)
            row = campaign_send(
                sink,
                root,
                campaign_id,
                newsletter_env(sink, extra),
                subscribers,
                f"campaign send, {what}",
            )
            row.beside = beside
            rows.append(row)
            shutil.rmtree(root)
    except BenchError as exc:
        sys.exit(f"bench/send.py: {exc}")
    finally:
        if sink is not None:
            sink.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"Send speed: campaigns of {subscribers:,} subscribers, a {len(message) / 1024:.1f} KB "
        f"message, into Postfix smtp-sink on loopback; {len(os.sched_getaffinity(0))} cores, "
        f"load average {load:.1f} at the start"
    )
    print()
    print(table(rows, ceiling_rate))
    print()
    print("messages/s of a campaign: the whole `newsletter campaign send`, launch to exit.")
    print(
        "first message: from launch until the sink has it (start-up and planning), with "
        "compiled bytecode kept as an installed package keeps it."
    )
    print("peak memory: the command's largest process (itself or one sending process).")
    print(
        "CPU/message: user + system time of the command and its sending processes, start-up "
        "included, a message; a busy machine changes it less than messages/s."
    )
    print(
        f"the ceiling and the sink's capacity: best of {REPEATS}; "
        "each campaign: one run; every message counted at the sink."
    )
    print(
        "x ceiling just before: over one run of the ceiling made right before that "
        "campaign, so a machine whose load changes during the run moves both alike."
    )


if __name__ == "__main__":
    main()
