"""Retention of raw tracking events: the purge job, its command, its settings."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from clocks import NOW
from newsletter import job_scheduler, jobs
from newsletter.workspace import Workspace


def _days_ago(days: float, now: dt.datetime) -> str:
    return (now - dt.timedelta(days=days)).isoformat(timespec="seconds")


def seed(ws: Workspace, now: dt.datetime) -> None:
    """Events 40 and 5 days before `now`: the clock the code under test will read."""
    rows = [(kind, _days_ago(40, now)) for kind in ("open", "click", "view", "bad_token")]
    rows += [
        ("unsubscribe", _days_ago(40, now)),
        ("bounce", _days_ago(40, now)),
        ("open", _days_ago(5, now)),
    ]
    ws.store.insert_events(
        [{"at": when, "kind": kind, "campaign_id": 1, "subscriber_id": 1} for kind, when in rows]
    )


def kinds(ws: Workspace) -> list[tuple[str, str]]:
    return [(r["kind"], r["at"]) for r in ws.store._rows("SELECT kind, at FROM events ORDER BY id")]


@pytest.fixture
def ws(ws_dir: Path):
    workspace = Workspace.open(ws_dir, env={"NEWSLETTER_TRACKING__RETENTION_DAYS": "30"})
    yield workspace
    workspace.close()


def test_purge_deletes_old_reader_events_and_keeps_records(ws):
    seed(ws, NOW)
    result = jobs.purge_events(ws, ws.store, NOW)
    assert result.deleted == 4 and result.before == NOW - dt.timedelta(days=30)
    # Unsubscribes and bounces are records (proof, suppression), never purged.
    assert kinds(ws) == [
        ("unsubscribe", _days_ago(40, NOW)),
        ("bounce", _days_ago(40, NOW)),
        ("open", _days_ago(5, NOW)),
    ]


def test_no_retention_period_keeps_everything(workspace):
    seed(workspace, NOW)
    assert jobs.purge_events(workspace, workspace.store, NOW) is None
    assert len(kinds(workspace)) == 7


def test_the_scheduler_runs_the_purge_daily(ws, caplog):
    seed(ws, NOW)
    built = job_scheduler.build_scheduler(ws, threading.Event())
    # Paused: the stored jobs are brought in step, and none runs on the real clock.
    built.start(paused=True)
    try:
        job_scheduler.sync_jobs(built, ws, NOW)
        job = built.get_job("purge-events")
    finally:
        job_scheduler.stop_scheduler(ws, built)
    assert job.func is job_scheduler.purge_job and job.args == (str(ws.root),)
    assert job.trigger.interval == dt.timedelta(days=1)
    # What the job runs, on an injected clock.
    with caplog.at_level("INFO", logger="newsletter"):
        jobs.purge_old_events(ws, clock=lambda: NOW)
    assert "events: deleted 4 recorded before 2026-10-28" in caplog.text
    assert len(kinds(ws)) == 3


def test_purge_command(cli, workspace):
    # The command reads the real clock, so the events are dated from it.
    seed(workspace, dt.datetime.now(dt.UTC))
    workspace.close()
    out = cli("events", "purge").stdout
    assert "nothing to purge" in out
    out = cli("events", "purge", "--older-than", "10").stdout
    assert out.startswith("deleted 4 events recorded before ")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "tracking.retention_days: must be 0 (keep events) or more days"),
        ("soon", "NEWSLETTER_TRACKING__RETENTION_DAYS: expected a whole number, got 'soon'"),
    ],
)
def test_a_bad_retention_setting_is_one_line_naming_the_key(cli, value, message):
    cli.env["NEWSLETTER_TRACKING__RETENTION_DAYS"] = value
    result = cli("events", "purge", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {message}"


def test_a_bad_signals_file_is_one_line_naming_the_key(cli, ws_dir):
    (ws_dir / "signals.toml").write_text('[[agent]]\nname = "x"\nmatch = "("\nopen = "machine"\n')
    cli.env["NEWSLETTER_TRACKING__SIGNALS_FILE"] = "signals.toml"
    result = cli("config", "check", check=False)
    assert result.returncode == 1
    assert "tracking.signals_file: " in result.stderr
    assert "signals.toml: agent[0].match: not a regular expression" in result.stderr
    cli.env["NEWSLETTER_TRACKING__SIGNALS_FILE"] = "missing.toml"
    result = cli("stats", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: tracking.signals_file: ")
    assert "missing.toml does not exist" in result.stderr
