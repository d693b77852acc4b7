"""What `newsletter campaign send` and its sending processes load: what sending needs.

Every command imports every command group (cli/__init__.py), and each sending process of a
large campaign starts a fresh interpreter (``python -m newsletter.sender``): whatever these
load is paid at each launch, before the first message. Taking in articles, reading CSV
addresses, the scheduler, DKIM and the web app load in the functions that use them. These
tests hold that without timing anything: they look at which modules each process loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import Cli

# What a send without a DKIM key must not load, grouped by what it is for; each would
# cost every command and every sending process its import.
NOT_FOR_SENDING = (
    # Taking in articles (`fetch`, the scheduler's poll): feeds, folders, pages, Wix, HTTP.
    "newsletter.sources.intake",
    "newsletter.sources.feed",
    "newsletter.sources.folder",
    "newsletter.sources.page",
    "newsletter.sources.wix",
    "newsletter.sources.http",
    "feedparser",
    "yaml",
    "lxml",
    "trafilatura",
    "readability",
    "requests",
    "urllib3",
    "chardet",
    "charset_normalizer",
    # The scheduler (`run`) and its job store; cron rules (digest mode) load APScheduler.
    "newsletter.job_scheduler",
    "apscheduler",
    "sqlalchemy",
    # The web app: the serve commands only.
    "newsletter.web",
    "newsletter.twofactor",
    "starlette",
    "uvicorn",
    # DKIM: loaded when a key signs mail; dnspython (through dkimpy) never helps to sign.
    "newsletter.dkim",
    "dkim",
    "dns",
    "cryptography",
    # The email API transports, loaded when one is chosen.
    "boto3",
    "botocore",
    # Reading typed or imported addresses: email-validator compiles its patterns at import.
    "email_validator",
    # A campaign's own Markdown: loaded when a campaign has some (these have none).
    "markdown_it",
)

# Writes, as each process of the run exits, its command line and loaded modules.
RECORDER = """\
import atexit, json, os, sys

def _record():
    out = os.path.join(os.environ["NEWSLETTER_TEST_MODULES"], f"{os.getpid()}.json")
    with open(out, "w") as handle:
        json.dump({"argv": sys.argv, "modules": sorted(sys.modules)}, handle)

if os.environ.get("NEWSLETTER_TEST_MODULES"):
    atexit.register(_record)
"""


def not_for_sending(modules: list[str]) -> list[str]:
    return [
        m for m in modules if any(m == name or m.startswith(name + ".") for name in NOT_FOR_SENDING)
    ]


def test_the_finder_matches_a_package_and_its_modules_only() -> None:
    assert not_for_sending(["yaml", "yaml.loader", "yamlish", "newsletter.sources"]) == [
        "yaml",
        "yaml.loader",
    ]


def test_importing_the_commands_and_a_sending_process_loads_none_of_it() -> None:
    code = (
        "import json, sys\n"
        "import newsletter.cli, newsletter.send_parts, newsletter.delivery\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = json.loads(done.stdout)
    assert "newsletter.cli.campaign" in modules and "jinja2" in modules
    assert not_for_sending(modules) == []


def test_campaign_send_and_its_sending_processes_load_none_of_it(
    cli: Cli, env: dict[str, str], tmp_path: Path
) -> None:
    """A campaign large enough to be shared by two processes, sent to the outbox; each process
    records what it loaded as it exits (a sitecustomize on PYTHONPATH)."""
    cli("fetch")
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"p{i}@example.net\n" for i in range(1_100)))
    cli("subscribers", "import", str(people), "--confirmed")
    campaign_id = cli("campaign", "create", "--subject", "Hi").stdout.strip().splitlines()[-1]

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RECORDER)
    recorded = tmp_path / "modules"
    recorded.mkdir()
    send = Cli(
        cli.workspace,
        {
            **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")])),
            "NEWSLETTER_TEST_MODULES": str(recorded),
            "NEWSLETTER_DELIVERY__TRANSPORT": "outbox",
            "NEWSLETTER_DELIVERY__PROCESSES": "2",
            "NEWSLETTER_DELIVERY__CONCURRENCY": "2",
        },
    )
    out = send("campaign", "send", campaign_id).stdout
    assert "1100 sent, 0 failed" in out

    runs = [json.loads(path.read_text()) for path in sorted(recorded.glob("*.json"))]
    senders = [r for r in runs if Path(r["argv"][0]).name == "sender.py"]
    commands = [r for r in runs if Path(r["argv"][0]).name == "__main__.py"]
    # The command sends one share itself and starts one sending process for the other.
    assert len(commands) == 1 and len(senders) == 1, [r["argv"] for r in runs]
    for run in runs:
        assert "newsletter.delivery" in run["modules"]
        assert not_for_sending(run["modules"]) == [], run["argv"]
