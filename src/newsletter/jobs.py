"""The pipeline's jobs: what the scheduler runs and the CLI calls, the same functions for both.

Each job opens its own database connection, so jobs can run in the
scheduler's threads beside the web server without sharing one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from newsletter import campaigns, delivery, subscribers
from newsletter.errors import NewsletterError
from newsletter.render import article_context, choose_template
from newsletter.sources import intake
from newsletter.sources.http import Fetcher
from newsletter.store import Store
from newsletter.transports import Transport
from newsletter.workspace import Workspace

log = logging.getLogger("newsletter")
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# One source's outcome on one poll: counts, errors and warnings, one line each.
FetchResult = intake.SourceResult


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
                    spec, store, fetcher, now, root=ws.root, force=force, wix_api_key=wix_api_key
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
    """Import every CSV in ``[subscribers] folder``; known addresses keep their status."""
    directory = ws.path(ws.settings.subscribers.folder)
    if not directory.is_dir():
        return []
    return [
        subscribers.import_file(
            store, path, now, confirmed=ws.settings.subscribers.import_confirmed
        )
        for path in sorted(directory.glob("*.csv"))
    ]


def create_instant_campaign(ws: Workspace, store: Store, now: dt.datetime) -> int | None:
    """In instant mode, make and start a campaign from the new articles, if there are any."""
    new = list(reversed(store.articles(only_new=True)))
    if not new:
        return None
    templates = ws.templates(choose_template(ws.settings.templates.default, len(new)))
    sender = ws.settings.sender
    subject = templates.subject(
        {
            "articles": [article_context(a) for a in new],
            "sender": {"name": sender.from_name, "address": sender.from_address},
            "campaign": {"subject": "", "preheader": ""},
        }
    )
    campaign_id = store.create_campaign(
        subject, "", templates.name, [a["id"] for a in new], None, ws.settings.tracking.enabled, now
    )
    campaigns.start(store, campaign_id, now)
    return campaign_id


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
            if report.added or report.problems:
                log.info("subscribers %s", report.line())
            for problem in report.problems:
                log.warning("subscribers %s", problem)
        if ws.settings.schedule.mode == "instant":
            campaign_id = create_instant_campaign(ws, store, now)
            if campaign_id is not None:
                campaign = store.campaign(campaign_id)
                log.info(
                    "campaign %d %r created for %d subscribers",
                    campaign_id,
                    campaign["subject"],
                    campaigns.campaign_recipients(store, campaign_id),
                )
    finally:
        store.close()


def prepare_send(
    ws: Workspace, store: Store, campaign_id: int, now: dt.datetime
) -> tuple[campaigns.CampaignMail, Transport]:
    """Check everything a send needs, then start the campaign; return its renderer and transport.

    The transport is opened and the template rendered before the campaign
    changes state, so a bad setting or a broken template stops the send with
    the database as it was.
    """
    campaign = store.campaign(campaign_id)
    templates = ws.templates(campaign["template"])
    transport = ws.transport()
    try:
        mail = campaigns.load_mail(store, campaign_id, templates, ws.settings, ws.signer)
        links = mail.trackable_links() if mail.tracked else []
        campaigns.start(store, campaign_id, now)
        if links:
            mail.link_ids = store.register_links(campaign_id, links)
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
    on_progress: Callable[[delivery.Progress], None] | None = None,
) -> delivery.Progress:
    """Start (if needed) and send one campaign through the configured transport."""
    mail, transport = prepare_send(ws, store, campaign_id, clock())
    try:
        return delivery.send_campaign(store, transport, mail, clock, should_stop, on_progress)
    finally:
        transport.close()


def send_due(
    ws: Workspace, clock: Clock = utc_now, should_stop: Callable[[], bool] = lambda: False
) -> None:
    """The send job: start scheduled campaigns whose time has come and continue sending ones."""
    store = ws.open_store()
    try:
        for campaign_id in store.due_campaigns(clock()):
            if should_stop():
                return
            try:
                progress = send_campaign(ws, store, campaign_id, clock, should_stop)
            except NewsletterError as exc:
                log.error("campaign %d: %s", campaign_id, exc)
                continue
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
            for status, count in progress.settled.items():
                if count:
                    log.warning(
                        "campaign %d: %d in-flight deliveries settled as %s",
                        campaign_id,
                        count,
                        status,
                    )
    finally:
        store.close()


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
