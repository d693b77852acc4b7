"""One writer thread for tracking events: classify, apply the privacy settings, commit in batches.

Request handlers only put events on a queue, so no request waits for
SQLite's write lock or for classification; ``close()`` drains the queue
before it returns, so a clean shutdown stores every event that was answered.

Classification happens here, before anything is stored, because two of its
inputs are not kept: the full client address (stored truncated) and, in
anonymous mode, the subscriber (used to find the delivery time and the
message's other clicks, then dropped).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from newsletter import classify
from newsletter.rows import TrackingEvent
from newsletter.store import Store
from newsletter.tracking import truncate_ip

log = logging.getLogger(__name__)
_STOP = object()
_CACHE_LIMIT = 100_000
_YIELD_EVERY = 50


@dataclass(frozen=True)
class Privacy:
    truncate_ip: bool = True
    anonymous: bool = False


class Recorder:
    """Turns the events handlers queued into rows: classified, private, clicks with their views.

    A click on an article's link also counts as a view of that article; the
    view row is made here and shares the click's class.
    """

    def __init__(self, signals: classify.Signals, privacy: Privacy):
        self.signals = signals
        self.privacy = privacy
        self.bursts: classify.LinkBursts[TrackingEvent] = classify.LinkBursts(
            signals.all_links_seconds
        )
        self._sent_at: dict[tuple[int, int], datetime | None] = {}
        self._links: dict[int, int] = {}
        self._truncated: dict[str | None, str | None] = {}
        self._requests: dict[tuple[str, str, str | None, str | None], classify.Verdict | None] = {}
        self._last_stamp, self._last_time = "", datetime.min

    def _delivered(self, store: Store, campaign_id: int, subscriber_id: int) -> datetime | None:
        key = (campaign_id, subscriber_id)
        if key not in self._sent_at:
            if len(self._sent_at) > _CACHE_LIMIT:
                self._sent_at.clear()
            stamp = store.sent_at(campaign_id, subscriber_id)
            if stamp is None:
                return None  # not sent (yet): asked again next time
            self._sent_at[key] = datetime.fromisoformat(stamp)
        return self._sent_at[key]

    def _truncate(self, ip: str | None) -> str | None:
        if ip not in self._truncated:
            if len(self._truncated) > _CACHE_LIMIT:
                self._truncated.clear()
            self._truncated[ip] = truncate_ip(ip)
        return self._truncated[ip]

    def _link_count(self, store: Store, campaign_id: int) -> int:
        if campaign_id not in self._links:
            if len(self._links) > _CACHE_LIMIT:
                self._links.clear()
            self._links[campaign_id] = store.link_count(campaign_id)
        return self._links[campaign_id]

    def _time(self, stamp: str) -> datetime:
        # Events come in bursts within one second: parse each second once.
        if stamp != self._last_stamp:
            self._last_stamp, self._last_time = stamp, datetime.fromisoformat(stamp)
        return self._last_time

    def _classify(
        self, store: Store, event: TrackingEvent, campaign_id: int, subscriber_id: int
    ) -> datetime:
        """Set the event's class and reason; the same rules as ``classify.classify``."""
        at = self._time(event["at"])
        kind = event["kind"]
        # The request rules depend only on these four, which repeat a lot.
        key = (kind, event.get("method") or "GET", event.get("user_agent"), event.get("ip"))
        try:
            verdict = self._requests[key]
        except KeyError:
            if len(self._requests) > _CACHE_LIMIT:
                self._requests.clear()
            verdict = self._requests[key] = classify.request_verdict(self.signals, *key)
        if verdict is None:
            delivered = self._delivered(store, campaign_id, subscriber_id)
            verdict = (
                classify.timing_verdict(self.signals, kind, at, delivered) or classify.HUMAN_VERDICT
            )
        event["classification"] = verdict.classification
        event["reason"] = verdict.reason
        return at

    def _all_links(
        self, store: Store, click: TrackingEvent, message: tuple[int, int], at: datetime
    ) -> list[TrackingEvent]:
        """Mark the clicks of an "every link at once" burst; return the stored ones changed."""
        campaign_id = message[0]
        flagged = self.bursts.add(
            message,
            at.timestamp(),
            click.get("link_id") or 0,
            self._link_count(store, campaign_id),
            click,
        )
        changed = []
        reason = classify.all_links_reason(self.signals.all_links_seconds)
        for earlier in flagged:
            if earlier.get("classification") != classify.HUMAN:
                continue  # machine already, for a reason of its own
            for row in (earlier, earlier.get("_view")):
                if row is not None:
                    row["classification"] = classify.MACHINE
                    row["reason"] = reason
                    if "id" in row:
                        changed.append(row)
        return changed

    def prepare(
        self, store: Store, batch: list[TrackingEvent]
    ) -> tuple[list[TrackingEvent], list[TrackingEvent]]:
        """Return the rows to insert and the already stored rows whose class changed."""
        rows: list[TrackingEvent] = []
        changed: list[TrackingEvent] = []
        for number, event in enumerate(batch, 1):
            if not number % _YIELD_EVERY:
                # Let the request handlers run: this thread holds the GIL while it
                # classifies, and a large batch would otherwise delay their answers.
                time.sleep(0)
            kind = event["kind"]
            campaign_id, subscriber_id = event.get("campaign_id"), event.get("subscriber_id")
            # The (campaign, subscriber) of an event that was classified, else None.
            message: tuple[int, int] | None = None
            if kind in classify.KINDS and campaign_id is not None and subscriber_id is not None:
                try:
                    at = self._classify(store, event, campaign_id, subscriber_id)
                    message = (campaign_id, subscriber_id)
                except Exception as exc:  # noqa: BLE001 - store it unclassified, never lose it
                    log.error("event writer: cannot classify an event (%s)", exc)
            if self.privacy.truncate_ip:
                event["ip"] = self._truncate(event.get("ip"))
            rows.append(event)
            if kind == "click" and event.get("article_id") is not None:
                view: TrackingEvent = {**event, "kind": "view", "detail": "click"}
                event["_view"] = view
                rows.append(view)
            if message is not None and kind == "click":
                try:
                    changed.extend(self._all_links(store, event, message, at))
                except Exception as exc:  # noqa: BLE001
                    log.error("event writer: cannot check the message's other clicks (%s)", exc)
            if self.privacy.anonymous:
                for row in (event, event.get("_view")):
                    if row is not None:
                        row["subscriber_id"] = None
        return rows, changed


