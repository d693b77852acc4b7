"""The delivery ledger and the send loop.

Record intent, send, record outcome: each row is committed as ``sending``
before the provider call and as ``sent``, ``failed`` or ``deferred`` after
it. A row still ``sending`` when a sender starts was in flight at a crash; it
is settled by asking the transport (``was_sent``) and, where the transport
cannot tell, marked ``in_doubt`` — shown to staff, never resent blindly.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.campaigns import CampaignMail
from newsletter.errors import PermanentError, StateError, TransientError
from newsletter.store import DEFERRED, FAILED, IN_DOUBT, PENDING, SENT, SKIPPED, Store
from newsletter.transports import Envelope, Transport

log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]
MAX_ATTEMPTS = 5  # transient failures per row before it counts as failed
BATCH = 500


@dataclass
class Progress:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    settled: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    stopped: bool = False


def delivery_key(campaign_id: int, delivery_id: int) -> str:
    """The per-delivery key: outbox file name, Message-ID part, idempotency key."""
    return f"c{campaign_id}-d{delivery_id}"


def settle_in_flight(
    store: Store, transport: Transport, campaign_id: int, now: dt.datetime
) -> dict[str, int]:
    """Resolve rows left 'sending' by a sender that stopped mid-call."""
    counts = {SENT: 0, PENDING: 0, IN_DOUBT: 0}
    for row in store.in_flight(campaign_id):
        verdict = transport.was_sent(delivery_key(campaign_id, row["id"]))
        if verdict is True:
            store.finish_delivery(row["id"], SENT, now)
            counts[SENT] += 1
        elif verdict is False:
            # The transport knows it never took the message: safe to send again.
            store.finish_delivery(row["id"], PENDING, now)
            counts[PENDING] += 1
        else:
            store.finish_delivery(
                row["id"],
                IN_DOUBT,
                now,
                error="in flight when the sender stopped; the transport "
                "cannot tell whether it was accepted",
            )
            counts[IN_DOUBT] += 1
    return counts


def send_campaign(
    store: Store,
    transport: Transport,
    mail: CampaignMail,
    clock: Clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[Progress], None] | None = None,
) -> Progress:
    """Send a campaign that is in the sending state until no row is left to try.

    Stops early, between two messages, when ``should_stop()`` is true or the
    campaign is paused or cancelled by anyone, and can be called again to
    continue where it stopped.
    """
    campaign_id = mail.campaign["id"]
    if store.campaign_status(campaign_id) != "sending":
        raise StateError(f"campaign {campaign_id}: not in the sending state")
    progress = Progress(settled=settle_in_flight(store, transport, campaign_id, clock()))
    sender = mail.settings.sender.from_address
    after = 0
    while True:
        rows = store.next_pending(campaign_id, after, BATCH)
        if not rows:
            break
        for row in rows:
            after = row["id"]
            if should_stop() or store.campaign_status(campaign_id) != "sending":
                progress.stopped = True
                return progress
            subscriber = store.subscriber(row["subscriber_id"]) if row["subscriber_id"] else None
            now = clock()
            if subscriber is None or subscriber["status"] != "confirmed":
                # Unsubscribed (or erased) after the campaign was planned: nothing more goes out.
                store.finish_delivery(row["id"], SKIPPED, now, error="no longer subscribed")
                progress.skipped += 1
                continue
            key = delivery_key(campaign_id, row["id"])
            msg_id, data = mail.message(subscriber, key, now)
            if not store.claim_delivery(row["id"], msg_id, now):
                continue  # another sender took this row
            try:
                transport.send(Envelope(sender, subscriber["email"], data, key))
            except PermanentError as exc:
                store.finish_delivery(row["id"], FAILED, clock(), error=str(exc))
                store.mark_bounced(subscriber["id"], campaign_id, clock(), str(exc))
                progress.failed += 1
            except TransientError as exc:
                status = FAILED if row["attempts"] + 1 >= MAX_ATTEMPTS else DEFERRED
                store.finish_delivery(row["id"], status, clock(), error=str(exc))
                if status == FAILED:
                    progress.failed += 1
                else:
                    progress.deferred += 1
                log.warning("campaign %s: %s", campaign_id, exc)
            else:
                store.finish_delivery(row["id"], SENT, clock())
                progress.sent += 1
            if on_progress:
                on_progress(progress)
    counts = store.delivery_counts(campaign_id)
    if counts[PENDING] == counts[DEFERRED] == 0:
        store.set_campaign_status(campaign_id, "sent", ("sending",), clock())
        progress.finished = True
    return progress
