"""A large campaign shared by several sending processes: same ledger, same guarantees."""

from __future__ import annotations

import bisect
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from clocks import NOW, clock
from conftest import Cli
from newsletter import campaigns, delivery, jobs
from newsletter.subscribers import import_file
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink, smtp_env

PEOPLE = delivery.SHARD_MIN_ROWS + 200  # enough for the send to be split


@pytest.fixture
def sink():
    with SmtpSink(pipelining=True) as running:
        yield running


def _workspace(ws_dir: Path, sink: SmtpSink, **extra: str) -> tuple[Workspace, int, list[str]]:
    env = smtp_env(
        sink,
        NEWSLETTER_DELIVERY__PROCESSES="2",
        NEWSLETTER_DELIVERY__CONCURRENCY="4",
        **extra,
    )
    ws = Workspace.open(ws_dir, env=env)
    people = ws_dir / "people.csv"
    addresses = [f"p{i}@example.net" for i in range(PEOPLE)]
    people.write_text("email\n" + "".join(f"{a}\n" for a in addresses))
    jobs.fetch_sources(ws, ws.store, NOW)
    import_file(ws.store, people, NOW, confirmed=True)
    campaign_id = campaigns.create(ws.store, ws.settings, "Big", "new", None, None, NOW)
    return ws, campaign_id, addresses


def _send_in_background(
    ws: Workspace, campaign_id: int, sink: SmtpSink
) -> tuple[threading.Thread, dict[str, delivery.SendProgress]]:
    """Start sending in a thread; return once 100 messages have arrived."""
    result: dict[str, delivery.SendProgress] = {}
    sender = threading.Thread(
        target=lambda: result.update(p=jobs.send_campaign(ws, ws.open_store(), campaign_id, clock))
    )
    sender.start()
    deadline = time.monotonic() + 30
    while len(sink.messages) < 100:
        assert time.monotonic() < deadline, "sending made no progress"
        time.sleep(0.01)
    return sender, result


def senders(pid: int) -> list[int]:
    """The sending processes started by ``pid``, from /proc (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # a thread that ended since the listing
            continue
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"newsletter.sender" in cmdline:
                found.append(int(child))
    return found


def gone(pid: int) -> bool:
    """Whether a process has ended (reaped, or a zombie waiting to be)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_every_subscriber_gets_one_message_from_one_of_the_processes(ws_dir, sink, caplog) -> None:
    caplog.set_level(logging.INFO, logger="newsletter")
    ws, campaign_id, addresses = _workspace(ws_dir, sink)
    seen: list[int] = []
    progress = jobs.send_campaign(
        ws, ws.store, campaign_id, clock, on_progress=lambda p: seen.append(p.sent)
    )
    assert progress.finished and progress.sent == PEOPLE and progress.failed == 0
    assert Counter(sink.recipients()) == Counter(addresses)
    assert f"campaign {campaign_id}: sending with 2 processes" in caplog.text
    # Two processes with two connections each: more than one connection carried mail.
    assert len(sink.handler.sessions) >= 2
    # Progress was reported while sending, adding up both processes, and only grew.
    assert seen and seen == sorted(seen) and seen[-1] <= PEOPLE
    assert ws.store.campaign(campaign_id)["status"] == "sent"
    ws.close()


def test_a_stop_request_stops_every_process_and_resume_sends_the_rest_once(ws_dir, sink) -> None:
    ws, campaign_id, addresses = _workspace(ws_dir, sink)
    first = jobs.send_campaign(
        ws, ws.store, campaign_id, clock, should_stop=lambda: len(sink.messages) >= 300
    )
    assert first.stopped and not first.finished
    assert 300 <= first.sent < PEOPLE
    counts = ws.store.delivery_counts(campaign_id)
    assert counts["sending"] == 0  # each process finished its message in flight
    assert counts["pending"] == PEOPLE - first.sent
    second = jobs.send_campaign(ws, ws.store, campaign_id, clock)
    assert second.finished and second.sent == PEOPLE - first.sent
    assert Counter(sink.recipients()) == Counter(addresses)
    ws.close()


def test_pausing_from_elsewhere_stops_all_processes(ws_dir, sink) -> None:
    ws, campaign_id, _ = _workspace(ws_dir, sink, NEWSLETTER_DELIVERY__RATE_PER_SECOND="300")
    sender, result = _send_in_background(ws, campaign_id, sink)
    other = ws.open_store()
    campaigns.pause(other, campaign_id, NOW)
    at_pause = len(sink.messages)
    sender.join(timeout=30)
    assert not sender.is_alive()
    # A claim reads the campaign's status in its own transaction: after the pause
    # only messages already in flight (one per connection) can arrive.
    assert len(sink.messages) - at_pause <= 4
    assert result["p"].stopped and not result["p"].finished
    counts = other.delivery_counts(campaign_id)
    assert counts["sending"] == 0 and counts["pending"] > 0
    assert counts["sent"] == len(sink.messages)
    assert other.campaign(campaign_id)["status"] == "paused"
    other.close()
    ws.close()


