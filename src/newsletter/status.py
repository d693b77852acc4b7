"""The values of the stored status columns, named once.

Each class is a ``StrEnum``: a member *is* its string, so it binds into SQL,
compares with a value read back from the database, and prints as the word the
CLI and the dashboard show. SQL text keeps the plain words (``status = 'sent'``);
Python code uses these names, so a misspelt status is an error, not a silent
miss.
"""

from __future__ import annotations

from enum import StrEnum


class CampaignStatus(StrEnum):
    """A campaign's lifecycle: ``campaigns.status``."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


# Where a state change may come from.
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
FINISHED = (CampaignStatus.SENT, CampaignStatus.CANCELLED)


class DeliveryStatus(StrEnum):
    """One subscriber's copy of a campaign: ``deliveries.status``.

    SENDING is written and committed before the provider call; a row still
    SENDING when a sender starts was in flight at a crash. IN_DOUBT may have
    been taken by the provider and is never resent blindly.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    IN_DOUBT = "in_doubt"
    SKIPPED = "skipped"


class SubscriberStatus(StrEnum):
    """A subscriber: ``subscribers.status``; the last three suppress the address."""

    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


# Statuses that put an address on the suppression list (the triggers of m003/m011
# hold the same list in SQL).
SUPPRESSED = (
    SubscriberStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED,
    SubscriberStatus.COMPLAINED,
)


class StepStatus(StrEnum):
    """A welcome step (``automation_steps.status``) or a recurring run (``job_runs.status``)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    EMPTY = "empty"
    SKIPPED = "skipped"
    FAILED = "failed"
    MISSED = "missed"  # due longer ago than the grace window: recorded, never run
