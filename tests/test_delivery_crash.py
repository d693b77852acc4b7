"""SIGKILL a sending process at random moments: nobody gets a campaign twice or not at all."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import Cli
from newsletter import campaigns, jobs
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink
from test_delivery_processes import gone, senders

SUBSCRIBERS = 2000
CONNECTIONS = 4
KILLS = 3


def _rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("processes", "connections"),
    [(1, 1), (1, CONNECTIONS), (2, CONNECTIONS)],
    # One connection: the sending thread builds and sends itself, without worker threads.
    ids=["one-connection", "one-process", "two-processes"],
)
def test_sigkill_during_a_campaign_never_duplicates_or_skips(
    ws_dir: Path, env: dict[str, str], processes: int, connections: int
) -> None:
    rng = random.Random(20261127)
    people = ws_dir / "people.csv"
    people.write_text("email\n" + "".join(f"p{i}@example.net\n" for i in range(SUBSCRIBERS)))
    db = ws_dir / "newsletter.db"
    with SmtpSink() as sink:
        env.update(
            NEWSLETTER_DELIVERY__TRANSPORT="smtp",
            NEWSLETTER_SMTP__HOST="127.0.0.1",
            NEWSLETTER_SMTP__PORT=str(sink.port),
            NEWSLETTER_SMTP__SECURITY="none",
            NEWSLETTER_DELIVERY__CONCURRENCY=str(connections),
            # Two processes: the sender and its children all die with the kill.
            NEWSLETTER_DELIVERY__PROCESSES=str(processes),
        )
        cli = Cli(ws_dir, env)
        cli("fetch")
        cli("subscribers", "import", "--confirmed", "people.csv")
        cli("subscribers", "import", "subscribers/example.csv")
        cli("campaign", "create", "--subject", "Crash test")
        kills = 0
        in_flight_at_kills = []
        while kills < KILLS:
            before = len(sink.messages)
            proc = cli.popen("campaign", "send", "1")
            target = before + rng.randint(150, 450)
            deadline = time.monotonic() + 60
            while len(sink.messages) < target and proc.poll() is None:
                assert time.monotonic() < deadline, "sending made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            if proc.poll() is not None:
                proc.communicate()
                break  # finished before this kill; nothing left to interrupt
            children = senders(proc.pid)
            if kills == 0:  # later runs may have fewer than SHARD_MIN_ROWS rows left
                # The sender sends one share itself and starts a child for each other.
                assert len(children) == processes - 1
            proc.kill()
            proc.communicate()  # reaps the process and closes its pipe
            deadline = time.monotonic() + 10
            while not all(gone(pid) for pid in children):  # they die with their parent
                assert time.monotonic() < deadline, "a sending process outlived its parent"
                time.sleep(0.01)
            kills += 1
            # Rows still 'sending' are exactly the ones in flight at the kill.
            in_flight = _rows(db, "SELECT COUNT(*) FROM deliveries WHERE status = 'sending'")
            in_flight_at_kills.append(in_flight[0][0])
        assert kills == KILLS, "the campaign finished before every kill happened"
        result = cli("campaign", "send", "1")
        assert "not finished" not in result.stdout
        received = Counter(sink.recipients())

    for count in in_flight_at_kills:
        assert count <= connections
    rows = _rows(
        db,
        "SELECT s.email, d.status FROM deliveries d JOIN subscribers s "
        "ON s.id = d.subscriber_id WHERE d.campaign_id = 1",
    )
    assert len(rows) == SUBSCRIBERS + 5  # the five confirmed example subscribers too
    in_doubt = {email for email, status in rows if status == "in_doubt"}
    assert len(in_doubt) == sum(in_flight_at_kills)
    for email, status in rows:
        if status == "in_doubt":
            assert received[email] <= 1, email  # never resent blindly
        else:
            assert status == "sent", (email, status)
            assert received[email] == 1, (email, received[email])
    assert set(received) <= {email for email, _ in rows}
    listing = Cli(ws_dir, env)("campaign", "list").stdout
    assert f"{len(in_doubt)} in doubt" in listing or not in_doubt


def test_a_restarted_run_takes_over_the_lease_of_a_killed_run_at_once(
    ws_dir: Path, env: dict[str, str]
) -> None:
    """`kill -9` of `newsletter run` mid-campaign: the next run sends the rest without waiting.

    The dead run's lease is pushed an hour ahead, so a scheduler that waited
    for it to expire would never finish within the test; one that sees its
    holder's pid gone on this host takes it over at once, as `campaign send` does.
    """
    from conftest import stop_process

    people = ws_dir / "people.csv"
    people.write_text("email\n" + "".join(f"r{i}@example.net\n" for i in range(SUBSCRIBERS)))
    db = ws_dir / "newsletter.db"
    with SmtpSink() as sink:
        env.update(
            NEWSLETTER_DELIVERY__TRANSPORT="smtp",
            NEWSLETTER_SMTP__HOST="127.0.0.1",
            NEWSLETTER_SMTP__PORT=str(sink.port),
            NEWSLETTER_SMTP__SECURITY="none",
            NEWSLETTER_DELIVERY__CONCURRENCY="1",
            NEWSLETTER_SCHEDULE__MODE="off",
        )
        cli = Cli(ws_dir, env)
        cli("fetch")
        cli("subscribers", "import", "--confirmed", "people.csv")
        # Imported here, not left to the run's first poll: that poll and the look for
        # due campaigns start together, and either may come first.
        cli("subscribers", "import", "subscribers/example.csv")
        cli("campaign", "create", "--subject", "Restart")
        ws = Workspace.open(ws_dir, env={})
        now = jobs.utc_now()
        campaigns.schedule(ws.store, 1, now, now - dt.timedelta(minutes=5))
        ws.close()

        first = cli.popen("run")
        deadline = time.monotonic() + 60
        while len(sink.messages) < 100:
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first run sent nothing"
            time.sleep(0.005)
        first.kill()  # SIGKILL: no shutdown, the lease row stays behind
        first.communicate()
        lease = _rows(db, "SELECT pid, expires_at FROM send_leases WHERE campaign_id = 1")
        assert lease and lease[0][0] == first.pid
        assert _rows(db, "SELECT status FROM campaigns WHERE id = 1") == [("sending",)]
        conn = sqlite3.connect(db)
        with conn:
            conn.execute("UPDATE send_leases SET expires_at = ?", [time.time() + 3600])
        conn.close()

        second = cli.popen("run")
        try:
            deadline = time.monotonic() + 90
            while _rows(db, "SELECT status FROM campaigns WHERE id = 1") != [("sent",)]:
                assert second.poll() is None
                assert time.monotonic() < deadline, "the restarted run did not take over"
                time.sleep(0.1)
        finally:
            log = stop_process(second)
        received = Counter(sink.recipients())

    assert "Traceback" not in log, log
    rows = _rows(
        db,
        "SELECT s.email, d.status FROM deliveries d JOIN subscribers s "
        "ON s.id = d.subscriber_id WHERE d.campaign_id = 1",
    )
    assert len(rows) == SUBSCRIBERS + 5
    for email, status in rows:
        if status == "in_doubt":
            assert received[email] <= 1, email
        else:
            assert (status, received[email]) == ("sent", 1), email
