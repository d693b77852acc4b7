"""The delivery ledger and send loop, against the outbox and a real SMTP server on loopback."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from clocks import NOW, clock
from newsletter import campaigns, delivery, delivery_key, jobs
from newsletter.errors import StateError
from newsletter.store import Store
from newsletter.subscribers import import_file
from newsletter.transports import Envelope
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink, smtp_env
from workspaces import new_campaign, workspace_with_articles_and_subscribers


def _prepare(ws: Workspace) -> int:
    """Fetch the sample articles, import the example subscribers, create a campaign."""
    return new_campaign(ws, NOW, "Hello")


def _confirmed(store: Store) -> list[str]:
    return [s["email"] for s in store.subscribers("confirmed")]


def _outbox_recipients(ws: Workspace) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in (ws.root / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[message["To"].addresses[0].addr_spec] += 1
    return found


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def pipelining(request) -> bool:
    """Each SMTP test runs against a server without and with PIPELINING."""
    return request.param


@pytest.fixture
def smtp_ws(ws_dir: Path, pipelining: bool):
    with SmtpSink(pipelining) as sink:
        ws = Workspace.open(
            ws_dir,
            env=smtp_env(sink),
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
    row = ws.store.delivery(campaign_id, ws.store.subscriber_by_email(later)["id"])
    retry_at = dt.datetime.fromisoformat(row["next_attempt_at"])
    # Backoff: the first retry waits about retry_backoff seconds (with jitter), not less.
    assert NOW + dt.timedelta(seconds=150) <= retry_at <= NOW + dt.timedelta(seconds=450)
    early = jobs.send_campaign(
        ws, ws.store, campaign_id, lambda: retry_at - dt.timedelta(seconds=1)
    )
    assert early.sent == 0 and not early.finished
    second = jobs.send_campaign(ws, ws.store, campaign_id, lambda: retry_at)
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
        key = delivery_key.build(campaign_id, row["id"])
        msg_id, data = mail.message(subscriber, key, NOW)
        assert store.claim_deliveries([(row["id"], msg_id)], NOW) == ({row["id"]}, set())
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
    assert store.claim_deliveries([(row["id"], "<x@y>")], NOW) == ({row["id"]}, set())
    progress = jobs.send_campaign(ws, store, campaign_id, clock)
    assert progress.settled["in_doubt"] == 1
    doubtful = store.subscriber(row["subscriber_id"])["email"]
    assert doubtful not in sink.recipients()
    assert store.delivery_counts(campaign_id)["in_doubt"] == 1
    assert store.campaigns()[0]["in_doubt"] == 1
    # Resending in-doubt rows is a deliberate act.
    assert campaigns.retry(store, campaign_id, True, NOW) == 1
    assert store.campaign_status(campaign_id) == "sending"
    jobs.send_campaign(ws, store, campaign_id, clock)
    assert Counter(sink.recipients()) == Counter(_confirmed(store))


def test_unsubscribe_during_sending_stops_further_mail(workspace: Workspace) -> None:
    store = workspace.store
    campaign_id = _prepare(workspace)
    confirmed = _confirmed(store)
    leaver = confirmed[-1]
    # Another process (the web server) records the unsubscribe while the campaign sends.
    other = Store(store.path)

    def on_progress(progress: delivery.SendProgress) -> None:
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

    def pause_after_two(progress: delivery.SendProgress) -> None:
        if progress.sent == 2:
            campaigns.pause(other, campaign_id, NOW)

    first = jobs.send_campaign(workspace, store, campaign_id, clock, on_progress=pause_after_two)
    # Progress is counted as each outcome is committed, which may share its commit with
    # the next claim: so the message already claimed when the pause came still goes.
    assert first.stopped and first.sent in (2, 3)
    assert store.campaign(campaign_id)["status"] == "paused"
    assert sum(_outbox_recipients(workspace).values()) == first.sent
    assert campaigns.resume(other, campaign_id, NOW) == "sending"
    other.close()
    second = jobs.send_campaign(workspace, store, campaign_id, clock)
    assert second.finished
    assert _outbox_recipients(workspace) == Counter(_confirmed(store))


def test_campaign_for_a_list_reaches_only_its_members(workspace: Workspace, tmp_path) -> None:
    store = workspace_with_articles_and_subscribers(workspace, NOW).store
    members = tmp_path / "members.csv"
    members.write_text("email\nzoe.brennan@example.org\nnew.person@example.com\n")
    import_file(store, members, NOW, list_name="runners", confirmed=True)
    campaign_id = campaigns.create(store, workspace.settings, "Run", "new", None, "runners", NOW)
    jobs.send_campaign(workspace, store, campaign_id, clock)
    assert _outbox_recipients(workspace) == Counter(
        ["zoe.brennan@example.org", "new.person@example.com"]
    )


def test_rate_limiter_keeps_every_one_second_window_under_the_rate() -> None:
    now = [0.0]
    starts: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = delivery.SendRate(10, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(35):
        limiter.acquire()
        starts.append(now[0])
        now[0] += 0.001  # the send itself takes a moment
    for start in starts:
        assert sum(1 for t in starts if start <= t < start + 1.0) <= 10
    # It never stalls longer than needed: 35 messages at 10/s take about 3 seconds.
    assert 2.9 <= starts[-1] <= 3.2


def test_no_rate_limit_never_sleeps() -> None:
    def sleep(seconds: float) -> None:
        raise AssertionError("slept without a limit")

    limiter = delivery.SendRate(0, sleep=sleep)
    for _ in range(1000):
        limiter.acquire()


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    policy = delivery.Policy(backoff_seconds=60, max_backoff_seconds=3600)
    assert delivery.retry_delay(1, policy, None, rand=lambda: 0.5) == 60
    assert delivery.retry_delay(3, policy, None, rand=lambda: 0.5) == 240
    assert delivery.retry_delay(1, policy, None, rand=lambda: 0.0) == 30
    assert delivery.retry_delay(20, policy, None, rand=lambda: 0.5) == 3600
    assert delivery.retry_delay(1, policy, 900, rand=lambda: 0.5) == 900


def test_many_failures_in_a_row_pause_the_campaign_with_the_reason(
    ws_dir: Path, pipelining: bool
) -> None:
    with SmtpSink(pipelining) as sink:
        ws = Workspace.open(
            ws_dir,
            env=smtp_env(sink, NEWSLETTER_DELIVERY__PAUSE_AFTER_FAILURES="3"),
        )
        campaign_id = _prepare(ws)
        for address in _confirmed(ws.store):
            sink.handler.rcpt_replies[address] = "452 4.2.2 Mailbox full"
        progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
        campaign = ws.store.campaign(campaign_id)
        assert campaign["status"] == "paused"
        assert "3 failures in a row" in campaign["note"]
        assert "452" in campaign["note"]
        assert progress.deferred == 3 and progress.sent == 0
        # Nothing went out, and the untried rows are still pending for `resume`.
        assert ws.store.delivery_counts(campaign_id)["pending"] == len(_confirmed(ws.store)) - 3
        sink.handler.rcpt_replies.clear()
        campaigns.resume(ws.store, campaign_id, NOW)
        later = NOW + dt.timedelta(hours=2)
        final = jobs.send_campaign(ws, ws.store, campaign_id, lambda: later)
        assert final.finished
        assert Counter(sink.recipients()) == Counter(_confirmed(ws.store))
        ws.close()


def test_several_connections_421_and_dropped_connections(
    ws_dir: Path, tmp_path, pipelining: bool
) -> None:
    members = tmp_path / "many.csv"
    members.write_text("email\n" + "".join(f"reader{i}@example.com\n" for i in range(60)))
    with SmtpSink(pipelining) as sink:
        ws = Workspace.open(
            ws_dir,
            env=smtp_env(sink, NEWSLETTER_DELIVERY__CONCURRENCY="4"),
        )
        import_file(ws.store, members, NOW, confirmed=True)
        campaign_id = _prepare(ws)
        sink.handler.rcpt_replies["reader7@example.com"] = "421 4.7.0 Too many connections"
        sink.handler.drop_on_data.add("reader9@example.com")
        first = jobs.send_campaign(ws, ws.store, campaign_id, clock)
        # 421 twice (the fresh connection too): deferred. Dropped after the whole message
        # was sent: in doubt, never resent blindly.
        assert first.deferred == 1
        counts = ws.store.delivery_counts(campaign_id)
        assert counts["in_doubt"] == 1 and counts["deferred"] == 1
        sink.handler.rcpt_replies.clear()
        sink.handler.drop_on_data.clear()
        second = jobs.send_campaign(ws, ws.store, campaign_id, lambda: NOW + dt.timedelta(hours=2))
        assert second.finished and second.sent == 1
        expected = Counter(a for a in _confirmed(ws.store) if a != "reader9@example.com")
        assert Counter(sink.recipients()) == expected
        ws.close()


def test_a_second_sender_is_refused_while_the_first_holds_the_lease(workspace) -> None:
    store = workspace.store
    campaign_id = _prepare(workspace)
    campaigns.start(store, campaign_id, NOW)
    other = Store(store.path)
    holder = delivery.Lease(store.path, campaign_id)
    holder.acquire(other)
    with pytest.raises(StateError, match=f"pid {os.getpid()}"):
        jobs.send_campaign(workspace, store, campaign_id, clock)
    assert store.delivery_counts(campaign_id)["pending"] == len(_confirmed(store))
    holder.release(other)
    other.close()
    assert jobs.send_campaign(workspace, store, campaign_id, clock).finished


def test_a_lease_of_a_dead_or_expired_sender_is_taken_over(workspace) -> None:
    store = workspace.store
    campaign_id = _prepare(workspace)
    campaigns.start(store, campaign_id, NOW)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    with store.transaction():
        store.conn.execute(
            "INSERT INTO send_leases VALUES (?, 'crashed', ?, ?, ?)",
            [campaign_id, socket.gethostname(), dead_pid, time.time() + 3600],
        )
    assert jobs.send_campaign(workspace, store, campaign_id, clock).finished
    # Another host's lease is respected until it expires.
    second = campaigns.create(store, workspace.settings, "Again", "1", None, None, NOW)
    campaigns.start(store, second, NOW)
    with store.transaction():
        store.conn.execute(
            "INSERT INTO send_leases VALUES (?, 'remote', 'other-host', 1, ?)",
            [second, time.time() + 3600],
        )
    with pytest.raises(StateError, match="other-host"):
        jobs.send_campaign(workspace, store, second, clock)
    with store.transaction():
        store.conn.execute(
            "UPDATE send_leases SET expires_at = ? WHERE campaign_id = ?", [time.time() - 1, second]
        )
    assert jobs.send_campaign(workspace, store, second, clock).finished


def test_a_lease_left_by_an_earlier_process_with_our_pid_is_taken_over(workspace) -> None:
    """A container restarted after `kill -9` runs as PID 1 again, as the dead run did.

    Its lease names our pid on our host, yet it is not ours: it must not look
    like a live sender (which would hold it for ever), while a lease this very
    process holds still keeps other senders out.
    """
    store = workspace.store
    campaign_id = _prepare(workspace)
    campaigns.start(store, campaign_id, NOW)
    host = socket.gethostname()
    earlier = f"{host}:{os.getpid()}:0123456789ab:deadbeef"
    with store.transaction():
        store.conn.execute(
            "INSERT INTO send_leases VALUES (?, ?, ?, ?, ?)",
            [campaign_id, earlier, host, os.getpid(), time.time() + 3600],
        )
    assert delivery.active_sender(store, campaign_id) is None
    assert jobs.send_campaign(workspace, store, campaign_id, clock).finished

    second = campaigns.create(store, workspace.settings, "Again", "1", None, None, NOW)
    campaigns.start(store, second, NOW)
    ours = delivery.Lease(store.path, second)
    ours.acquire(store)
    try:
        assert delivery.active_sender(store, second)["owner"] == ours.owner
        with pytest.raises(StateError, match="another sender is sending it"):
            jobs.send_campaign(workspace, store, second, clock)
    finally:
        ours.release(store)
    assert jobs.send_campaign(workspace, store, second, clock).finished


def test_a_refused_sender_pauses_and_bounces_nobody(ws_dir: Path, pipelining: bool) -> None:
    with SmtpSink(pipelining) as sink:
        ws = Workspace.open(ws_dir, env=smtp_env(sink))
        campaign_id = _prepare(ws)
        sink.handler.mail_reply = "553 5.7.1 Sender address not owned by user"
        progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
        assert progress.sent == 0 and "refused the sender" in progress.paused_reason
        assert ws.store.campaign(campaign_id)["status"] == "paused"
        assert ws.store.subscribers("bounced") == []
        assert ws.store.delivery_counts(campaign_id)["pending"] == len(_confirmed(ws.store))
        sink.handler.mail_reply = None
        campaigns.resume(ws.store, campaign_id, NOW)
        assert jobs.send_campaign(ws, ws.store, campaign_id, clock).finished
        assert Counter(sink.recipients()) == Counter(_confirmed(ws.store))
        ws.close()


def test_a_refused_message_fails_without_suppressing_the_address(
    ws_dir: Path, pipelining: bool
) -> None:
    with SmtpSink(pipelining) as sink:
        ws = Workspace.open(ws_dir, env=smtp_env(sink))
        campaign_id = _prepare(ws)
        spammy = _confirmed(ws.store)[2]
        sink.handler.data_replies[spammy] = "554 5.7.1 Message refused as spam"
        progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
        row = ws.store.delivery(campaign_id, ws.store.subscriber_by_email(spammy)["id"])
        assert row["status"] == "failed" and "554" in row["error"]
        assert ws.store.subscriber_by_email(spammy)["status"] == "confirmed"
        assert progress.finished and progress.sent == len(_confirmed(ws.store)) - 1
        ws.close()


def test_a_subscriber_whose_data_breaks_the_template_fails_alone(ws_dir: Path) -> None:
    templates = ws_dir / "templates" / "digest"
    templates.mkdir(parents=True)
    (templates / "body.txt").write_text(
        '{% if subscriber.email.startswith("jose") %}{{ 1 / 0 }}{% endif %}Hello\n'
    )
    ws = Workspace.open(ws_dir, env={})
    store = workspace_with_articles_and_subscribers(ws, NOW).store
    campaign_id = campaigns.create(store, ws.settings, "Hi", "new", "digest", None, NOW)
    progress = jobs.send_campaign(ws, store, campaign_id, clock)
    jose = store.subscriber_by_email("jose.garcia@example.net")
    row = store.delivery(campaign_id, jose["id"])
    assert row["status"] == "failed" and "body.txt" in row["error"]
    assert progress.finished and progress.sent == len(_confirmed(store)) - 1
    assert "jose.garcia@example.net" not in _outbox_recipients(ws)
    ws.close()


def test_retrying_failed_rows_starts_their_tries_afresh(workspace) -> None:
    store = workspace.store
    campaign_id = _prepare(workspace)
    campaigns.start(store, campaign_id, NOW)
    with store.transaction():
        store.conn.execute(
            "UPDATE deliveries SET status = 'failed', attempts = 25 WHERE campaign_id = ?",
            [campaign_id],
        )
    assert campaigns.retry(store, campaign_id, False, NOW) == len(_confirmed(store))
    assert {r["attempts"] for r in store.next_pending(campaign_id, 0, 100)} == {0}


def test_retrying_a_cancelled_campaign_is_refused_and_its_failed_rows_stay_failed(
    workspace,
) -> None:
    # Queued again, its rows would sit pending forever: nothing sends a cancelled campaign.
    store = workspace.store
    campaign_id = _prepare(workspace)
    campaigns.start(store, campaign_id, NOW)
    with store.transaction():
        store.conn.execute(
            "UPDATE deliveries SET status = 'failed' WHERE campaign_id = ?", [campaign_id]
        )
    campaigns.cancel(store, campaign_id, NOW)
    for in_doubt in (False, True):
        with pytest.raises(StateError, match=f"campaign {campaign_id}: cannot retry .* cancelled"):
            campaigns.retry(store, campaign_id, in_doubt, NOW)
    assert store.delivery_counts(campaign_id)["failed"] == len(_confirmed(store))
    assert store.campaign_status(campaign_id) == "cancelled"


def test_a_live_sender_keeps_its_lease_even_past_its_expiry(workspace) -> None:
    store = workspace.store
    campaign_id = _prepare(workspace)
    campaigns.start(store, campaign_id, NOW)
    # A live process other than this one (a lease naming our own pid but not
    # our own process is a dead predecessor's).
    stalled = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with store.transaction():
            store.conn.execute(
                "INSERT INTO send_leases VALUES (?, 'stalled', ?, ?, ?)",
                [campaign_id, socket.gethostname(), stalled.pid, time.time() - 600],
            )
        with pytest.raises(StateError, match="another sender"):
            jobs.send_campaign(workspace, store, campaign_id, clock)
    finally:
        stalled.kill()
        stalled.wait()


def test_rate_limit_counts_every_message_of_a_batch() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = delivery.SendRate(10, monotonic=lambda: now[0], sleep=sleep)
    limiter.acquire(25)
    assert 1.0 <= now[0] <= 2.1  # 25 messages at 10 a second: two full windows waited


def test_a_refused_login_pauses_the_campaign_and_the_right_password_sends(ws_dir: Path) -> None:
    with SmtpSink(login=("news", "right horse battery")) as sink:
        env = smtp_env(sink, NEWSLETTER_SMTP__USERNAME="news", NEWSLETTER_SMTP_PASSWORD="wrong")
        ws = Workspace.open(ws_dir, env=env)
        campaign_id = _prepare(ws)
        progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
        assert "login refused for smtp.username 'news' (535)" in progress.paused_reason
        assert "NEWSLETTER_SMTP_PASSWORD" in progress.paused_reason
        assert "wrong" not in progress.paused_reason  # the secret is never echoed
        assert ws.store.campaign(campaign_id)["status"] == "paused"
        assert ws.store.subscribers("bounced") == [] and sink.messages == []
        assert ws.store.delivery_counts(campaign_id)["pending"] == len(_confirmed(ws.store))
        assert sink.logins and not any(ok for _, ok in sink.logins)
        ws.close()
        env["NEWSLETTER_SMTP_PASSWORD"] = "right horse battery"
        ws = Workspace.open(ws_dir, env=env)
        campaigns.resume(ws.store, campaign_id, NOW)
        assert jobs.send_campaign(ws, ws.store, campaign_id, clock).finished
        assert Counter(sink.recipients()) == Counter(_confirmed(ws.store))
        assert sink.logins[-1] == ("news", True)
        ws.close()


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelining"])
def test_a_refusal_followed_by_a_hang_up_keeps_its_meaning(ws_dir: Path, pipelining) -> None:
    with SmtpSink(pipelining) as sink:
        sink.handler.hang_up_after_refusal = True
        ws = Workspace.open(ws_dir, env=smtp_env(sink))
        campaign_id = _prepare(ws)
        gone = _confirmed(ws.store)[1]
        sink.handler.rcpt_replies[gone] = "550 5.1.1 No such user"
        progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
        # The refused address bounces (not "connection lost", not deferred) and the
        # others go over a fresh connection.
        assert progress.finished and progress.failed == 1
        assert ws.store.subscriber_by_email(gone)["status"] == "bounced"
        assert Counter(sink.recipients()) == Counter(_confirmed(ws.store))

        second = campaigns.create(ws.store, ws.settings, "Again", "1", None, None, NOW)
        sink.handler.mail_reply = "554 5.7.1 Service unavailable; client host blocked"
        paused = jobs.send_campaign(ws, ws.store, second, clock)
        assert "refused the sender" in paused.paused_reason and "554" in paused.paused_reason
        assert ws.store.delivery_counts(second)["deferred"] == 0
        ws.close()


def test_a_full_disk_under_the_outbox_pauses_the_campaign_naming_the_folder(workspace) -> None:
    """Every message file lands on /dev/full: nobody is failed, the campaign waits for space."""
    store = workspace.store
    campaign_id = _prepare(workspace)
    campaigns.start(store, campaign_id, NOW)
    outbox = workspace.path(workspace.settings.delivery.outbox_dir)
    outbox.mkdir(parents=True, exist_ok=True)
    ids = [
        r[0]
        for r in store.conn.execute(
            "SELECT id FROM deliveries WHERE campaign_id = ?", [campaign_id]
        )
    ]
    for delivery_id in ids:
        (outbox / f"{delivery_key.build(campaign_id, delivery_id)}.eml.part").symlink_to(
            "/dev/full"
        )
    progress = jobs.send_campaign(workspace, store, campaign_id, clock)
    assert progress.sent == 0 and progress.failed == 0, progress.paused_reason
    assert progress.paused_reason.count(f"delivery.outbox_dir {outbox}: the disk is full") == 1
    assert "free some space there and try again" in progress.paused_reason
    assert store.campaign(campaign_id)["status"] == "paused"
    assert store.delivery_counts(campaign_id)["pending"] == len(ids)
    assert store.subscribers("bounced") == []
    # Space again: the campaign resumes and every message is written once.
    for part in outbox.glob("*.eml.part"):
        part.unlink()
    campaigns.resume(store, campaign_id, NOW)
    assert jobs.send_campaign(workspace, store, campaign_id, clock).finished
    assert sorted(_outbox_recipients(workspace).values()) == [1] * len(ids)


def test_answers_read_late_on_four_connections_keep_each_message_s_own_outcome(
    ws_dir: Path, pipelining: bool
) -> None:
    """Four connections from one thread, each message's answer read while others are in
    flight: a refusal at the end, a hang-up after the final dot and a bounce each stay
    with their own message, and everyone else gets theirs once."""
    people = [f"p{i}@example.net" for i in range(60)]
    with SmtpSink(pipelining) as sink:
        ws = Workspace.open(ws_dir, env=smtp_env(sink, NEWSLETTER_DELIVERY__CONCURRENCY="4"))
        path = ws_dir / "people.csv"
        path.write_text("email\n" + "".join(f"{p}\n" for p in people))
        import_file(ws.store, path, NOW, confirmed=True)
        campaign_id = _prepare(ws)
        refused, dropped, bounced = people[10], people[21], people[33]
        sink.handler.data_replies[refused] = "554 5.7.1 Message refused as spam"
        sink.handler.drop_on_data.add(dropped)
        sink.handler.rcpt_replies[bounced] = "550 5.1.1 No such user"
        progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
        assert progress.finished
        statuses = {
            email: ws.store.delivery(campaign_id, ws.store.subscriber_by_email(email)["id"])
            for email in _confirmed(ws.store) + [bounced]
        }
        assert statuses[refused]["status"] == "failed" and "554" in statuses[refused]["error"]
        assert statuses[dropped]["status"] == "in_doubt"
        assert statuses[bounced]["status"] == "failed"
        assert ws.store.subscriber_by_email(bounced)["status"] == "bounced"
        others = set(statuses) - {refused, dropped, bounced}
        assert {statuses[e]["status"] for e in others} == {"sent"}
        assert Counter(sink.recipients()) == Counter(others)
        assert ws.store.delivery_counts(campaign_id)["sending"] == 0
        ws.close()
