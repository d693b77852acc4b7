"""The pipeline's jobs: what the scheduler runs and the CLI calls, the same functions for both.

Polling sources and subscriber files, test sends, preparing and sending due
campaigns (across processes when large), missed campaigns and event retention.
The automatic campaigns these jobs make (instant, digest, welcome steps) are
``automations.py``'s. Each job opens its own database connection, so jobs can
run in the scheduler's threads beside the web server without sharing one.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter import (
    campaigns,
    clock,
    delivery,
    delivery_key,
    subscribers,
    timerules,
)
from newsletter.automations import (
    create_instant_campaign,
    grace,
    make_digest,
    run_automations,
    zone_time_text,
)
from newsletter.errors import InputError, NewsletterError, StateError
from newsletter.mail import CampaignMail, design, load_mail
from newsletter.send_parts import shard_parts
from newsletter.status import CampaignStatus
from newsletter.store import Store
from newsletter.transports import Envelope, Transport
from newsletter.workspace import Workspace

if TYPE_CHECKING:
    from newsletter.sources.http import Fetcher

    # One source's outcome on one poll: counts, errors and warnings, one line each.
    from newsletter.sources.intake import SourceResult as FetchResult

log = logging.getLogger("newsletter")
Clock = clock.Clock


utc_now = clock.utcnow


def fetch_sources(
    ws: Workspace,
    store: Store,
    now: dt.datetime,
    *,
    fetcher: Fetcher | None = None,
    force: bool = False,
    wix_api_key: str | None = None,
) -> list[FetchResult]:
    """Pick up new and changed articles from every source; a broken source spoils no other.

    ``force`` tries feeds and pages that are backing off after failures (a
    fetch asked for by hand). One HTTP session serves every source of the call.
    """
    # Here, not at the top: feeds, pages and HTTP would load at every command's start-up.
    from newsletter.sources import intake

    own = fetcher is None
    if fetcher is None:
        fetcher = intake.make_fetcher(ws.settings.sources)
    if wix_api_key is None:
        wix_api_key = ws.secrets.wix_api_key
    results = []
    try:
        for spec in ws.settings.sources.specs():
            try:
                result = intake.run_source(
                    spec,
                    store,
                    fetcher,
                    now,
                    root=ws.root,
                    force=force,
                    wix_api_key=wix_api_key,
                    max_items=ws.settings.sources.max_items_per_feed,
                )
            except Exception as exc:  # one source's bug must not stop the others
                message = (
                    f"{spec.location}: unexpected error ({type(exc).__name__}: {exc}); "
                    f"the other sources were fetched"
                )
                # One line in the log; the traceback only when debugging. The
                # failure backs off like any other, so it is not retried (and
                # logged) on every poll.
                log.error("%s", message)
                log.debug("traceback of the error in source %s", spec.location, exc_info=True)
                result = intake.record_failure(spec, store, now, message)
            results.append(result)
    finally:
        if own:
            fetcher.close()
    return results


def import_subscriber_folder(
    ws: Workspace, store: Store, now: dt.datetime
) -> list[subscribers.ImportReport]:
    """Import every CSV in ``[subscribers] folder``; known addresses keep their status.

    A file that cannot be imported (no email column, unreadable, a bug) fails
    alone: its report says why in ``failed`` and the other files are imported,
    so one bad file does not stop the poll job on every poll.
    """
    directory = ws.path(ws.settings.subscribers.folder)
    if not directory.is_dir():
        return []
    reports = []
    for path in sorted(directory.glob("*.csv")):
        try:
            report = subscribers.import_file(
                store,
                path,
                now,
                confirmed=ws.settings.subscribers.import_confirmed,
                eai_refusal=ws.eai_refusal,
            )
        except NewsletterError as exc:
            # Nothing of the file was stored (one transaction per file).
            report = subscribers.ImportReport(
                str(path),
                failed=f"{exc}; nothing of this file was imported: fix or remove it "
                f"(the other files were imported)",
            )
        except Exception as exc:  # one file's bug must not stop the others
            log.debug("traceback of the error importing %s", path, exc_info=True)
            report = subscribers.ImportReport(
                str(path),
                failed=f"{path}: unexpected error ({type(exc).__name__}: {exc}); nothing "
                f"of this file was imported (the other files were imported)",
            )
        reports.append(report)
    return reports


def poll(ws: Workspace, clock: Clock = utc_now) -> None:
    """The poll job: fetch articles, import subscriber files, start an instant campaign."""
    store = ws.open_store()
    try:
        now = clock()
        for result in fetch_sources(ws, store, now):
            for error in result.errors:
                log.error("source %s: %s", result.source, error)
            for warning in result.warnings:
                log.warning("source %s: %s", result.source, warning)
            if result.skipped:
                log.info("source %s: %s", result.source, result.summary())
            elif any(result.counts[k] for k in ("new", "updated", "archived")):
                log.info("source %s: %s", result.source, result.summary())
        for report in import_subscriber_folder(ws, store, now):
            if report.failed:
                log.error("subscribers %s", report.failed)
                continue
            if report.added or report.problems:
                log.info("subscribers %s", report.line())
            for problem in report.problems:
                log.warning("subscribers %s", problem)
            if report.bad_rows > len(report.problems):
                more = report.bad_rows - len(report.problems)
                log.warning("subscribers %s: and %d more bad rows", report.name, more)
        if ws.settings.schedule.mode == "instant":
            campaign_id = create_instant_campaign(ws, store, now)
            if campaign_id is not None:
                campaign = store.campaign(campaign_id)
                log.info(
                    "campaign %d %r created from %d new articles%s",
                    campaign_id,
                    campaign["subject"],
                    len(campaign["article_ids"]),
                    " and held as a draft for approval"
                    if campaign["status"] == CampaignStatus.DRAFT
                    else "",
                )
    finally:
        store.close()


def campaign_mail(ws: Workspace, store: Store, campaign_id: int) -> CampaignMail:
    """The campaign's renderer with the workspace's templates, settings and signer."""
    campaign = store.campaign(campaign_id)
    return load_mail(store, campaign_id, ws.templates(design(campaign)), ws.settings, ws.signer)


def send_test(
    ws: Workspace, store: Store, campaign_id: int, to_address: str, now: dt.datetime
) -> str:
    """Send one untracked [TEST] copy of a campaign to any address; return the address.

    It is rendered with the first confirmed subscriber's data and is not
    counted in the campaign.
    """
    try:
        address = subscribers.normalize_email(to_address)
    except Exception as exc:  # noqa: BLE001 - any invalid input is the user's to fix
        raise InputError(f"--to: {to_address!r} is not a valid address ({exc})") from None
    mail = campaign_mail(ws, store, campaign_id)
    sample = dict(campaigns.sample_subscriber(store), id=0)
    key = delivery_key.for_test_send(campaign_id, now)
    data = mail.test_message(sample, address, key, now)
    transport = ws.transport()
    try:
        transport.send(Envelope(ws.settings.sender.from_address, address, data, key))
    finally:
        transport.close()
    return address


def config_warnings(ws: Workspace) -> list[str]:
    """Settings that work but will hurt, for `config check` (a key that cannot load raises)."""
    from newsletter.config import link_warnings, local_relay_warnings
    from newsletter.transports import dkim_warnings

    return (
        link_warnings(ws.settings)
        + local_relay_warnings(ws.settings)
        + dkim_warnings(ws.settings, ws.secrets, ws.root)
    )


def check_transport(ws: Workspace) -> str:
    """Try the configured transport without sending anything; return what was checked.

    SMTP: connect, STARTTLS or TLS and log in exactly as a send would, then
    hang up. Outbox: the folder can be written. Email APIs: the key is set;
    they are first reached by a send. Raises the transport's error otherwise.
    """
    transport = ws.transport()
    try:
        check = getattr(transport, "check", None)
        if check is not None:
            return check()
        return f"{transport.name}: configured; the provider is reached by the first send"
    finally:
        transport.close()


def prepare_send(
    ws: Workspace, store: Store, campaign_id: int, now: dt.datetime
) -> tuple[CampaignMail, Transport]:
    """Check everything a send needs, then start the campaign; return its renderer and transport.

    The transport is opened and the template rendered before the campaign
    changes state, so a bad setting or a broken template stops the send with
    the database as it was.
    """
    templates = ws.templates(design(store.campaign(campaign_id)))
    transport = ws.transport()
    try:
        # Loaded before the campaign starts, to find the links to register.
        before = load_mail(store, campaign_id, templates, ws.settings, ws.signer)
        links = before.trackable_links() if before.tracked else []
        campaigns.start(store, campaign_id, now)
        if links:
            store.register_links(campaign_id, links)
        # Loaded again, complete: with its links and (automatic campaigns) who gets
        # which articles, settled when the deliveries were planned.
        mail = load_mail(store, campaign_id, templates, ws.settings, ws.signer)
    except BaseException:
        transport.close()
        raise
    return mail, transport


def send_campaign(
    ws: Workspace,
    store: Store,
    campaign_id: int,
    clock: Clock = utc_now,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[delivery.SendProgress], None] | None = None,
) -> delivery.SendProgress:
    """Start (if needed) and send one campaign through the configured transport."""
    mail, transport = prepare_send(ws, store, campaign_id, clock())
    try:
        return send_prepared(ws, store, mail, transport, clock, should_stop, on_progress)
    finally:
        transport.close()


def send_prepared(
    ws: Workspace,
    store: Store,
    mail: CampaignMail,
    transport: Transport,
    clock: Clock = utc_now,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[delivery.SendProgress], None] | None = None,
) -> delivery.SendProgress:
    """Send a campaign that prepare_send started, sharing it across processes when large."""
    parts = functools.partial(shard_parts, ws.root, ws.settings, ws.secrets, mail.campaign["id"])
    return delivery.send_campaign(
        store,
        transport,
        mail,
        clock,
        should_stop,
        on_progress,
        policy=delivery.policy_for(ws.settings),
        sender=delivery.envelope_sender_for(ws.settings),
        parts=parts,
    )


def report_missed(ws: Workspace, store: Store, now: dt.datetime) -> list[int]:
    """Mark scheduled campaigns missed by more than the grace window; never send them.

    A person decides: reschedule, send by hand, or cancel. Each is
    reported once, by whichever scheduler saw it first.
    """
    missed = []
    for c in store.overdue_campaigns(now - grace(ws)):
        due = dt.datetime.fromisoformat(c["scheduled_at"])
        note = (
            f"missed: due {zone_time_text(ws, due)}, not started within the grace window "
            f"({timerules.late(due, now)} late); reschedule, send or cancel it"
        )
        if store.mark_missed(c["id"], now, note):
            log.warning("campaign %d: %s", c["id"], note)
            missed.append(c["id"])
    return missed


def send_due(
    ws: Workspace,
    clock: Clock = utc_now,
    should_stop: Callable[[], bool] = lambda: False,
    campaign_id: int | None = None,
) -> None:
    """The send job: start scheduled campaigns whose time has come and continue sending ones.

    A scheduled campaign is started when its time has come, or up to the
    grace window late; later than that it is reported as missed instead.
    ``campaign_id``: only that campaign.
    """
    store = ws.open_store()
    try:
        report_missed(ws, store, clock())
        now = clock()
        for due_id in store.due_campaigns(now, not_before=now - grace(ws)):
            if campaign_id is not None and due_id != campaign_id:
                continue
            if should_stop():
                return
            # The lease is wall-clock time, shared between processes: a campaign
            # another running sender holds is theirs to finish; one left by a
            # killed process is taken over now, not when its lease expires.
            if delivery.active_sender(store, due_id) is not None:
                continue
            try:
                progress = send_campaign(ws, store, due_id, clock, should_stop)
            except StateError as exc:
                # Its state changed under us (another scheduler started it, or staff
                # paused or cancelled it): nothing is stuck, so nothing is paused.
                log.info("campaign %d: %s; left to whoever changed it", due_id, exc)
                continue
            except NewsletterError as exc:
                if delivery.active_sender(store, due_id) is not None:
                    log.info("campaign %d: another sender took it", due_id)
                else:
                    pause_stuck(store, due_id, str(exc), clock())
                continue
            except sqlite3.Error as exc:
                # A busy or locked database passes: the next tick tries again.
                log.warning("campaign %d: database: %s; tried again shortly", due_id, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - one campaign's failure must not stop the others
                log.exception("campaign %d: the send failed; the other due campaigns go on", due_id)
                pause_stuck(store, due_id, f"{type(exc).__name__}: {exc}", clock())
                continue
            _log_progress(ws, store, due_id, progress)
    finally:
        store.close()


def pause_stuck(store: Store, campaign_id: int, reason: str, now: dt.datetime) -> None:
    """Pause a due campaign that could not be sent, with the reason, so the due job
    does not try it again every 15 seconds forever; a person resumes it after the fix."""
    note = f"paused: the send could not start ({reason}); fix it and resume"
    if store.set_campaign_status(
        campaign_id,
        CampaignStatus.PAUSED,
        (CampaignStatus.SENDING, CampaignStatus.SCHEDULED),
        now,
        note=note,
    ):
        log.error("campaign %d: %s", campaign_id, note)
    else:
        log.error("campaign %d: %s", campaign_id, reason)


def _log_progress(
    ws: Workspace, store: Store, campaign_id: int, progress: delivery.SendProgress
) -> None:
    where = ""
    if ws.settings.delivery.transport == "outbox":
        where = f" into {ws.path(ws.settings.delivery.outbox_dir)}"
    log.info(
        "campaign %d: delivered %d messages%s (%d failed, %d deferred, %d skipped)%s",
        campaign_id,
        progress.sent,
        where,
        progress.failed,
        progress.deferred,
        progress.skipped,
        "; finished" if progress.finished else "",
    )
    if progress.finished and not campaigns.campaign_recipients(store, campaign_id):
        note = "no recipients (the list or segment was empty): finished as sent to nobody"
        store.set_campaign_note(campaign_id, note)
        log.warning("campaign %d: %s", campaign_id, note)
    for status, count in progress.settled.items():
        if count:
            log.warning(
                "campaign %d: %d in-flight deliveries settled as %s",
                campaign_id,
                count,
                status,
            )


def run_schedule(
    ws: Workspace, clock: Clock = utc_now, should_stop: Callable[[], bool] = lambda: False
) -> None:
    """The due job: digests, welcome steps, then every campaign due now."""
    store = ws.open_store()
    try:
        make_digest(ws, store, clock())
        run_automations(ws, store, clock())
    finally:
        store.close()
    send_due(ws, clock, should_stop)


@dataclass(frozen=True)
class PurgeResult:
    before: dt.datetime
    deleted: int


def purge_events(
    ws: Workspace, store: Store, now: dt.datetime, days: int | None = None
) -> PurgeResult | None:
    """Delete raw opens, clicks and views older than ``days`` ([tracking] retention_days).

    Returns None when there is no retention period (0: events are kept).
    """
    days = ws.settings.tracking.retention_days if days is None else days
    if not days:
        return None
    before = now - dt.timedelta(days=days)
    return PurgeResult(before, store.purge_events(before))


def purge_old_events(ws: Workspace, clock: Clock = utc_now) -> None:
    """The retention job: purge with its own connection, and log what went."""
    store = ws.open_store()
    try:
        result = purge_events(ws, store, clock())
        if result is not None and result.deleted:
            log.info("events: deleted %d recorded before %s", result.deleted, result.before)
    finally:
        store.close()


def outbox_path(ws: Workspace) -> Path:
    return ws.path(ws.settings.delivery.outbox_dir)
