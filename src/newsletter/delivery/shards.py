"""Process sharding: a large campaign split across sending processes.

Each process takes the rows whose id falls in its shard and runs the same
send loop with its share of the connections. The sending process itself
sends the first share (it is ready, where a child first spends a fifth of a
second starting up) and starts a child for each other one; it holds the
lease, settles what a dead child had in flight, and adds up the progress.

Invariants:
- Children die with their parent, so a killed sender leaves no orphan
  sending on its own.
- Each process gets whole shares of the connections and of the rate, so the
  shares add up to the policy and each limiter keeps an exact one-second
  window.
- When one share stops (a pause, failures in a row, a dead child, a stop
  request, a lost lease), every share stops after its messages in flight.
- Rows a dead child had in flight are settled by the parent, like a crashed
  sender's, and the campaign pauses with the reason.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from newsletter.delivery.ledger import Policy, SendProgress
from newsletter.delivery.loop import Shard, _read_and_send, _SendRun, settle_in_flight
from newsletter.errors import NewsletterError
from newsletter.mail import CampaignMail
from newsletter.store import Store
from newsletter.transports import Transport
from newsletter.transports.signing import usable_cores

log = logging.getLogger(__name__)
# Below this many due rows, starting processes costs more time than it saves.
SHARD_MIN_ROWS = 1000

# Builds, inside a child process, what it needs to send: (store, mail, transport)
# for the given number of connections. Must be picklable (a module-level function).
PartsFactory = Callable[[int], tuple[Store, CampaignMail, Transport]]


def _shard_count(store: Store, campaign_id: int, policy: Policy, now: dt.datetime) -> int:
    """How many processes to send with: never more than connections (or whole messages
    per second, so each keeps a one-second window), and one for small sends."""
    wanted = min(policy.processes or usable_cores(), max(1, policy.concurrency))
    if policy.rate_per_second > 0:
        wanted = min(wanted, max(1, int(policy.rate_per_second)))
    if wanted <= 1:
        return 1
    return wanted if store.due_count(campaign_id, now) >= SHARD_MIN_ROWS else 1


def _send_sharded(
    store: Store,
    mail: CampaignMail,
    run: _SendRun,
    parts: PartsFactory,
    count: int,
    should_stop: Callable[[], bool],
) -> None:
    """Send the first share here and one child process per other share; add up what
    they report, and stop them all on a stop.

    This process sends a share itself because it is ready now: a child first
    spends a fifth of a second starting up, and this process would only wait.
    """
    policy = run.policy
    # Children keep the caller's notion of now (tests inject a clock) as an offset.
    offset = run.clock() - dt.datetime.now(dt.UTC)
    rate = policy.rate_per_second
    # Whole shares: each process's limiter keeps an exact one-second window.
    shares = [
        replace(
            policy,
            concurrency=policy.concurrency // count + (index < policy.concurrency % count),
            rate_per_second=(int(rate) // count + (index < int(rate) % count)) if rate else 0,
        )
        for index in range(count)
    ]
    own = _SendRun(
        store, run.transport, run.campaign_id, run.clock, shares[0], run.sender, None, run.lost
    )
    children: list[tuple[subprocess.Popen[bytes], Connection]] = []
    log.info("campaign %s: sending with %d processes", run.campaign_id, count)
    try:
        for index in range(1, count):
            children.append(
                _start_child(
                    (parts, Shard(index, count), shares[index], run.sender, offset, os.getpid())
                )
            )
        watch = _Watch(run, own, children, should_stop)
        watch.start()
        try:
            _read_and_send(
                store, mail, own, lambda: watch.stop.is_set() or should_stop(), Shard(0, count)
            )
        except BaseException:
            # Ctrl-C or an error in this process's own share: the children stop now, not
            # once they have sent their whole shares.
            watch.stop_all()
            raise
        finally:
            watch.own_done.set()
            watch.join()
    except BaseException:
        for child, _ in children:
            child.terminate()
        raise
    finally:
        for child, receiver in children:
            child.wait()
            receiver.close()
    run.progress = watch.total()
    if watch.failure is not None:
        raise watch.failure
    stopping = watch.stopping
    if stopping:
        run.progress.stopped = True
    if run.lost.is_set() and not run.progress.paused_reason:
        run.progress.paused_reason = "paused: this sender lost its lease on the campaign"
    # A child stopped by our SIGTERM before it could install its handler has claimed nothing.
    clean = (0, -signal.SIGTERM) if stopping else (0,)
    died = [child.returncode for child, _ in children if child.returncode not in clean]
    if died:
        # Rows a dead child had in flight are settled now, like a crashed sender's.
        settled = settle_in_flight(store, run.transport, run.campaign_id, run.clock())
        for key, value in settled.items():
            run.progress.settled[key] = run.progress.settled.get(key, 0) + value
        if not run.progress.paused_reason:
            run.progress.paused_reason = _died(died[0])


class _Watch(threading.Thread):
    """Reads the children's reports, adds them to this process's own share, and stops
    every share when one pauses, a child dies, the caller asks, or the lease is lost."""

    def __init__(
        self,
        run: _SendRun,
        own: _SendRun,
        children: list[tuple[subprocess.Popen[bytes], Connection]],
        should_stop: Callable[[], bool],
    ):
        super().__init__(name="send-watch", daemon=True)
        self.send, self.own, self.children, self.should_stop = run, own, children, should_stop
        self.latest = [SendProgress() for _ in children]
        self.settled = dict(run.progress.settled)
        self.stop = threading.Event()  # every share stops: the own one reads this
        self.own_done = threading.Event()
        self.stopping = False
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._watch()
        except BaseException as exc:  # noqa: BLE001 - handed to the sending thread
            self.failure = exc
            self.stop_all()

    def _watch(self) -> None:
        run, children, latest = self.send, self.children, self.latest
        open_pipes = {receiver: n for n, (_, receiver) in enumerate(children)}
        while True:
            ready = []
            if open_pipes:
                ready = wait(list(open_pipes), timeout=0.2)
            elif not self.own_done.is_set():
                time.sleep(0.1)  # only this process's own share is left
            for item in ready:
                # wait() hands back the very objects it was given: our pipe ends.
                receiver = cast(Connection, item)
                n = open_pipes[receiver]
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    # The child ended without its last word: stop the others too, unless
                    # it was our SIGTERM that came before the child could handle it.
                    del open_pipes[receiver]
                    code = children[n][0].wait()
                    if not (self.stopping and code == -signal.SIGTERM):
                        latest[n].paused_reason = latest[n].paused_reason or _died(code)
                    continue
                if kind == "error":
                    latest[n].paused_reason = f"paused: {payload}"
                    del open_pipes[receiver]
                    continue
                latest[n] = payload
                if kind == "done":
                    del open_pipes[receiver]
            finished = self.own_done.is_set() and not open_pipes
            total = run.progress = self.total()
            if run.on_progress:
                run.on_progress(total)
            if not self.stopping and (
                self.should_stop()
                or run.lost.is_set()
                or total.paused_reason
                # This process's own share halted (Ctrl-C, a pause seen at a claim).
                or self.own.halt.is_set()
            ):
                if run.lost.is_set():
                    run.pause("paused: this sender lost its lease on the campaign")
                self.stop_all()
            if finished:
                return

    def stop_all(self) -> None:
        """Every share stops after its messages in flight: this process's own (its
        reader and workers) and, by SIGTERM, each child."""
        self.stopping = True
        self.stop.set()
        self.own.halt.set()
        for child, _ in self.children:
            child.terminate()

    def total(self) -> SendProgress:
        """The progress of every share so far, this process's own included."""
        total = SendProgress(settled=dict(self.settled))
        with self.own.lock:
            total.add(self.own.progress)
        for progress in self.latest:
            total.add(progress)
        return total


