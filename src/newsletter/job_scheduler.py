"""APScheduler wiring only: the jobs are the same functions the CLI calls.

The jobs live in APScheduler's SQLAlchemyJobStore, in the workspace's own
database, under fixed ids:

- ``poll``: fetch the sources (and make the instant campaign) every ``poll_interval``;
- ``due``: every 15 s, the digest whose time has come, due welcome steps, and
  every campaign due or still sending (the safety net for everything below);
- ``digest``: the digest's cron rule in the workspace zone (digest mode);
- ``campaign-ID``: each scheduled campaign, at its time;
- ``purge-events``: daily, raw events older than ``[tracking] retention_days``.

A persisted job can only name an importable function and carry picklable
arguments, so each job carries the workspace path and looks up the
workspace this process opened. Whether a due time runs is decided by the
job functions against the database (``timerules.verdict``), not by the job
store: every job is safe to run twice, from two processes, or late.
A ``sync`` job (in memory, not persisted) keeps the stored jobs in step with
the database every 15 s, so a campaign scheduled from the CLI is picked up.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from newsletter import jobs, timerules
from newsletter.workspace import Workspace

log = logging.getLogger("newsletter")
DUE_SECONDS = 15

# The workspace and stop flag of each running scheduler, by workspace path: what the
# persisted jobs (which carry only the path) need to find them.
_RUNNING: dict[str, tuple[Workspace, threading.Event]] = {}
_SYNCING: dict[int, threading.Lock] = {}  # per scheduler: held while its sync job runs


class SharedJobStore(SQLAlchemyJobStore):
    """The SQLAlchemy job store, for a database another ``newsletter run`` may share.

    The other process may have run and removed a one-off job, or replaced a
    job, a moment before this one does the same; that is not an error
    (APScheduler's thread would otherwise stop on it). The job functions
    themselves make a second run harmless.
    """

    def start(self, scheduler: BaseScheduler, alias: str) -> None:
        # Two processes starting at once may both try to create the table.
        for attempt in range(3):
            try:
                super().start(scheduler, alias)
                return
            except OperationalError as exc:
                if "already exists" not in str(exc) or attempt == 2:
                    raise

    # A database busy for longer than the timeout (a long import, another process's
    # big transaction) must not end APScheduler's thread: the main loop does not catch
    # these, and the web server would go on while nothing is polled or sent again.
    # The next wake-up tries again; the job functions make a repeat harmless.

    def update_job(self, job: Job) -> None:
        try:
            super().update_job(job)
        except JobLookupError:
            pass
        except OperationalError:
            log.warning("job store busy; job %s is updated on the next wake-up", job.id)

    def remove_job(self, job_id: str) -> None:
        try:
            super().remove_job(job_id)
        except JobLookupError:
            pass
        except OperationalError:
            log.warning("job store busy; job %s is removed on the next wake-up", job_id)

    def get_due_jobs(self, now: dt.datetime) -> list[Job]:
        try:
            return super().get_due_jobs(now)
        except OperationalError:
            log.warning("job store busy; due jobs are looked up again shortly")
            return []

    def get_next_run_time(self) -> dt.datetime | None:
        try:
            return super().get_next_run_time()
        except OperationalError:
            # Wake up soon and look again rather than sleep until an unknown time.
            return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=DUE_SECONDS)


def job_store(db_path: Path) -> SharedJobStore:
    engine = create_engine(f"sqlite:///{db_path}", connect_args={"timeout": 30})
    return SharedJobStore(engine=engine, tablename="apscheduler_jobs")


# -- the persisted jobs: importable functions with the workspace path as argument ------


def _run(root: str, name: str, work: Callable[[Workspace, Callable[[], bool]], None]) -> None:
    ws, stop = _RUNNING.get(root) or (Workspace.open(Path(root)), threading.Event())
    try:
        work(ws, stop.is_set)
    except Exception:  # noqa: BLE001 - a failed run is logged; the next one tries again
        log.exception("%s job failed", name)


def poll_job(root: str) -> None:
    def work(ws: Workspace, should_stop: Callable[[], bool]) -> None:
        jobs.poll(ws)
        jobs.send_due(ws, should_stop=should_stop)

    _run(root, "poll", work)


def due_job(root: str) -> None:
    _run(root, "due", lambda ws, should_stop: jobs.run_schedule(ws, should_stop=should_stop))


def digest_job(root: str) -> None:
    _run(root, "digest", lambda ws, should_stop: jobs.run_schedule(ws, should_stop=should_stop))


def purge_job(root: str) -> None:
    _run(root, "purge-events", lambda ws, should_stop: jobs.purge_old_events(ws))


def campaign_job(root: str, campaign_id: int) -> None:
    _run(
        root,
        f"campaign-{campaign_id}",
        lambda ws, should_stop: jobs.send_due(ws, should_stop=should_stop, campaign_id=campaign_id),
    )


# -- keeping the stored jobs in step with the database ----------------------------------


def _ensure(
    scheduler: BackgroundScheduler,
    job_id: str,
    func: Callable[..., None],
    trigger: BaseTrigger,
    args: list,
    same: Callable[[Job], bool],
    next_run_time: dt.datetime | None = None,
) -> None:
    """Add or replace a stored job unless it is already the same (keeping its next run)."""
    existing = scheduler.get_job(job_id, jobstore="default")
    if existing is not None and next_run_time is None and same(existing):
        return
    extra = {"next_run_time": next_run_time} if next_run_time is not None else {}
    scheduler.add_job(
        func, trigger, id=job_id, args=args, jobstore="default", replace_existing=True, **extra
    )


def _runs_at(when: dt.datetime, job: Job) -> bool:
    return bool(job.trigger.run_date == when)


def sync_jobs(
    scheduler: BackgroundScheduler, ws: Workspace, now: dt.datetime, startup: bool = False
) -> None:
    """Make the stored jobs match the settings and the scheduled campaigns."""
    root = str(ws.root)
    s = ws.settings.schedule
    poll_every = dt.timedelta(seconds=s.poll_interval)
    # At startup the recurring jobs run at once: the first poll, and a look for what
    # came due (or was left sending) while no scheduler ran.
    first = now if startup else None
    _ensure(
        scheduler,
        "poll",
        poll_job,
        IntervalTrigger(seconds=s.poll_interval, timezone=dt.UTC),
        [root],
        lambda job: job.trigger.interval == poll_every,
        first,
    )
    _ensure(
        scheduler,
        "due",
        due_job,
        IntervalTrigger(seconds=DUE_SECONDS, timezone=dt.UTC),
        [root],
        lambda job: job.trigger.interval == dt.timedelta(seconds=DUE_SECONDS),
        first,
    )
    _ensure(
        scheduler,
        "purge-events",
        purge_job,
        IntervalTrigger(hours=24, timezone=dt.UTC),
        [root],
        lambda job: job.trigger.interval == dt.timedelta(hours=24),
        first,
    )
    if s.mode == "digest":
        trigger = timerules.cron_trigger(s.digest_cron, s.timezone)
        _ensure(
            scheduler,
            "digest",
            digest_job,
            trigger,
            [root],
            lambda j: str(j.trigger) == str(trigger),
        )
    elif scheduler.get_job("digest", jobstore="default") is not None:
        scheduler.remove_job("digest", jobstore="default")
    store = ws.open_store()
    try:
        wanted = {}
        for c in store.scheduled_campaigns():
            when = dt.datetime.fromisoformat(c["scheduled_at"])
            if when > now:  # a due one is the due job's, at once
                wanted[f"campaign-{c['id']}"] = (c["id"], when)
    finally:
        store.close()
    for job in scheduler.get_jobs(jobstore="default"):
        if job.id.startswith("campaign-") and job.id not in wanted:
            if job.next_run_time is None or job.next_run_time > now:
                scheduler.remove_job(job.id, jobstore="default")
    for job_id, (campaign_id, when) in wanted.items():
        _ensure(
            scheduler,
            job_id,
            campaign_job,
            DateTrigger(run_date=when, timezone=dt.UTC),
            [root, campaign_id],
            functools.partial(_runs_at, when),
        )


def build_scheduler(ws: Workspace, stop: threading.Event) -> BackgroundScheduler:
    """A scheduler on the workspace database's job store; ``start`` runs it."""
    db_path = ws.path(ws.settings.database.path)
    scheduler = BackgroundScheduler(
        timezone=dt.UTC,
        jobstores={"default": job_store(db_path), "memory": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": ws.settings.schedule.misfire_grace_time,
        },
    )

    def on_missed(event: JobExecutionEvent) -> None:
        # The job functions decide for themselves, and report and record what they
        # skip (see jobs.report_missed); this only notes what APScheduler dropped.
        if event.job_id.startswith(("campaign-", "digest")):
            log.info(
                "job %s due %s was not run: missed by more than the grace window",
                event.job_id,
                event.scheduled_run_time.astimezone(dt.UTC).isoformat(timespec="seconds"),
            )

    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)
    _RUNNING[str(ws.root)] = (ws, stop)
    return scheduler


