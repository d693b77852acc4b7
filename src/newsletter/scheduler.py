"""APScheduler wiring only: the jobs are the same functions the CLI calls."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from newsletter import jobs
from newsletter.workspace import Workspace

log = logging.getLogger("newsletter")
SEND_CHECK_SECONDS = 15


def build_scheduler(ws: Workspace, stop: threading.Event) -> BackgroundScheduler:
    """Poll the sources every ``poll_interval`` and send due campaigns; first poll at once."""
    scheduler = BackgroundScheduler(
        timezone=dt.UTC,
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )

    def poll_and_send() -> None:
        try:
            jobs.poll(ws)
            jobs.send_due(ws, should_stop=stop.is_set)
        except Exception:  # noqa: BLE001 - a failed run is logged; the next one tries again
            log.exception("poll job failed")

    def send_due() -> None:
        try:
            jobs.send_due(ws, should_stop=stop.is_set)
        except Exception:  # noqa: BLE001
            log.exception("send job failed")

    now = dt.datetime.now(dt.UTC)
    scheduler.add_job(
        poll_and_send,
        "interval",
        id="poll",
        seconds=ws.settings.schedule.poll_interval,
        next_run_time=now,
    )
    scheduler.add_job(
        send_due,
        "interval",
        id="send-due",
        seconds=SEND_CHECK_SECONDS,
        next_run_time=now + dt.timedelta(seconds=SEND_CHECK_SECONDS),
    )
    scheduler.add_job(jobs.purge_old_events, "interval", id="purge-events", hours=24, args=[ws])
    return scheduler