def _died(code: int) -> str:
    return f"paused: a sending process stopped unexpectedly (exit code {code}); resume to continue"


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this child when its parent dies, so no orphan sends on alone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # without it, the loop below still checks the parent between messages
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the line above took effect


def _start_child(args: tuple[Any, ...]) -> tuple[subprocess.Popen[bytes], Connection]:
    """Start one sending process; its arguments go down stdin, its reports come up a pipe.

    A fresh interpreter (not fork: this process has threads; not multiprocessing's
    spawn, which would re-run the caller's main script) runs ``newsletter.sender``.
    """
    read_fd, write_fd = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "newsletter.sender", str(write_fd)],
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    assert child.stdin is not None
    try:
        child.stdin.write(pickle.dumps(args))
        child.stdin.close()
    except BaseException:
        child.kill()
        child.wait()
        os.close(read_fd)
        raise
    return child, Connection(read_fd, writable=False)


def shard_main(report_fd: int, stopped_early: list[bool]) -> None:
    """The body of a sending process (``python -m newsletter.sender FD``).

    ``stopped_early`` is non-empty when a SIGTERM came while the process was
    still importing: it then reports at once without claiming anything.
    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if stopped_early:
        stop.set()
    pipe = Connection(report_fd, readable=False)
    parts, shard, policy, sender, offset, parent_pid = pickle.loads(sys.stdin.buffer.read())
    _die_with_parent(parent_pid)

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + offset

    last = 0.0

    def report(progress: SendProgress) -> None:
        nonlocal last  # called under the run's lock, so one thread at a time
        if time.monotonic() - last >= 0.1:
            last = time.monotonic()
            pipe.send(("progress", progress))

    try:
        store, mail, transport = parts(policy.concurrency)
    except NewsletterError as exc:
        pipe.send(("error", str(exc)))
        return
    try:
        run = _SendRun(
            store, transport, mail.campaign["id"], clock, policy, sender, report, threading.Event()
        )
        _read_and_send(store, mail, run, lambda: stop.is_set() or os.getppid() != parent_pid, shard)
        pipe.send(("done", run.progress))
    finally:
        transport.close()
        store.close()
        pipe.close()