def test_a_killed_sending_process_pauses_the_campaign_and_leaves_nothing_unknown(
    ws_dir, sink
) -> None:
    ws, campaign_id, addresses = _workspace(
        ws_dir, sink, NEWSLETTER_DELIVERY__RATE_PER_SECOND="300"
    )
    sender, result = _send_in_background(ws, campaign_id, sink)
    # This process sends one share itself; one child process sends the other.
    children = senders(os.getpid())
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    sender.join(timeout=30)
    assert not sender.is_alive()
    progress = result["p"]
    assert "stopped unexpectedly" in progress.paused_reason
    store = ws.open_store()
    assert store.campaign(campaign_id)["status"] == "paused"
    counts = store.delivery_counts(campaign_id)
    assert counts["sending"] == 0  # the dead process's row in flight was settled
    assert counts["in_doubt"] <= 2  # at most one per connection of the dead process
    campaigns.resume(store, campaign_id, NOW)
    final = jobs.send_campaign(ws, store, campaign_id, clock)
    assert final.finished
    in_doubt = {
        s["email"]
        for s in store.subscribers("confirmed")
        if store.delivery(campaign_id, s["id"])["status"] == "in_doubt"
    }
    received = Counter(sink.recipients())
    for address in addresses:
        if address in in_doubt:
            assert received[address] <= 1
        else:
            assert received[address] == 1, address
    store.close()
    ws.close()


def test_failures_in_a_row_in_one_process_pause_the_whole_campaign(ws_dir, sink) -> None:
    ws, campaign_id, addresses = _workspace(
        ws_dir, sink, NEWSLETTER_DELIVERY__PAUSE_AFTER_FAILURES="5"
    )
    for address in addresses:
        sink.handler.rcpt_replies[address] = "452 4.2.2 Mailbox full"
    progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
    assert "failures in a row" in progress.paused_reason and "452" in progress.paused_reason
    assert ws.store.campaign(campaign_id)["status"] == "paused"
    counts = ws.store.delivery_counts(campaign_id)
    assert counts["sending"] == 0 and counts["sent"] == 0
    # Only a handful were tried: the processes stopped instead of burning through the list.
    assert counts["deferred"] < 40
    ws.close()


def test_the_cli_shows_sent_failed_left_rate_and_eta(ws_dir, sink, env) -> None:
    people = ws_dir / "people.csv"
    people.write_text("email\n" + "".join(f"p{i}@example.net\n" for i in range(PEOPLE)))
    env.update(smtp_env(sink, NEWSLETTER_DELIVERY__PROCESSES="2"))
    env["NEWSLETTER_DELIVERY__CONCURRENCY"] = "2"
    cli = Cli(ws_dir, env)
    cli("fetch")
    cli("subscribers", "import", "--confirmed", "people.csv")
    cli("campaign", "create", "--subject", "Big")
    result = cli("campaign", "send", "1")
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"campaign 1: {PEOPLE} sent, 0 failed, 0 left, ")
    assert last.endswith("/s, ETA 0:00:00")
    assert f"campaign 1: {PEOPLE} sent, 0 failed" in result.stdout
    assert len(sink.recipients()) == PEOPLE


def test_a_stop_while_the_processes_start_stops_cleanly(ws_dir, sink) -> None:
    ws, campaign_id, _ = _workspace(ws_dir, sink)
    progress = jobs.send_campaign(ws, ws.store, campaign_id, clock, should_stop=lambda: True)
    assert progress.stopped and progress.paused_reason is None
    assert ws.store.campaign(campaign_id)["status"] == "sending"  # the scheduler goes on later
    counts = ws.store.delivery_counts(campaign_id)
    assert counts["sending"] == counts["in_doubt"] == 0
    assert counts["pending"] + counts["sent"] == PEOPLE
    # Every sending process ends; one told to stop while starting up may take a moment
    # to finish exiting on a busy machine.
    deadline = time.monotonic() + 10
    while senders(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert senders(os.getpid()) == []


def test_the_rate_limit_holds_across_processes(ws_dir, sink) -> None:
    ws, campaign_id, addresses = _workspace(
        ws_dir, sink, NEWSLETTER_DELIVERY__RATE_PER_SECOND="500"
    )
    progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
    assert progress.finished
    arrivals = sorted(sink.handler.arrivals)
    busiest = max(
        bisect.bisect_right(arrivals, start + 1.0) - i for i, start in enumerate(arrivals)
    )
    # Each process keeps its own share of the rate in a one-second window; arrivals can
    # bunch by at most the messages in flight (one per connection).
    assert busiest <= 500 + 4
    assert arrivals[-1] - arrivals[0] >= (PEOPLE - 504) / 500


def test_every_process_sends_as_the_configured_envelope_sender(ws_dir, sink) -> None:
    ws, campaign_id, addresses = _workspace(
        ws_dir, sink, NEWSLETTER_SENDER__FROM_ADDRESS="bounces@news.example.org"
    )
    progress = jobs.send_campaign(ws, ws.store, campaign_id, clock)
    assert progress.finished and len(sink.handler.sessions) >= 2
    assert Counter(sink.recipients()) == Counter(addresses)
    assert {m.sender for m in sink.messages} == {"bounces@news.example.org"}
    ws.close()


def test_a_sending_process_imports_only_what_sending_needs() -> None:
    # What a child runs (newsletter.sender) and unpickles (the parts factory jobs hands
    # it): not the scheduler's jobs with their feeds, imports and automations.
    code = (
        "import sys, newsletter.sender, newsletter.send_parts\n"
        "print(sorted(m for m in ('newsletter.jobs', 'newsletter.sources.intake', "
        "'newsletter.automations', 'newsletter.web') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
    factory = jobs.send_prepared.__globals__["shard_parts"]
    assert factory.__module__ == "newsletter.send_parts"
