"""What a sending process builds for itself: its store, its campaign's mail, its transport.

Apart from ``jobs.py`` on purpose: a process of a large send unpickles this
function by name, and importing ``jobs`` would load everything the scheduler
runs (feeds, imports, automations), three times the start-up of what a send
needs, in every process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from newsletter.config import Secrets, Settings
from newsletter.mail import CampaignMail, design, load_mail
from newsletter.store import Store
from newsletter.transports import Transport
from newsletter.workspace import Workspace


def shard_parts(
    root: Path, settings: Settings, secrets: Secrets, campaign_id: int, connections: int
) -> tuple[Store, CampaignMail, Transport]:
    """What a sending child process needs, built anew in that process from picklable parts."""
    settings = dataclasses.replace(
        settings, delivery=dataclasses.replace(settings.delivery, concurrency=connections)
    )
    ws = Workspace(root, settings, secrets, [])
    store = ws.open_store()
    # The links were registered by the parent before it began.
    templates = ws.templates(design(store.campaign(campaign_id)))
    mail = load_mail(store, campaign_id, templates, settings, ws.signer)
    return store, mail, ws.transport()
