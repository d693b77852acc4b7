"""A campaign that cannot go on pauses with the reason: never stuck sending, never looping."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

from newsletter import campaigns, jobs
from newsletter.render import DEFAULTS_DIR
from newsletter.workspace import Workspace
from smtp_sink import SmtpSink, smtp_env
from workspaces import workspace_with_articles_and_subscribers


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_the_due_job_pauses_a_campaign_it_cannot_start_instead_of_retrying_it(
    ws_dir: Path,
) -> None:
    shutil.copytree(DEFAULTS_DIR / "templates" / "announcement", ws_dir / "templates" / "mine")
    with SmtpSink() as sink:
        ws = Workspace.open(ws_dir, env=smtp_env(sink))
        try:
            store = ws.store
            workspace_with_articles_and_subscribers(ws, _now())
            cid = campaigns.create(store, ws.settings, "Hello", "new", "mine", None, _now())
            campaigns.start(store, cid, _now())
            # The template set is deleted while the campaign is sending (a crash, a deploy).
            shutil.rmtree(ws_dir / "templates" / "mine")

            jobs.send_due(ws)

            campaign = store.campaign(cid)
            assert campaign["status"] == "paused"
            assert "template 'mine'" in campaign["note"] and "resume" in campaign["note"]
            # The next ticks of the due job leave it alone: no retry every 15 seconds.
            jobs.send_due(ws)
            jobs.send_due(ws)
            assert store.campaign(cid)["status"] == "paused"
            assert sink.messages == []
        finally:
            ws.close()


def test_campaign_send_exits_1_when_the_campaign_paused_on_an_error(cli, ws_dir: Path) -> None:
    with SmtpSink(login=("news", "the right password")) as sink:
        cli.env = {
            **cli.env,
            **smtp_env(sink),
            "NEWSLETTER_SMTP__USERNAME": "news",
            "NEWSLETTER_SMTP_PASSWORD": "a wrong password",
        }
        cli("fetch")
        cli("subscribers", "import", "subscribers/example.csv")
        cli("campaign", "create", "--subject", "Hello")
        result = cli("campaign", "send", "1", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: campaign 1: paused: ") and "login refused" in last, last
    assert "newsletter campaign resume 1" in last
    assert "Traceback" not in result.stderr
    assert "paused" in cli("campaign", "list").stdout
    assert sink.messages == []


def test_a_million_sender_threads_are_refused_naming_the_key_and_range(cli) -> None:
    cli.env = {**cli.env, "NEWSLETTER_DELIVERY__CONCURRENCY": "1000000"}
    result = cli("config", "check", check=False)
    assert result.returncode == 1
    assert (
        "delivery.concurrency: 1000000 is out of range; use 1 to 256 sender threads and "
        "connections" in result.stderr
    )
    send = cli("campaign", "send", "1", check=False)
    assert send.returncode == 1 and "delivery.concurrency: 1000000 is out of range" in send.stderr


def test_a_send_whose_threads_cannot_start_pauses_instead_of_staying_sending(
    cli, ws_dir: Path
) -> None:
    cli("fetch")
    cli("subscribers", "import", "subscribers/example.csv", "--confirmed")
    cli("campaign", "create", "--subject", "Hello")
    # The "can't start new thread" of a machine that has run out: threads of 256 MB
    # stacks in a process allowed room for three of them (the lease's heartbeat and two
    # senders) beyond what it holds, so the third sender cannot start. The room left
    # keeps the heap able to grow (one malloc arena), so nothing else runs out first.
    limited = (
        "import resource, sys, threading\n"
        "from newsletter.cli import main\n"
        "stack = 256 * 1024 * 1024\n"
        "threading.stack_size(stack)\n"
        "held = next(int(line.split()[1]) for line in open('/proc/self/status')\n"
        "            if line.startswith('VmSize:')) * 1024\n"
        "limit = held + 3 * stack + 200 * 1024 * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "sys.argv = ['newsletter', '--workspace', sys.argv[1], 'campaign', 'send', '1']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", limited, str(ws_dir)],
        capture_output=True,
        text=True,
        env={**cli.env, "NEWSLETTER_DELIVERY__CONCURRENCY": "256", "MALLOC_ARENA_MAX": "1"},
        cwd=ws_dir,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "can't start new thread" in result.stderr.strip().splitlines()[-1]
    listing = cli("campaign", "list").stdout
    assert "paused" in listing and "sending" not in listing, listing
    # Resumed with a sane setting, it sends everything.
    cli("campaign", "resume", "1")
    sent = cli("campaign", "send", "1")
    assert "(not finished" not in sent.stdout and " 0 failed" in sent.stdout
