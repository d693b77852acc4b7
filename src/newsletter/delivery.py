"""The delivery ledger and the send loop.

Record intent, send, record outcome: each row is committed as ``sending``
before the provider call and as ``sent``, ``failed`` or ``deferred`` after
it, so a crash can leave at most one batch per connection in flight. A row
still ``sending`` when a sender starts was in flight at a crash; it is
settled by asking the transport (``was_sent``) and, where the transport
cannot tell, marked ``in_doubt`` — shown to staff, never resent blindly.

The main thread reads due rows in batches (flat memory), renders each
message and hands it to ``concurrency`` worker threads through a small
queue; each worker claims, sends and records its own batch over the shared
transport, which pools its connections.

A large campaign is split across processes (``[delivery] processes``): each
child takes the rows whose id falls in its shard and runs the same loop with
its share of the connections, while the parent holds the lease, settles
what was in flight, and adds up their progress. Children die with their
parent, so a killed sender leaves no orphan sending on its own.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import os
import pickle
import queue
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from newsletter import delivery_key
from newsletter.campaigns import CampaignMail
from newsletter.config import Settings
from newsletter.errors import (
    InDoubtError,
    NewsletterError,
    PermanentError,
    StateError,
    TransientError,
)
from newsletter.store import DEFERRED, FAILED, IN_DOUBT, PENDING, SENT, SKIPPED, Store
from newsletter.store.deliveries import lease_held
from newsletter.transports import IN_DOUBT as IN_DOUBT_OUTCOME
from newsletter.transports import (
    PERMANENT,
    REJECTED,
    TRANSIENT,
    UNUSABLE,
    Envelope,
    Outcome,
    Transport,
)
from newsletter.transports import SENT as SENT_OUTCOME

log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]
BATCH = 500  # rows read from the database at a time
# Below this many due rows, starting processes costs more time than it saves.
SHARD_MIN_ROWS = 1000


@dataclass(frozen=True)
class Policy:
    """How hard to push and when to give up; from [delivery] settings."""

    concurrency: int = 1
    rate_per_second: float = 0.0  # 0: no limit
    # Like an MTA's queue: first retry after about 5 minutes, doubling to at most
    # about an hour between tries, for roughly a day before giving up.
    max_attempts: int = 25  # tries per row before a transient failure counts as failed
    backoff_seconds: float = 300.0
    max_backoff_seconds: float = 4000.0
    pause_after: int = 10  # consecutive transient failures that pause the campaign
    processes: int = 1  # sending processes for a large campaign; 0: one per CPU core


@dataclass(frozen=True)
class Shard:
    """The rows one sending process takes: those whose id % count == index."""

    index: int
    count: int


# Builds, inside a child process, what it needs to send: (store, mail, transport)
# for the given number of connections. Must be picklable (a module-level function).
PartsFactory = Callable[[int], tuple[Store, CampaignMail, Transport]]


@dataclass
class Progress:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    settled: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    stopped: bool = False
    paused_reason: str | None = None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.deferred + self.skipped

    def add(self, other: Progress) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.deferred += other.deferred
        self.skipped += other.skipped
        self.stopped = self.stopped or other.stopped
        if other.paused_reason and not self.paused_reason:
            self.paused_reason = other.paused_reason


def policy_for(settings: Settings) -> Policy:
    d = settings.delivery
    return Policy(
        concurrency=d.concurrency,
        rate_per_second=d.rate_per_second,
        max_attempts=d.max_attempts,
        backoff_seconds=d.retry_backoff,
        max_backoff_seconds=d.max_retry_backoff,
        pause_after=d.pause_after_failures,
        processes=d.processes,
    )


class RateLimiter:
    """At most ``rate`` acquisitions in any one-second window.

    A sliding window of the last ``rate`` start times: a caller waits only
    as long as it takes the oldest of them to leave the window, so a burst
    is smoothed without ever stalling the whole second.
    """

    def __init__(
        self,
        rate: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.rate = rate
        self.window: deque[float] = deque()
        self.monotonic, self.sleep = monotonic, sleep
        self.lock = threading.Lock()

    def acquire(self, count: int = 1) -> None:
        """Wait until ``count`` more messages may start."""
        if self.rate <= 0:
            return
        size = max(1, int(self.rate))
        period = size / self.rate  # one second for whole rates; longer below 1/s
        with self.lock:
            for _ in range(count):
                now = self.monotonic()
                if len(self.window) >= size:
                    wait = self.window[0] + period - now
                    if wait > 0:
                        self.sleep(wait)
                        now = self.monotonic()
                    self.window.popleft()
                self.window.append(now)


# Tells this process apart from an earlier one that had the same pid on this
# host: in a container restarted after a kill, `newsletter run` is PID 1 again,
# and the dead run's lease must not look like its own live one.
_INCARNATION = uuid.uuid4().hex[:12]


def process_alive(host: str, pid: int, owner: str = "") -> bool:
    """Whether a lease holder still runs; a holder on another host is taken to be alive."""
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return owner.startswith(f"{host}:{pid}:{_INCARNATION}:")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def active_sender(
    store: Store, campaign_id: int, wall: Callable[[], float] = time.time
) -> dict[str, Any] | None:
    """The sender holding a campaign's lease that still runs, if any (a look, not a claim).

    A lease left by a killed process on this host is no one's, though it has
    not expired: the next sender takes it over at once.
    """
    holder = store.send_lease(campaign_id)
    if holder is None or not lease_held(holder, socket.gethostname(), wall(), process_alive):
        return None
    return holder


class Lease:
    """The right to send one campaign, held by one process at a time.

    Without it, a second sender (the scheduler and a `campaign send` at once)
    could take another's in-flight rows for crash leftovers and send them
    again. A heartbeat thread renews it; if it is ever lost, the run halts
    before claiming another row.
    """

    SECONDS = 60.0

    def __init__(self, db_path: Path, campaign_id: int, wall: Callable[[], float] = time.time):
        self.db_path, self.campaign_id, self.wall = db_path, campaign_id, wall
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{_INCARNATION}:{uuid.uuid4().hex[:8]}"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, store: Store) -> None:
        holder = store.take_lease(
            self.campaign_id,
            self.owner,
            socket.gethostname(),
            os.getpid(),
            self.wall(),
            self.SECONDS,
            process_alive,
        )
        if holder is not None:
            raise StateError(
                f"campaign {self.campaign_id}: another sender is sending it (pid "
                f"{holder['pid']} on {holder['host']}); wait for it to finish or stop it"
            )
        self._thread = threading.Thread(target=self._heartbeat, name="lease", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        store = Store(self.db_path)
        try:
            while not self._stop.wait(self.SECONDS / 6):
                try:
                    renewed = store.renew_lease(
                        self.campaign_id, self.owner, self.wall(), self.SECONDS
                    )
                except sqlite3.Error as exc:
                    # Busy for a moment: the lease lasts six beats, so try on the next.
                    log.warning("campaign %s: lease not renewed (%s)", self.campaign_id, exc)
                    continue
                if not renewed:
                    self.lost.set()
                    return
        finally:
            store.close()

    def release(self, store: Store) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        store.release_lease(self.campaign_id, self.owner)


def backoff(
    attempts: int,
    policy: Policy,
    retry_after: float | None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the next try: exponential with jitter, or what the provider said."""
    base = min(policy.max_backoff_seconds, policy.backoff_seconds * 2 ** max(attempts - 1, 0))
    delay = base * (0.5 + rand())  # jitter spreads retries of many rows apart
    return max(delay, retry_after or 0.0)


