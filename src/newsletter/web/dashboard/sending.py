"""Send now from the dashboard: the scheduler's send job, run in a thread of its own.

The request only starts the thread and returns; the page then polls the
ledger for progress. A second sender on the same campaign (the scheduler,
the CLI) is kept out by the send lease, so a click during a scheduled run
cannot send anything twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from newsletter import delivery, jobs
from newsletter.errors import NewsletterError
from newsletter.workspace import Workspace

log = logging.getLogger("newsletter")


class BackgroundSender:
    def __init__(self, ws: Workspace, clock: Callable[[], dt.datetime]):
        self.ws, self.clock = ws, clock
        self._threads: dict[int, threading.Thread] = {}
        self._errors: dict[int, str] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def start(self, campaign_id: int) -> bool:
        """Start sending in the background; False if this process is sending it already."""
        with self._lock:
            running = self._threads.get(campaign_id)
            if running is not None and running.is_alive():
                return False
            self._errors.pop(campaign_id, None)
            thread = threading.Thread(
                target=self._run, args=(campaign_id,), name=f"send-c{campaign_id}", daemon=True
            )
            self._threads[campaign_id] = thread
            thread.start()
            return True

    def running(self, campaign_id: int) -> bool:
        thread = self._threads.get(campaign_id)
        return thread is not None and thread.is_alive()

    def error(self, campaign_id: int) -> str | None:
        return self._errors.get(campaign_id)

    def _run(self, campaign_id: int) -> None:
        store = self.ws.open_store()
        try:
            progress = jobs.send_campaign(
                self.ws, store, campaign_id, self.clock, should_stop=self._stop.is_set
            )
            log.info(
                "campaign %d: %d sent, %d failed, %d deferred from the dashboard%s",
                campaign_id,
                progress.sent,
                progress.failed,
                progress.deferred,
                "; finished" if progress.finished else "",
            )
        except NewsletterError as exc:
            if delivery.active_sender(store, campaign_id) is not None:
                # The scheduler (or the CLI) is sending it: not an error, it goes on there.
                log.info("campaign %d: already being sent by another sender", campaign_id)
                return
            self._errors[campaign_id] = str(exc)
            log.error("campaign %d: %s", campaign_id, exc)
        except Exception as exc:  # noqa: BLE001 - shown on the page instead of lost in a thread
            self._errors[campaign_id] = f"unexpected error ({type(exc).__name__}: {exc})"
            log.exception("campaign %d: send from the dashboard failed", campaign_id)
        finally:
            store.close()

    def close(self) -> None:
        """Stop sending (the ledger lets the next run continue) and wait for the threads."""
        self._stop.set()
        for thread in list(self._threads.values()):
            thread.join(timeout=60)
