"""A workspace brought to the state many tests start from: articles and subscribers in, a
campaign made or sent.

A workspace made by `init` holds sample articles (articles/) and sample subscribers
(subscribers/example.csv). These helpers take them in and send a campaign of the new
articles to the confirmed ones through the workspace's own transport, each at the time the
test passes in: a test keeps its clock its own (docs/development.md, "Tests and the
calendar").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from newsletter import campaigns, jobs
from newsletter.mail import Urls
from newsletter.workspace import Workspace


def workspace_with_articles_and_subscribers(ws: Workspace, now: dt.datetime) -> Workspace:
    """``ws`` with its article sources fetched and its subscriber folder imported at ``now``."""
    jobs.fetch_sources(ws, ws.store, now)
    jobs.import_subscriber_folder(ws, ws.store, now)
    return ws


def new_campaign(ws: Workspace, now: dt.datetime, subject: str = "Hi") -> int:
    """The id of a campaign of the new articles to everyone, made at ``now`` and not sent yet.

    The articles and subscribers are taken in first, at ``now`` too.
    """
    workspace_with_articles_and_subscribers(ws, now)
    return campaigns.create(ws.store, ws.settings, subject, "new", None, None, now)


def sent_campaign(
    ws: Workspace,
    now: dt.datetime,
    subject: str = "Hi",
    clock: Callable[[], dt.datetime] | None = None,
) -> int:
    """The id of `new_campaign`, sent on ``clock`` (by default one that always reads ``now``)."""
    campaign_id = new_campaign(ws, now, subject)
    jobs.send_campaign(ws, ws.store, campaign_id, clock or (lambda: now))
    return campaign_id


def campaign_urls(ws: Workspace) -> Urls:
    """The signed links the workspace puts in its emails: pixel, clicks, view, unsubscribe."""
    return Urls(ws.settings.site.base_url, ws.signer)