def settle_in_flight(
    store: Store, transport: Transport, campaign_id: int, now: dt.datetime
) -> dict[str, int]:
    """Resolve rows left 'sending' by a sender that stopped mid-call."""
    counts = {SENT: 0, PENDING: 0, IN_DOUBT: 0}
    for row in store.in_flight(campaign_id):
        verdict = transport.was_sent(delivery_key.build(campaign_id, row["id"]))
        if verdict is True:
            store.finish_delivery(row["id"], SENT, now)
            counts[SENT] += 1
        elif verdict is False:
            # The transport knows it never took the message: safe to send again.
            store.finish_delivery(row["id"], PENDING, now)
            counts[PENDING] += 1
        else:
            store.finish_delivery(
                row["id"],
                IN_DOUBT,
                now,
                error="in flight when the sender stopped; the transport "
                "cannot tell whether it was accepted",
            )
            counts[IN_DOUBT] += 1
    return counts


@dataclass
class _Item:
    delivery_id: int
    subscriber_id: int
    attempts: int
    message_id: str
    envelope: Envelope


class _Run:
    """State shared by the reader and the workers of one send."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        campaign_id: int,
        clock: Clock,
        policy: Policy,
        on_progress: Callable[[Progress], None] | None,
        lost: threading.Event,
    ):
        self.db_path = store.path
        self.transport = transport
        self.campaign_id = campaign_id
        self.clock = clock
        self.policy = policy
        self.on_progress = on_progress
        self.lost = lost  # set when the lease on the campaign is lost
        self.limiter = RateLimiter(policy.rate_per_second)
        self.progress = Progress()
        self.lock = threading.Lock()
        self.halt = threading.Event()  # set when the campaign must stop (pause, errors)
        self.failures_in_a_row = 0
        self.last_error = ""

    def pause(self, reason: str) -> None:
        with self.lock:
            if self.progress.paused_reason is None:
                self.progress.paused_reason = reason
        self.halt.set()

    def outcome_rows(self, items: list[_Item], outcomes: list[Outcome]) -> list[dict[str, Any]]:
        """The ledger rows for what the transport said about a batch."""
        now = self.clock()
        stamp = now.isoformat(timespec="seconds")  # when it went, not when it is written
        rows = []
        for item, outcome in zip(items, outcomes, strict=True):
            row: dict[str, Any] = {
                "id": item.delivery_id,
                "provider_id": outcome.provider_id,
                "done_at": stamp,
            }
            if outcome.status == PERMANENT:
                row.update(status=FAILED, error=outcome.error, bounce=item.subscriber_id)
            elif outcome.status in (REJECTED, UNUSABLE):
                row.update(status=FAILED, error=outcome.error)
            elif outcome.status == IN_DOUBT_OUTCOME:
                row.update(status=IN_DOUBT, error=outcome.error)
            elif outcome.status == TRANSIENT:
                attempts = item.attempts + 1
                if attempts >= self.policy.max_attempts:
                    row.update(
                        status=FAILED, error=f"gave up after {attempts} tries: {outcome.error}"
                    )
                else:
                    wait = backoff(attempts, self.policy, outcome.retry_after)
                    row.update(
                        status=DEFERRED,
                        error=outcome.error,
                        next_attempt_at=(now + dt.timedelta(seconds=wait)).isoformat(
                            timespec="seconds"
                        ),
                    )
            else:
                row.update(status=SENT)
            rows.append(row)
        return rows

    def account(self, rows: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        """Count a recorded batch; pause after too many failures in a row."""
        with self.lock:
            for row, outcome in zip(rows, outcomes, strict=True):
                if row["status"] == SENT:
                    self.progress.sent += 1
                elif row["status"] == DEFERRED:
                    self.progress.deferred += 1
                else:
                    self.progress.failed += 1
                # Temporary failures, refused messages and unanswered sends in a row
                # mean something is wrong beyond one address: stop and say why.
                # A bounce, or an address this transport cannot carry, is about one
                # address, so it neither counts nor resets.
                if outcome.status in (TRANSIENT, REJECTED, IN_DOUBT_OUTCOME):
                    self.failures_in_a_row += 1
                    self.last_error = outcome.error
                elif outcome.status == SENT:
                    self.failures_in_a_row = 0
            in_a_row = self.failures_in_a_row
            if self.on_progress:
                self.on_progress(self.progress)
        if in_a_row >= self.policy.pause_after:
            self.pause(f"paused after {in_a_row} failures in a row; last: {self.last_error}")

    def worker(self, work: queue.Queue[_Item | None]) -> None:
        store = Store(self.db_path)
        # The outcome of this worker's last batch, when the next item was already
        # waiting: it is recorded in the same transaction as the next claim.
        done: list[tuple[list[dict[str, Any]], list[Outcome]]] = []
        try:
            while True:
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    self._flush(store, done)  # nothing to share a commit with
                    item = work.get()
                if item is None:
                    return
                try:
                    self._send(store, work, item, done)
                except Exception as exc:  # noqa: BLE001 - stop the campaign, keep draining
                    log.exception("campaign %s: sender failed", self.campaign_id)
                    self.pause(f"paused: the sender failed ({exc})")
        finally:
            try:
                self._flush(store, done)
            finally:
                store.close()

    def _flush(self, store: Store, done: list[tuple[list[dict[str, Any]], list[Outcome]]]) -> None:
        while done:
            rows, outcomes = done[0]
            store.record_outcomes(rows, self.clock())
            done.pop(0)
            self.account(rows, outcomes)

    def _send(
        self,
        store: Store,
        work: queue.Queue[_Item | None],
        item: _Item,
        done: list[tuple[list[dict[str, Any]], list[Outcome]]],
    ) -> None:
        """Claim, send and record one batch: at most one batch per worker is in flight.

        ``done`` holds the previous batch's outcome, not yet recorded: the claim
        records it in its own transaction (before this batch goes out, as the
        ledger requires), and this batch's outcome is left there in its place.
        """
        items = [item]
        while len(items) < max(1, self.transport.batch_size):
            try:
                more = work.get_nowait()
            except queue.Empty:
                break
            if more is None:
                work.put(None)  # leave the sentinel for this worker's next turn
                break
            items.append(more)
        if self.halt.is_set():
            self._flush(store, done)
            return  # drain: a halted campaign sends nothing more
        if self.lost.is_set():
            self._flush(store, done)
            self.pause("paused: this sender lost its lease on the campaign")
            return
        self.limiter.acquire(len(items))
        previous = done[0] if done else ([], [])
        claimed, skipped = store.claim_deliveries(
            [(i.delivery_id, i.message_id) for i in items], self.clock(), previous[0]
        )
        if done:
            done.pop(0)
            self.account(*previous)
        if skipped:
            # Unsubscribed since the row was read (or taken off a list): not sent.
            with self.lock:
                self.progress.skipped += len(skipped)
        if (
            len(claimed) + len(skipped) < len(items)
            and store.campaign_status(self.campaign_id) != "sending"
        ):
            # Paused or cancelled from anywhere (the claim reads the status in its own
            # transaction): drain the queue, claim nothing more.
            with self.lock:
                self.progress.stopped = True
            self.halt.set()
        items = [i for i in items if i.delivery_id in claimed]
        if not items:
            return
        try:
            outcomes = self.transport.send_batch([i.envelope for i in items])
        except PermanentError as exc:
            # Nothing can go (a refused login, a bad API key): pause the campaign and put
            # the rows back as they were, so resuming after the fix sends them.
            store.record_outcomes(
                [{"id": i.delivery_id, "status": PENDING, "error": str(exc)} for i in items],
                self.clock(),
            )
            self.pause(f"paused: {exc}")
            return
        except InDoubtError as exc:
            # The request went out and no answer came back: the provider may have the
            # messages. Never resend them blindly; show them as in doubt and pause.
            store.record_outcomes(
                [{"id": i.delivery_id, "status": IN_DOUBT, "error": str(exc)} for i in items],
                self.clock(),
            )
            self.pause(f"paused: {exc}")
            return
        except TransientError as exc:
            outcomes = [
                Outcome(i.envelope.key, TRANSIENT, error=str(exc), retry_after=exc.retry_after)
                for i in items
            ]
        except Exception as exc:  # noqa: BLE001 - a transport bug fails these rows, not all
            # Nobody can tell how far the call got, so never resend them blindly: they
            # are in doubt, and enough of them in a row pause the campaign.
            error = f"the transport failed unexpectedly ({_describe(exc)}); it may have sent it"
            log.exception("campaign %s: %s", self.campaign_id, error)
            outcomes = [Outcome(i.envelope.key, IN_DOUBT_OUTCOME, error=error) for i in items]
        done.append((self.outcome_rows(items, outcomes), outcomes))
        if any(o.status != SENT_OUTCOME for o in outcomes):
            # A failure may bounce an address or pause the campaign: act on it now,
            # not with the next claim.
            self._flush(store, done)


def send_campaign(
    store: Store,
    transport: Transport,
    mail: CampaignMail,
    clock: Clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[Progress], None] | None = None,
    policy: Policy | None = None,
    parts: PartsFactory | None = None,
) -> Progress:
    """Send the due rows of a campaign that is in the sending state.

    Stops between two messages when ``should_stop()`` is true, when the
    campaign is paused or cancelled by anyone, or when too many failures
    come in a row (the campaign is then paused with the reason). Call again
    to continue.
    """
    policy = policy or policy_for(mail.settings)
    campaign_id = mail.campaign["id"]
    if store.campaign_status(campaign_id) != "sending":
        raise StateError(f"campaign {campaign_id}: not in the sending state")
    lease = Lease(store.path, campaign_id)
    lease.acquire(store)
    run = _Run(store, transport, campaign_id, clock, policy, on_progress, lease.lost)
    try:
        run.progress.settled = settle_in_flight(store, transport, campaign_id, clock())
        shards = _shard_count(store, campaign_id, policy, clock()) if parts is not None else 1
        if shards > 1 and parts is not None:
            _send_sharded(store, run, parts, shards, should_stop)
        else:
            _read_and_send(store, mail, run, should_stop)
    except Exception as exc:  # noqa: BLE001 - whatever it was, the campaign must not stay sending
        # A send that cannot go on (threads or processes that cannot start, a bug)
        # pauses with the reason; left "sending", every scheduler tick would retry it.
        log.exception("campaign %s: the send stopped on an error", campaign_id)
        run.pause(f"paused: the send stopped on an error ({_describe(exc)}); resume to continue")
    finally:
        lease.release(store)
    progress = run.progress
    if progress.paused_reason:
        store.set_campaign_status(
            campaign_id, "paused", ("sending",), clock(), note=progress.paused_reason
        )
        progress.stopped = True
        log.warning("campaign %s: %s", campaign_id, progress.paused_reason)
        return progress
    counts = store.delivery_counts(campaign_id)
    if counts[PENDING] == counts[DEFERRED] == counts["sending"] == 0 and not progress.stopped:
        store.set_campaign_status(campaign_id, "sent", ("sending",), clock())
        progress.finished = True
    return progress


def _describe(exc: BaseException) -> str:
    """An exception as one line: its own message, or its kind when it has none."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, NewsletterError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (containers)
    except AttributeError:
        return os.cpu_count() or 1


