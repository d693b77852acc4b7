"""The send loop: read due rows, build each message, claim, send, record.

Record intent, send, record outcome: each row is committed as ``sending``
before the provider call and as ``sent``, ``failed`` or ``deferred`` after
it, so a crash can leave at most one batch per connection in flight. A row
still ``sending`` when a sender starts was in flight at a crash; it is
settled by asking the transport (``was_sent``) and, where the transport
cannot tell, marked ``in_doubt`` — shown to staff, never resent blindly.

The main thread reads due rows in batches (flat memory) and builds each
message. Over SMTP (or any transport with one connection) it sends them
itself: it hands a message over up to its final dot, builds the next while
the server takes it in, and reads the answer when that connection is needed
again or the next claim is due. Email APIs, which take batches and answer in
one call, get ``concurrency`` worker threads fed through a small queue;
each claims, sends and records its own batch over the shared transport.

Invariants:
- At most one batch per connection (or worker) is in flight; its outcome is
  recorded before, or in the same transaction as, the next claim.
- Every claim reads the campaign's status, so a pause or cancel from
  anywhere takes effect before the next message.
- One subscriber's failure (a message that cannot be built, a bounce) fails
  that row alone; failures in a row that point beyond one address pause the
  campaign with the reason.
- Ctrl-C sends nothing more, and what was handed over is finished and
  recorded before KeyboardInterrupt goes up.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from newsletter import delivery_key
from newsletter.clock import Clock
from newsletter.delivery.ledger import (
    Batch,
    EnvelopeSender,
    Item,
    Policy,
    SendProgress,
    Streak,
    outcome_rows,
    settled_row,
    unsent_rows,
)
from newsletter.errors import InDoubtError, NewsletterError, PermanentError, TransientError
from newsletter.mail import CampaignMail
from newsletter.status import CampaignStatus, DeliveryStatus, SubscriberStatus
from newsletter.store import Store
from newsletter.transports import IN_DOUBT as IN_DOUBT_OUTCOME
from newsletter.transports import (
    REJECTED,
    TRANSIENT,
    Envelope,
    InFlight,
    Outcome,
    Pipelining,
    Transport,
    outcomes_one_by_one,
)
from newsletter.transports import SENT as SENT_OUTCOME

log = logging.getLogger(__name__)
BATCH = 500  # rows read from the database at a time


@dataclass(frozen=True)
class Shard:
    """The rows one sending process takes: those whose id % count == index."""

    index: int
    count: int


class SendRate:
    """The sending rate limit: at most ``rate`` messages start in any one-second window.

    A sliding window of the last ``rate`` start times: a caller waits only
    as long as it takes the oldest of them to leave the window, so a burst
    is smoothed without ever stalling the whole second.
    """

    def __init__(
        self,
        rate: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
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


def settle_in_flight(
    store: Store, transport: Transport, campaign_id: int, now: dt.datetime
) -> dict[str, int]:
    """Resolve rows left 'sending' by a sender that stopped mid-call."""
    counts: dict[str, int] = {
        DeliveryStatus.SENT: 0,
        DeliveryStatus.PENDING: 0,
        DeliveryStatus.IN_DOUBT: 0,
    }
    for row in store.in_flight(campaign_id):
        verdict = transport.was_sent(delivery_key.build(campaign_id, row["id"]))
        status, error = settled_row(verdict)
        store.finish_delivery(row["id"], status, now, error=error)
        counts[status] += 1
    return counts


class _SendRun:
    """State shared by the reader and the workers of one send."""

    def __init__(
        self,
        store: Store,
        transport: Transport,
        campaign_id: int,
        clock: Clock,
        policy: Policy,
        sender: EnvelopeSender,
        on_progress: Callable[[SendProgress], None] | None,
        lost: threading.Event,
    ):
        self.db_path = store.path
        self.transport = transport
        self.campaign_id = campaign_id
        self.clock = clock
        self.policy = policy
        self.sender = sender
        self.on_progress = on_progress
        self.lost = lost  # set when the lease on the campaign is lost
        self.halt = threading.Event()  # set when the campaign must stop (pause, errors)
        # A halt (a stop, a pause) ends the limiter's wait.
        self.limiter = SendRate(policy.rate_per_second, sleep=self._nap)
        # The transport as one that reads answers later, if it is one: checked here
        # once, not per message (a protocol check looks its attributes up each time).
        self.pipelining = transport if isinstance(transport, Pipelining) else None
        # Messages in flight at once: one per connection of this process.
        self.connections = max(1, policy.concurrency)
        if self.pipelining is not None:
            self.connections = min(self.connections, max(1, self.pipelining.connections))
        self.progress = SendProgress()
        self.lock = threading.Lock()
        self.streak = Streak()  # failures in a row, across all workers

    def _nap(self, seconds: float) -> None:
        """Sleep, in short steps that end once the send halts. Not ``halt.wait``: a
        timed wait on a condition can overshoot by far where the clock is shifted
        (libfaketime, in the date-shifted test runs); a plain sleep does not."""
        end = time.monotonic() + seconds
        while not self.halt.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def pause(self, reason: str) -> None:
        with self.lock:
            if self.progress.paused_reason is None:
                self.progress.paused_reason = reason
        self.halt.set()

    def account(self, batch: Batch) -> None:
        """Count a recorded batch; pause after too many failures in a row."""
        with self.lock:
            self.progress.sent += batch.sent
            self.progress.deferred += batch.deferred
            self.progress.failed += batch.failed
            self.streak = streak = self.streak.after(batch.outcomes)
            if self.on_progress:
                self.on_progress(self.progress)
        reason = streak.pause_reason(self.policy)
        if reason:
            self.pause(reason)

    def worker(self, work: queue.Queue[Item | None]) -> None:
        store = Store(self.db_path)
        # The outcome of this worker's last batch, when the next item was already
        # waiting: it is recorded in the same transaction as the next claim.
        done: list[Batch] = []
        try:
            while True:
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    self._flush(store, done)  # nothing to share a commit with
                    item = work.get()
                if item is None:
                    return
                self.send_one(store, work, item, done)
        finally:
            try:
                self._flush(store, done)
            finally:
                store.close()

    def send_one(
        self,
        store: Store,
        work: queue.Queue[Item | None],
        item: Item,
        done: list[Batch],
        flying: Flying | None = None,
    ) -> None:
        """``_send``, where an error nobody foresaw pauses the campaign."""
        try:
            self._send(store, work, item, done, flying)
        except Exception as exc:  # noqa: BLE001 - stop the campaign, keep draining
            log.exception("campaign %s: sender failed", self.campaign_id)
            self.pause(f"paused: the sender failed ({exc})")

    def _flush(self, store: Store, done: list[Batch], flying: Flying | None = None) -> None:
        """Record every outcome not recorded yet, reading the answers still awaited first
        (all of them before any write, so a failing write leaves no answer unread)."""
        while flying:
            self._land(store, flying, done, act=False)
        while done:
            store.record_outcomes(done[0].rows, self.clock())
            self.account(done.pop(0))

    def _land(self, store: Store, flying: Flying, done: list[Batch], act: bool = True) -> None:
        """Read the answer to the oldest message in flight; its outcome joins ``done``
        (and a failure is acted on at once, unless ``act`` is false)."""
        item, started = flying.popleft()
        try:
            outcomes = outcomes_one_by_one(
                lambda _: started.finish(), [item.envelope], doubt_pauses=False
            )
        except PermanentError as exc:
            # Refused after the whole message went: it failed, and is never put back to
            # be sent again.
            outcomes = [Outcome(item.envelope.key, REJECTED, error=str(exc))]
        except Exception as exc:  # noqa: BLE001 - a transport bug fails this row, not all
            error = f"the transport failed unexpectedly ({_describe(exc)}); it may have sent it"
            log.exception("campaign %s: %s", self.campaign_id, error)
            outcomes = [Outcome(item.envelope.key, IN_DOUBT_OUTCOME, error=error)]
        if act:
            self._outcome(store, [item], outcomes, done)
        else:
            done.append(outcome_rows([item], outcomes, self.policy, self.clock()))

    def _outcome(
        self, store: Store, items: list[Item], outcomes: list[Outcome], done: list[Batch]
    ) -> None:
        done.append(outcome_rows(items, outcomes, self.policy, self.clock()))
        if any(o.status != SENT_OUTCOME for o in outcomes):
            # A failure may bounce an address or pause the campaign: act on it now,
            # not with the next claim.
            self._flush(store, done)

    def _send(
        self,
        store: Store,
        work: queue.Queue[Item | None],
        item: Item,
        done: list[Batch],
        flying: Flying | None = None,
    ) -> None:
        """Claim, send and record one batch: at most one batch per worker is in flight.

        ``done`` holds the previous batch's outcome, not yet recorded: the claim
        records it in its own transaction (before this batch goes out, as the
        ledger requires), and this batch's outcome is left there in its place.

        ``flying``: messages handed over whose answers are still to be read, one per
        connection at most (a pipelining transport, sent from one thread). The
        oldest is read before a claim would exceed that.
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
            self._flush(store, done, flying)
            return  # drain: a halted campaign sends nothing more
        if self.lost.is_set():
            self._flush(store, done, flying)
            self.pause("paused: this sender lost its lease on the campaign")
            return
        while flying and len(flying) >= self.connections:
            self._land(store, flying, done)
        self.limiter.acquire(len(items))  # cut short by a halt
        if self.halt.is_set():  # an answer paused the campaign, or a stop came meanwhile
            self._flush(store, done, flying)
            return
        claimed, skipped = store.claim_deliveries(
            [(i.delivery_id, i.message_id) for i in items],
            self.clock(),
            [row for batch in done for row in batch.rows],
        )
        while done:
            self.account(done.pop(0))
        if skipped:
            # Unsubscribed since the row was read (or taken off a list): not sent.
            with self.lock:
                self.progress.skipped += len(skipped)
        if (
            len(claimed) + len(skipped) < len(items)
            and store.campaign_status(self.campaign_id) != CampaignStatus.SENDING
        ):
            # Paused or cancelled from anywhere (the claim reads the status in its own
            # transaction): drain the queue, claim nothing more.
            with self.lock:
                self.progress.stopped = True
            self.halt.set()
        items = [i for i in items if i.delivery_id in claimed]
        if not items:
            return
        pipelining = self.pipelining
        if flying is None or pipelining is None:
            outcomes = self._call(store, items, self.transport.send_batch)
        else:
            started: list[InFlight] = []

            def start(envelope: Envelope) -> None:
                started.append(pipelining.start(envelope))

            outcomes = self._call(store, items, _one_by_one(start))
            if started and outcomes is not None and outcomes[0].status == SENT_OUTCOME:
                flying.append((items[0], started[0]))  # its answer is read later
                return
        if outcomes is not None:
            self._outcome(store, items, outcomes, done)

    def _call(
        self,
        store: Store,
        items: list[Item],
        call: Callable[[list[Envelope]], list[Outcome]],
    ) -> list[Outcome] | None:
        """What the transport says of these claimed items: their outcomes, or None when
        the campaign paused and the rows are recorded already."""
        try:
            outcomes = call([i.envelope for i in items])
        except PermanentError as exc:
            # Nothing can go (a refused login, a bad API key): pause the campaign and put
            # the rows back as they were, so resuming after the fix sends them.
            store.record_outcomes(
                unsent_rows(items, DeliveryStatus.PENDING, str(exc)), self.clock()
            )
            self.pause(f"paused: {exc}")
            return None
        except InDoubtError as exc:
            # The request went out and no answer came back: the provider may have the
            # messages. Never resend them blindly; show them as in doubt and pause.
            store.record_outcomes(
                unsent_rows(items, DeliveryStatus.IN_DOUBT, str(exc)), self.clock()
            )
            self.pause(f"paused: {exc}")
            return None
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
        return outcomes