class EventWriter:
    def __init__(
        self,
        db_path: Path,
        batch_size: int = 1000,
        signals: classify.Signals | None = None,
        privacy: Privacy | None = None,
    ):
        self.db_path = db_path
        self.batch_size = batch_size
        self.recorder = Recorder(signals or classify.Signals(), privacy or Privacy())
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self.written = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, event: TrackingEvent) -> None:
        self._queue.put(event)

    def close(self) -> None:
        """Store everything queued so far, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _run(self) -> None:
        store = Store(self.db_path)
        try:
            stopping = False
            while not stopping:
                batch = [self._queue.get()]
                while len(batch) < self.batch_size:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if batch[-1] is _STOP or _STOP in batch:
                    stopping = True
                    batch = [e for e in batch if e is not _STOP]
                # While serving, a failing write is retried for as long as it takes; at
                # shutdown for half a minute, so a broken disk cannot hang the stop.
                self._write(store, batch, time.monotonic() + 30 if stopping else None)
        finally:
            store.close()

    def _write(
        self, store: Store, batch: list[TrackingEvent], deadline: float | None = None
    ) -> None:
        rows, changed = self.recorder.prepare(store, batch)
        # A locked database (a long campaign transaction) is waited out, not dropped.
        delay = 0.05
        while True:
            try:
                first = store.insert_events(
                    rows, [(r["classification"], r["reason"], r["id"]) for r in changed]
                )
                break
            except Exception as exc:  # noqa: BLE001 - keep the events, report and retry
                if deadline is not None and time.monotonic() > deadline:
                    log.error(
                        "event writer: %d events lost at shutdown: cannot store them (%s)",
                        len(rows),
                        exc,
                    )
                    return
                log.error("event writer: cannot store %d events (%s); retrying", len(rows), exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        if first is not None:
            # Clicks stay in the burst window with their ids, for a later reclassification.
            for offset, row in enumerate(rows):
                row["id"] = first + offset
        self.written += len(rows)