def _shard_count(store: Store, campaign_id: int, policy: Policy, now: dt.datetime) -> int:
    """How many processes to send with: never more than connections (or whole messages
    per second, so each keeps a one-second window), and one for small sends."""
    wanted = min(policy.processes or _cores(), max(1, policy.concurrency))
    if policy.rate_per_second > 0:
        wanted = min(wanted, max(1, int(policy.rate_per_second)))
    if wanted <= 1:
        return 1
    return wanted if store.due_count(campaign_id, now) >= SHARD_MIN_ROWS else 1


def _send_sharded(
    store: Store, run: _Run, parts: PartsFactory, count: int, should_stop: Callable[[], bool]
) -> None:
    """Run one child per shard and add up what they report; stop them all on a stop."""
    policy = run.policy
    # Children keep the caller's notion of now (tests inject a clock) as an offset.
    offset = run.clock() - dt.datetime.now(dt.UTC)
    children: list[tuple[subprocess.Popen[bytes], Connection]] = []
    rate = policy.rate_per_second
    latest: list[Progress] = []
    stopping = False
    log.info("campaign %s: sending with %d processes", run.campaign_id, count)
    try:
        for index in range(count):
            # Whole shares: each child's limiter keeps an exact one-second window.
            share = replace(
                policy,
                concurrency=policy.concurrency // count + (index < policy.concurrency % count),
                rate_per_second=(int(rate) // count + (index < int(rate) % count)) if rate else 0,
            )
            children.append(_start_child((parts, Shard(index, count), share, offset, os.getpid())))
            latest.append(Progress())
        open_pipes: dict[Connection, int] = {
            receiver: n for n, (_, receiver) in enumerate(children)
        }
        while open_pipes:
            for receiver in wait(list(open_pipes), timeout=0.2):
                n = open_pipes[receiver]
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    # The child ended without its last word: stop the others too, unless
                    # it was our SIGTERM that came before the child could handle it.
                    del open_pipes[receiver]
                    code = children[n][0].wait()
                    if not (stopping and code == -signal.SIGTERM):
                        latest[n].paused_reason = latest[n].paused_reason or _died(code)
                    continue
                if kind == "error":
                    latest[n].paused_reason = f"paused: {payload}"
                    del open_pipes[receiver]
                    continue
                latest[n] = payload
                if kind == "done":
                    del open_pipes[receiver]
            total = Progress(settled=run.progress.settled)
            for progress in latest:
                total.add(progress)
            run.progress = total
            if run.on_progress:
                run.on_progress(total)
            if not stopping and (should_stop() or run.lost.is_set() or total.paused_reason):
                stopping = True
                if run.lost.is_set():
                    run.pause("paused: this sender lost its lease on the campaign")
                for child, _ in children:
                    child.terminate()  # SIGTERM: each stops after its message in flight
    except BaseException:
        for child, _ in children:
            child.terminate()
        raise
    finally:
        for child, receiver in children:
            child.wait()
            receiver.close()
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
    parts, shard, policy, offset, parent_pid = pickle.loads(sys.stdin.buffer.read())
    _die_with_parent(parent_pid)

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + offset

    last = 0.0

    def report(progress: Progress) -> None:
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
        run = _Run(store, transport, mail.campaign["id"], clock, policy, report, threading.Event())
        _read_and_send(store, mail, run, lambda: stop.is_set() or os.getppid() != parent_pid, shard)
        pipe.send(("done", run.progress))
    finally:
        transport.close()
        store.close()
        pipe.close()


def _read_and_send(
    store: Store,
    mail: CampaignMail,
    run: _Run,
    should_stop: Callable[[], bool],
    shard: Shard | None = None,
) -> None:
    """Read due rows in batches, render each message, and feed the workers."""
    campaign_id, clock, policy = run.campaign_id, run.clock, run.policy
    work: queue.Queue[_Item | None] = queue.Queue(
        maxsize=max(1, policy.concurrency) * max(1, run.transport.batch_size) * 2
    )
    workers: list[threading.Thread] = []
    sender = mail.settings.sender.from_address
    # Transports that send MIME bytes only need no Content fields built per message.
    fields = getattr(run.transport, "needs_fields", True)
    after, checked = 0, 0.0
    unbuilt = 0  # messages in a row that could not be built for an unforeseen reason
    try:
        for n in range(max(1, policy.concurrency)):
            thread = threading.Thread(
                target=run.worker, args=(work,), name=f"sender-{n}", daemon=True
            )
            thread.start()  # "can't start new thread" goes up, and the campaign pauses
            workers.append(thread)
        while not run.halt.is_set():
            rows = store.next_pending(campaign_id, after, BATCH, clock(), shard)
            if not rows:
                break
            for row in rows:
                after = row["id"]
                # The workers check the campaign's status before every claim, so a pause
                # or cancel from anywhere takes effect before the next message; here a
                # look every 0.2 s stops the reading early.
                if time.monotonic() - checked > 0.2:
                    checked = time.monotonic()
                    if store.campaign_status(campaign_id) != "sending":
                        run.halt.set()
                if should_stop():
                    run.halt.set()
                if run.halt.is_set():
                    run.progress.stopped = True
                    break
                if row["subscriber_status"] != "confirmed":
                    # Unsubscribed (or erased) since the campaign was planned: nothing goes
                    # out. (A later unsubscribe is caught when the row is claimed.)
                    store.finish_delivery(row["id"], SKIPPED, clock(), error="no longer subscribed")
                    with run.lock:
                        run.progress.skipped += 1
                    continue
                subscriber = {**row, "id": row["subscriber_id"], "status": "confirmed"}
                key = delivery_key.build(campaign_id, row["id"])
                try:
                    msg_id, envelope = mail.envelope(
                        subscriber, key, clock(), sender, fields=fields
                    )
                except Exception as exc:  # noqa: BLE001 - one subscriber's failure is theirs
                    # One subscriber's data cannot make a message (it breaks the template,
                    # a line break in the name): fail that row, say why, go on with the
                    # others. Nothing was sent, so `campaign retry` can try it again.
                    reason = _describe(exc)
                    store.finish_delivery(row["id"], FAILED, clock(), error=reason)
                    with run.lock:
                        run.progress.failed += 1
                    log.error("campaign %s: delivery %s failed: %s", campaign_id, row["id"], reason)
                    if not isinstance(exc, NewsletterError):
                        # A failure nobody foresaw, again and again, is not about one
                        # subscriber: stop before it fails the whole list.
                        unbuilt += 1
                        if unbuilt >= policy.pause_after:
                            run.pause(
                                f"paused after {unbuilt} messages in a row could not be "
                                f"built; last: {reason}"
                            )
                    continue
                unbuilt = 0
                work.put(_Item(row["id"], subscriber["id"], row["attempts"], msg_id, envelope))
    finally:
        if sys.exc_info()[0] is not None:
            run.halt.set()  # Ctrl-C or a crash of the reader: send nothing more
        for _ in workers:  # only the started ones: nobody else would take a sentinel
            work.put(None)
        for thread in workers:
            thread.join()