# Messages handed to a pipelining transport, each with what reads its answer.
Flying = deque[tuple[Item, InFlight]]


def _one_by_one(
    send: Callable[[Envelope], str | None],
) -> Callable[[list[Envelope]], list[Outcome]]:
    """A call of one message at a time with the outcomes SMTP's ``send_batch`` gives: a
    connection dropped after the final dot leaves that one message in doubt."""
    return lambda envelopes: outcomes_one_by_one(send, envelopes, doubt_pauses=False)


def _describe(exc: BaseException) -> str:
    """An exception as one line: its own message, or its kind when it has none."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, NewsletterError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _CtrlC:
    """Ctrl-C while this thread itself talks to the provider: nothing more is sent, the
    messages in flight are finished and recorded, then KeyboardInterrupt goes up as
    usual. Interrupted part way, a message claimed would be left in doubt.

    Only in the main thread (where Python delivers SIGINT) and only where nobody
    else has taken SIGINT over.
    """

    def __init__(self, halt: threading.Event):
        self.halt = halt
        self.caught = False
        self.previous: Any = None

    def __enter__(self) -> _CtrlC:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self.previous = signal.signal(signal.SIGINT, self._caught)
        return self

    def _caught(self, signum: int, frame: object) -> None:
        if self.caught:
            # A second Ctrl-C: the user will not wait for the messages in flight.
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
            raise KeyboardInterrupt
        self.caught = True
        self.halt.set()

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.caught and kind is None:
            raise KeyboardInterrupt


def _read_and_send(
    store: Store,
    mail: CampaignMail,
    run: _SendRun,
    should_stop: Callable[[], bool],
    shard: Shard | None = None,
) -> None:
    """Read due rows in batches, build each message, and send it (or feed the workers)."""
    if _sends_itself(run):
        with _CtrlC(run.halt):
            _build_and_send(store, mail, run, should_stop, shard)
    else:
        _build_and_send(store, mail, run, should_stop, shard)


def _sends_itself(run: _SendRun) -> bool:
    """Whether the reading thread sends too, without worker threads: one connection, or
    a transport that reads its answers later (SMTP), one message a call.

    Handing each message from one thread to another (and the GIL back and forth)
    costs more than the overlap threads give; alone, the next message is built while
    the server takes in the last one, and each connection has at most one in flight.
    """
    return run.transport.batch_size <= 1 and (
        run.policy.concurrency <= 1 or run.pipelining is not None
    )


def _build_and_send(
    store: Store,
    mail: CampaignMail,
    run: _SendRun,
    should_stop: Callable[[], bool],
    shard: Shard | None = None,
) -> None:
    campaign_id, clock, policy = run.campaign_id, run.clock, run.policy
    work: queue.Queue[Item | None] = queue.Queue(
        maxsize=max(1, policy.concurrency) * max(1, run.transport.batch_size) * 2
    )
    workers: list[threading.Thread] = []
    alone = _sends_itself(run)
    flying: Flying | None = deque() if alone and run.pipelining is not None else None
    # Alone, each message is built before the one before it goes, so a DKIM helper
    # signs it meanwhile; ``done`` holds the outcome the next claim records.
    ahead: list[Item] = []
    done: list[Batch] = []
    sender = run.sender.envelope_from
    needs = run.transport.needs  # only the form of each message the transport reads is built
    after, checked = 0, 0.0
    unbuilt = 0  # messages in a row that could not be built for an unforeseen reason
    # One campaign context serves every subscriber: render it once and splice each
    # subscriber's values in, where the templates allow it (each compiled form is
    # checked against the full render on its first message).
    spliced = mail.templates.splice()
    # And its HTML part compiled once, for the transports that take MIME bytes: per
    # message only the values are encoded and joined.
    compiled = spliced and mail.compile_html(needs)
    text_compiled = spliced and not mail.text_reason
    if spliced:
        log.info(
            "campaign %s: rendering once and splicing per subscriber, %s, %s",
            campaign_id,
            "the HTML part compiled once"
            if compiled
            else f"the HTML part built per message ({mail.compile_reason})",
            "the text part compiled once"
            if not mail.text_reason
            else f"the text part built per message ({mail.text_reason})",
        )
    else:
        log.info(
            "campaign %s: rendering in full per subscriber (%s)",
            campaign_id,
            mail.templates.splice_reason,
        )
    try:
        for n in range(0 if alone else max(1, policy.concurrency)):
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
                    if store.campaign_status(campaign_id) != CampaignStatus.SENDING:
                        run.halt.set()
                if should_stop():
                    run.halt.set()
                if run.halt.is_set():
                    run.progress.stopped = True
                    break
                if row["subscriber_status"] != SubscriberStatus.CONFIRMED:
                    # Unsubscribed (or erased) since the campaign was planned: nothing goes
                    # out. (A later unsubscribe is caught when the row is claimed.)
                    store.finish_delivery(
                        row["id"], DeliveryStatus.SKIPPED, clock(), error="no longer subscribed"
                    )
                    with run.lock:
                        run.progress.skipped += 1
                    continue
                subscriber = {
                    **row,
                    "id": row["subscriber_id"],
                    "status": SubscriberStatus.CONFIRMED,
                }
                key = delivery_key.build(campaign_id, row["id"])
                try:
                    msg_id, envelope = mail.envelope(subscriber, key, clock(), sender, needs=needs)
                    # What can run while this message waits for a sender (a signature).
                    envelope = run.transport.prepare(envelope)
                except Exception as exc:  # noqa: BLE001 - one subscriber's failure is theirs
                    # One subscriber's data cannot make a message (it breaks the template,
                    # a line break in the name): fail that row, say why, go on with the
                    # others. Nothing was sent, so `campaign retry` can try it again.
                    reason = _describe(exc)
                    store.finish_delivery(row["id"], DeliveryStatus.FAILED, clock(), error=reason)
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
                item = Item(row["id"], subscriber["id"], row["attempts"], msg_id, envelope)
                if not alone:
                    work.put(item)
                    continue
                ahead.append(item)
                if len(ahead) > 1:
                    run.send_one(store, work, ahead.pop(0), done, flying)
        if alone and ahead:
            run.send_one(store, work, ahead.pop(0), done, flying)  # nothing once halted
    finally:
        if sys.exc_info()[0] is not None:
            run.halt.set()  # Ctrl-C or a crash of the reader: send nothing more
        if alone:
            run._flush(store, done, flying)
        for _ in workers:  # only the started ones: nobody else would take a sentinel
            work.put(None)
        for thread in workers:
            thread.join()
        if spliced and mail.templates.splice_reason:
            log.warning(
                "campaign %s: splicing stopped (%s); rendered in full from then on",
                campaign_id,
                mail.templates.splice_reason,
            )
        elif compiled and mail.compile_reason:
            log.warning(
                "campaign %s: compiled HTML stopped (%s); built in full from then on",
                campaign_id,
                mail.compile_reason,
            )
        if spliced and text_compiled and mail.text_reason:
            log.warning(
                "campaign %s: compiled text stopped (%s); built in full from then on",
                campaign_id,
                mail.text_reason,
            )
