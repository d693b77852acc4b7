"""Ctrl-C during `campaign send`: nothing more goes, and every message already handed
over is finished and recorded, in this process and in its sending processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from clocks import NOW, clock
from newsletter import campaigns, jobs
from newsletter.subscribers import import_file
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink, smtp_env
from test_delivery_processes import PEOPLE, senders
from workspaces import new_campaign


def _interrupt_after(sink: SmtpSink, count: int) -> threading.Thread:
    """SIGINT to this process (as Ctrl-C sends it) once ``count`` messages arrived."""

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while len(sink.messages) < count and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("processes", "connections"),
    [("1", "1"), ("1", "4"), ("2", "4")],
    ids=["one-connection", "four-connections", "two-processes"],
)
def test_ctrl_c_sends_nothing_more_and_records_every_message_in_flight(
    ws_dir: Path, processes: str, connections: str
) -> None:
    with SmtpSink(pipelining=True) as sink:
        env = smtp_env(
            sink,
            NEWSLETTER_DELIVERY__PROCESSES=processes,
            NEWSLETTER_DELIVERY__CONCURRENCY=connections,
        )
        ws = Workspace.open(ws_dir, env=env)
        people = ws_dir / "people.csv"
        people.write_text("email\n" + "".join(f"p{i}@example.net\n" for i in range(PEOPLE)))
        jobs.fetch_sources(ws, ws.store, NOW)
        import_file(ws.store, people, NOW, confirmed=True)
        campaign_id = campaigns.create(ws.store, ws.settings, "Big", "new", None, None, NOW)
        interrupter = _interrupt_after(sink, 100)
        with pytest.raises(KeyboardInterrupt):
            jobs.send_campaign(ws, ws.store, campaign_id, clock)
        interrupter.join()
        arrived = len(sink.messages)
    counts = ws.store.delivery_counts(campaign_id)
    # Every message the server has is recorded as sent; none is left in flight or in doubt.
    assert counts["sending"] == 0 and counts["in_doubt"] == 0
    assert counts["sent"] == arrived
    # It stopped soon after the Ctrl-C, the sending processes too (a process's share is
    # PEOPLE / processes).
    assert 100 <= arrived < PEOPLE // 2
    assert counts["pending"] == PEOPLE - arrived
    # The campaign is still sending: the next `campaign send` (or the scheduler) goes on.
    assert ws.store.campaign(campaign_id)["status"] == "sending"
    assert senders(os.getpid()) == []
    ws.close()


def test_ctrl_c_while_the_rate_limit_waits_sends_nothing_more(ws_dir: Path) -> None:
    """One message every two seconds: Ctrl-C right after the first ends the wait for
    the second instead of sending it when the wait is over."""
    with SmtpSink(pipelining=True) as sink:
        env = smtp_env(sink, NEWSLETTER_DELIVERY__RATE_PER_SECOND="0.5")
        ws = Workspace.open(ws_dir, env=env)
        campaign_id = new_campaign(ws, NOW)
        interrupter = _interrupt_after(sink, 1)
        with pytest.raises(KeyboardInterrupt):
            jobs.send_campaign(ws, ws.store, campaign_id, clock)
        interrupter.join()
        arrived = len(sink.messages)
    counts = ws.store.delivery_counts(campaign_id)
    assert arrived == 1
    assert counts["sent"] == 1 and counts["sending"] == 0
    assert counts["pending"] == len(ws.store.subscribers("confirmed")) - 1
    ws.close()
