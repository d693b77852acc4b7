"""The pipeline's jobs: what the scheduler runs and the CLI calls, the same functions for both.

Each job opens its own database connection, so jobs can run in the
scheduler's threads beside the web server without sharing one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from newsletter import campaigns, config, delivery, subscribers
from newsletter.config import Secrets
from newsletter.errors import InputError, NewsletterError
from newsletter.render import article_context, choose_template
from newsletter.sources import intake
from newsletter.sources.http import Fetcher
from newsletter.store import Store
from newsletter.transports import Envelope, Transport
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


def campaign_mail(ws: Workspace, store: Store, campaign_id: int) -> campaigns.CampaignMail:
    """The campaign's renderer with the workspace's templates, settings and signer."""
    campaign = store.campaign(campaign_id)
    return campaigns.load_mail(
        store, campaign_id, ws.templates(campaign["template"]), ws.settings, ws.signer
    )


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
    key = f"test-c{campaign_id}-{now:%Y%m%d%H%M%S%f}"
    data = mail.test_message(sample, address, key, now)
    transport = ws.transport()
    try:
        transport.send(Envelope(ws.settings.sender.from_address, address, data, key))
    finally:
        transport.close()
    return address


def check_transport(ws: Workspace) -> str:
    """Try the configured transport without sending anything; return what was checked.

    SMTP: connect, STARTTLS or TLS and log in exactly as a send would, then
    hang up. Outbox: the folder can be written. Email APIs: the key is set;
    they are first reached by a send. Raises the transport's error otherwise.
    """
    from newsletter.transports.smtp import SmtpTransport

    transport = ws.transport()
    try:
        name = ws.settings.delivery.transport
        if isinstance(transport, SmtpTransport):
            # The pool's own connect, so the check uses what a send uses.
            transport._discard(transport._connect())
            smtp = ws.settings.smtp
            return f"smtp {smtp.host}:{smtp.port}: connected ({smtp.security}) and hung up"
        if name == "outbox":
            folder = outbox_path(ws)
            probe = folder / ".write-test"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe.write_text("")
                probe.unlink()
            except OSError as exc:
                raise InputError(
                    f"delivery.outbox_dir: cannot write to {folder} ({exc.strerror})"
                ) from None
            return f"outbox {folder}: writable"
        return f"{name}: configured; the provider is reached by the first send"
    finally:
        transport.close()


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
        return send_prepared(ws, store, mail, transport, clock, should_stop, on_progress)
    finally:
        transport.close()


def send_prepared(
    ws: Workspace,
    store: Store,
    mail: campaigns.CampaignMail,
    transport: Transport,
    clock: Clock = utc_now,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[delivery.Progress], None] | None = None,
) -> delivery.Progress:
    """Send a campaign that prepare_send started, sharing it across processes when large."""
    parts = functools.partial(shard_parts, ws.root, ws.settings, ws.secrets, mail.campaign["id"])
    return delivery.send_campaign(
        store, transport, mail, clock, should_stop, on_progress, parts=parts
    )


def shard_parts(
    root: Path, settings: config.Settings, secrets: Secrets, campaign_id: int, connections: int
) -> tuple[Store, campaigns.CampaignMail, Transport]:
    """What a sending child process needs, built anew in that process from picklable parts."""
    settings = dataclasses.replace(
        settings, delivery=dataclasses.replace(settings.delivery, concurrency=connections)
    )
    ws = Workspace(root, settings, secrets, [])
    store = ws.open_store()
    campaign = store.campaign(campaign_id)
    mail = campaigns.load_mail(
        store, campaign_id, ws.templates(campaign["template"]), settings, ws.signer
    )
    if mail.tracked:
        mail.link_ids = store.links(campaign_id)  # registered by the parent before it began
    return store, mail, ws.transport()


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


def outbox_path(ws: Workspace) -> Path:
    return ws.path(ws.settings.delivery.outbox_dir)
