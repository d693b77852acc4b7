"""One writer thread for tracking events, committing them in batches.

Request handlers only put events on a queue, so no request waits for
SQLite's write lock; ``close()`` drains the queue before it returns, so a
clean shutdown stores every event that was answered.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from newsletter.store import Store

log = logging.getLogger(__name__)
_STOP = object()


class EventWriter:
    def __init__(self, db_path: Path, batch_size: int = 1000):
        self.db_path = db_path
        self.batch_size = batch_size
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self.written = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
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
                self._write(store, batch)
        finally:
            store.close()

    def _write(self, store: Store, batch: list[dict[str, Any]]) -> None:
        # A locked database (a long campaign transaction) is waited out, not dropped.
        delay = 0.05
        while True:
            try:
                store.insert_events(batch)
                self.written += len(batch)
                return
            except Exception as exc:  # noqa: BLE001 - keep the events, report and retry
                log.error("event writer: cannot store %d events (%s); retrying", len(batch), exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
