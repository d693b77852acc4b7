"""The whole slice through the CLI and real HTTP on loopback, as a new user would run it.

init → fetch → subscribers import → campaign create → send → outbox → serve
(pixel, click, unsubscribe) → stats.
"""

from __future__ import annotations

import csv
import email
import email.policy
import json
import re
import time
from pathlib import Path

import requests
import yaml

from conftest import stop_process, wait_for_http


def _confirmed_addresses(csv_path: Path) -> set[str]:
    with csv_path.open(encoding="utf-8") as handle:
        return {row["email"] for row in csv.DictReader(handle) if row["status"] == "confirmed"}


def _article_urls(folder: Path) -> set[str]:
    urls = set()
    for path in folder.glob("*.md"):
        front = path.read_text(encoding="utf-8").split("---")[1]
        urls.add(yaml.safe_load(front)["url"])
    return urls


def _parts(message: email.message.EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return plain, html


def test_slice_end_to_end(cli, ws_dir: Path, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    expected = _confirmed_addresses(ws_dir / "subscribers" / "example.csv")
    article_urls = _article_urls(ws_dir / "articles")
    assert expected and article_urls

    fetched = cli("fetch").stdout
    assert f"{len(article_urls)} new" in fetched
    imported = cli("subscribers", "import", "subscribers/example.csv").stdout
    assert "6 added" in imported

    campaign_id = cli("campaign", "create", "--subject", "Fresh from the blog").stdout.strip()
    assert campaign_id == "1"
    sent = cli("campaign", "send", campaign_id).stdout
    assert f"{len(expected)} sent" in sent

    files = sorted((ws_dir / "outbox").glob("*.eml"))
    assert len(files) == len(expected)
    messages = [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files
    ]
    assert {m["To"].addresses[0].addr_spec for m in messages} == expected
    for message in messages:
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(rf"<{re.escape(base)}/u/[\w-]+>", message["List-Unsubscribe"])
        plain, html = _parts(message)
        assert re.search(rf'<img src="{re.escape(base)}/o/[\w-]+\.gif"', html)
        # No raw article URL is left in a link: every one goes through a signed click link.
        for url in article_urls:
            assert f'href="{url}"' not in html
        assert re.search(rf"{re.escape(base)}/c/[\w-]+", plain)
        assert message["To"].addresses[0].addr_spec not in message["List-Unsubscribe"]

    first = messages[0]
    reader = first["To"].addresses[0].addr_spec
    plain, html = _parts(first)
    pixel = re.search(rf'src="({re.escape(base)}/o/[\w-]+\.gif)"', html).group(1)
    click = re.search(rf'href="({re.escape(base)}/c/[\w-]+)"', html).group(1)
    unsubscribe = first["List-Unsubscribe"].strip("<>")

    server = cli.popen("serve")
    try:
        wait_for_http(base + "/healthz", proc=server)
        answer = requests.get(pixel, timeout=5)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/gif"
        assert len(answer.content) == 43

        answer = requests.get(click, allow_redirects=False, timeout=5)
        assert answer.status_code == 302
        location = answer.headers["location"]
        assert location in article_urls

        page = requests.get(unsubscribe, timeout=5)
        assert page.status_code == 200
        assert "<form" in page.text and 'method="post"' in page.text
        assert f"{reader}\tconfirmed" in cli("subscribers", "list").stdout

        # Exactly as a mailbox provider sends RFC 8058: no cookie, no token but the URL's.
        answer = requests.post(
            unsubscribe,
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            timeout=5,
        )
        assert answer.status_code == 200
        assert f"{reader}\tunsubscribed" in cli("subscribers", "list").stdout
    finally:
        stop_process(server)

    stats = json.loads(cli("stats", campaign_id, "--json").stdout)[0]
    assert stats["sent"] == len(expected)
    assert stats["opens_total"] == 1 and stats["opens_unique"] == 1
    assert stats["clicks_total"] == 1 and stats["clicks_unique"] == 1
    assert stats["views_total"] == 1
    assert stats["unsubscribes"] == 1
    clicked = [link for link in stats["links"] if link["clicks_total"]]
    assert len(clicked) == 1 and clicked[0]["url"] == location
    text = cli("stats").stdout
    assert f"sent {len(expected)}" in text and "unsubscribed 1" in text


def test_run_delivers_sample_newsletter_on_first_start(cli, ws_dir: Path, port: int) -> None:
    """`newsletter run` on a fresh workspace: picks up the samples and fills the outbox."""
    expected = _confirmed_addresses(ws_dir / "subscribers" / "example.csv")
    proc = cli.popen("run")
    outbox = ws_dir / "outbox"
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        deadline = time.monotonic() + 60
        while len(list(outbox.glob("*.eml"))) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        log = stop_process(proc)
    assert proc.returncode == 0, log
    assert len(list(outbox.glob("*.eml"))) == len(expected), log
    assert f"web server on http://127.0.0.1:{port}" in log
    assert f"delivered {len(expected)} messages into {ws_dir.resolve() / 'outbox'}" in log
    assert "Traceback" not in log
