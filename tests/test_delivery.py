"""The delivery ledger and send loop, against the outbox and a real SMTP server on loopback."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections import Counter
from pathlib import Path

import pytest

from newsletter import campaigns, delivery, jobs
from newsletter.store import Store
from newsletter.subscribers import import_file
from newsletter.transports import Envelope
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)


def clock() -> dt.datetime:
    return NOW


def _prepare(ws: Workspace) -> int:
    """Fetch the sample articles, import the example subscribers, create a campaign."""
    store = ws.store
    jobs.fetch_sources(ws, store, NOW)
    jobs.import_subscriber_folder(ws, store, NOW)
    return campaigns.create(store, ws.settings, "Hello", "new", None, None, NOW)


def _confirmed(store: Store) -> list[str]:
    return [s["email"] for s in store.subscribers("confirmed")]


def _outbox_recipients(ws: Workspace) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in (ws.root / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[message["To"].addresses[0].addr_spec] += 1
    return found


@pytest.fixture
def smtp_ws(ws_dir: Path):
    with SmtpSink() as sink:
        ws = Workspace.open(
            ws_dir,
            env={
                "NEWSLETTER_DELIVERY__TRANSPORT": "smtp",
                "NEWSLETTER_SMTP__HOST": "127.0.0.1",
                "NEWSLETTER_SMTP__PORT": str(sink.port),
                "NEWSLETTER_SMTP__SECURITY": "none",
            },
        )
        yield ws, sink
        ws.close()


def test_outbox_gets_one_message_per_confirmed_subscriber(workspace: Workspace) -> None:
    campaign_id = _prepare(workspace)
    progress = jobs.send_campaign(workspace, workspace.store, campaign_id, clock)
    expected = _confirmed(workspace.store)
    assert progress.finished and progress.sent == len(expected)
    assert _outbox_recipients(workspace) == Counter(expected)
    assert workspace.store.campaign(campaign_id)["status"] == "sent"
    # Sending a finished campaign again sends nothing more.
    with pytest.raises(Exception, match="cannot send a campaign that is sent"):
        jobs.send_campaign(workspace, workspace.store, campaign_id, clock)
    assert _outbox_recipients(workspace) == Counter(expected)


def test_smtp_delivers_each_recipient_once(smtp_ws) -> None:
    ws, sink = smtp_ws
    campaign_id = _prepare(ws)
    progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
    expected = _confirmed(ws.store)
    assert progress.sent == len(expected)
    assert sorted(sink.recipients()) == sorted(expected)
    for received in sink.messages:
        assert received.sender == ws.settings.sender.from_address
        parsed = email.message_from_bytes(received.data, policy=email.policy.default)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_permanent_refusal_fails_the_row_and_suppresses_the_address(smtp_ws) -> None:
    ws, sink = smtp_ws
    campaign_id = _prepare(ws)
    refused = _confirmed(ws.store)[1]
    sink.handler.rcpt_replies[refused] = "550 5.1.1 No such user"
    progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
    assert progress.failed == 1 and progress.finished
    assert refused not in sink.recipients()
    assert ws.store.subscriber_by_email(refused)["status"] == "bounced"
    row = ws.store.delivery(campaign_id, ws.store.subscriber_by_email(refused)["id"])
    assert row["status"] == "failed" and "550" in row["error"]
    assert ws.store.campaign_stats(campaign_id)["bounces_total"] == 1


def test_transient_refusal_defers_then_delivers_once(smtp_ws) -> None:
    ws, sink = smtp_ws
    campaign_id = _prepare(ws)
    later = _confirmed(ws.store)[0]
    sink.handler.rcpt_replies[later] = "451 4.3.0 Try again later"
    first = jobs.send_campaign(ws, ws.store, campaign_id, clock)
    assert first.deferred == 1 and not first.finished
    assert ws.store.campaign(campaign_id)["status"] == "sending"
    del sink.handler.rcpt_replies[later]
    second = jobs.send_campaign(ws, ws.store, campaign_id, clock)
    assert second.sent == 1 and second.finished
    assert Counter(sink.recipients()) == Counter(_confirmed(ws.store))


def test_in_flight_rows_are_settled_by_the_outbox(workspace: Workspace) -> None:
    """A crash between the provider call and the outcome record resends nothing twice."""
    store = workspace.store
    campaign_id = _prepare(workspace)
    mail, transport = jobs.prepare_send(workspace, store, campaign_id, NOW)
    rows = store.next_pending(campaign_id, 0, 10)
    handed_over, not_handed_over = rows[0], rows[1]
    # The state a SIGKILL leaves: both rows committed as 'sending', one file written.
    assert mail.link_ids  # the click links are registered before the first send
    for row in (handed_over, not_handed_over):
        subscriber = store.subscriber(row["subscriber_id"])
        key = delivery.delivery_key(campaign_id, row["id"])
        msg_id, data = mail.message(subscriber, key, NOW)
        assert store.claim_delivery(row["id"], msg_id, NOW)
        if row is handed_over:
            transport.send(Envelope("news@clinic.example.com", subscriber["email"], data, key))
    transport.close()
    progress = jobs.send_campaign(workspace, store, campaign_id, clock)
    assert progress.settled == {"sent": 1, "pending": 1, "in_doubt": 0}
    assert _outbox_recipients(workspace) == Counter(_confirmed(store))


def test_in_flight_rows_over_smtp_are_in_doubt_until_retried(smtp_ws) -> None:
    ws, sink = smtp_ws
    store = ws.store
    campaign_id = _prepare(ws)
    campaigns.start(store, campaign_id, NOW)
    row = store.next_pending(campaign_id, 0, 1)[0]
    assert store.claim_delivery(row["id"], "<x@y>", NOW)
    progress = jobs.send_campaign(ws, store, campaign_id, clock)
    assert progress.settled["in_doubt"] == 1
    doubtful = store.subscriber(row["subscriber_id"])["email"]
    assert doubtful not in sink.recipients()
    assert store.delivery_counts(campaign_id)["in_doubt"] == 1
    assert store.campaigns()[0]["in_doubt"] == 1
    # Resending in-doubt rows is a deliberate act.
    assert store.retry_in_doubt(campaign_id) == 1
    store.set_campaign_status(campaign_id, "sending", ("sent",), NOW)
    jobs.send_campaign(ws, store, campaign_id, clock)
    assert Counter(sink.recipients()) == Counter(_confirmed(store))


def test_unsubscribe_during_sending_stops_further_mail(workspace: Workspace) -> None:
    store = workspace.store
    campaign_id = _prepare(workspace)
    confirmed = _confirmed(store)
    leaver = confirmed[-1]
    # Another process (the web server) records the unsubscribe while the campaign sends.
    other = Store(store.path)

    def on_progress(progress: delivery.Progress) -> None:
        if progress.sent == 1:
            other.unsubscribe(other.subscriber_by_email(leaver)["id"], campaign_id, NOW, "page")

    progress = jobs.send_campaign(workspace, store, campaign_id, clock, on_progress=on_progress)
    other.close()
    assert progress.skipped == 1
    assert leaver not in _outbox_recipients(workspace)
    assert _outbox_recipients(workspace) == Counter(c for c in confirmed if c != leaver)


def test_pause_stops_between_messages_and_resume_continues(workspace: Workspace) -> None:
    store = workspace.store
    campaign_id = _prepare(workspace)
    other = Store(store.path)

    def pause_after_two(progress: delivery.Progress) -> None:
        if progress.sent == 2:
            campaigns.pause(other, campaign_id, NOW)

    first = jobs.send_campaign(workspace, store, campaign_id, clock, on_progress=pause_after_two)
    assert first.stopped and first.sent == 2
    assert store.campaign(campaign_id)["status"] == "paused"
    assert sum(_outbox_recipients(workspace).values()) == 2
    assert campaigns.resume(other, campaign_id, NOW) == "sending"
    other.close()
    second = jobs.send_campaign(workspace, store, campaign_id, clock)
    assert second.finished
    assert _outbox_recipients(workspace) == Counter(_confirmed(store))


def test_campaign_for_a_list_reaches_only_its_members(workspace: Workspace, tmp_path) -> None:
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    jobs.import_subscriber_folder(workspace, store, NOW)
    members = tmp_path / "members.csv"
    members.write_text("email\nzoe.brennan@example.org\nnew.person@example.com\n")
    import_file(store, members, NOW, list_name="runners", confirmed=True)
    campaign_id = campaigns.create(store, workspace.settings, "Run", "new", None, "runners", NOW)
    jobs.send_campaign(workspace, store, campaign_id, clock)
    assert _outbox_recipients(workspace) == Counter(
        ["zoe.brennan@example.org", "new.person@example.com"]
    )