def start(
    ws: Workspace, stop: threading.Event, clock: Callable[[], dt.datetime] = jobs.utc_now
) -> BackgroundScheduler:
    """Build and start the scheduler with its stored jobs brought up to date."""
    # The schema first: a migration may drop stored jobs the job store could not load
    # (m012: jobs stored under the module's old name).
    ws.open_store().close()
    scheduler = build_scheduler(ws, stop)
    # Paused first: the job store opens (and creates its table) on start, and the
    # jobs are brought in step before any of them runs.
    scheduler.start(paused=True)
    sync_jobs(scheduler, ws, clock(), startup=True)
    syncing = _SYNCING.setdefault(id(scheduler), threading.Lock())

    def sync() -> None:
        # Shutdown holds APScheduler's job store lock while it waits for running
        # jobs; a sync that needs that lock must not be running then (see stop).
        with syncing:
            if stop.is_set():
                return
            try:
                sync_jobs(scheduler, ws, clock())
            except Exception:  # noqa: BLE001
                log.exception("sync job failed")

    scheduler.add_job(
        sync, IntervalTrigger(seconds=DUE_SECONDS, timezone=dt.UTC), id="sync", jobstore="memory"
    )
    scheduler.resume()
    return scheduler


def stop_scheduler(ws: Workspace, scheduler: BackgroundScheduler) -> None:
    """Ask running jobs to stop between two messages, wait for them, and shut down."""
    entry = _RUNNING.get(str(ws.root))
    if entry is not None:
        entry[1].set()
    # Wait out a sync in progress (it would need the lock shutdown holds); later
    # ones see the stop flag and return at once.
    with _SYNCING.pop(id(scheduler), threading.Lock()):
        pass
    scheduler.shutdown(wait=True)
    # Only now: jobs still queued at shutdown find the stop flag through this entry.
    _RUNNING.pop(str(ws.root), None)
