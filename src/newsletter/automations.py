"""The campaigns nobody writes: the instant campaign, the digest and the welcome steps.

What the poll and due jobs (``jobs.py``) run to make automatic campaigns, each
due time handled once however many schedulers run; they are then sent like any
other campaign. Also the schedule's grace window, which decides when a due time
(or a scheduled campaign) counts as missed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, cast

from newsletter import consent, timerules
from newsletter.errors import NewsletterError
from newsletter.render import article_context, choose_template
from newsletter.rows import Article
from newsletter.status import StepStatus, SubscriberStatus
from newsletter.store import Store
from newsletter.transports import Transport
from newsletter.workspace import Workspace

log = logging.getLogger("newsletter")


def _auto_subject(ws: Workspace) -> Callable[[list[dict[str, Any]]], tuple[str, str]]:
    """(subject, template) of an automatic campaign from its articles, rendered once."""

    base_url = ws.settings.site.base_url

    def make(articles: list[dict[str, Any]]) -> tuple[str, str]:
        templates = ws.templates(choose_template(ws.settings.templates.default, len(articles)))
        sender = ws.settings.sender
        subject = templates.subject(
            {
                "articles": [
                    article_context(cast(Article, a), base_url=base_url) for a in articles
                ],
                "sender": {"name": sender.from_name, "address": sender.from_address},
                "campaign": {"subject": "", "preheader": ""},
            }
        )
        return subject, templates.name

    return make


def grace(ws: Workspace) -> dt.timedelta:
    """How late a due time may still run: ``[schedule] misfire_grace_time``."""
    return dt.timedelta(seconds=ws.settings.schedule.misfire_grace_time)


def zone_time_text(ws: Workspace, when: dt.datetime) -> str:
    """A time as the workspace's zone shows it, for log lines and notes."""
    return when.astimezone(timerules.zone(ws.settings.schedule.timezone)).strftime(
        "%Y-%m-%d %H:%M %Z"
    )


def create_instant_campaign(ws: Workspace, store: Store, now: dt.datetime) -> int | None:
    """In instant mode, make a campaign of the new articles, due at once (or a draft).

    With ``quiet_period``, only once no new article has come for that long,
    so a burst of posts makes one campaign.
    """
    s = ws.settings.schedule
    quiet = dt.timedelta(seconds=s.quiet_period)
    _, campaign_id = store.create_auto_campaign(
        "instant",
        now,
        _auto_subject(ws),
        tracking=ws.settings.tracking.enabled,
        hold=s.hold_as_draft,
        settled_before=now - quiet if s.quiet_period else None,
    )
    return campaign_id


def make_digest(ws: Workspace, store: Store, now: dt.datetime) -> int | None:
    """In digest mode, make the digest whose cron time has come; return its campaign.

    Every article new since the last digest goes in; no new articles, no
    campaign. Each cron time is handled once (recorded in ``job_runs``), by
    one scheduler, however often this runs. A cron time missed by more than
    the grace window is reported, not sent: its articles wait for the next.
    """
    s = ws.settings.schedule
    if s.mode != "digest":
        return None
    trigger = timerules.cron_trigger(s.digest_cron, s.timezone)
    fire = timerules.last_fire(trigger, store.last_run("digest", now), now)
    if fire is None:
        return None
    if timerules.verdict(fire, now, grace(ws)) == timerules.MISSED:
        detail = (
            f"digest due {zone_time_text(ws, fire)} missed by {timerules.late(fire, now)}; "
            f"its articles go in the next digest"
        )
        if store.record_run("digest", fire, StepStatus.MISSED, now, detail):
            log.warning("%s", detail)
        return None
    outcome, campaign_id = store.create_auto_campaign(
        "digest",
        now,
        _auto_subject(ws),
        tracking=ws.settings.tracking.enabled,
        hold=s.hold_as_draft,
        run=("digest", fire),
    )
    if outcome == StepStatus.EMPTY:
        log.info("digest due %s: no new articles, no email", zone_time_text(ws, fire))
    elif campaign_id is not None:
        log.info(
            "digest due %s: campaign %d%s",
            zone_time_text(ws, fire),
            campaign_id,
            " held as a draft for approval" if s.hold_as_draft else "",
        )
    return campaign_id


def run_automations(ws: Workspace, store: Store, now: dt.datetime) -> list[int]:
    """Send the welcome steps that are due; return the latest-articles campaigns made.

    A step is planned for each opt-in confirmed since the automation was
    first enabled, due ``welcome_delay`` after the confirmation; each is
    taken by one process, once. A step missed by more than the grace window
    is recorded as missed, not sent.
    """
    a = ws.settings.automation
    plan = [
        (kind, float(a.welcome_delay))
        for kind, on in (
            ("welcome", bool(a.welcome_template)),
            ("latest", a.latest_articles > 0),
        )
        if on
    ]
    if not plan:
        return []
    store.queue_steps(store.last_run("automation", now), plan)
    made: list[int] = []
    transport: Transport | None = None
    try:
        for step in store.pending_steps(until=now):
            due = dt.datetime.fromisoformat(step["due_at"])
            if timerules.verdict(due, now, grace(ws)) == timerules.MISSED:
                late = timerules.late(due, now)
                detail = f"due {zone_time_text(ws, due)}, missed by {late}; not sent"
                store.finish_step(step["id"], StepStatus.MISSED, now, detail)
                log.warning(
                    "%s email to subscriber %d %s", step["kind"], step["subscriber_id"], detail
                )
                continue
            if not store.claim_step(step["id"], now):
                continue  # another scheduler took it
            subscriber = store.subscriber(step["subscriber_id"])
            if subscriber is None or subscriber["status"] != SubscriberStatus.CONFIRMED:
                store.finish_step(step["id"], StepStatus.SKIPPED, now, "no longer subscribed")
                continue
            try:
                if step["kind"] == "welcome":
                    transport = transport or ws.transport()
                    consent.send_welcome(
                        store,
                        transport,
                        ws.settings,
                        ws.signer,
                        ws.templates(a.welcome_template),
                        step["subscriber_id"],
                        now,
                    )
                    store.finish_step(step["id"], StepStatus.DONE, now)
                    continue
                _, campaign_id = store.create_auto_campaign(
                    "latest",
                    now,
                    _auto_subject(ws),
                    tracking=ws.settings.tracking.enabled,
                    latest=a.latest_articles,
                    subscriber_id=step["subscriber_id"],
                )
                store.finish_step(
                    step["id"],
                    StepStatus.DONE if campaign_id else StepStatus.EMPTY,
                    now,
                    f"campaign {campaign_id}" if campaign_id else "no articles",
                )
                if campaign_id:
                    made.append(campaign_id)
            except NewsletterError as exc:
                store.finish_step(step["id"], StepStatus.FAILED, now, str(exc))
                log.error("%s email to subscriber %d: %s", step["kind"], step["subscriber_id"], exc)
            except Exception as exc:  # one step's bug must not stop the other steps
                detail = f"unexpected error ({type(exc).__name__}: {exc}); not sent"
                log.debug("traceback of the %s step %d", step["kind"], step["id"], exc_info=True)
                store.finish_step(step["id"], StepStatus.FAILED, now, detail)
                log.error(
                    "%s email to subscriber %d: %s", step["kind"], step["subscriber_id"], detail
                )
    finally:
        if transport is not None:
            transport.close()
    return made
