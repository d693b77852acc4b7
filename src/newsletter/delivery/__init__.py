"""The delivery ledger and the send loop, as a package: one module per job.

Record intent, send, record outcome: each row is committed as ``sending``
before the provider call and as ``sent``, ``failed`` or ``deferred`` after
it, so a crash can leave at most one batch per connection in flight. A row
still ``sending`` when a sender starts was in flight at a crash; it is
settled by asking the transport (``was_sent``) and, where the transport
cannot tell, marked ``in_doubt`` — shown to staff, never resent blindly.

A large campaign is split across processes (``[delivery] processes``): each
takes the rows whose id falls in its shard and runs the same loop with its
share of the connections. The sending process sends the first share itself
and starts a child per other share; it holds the lease, settles what was in
flight, and adds up their progress. Children die with their
parent, so a killed sender leaves no orphan sending on its own.

- ``ledger``: what a transport's answer means for each row, and the retry maths (pure)
- ``lease``: one sender a campaign at a time, kept by a heartbeat thread
- ``loop``: the reader and the worker threads that claim, send and record
- ``shards``: a large campaign shared by sending processes

``send_campaign`` below ties them together; the names other modules use are
re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from newsletter.clock import Clock
from newsletter.delivery.lease import Lease, active_sender
from newsletter.delivery.ledger import (
    EnvelopeSender,
    Policy,
    SendProgress,
    envelope_sender_for,
    policy_for,
    retry_delay,
)
from newsletter.delivery.loop import (
    SendRate,
    _describe,
    _read_and_send,
    _SendRun,
    settle_in_flight,
)
from newsletter.delivery.shards import (
    SHARD_MIN_ROWS,
    PartsFactory,
    _send_sharded,
    _shard_count,
    shard_main,
)
from newsletter.errors import StateError
from newsletter.mail import CampaignMail
from newsletter.status import CampaignStatus, DeliveryStatus
from newsletter.store import Store
from newsletter.transports import Transport

__all__ = [
    "SHARD_MIN_ROWS",
    "active_sender",
    "Lease",
    "Policy",
    "policy_for",
    "retry_delay",
    "send_campaign",
    "EnvelopeSender",
    "envelope_sender_for",
    "SendProgress",
    "SendRate",
    "shard_main",
]

log = logging.getLogger(__name__)


def send_campaign(
    store: Store,
    transport: Transport,
    mail: CampaignMail,
    clock: Clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[SendProgress], None] | None = None,
    *,
    policy: Policy,
    sender: EnvelopeSender,
    parts: PartsFactory | None = None,
) -> SendProgress:
    """Send the due rows of a campaign that is in the sending state.

    Stops between two messages when ``should_stop()`` is true, when the
    campaign is paused or cancelled by anyone, or when too many failures
    come in a row (the campaign is then paused with the reason). Call again
    to continue. ``policy`` and ``sender`` come from the settings
    (``policy_for``, ``envelope_sender_for``); ``parts`` lets a large campaign be shared
    by sending processes.
    """
    campaign_id = mail.campaign["id"]
    if store.campaign_status(campaign_id) != CampaignStatus.SENDING:
        raise StateError(f"campaign {campaign_id}: not in the sending state")
    lease = Lease(store.path, campaign_id)
    lease.acquire(store)
    run = _SendRun(store, transport, campaign_id, clock, policy, sender, on_progress, lease.lost)
    try:
        run.progress.settled = settle_in_flight(store, transport, campaign_id, clock())
        shards = _shard_count(store, campaign_id, policy, clock()) if parts is not None else 1
        if shards > 1 and parts is not None:
            _send_sharded(store, mail, run, parts, shards, should_stop)
        else:
            _read_and_send(store, mail, run, should_stop)
    except Exception as exc:  # noqa: BLE001 - whatever it was, the campaign must not stay sending
        # A send that cannot go on (threads or processes that cannot start, a bug)
        # pauses with the reason; left "sending", every scheduler tick would retry it.
        log.exception("campaign %s: the send stopped on an error", campaign_id)
        run.pause(f"paused: the send stopped on an error ({_describe(exc)}); resume to continue")
    finally:
        lease.release(store)
    progress = run.progress
    if progress.paused_reason:
        store.set_campaign_status(
            campaign_id,
            CampaignStatus.PAUSED,
            (CampaignStatus.SENDING,),
            clock(),
            note=progress.paused_reason,
        )
        progress.stopped = True
        log.warning("campaign %s: %s", campaign_id, progress.paused_reason)
        return progress
    counts = store.delivery_counts(campaign_id)
    unfinished = (DeliveryStatus.PENDING, DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
    if not any(counts[status] for status in unfinished) and not progress.stopped:
        store.set_campaign_status(
            campaign_id, CampaignStatus.SENT, (CampaignStatus.SENDING,), clock()
        )
        progress.finished = True
    return progress
