"""The staff dashboard at a successful publisher's size, and the pixel while staff browse.

Builds a workspace through the project's own code: `init` and `fetch`, 50,000
subscribers imported with `subscribers.import_file`, 24 weekly campaigns each
started with `jobs.prepare_send` (deliveries planned, links registered) and
carried through the delivery ledger (`claim_deliveries`, `record_outcomes`)
without rendering a million messages, and about 292,000 opens, clicks and views
through the event writer that classifies them as the web server does. Then
`newsletter serve` runs on it and a staff account signs in.

Printed: each dashboard page's time (median of five loads after one to warm
up) beside /healthz's, `newsletter stats --json` for every campaign beside
`newsletter --version` (the first run counts, the second finds the numbers
kept), and the open pixel's p99 latency (100 requests a second
for 10 s) alone and while a staff member loads pages one after another.

Usage: python bench/dashboard.py [--quick]   (--quick: 5,000 subscribers, 6 campaigns)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from _local import free_port, wait
from newsletter import campaigns, jobs, subscribers
from newsletter.events import EventWriter, Privacy
from newsletter.mail import Urls
from newsletter.status import CampaignStatus
from newsletter.workspace import Workspace

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PASSWORD = "bench-password-long-enough"
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
]
BATCH = 2000
LOADS = 5
PIXEL_SECONDS = 10
PIXEL_RATE = 100


def build(root: Path, people: int, weeks: int, events_each: int, env: dict[str, str]) -> None:
    """The workspace: subscribers, sent campaigns with their deliveries, and their events."""
    started = time.perf_counter()
    python = [sys.executable, "-m", "newsletter", "--workspace", str(root)]
    subprocess.run([*python, "init"], check=True, env=env, capture_output=True)
    subprocess.run([*python, "fetch"], check=True, env=env, capture_output=True)
    ws = Workspace.open(root, env=env)
    store = ws.store
    export = root / "people.csv"
    export.write_text(
        "email,first_name,status\n"
        + "".join(f"reader.{i}@example.com,Reader{i},confirmed\n" for i in range(people)),
        encoding="utf-8",
    )
    subscribers.import_file(store, export, NOW - dt.timedelta(weeks=weeks + 1), confirmed=True)
    article_ids = ",".join(str(a["id"]) for a in store.articles())
    rng = random.Random(16)
    ids = []
    for week in range(weeks, 0, -1):
        sent = NOW - dt.timedelta(weeks=week)
        cid = campaigns.create(
            store, ws.settings, f"Week {weeks - week + 1}", article_ids, None, None, sent
        )
        _, transport = jobs.prepare_send(ws, store, cid, sent)
        transport.close()
        rows = [
            r[0]
            for r in store.conn.execute(
                "SELECT id FROM deliveries WHERE campaign_id = ? ORDER BY id", [cid]
            )
        ]
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            store.claim_deliveries([(d, f"<{d}@bench>") for d in batch], sent)
            store.record_outcomes([{"id": d, "status": "sent"} for d in batch], sent)
        store.set_campaign_status(cid, CampaignStatus.SENT, (CampaignStatus.SENDING,), sent)
        ids.append((cid, sent))
    built = time.perf_counter()

    # Opens, clicks and views as the web server records them: through the event writer.
    writer = EventWriter(ws.path(ws.settings.database.path), signals=ws.signals, privacy=Privacy())
    writer.start()
    readers = [r[0] for r in store.conn.execute("SELECT id FROM subscribers")]
    for cid, sent in ids:
        links = store.campaign_links(cid)
        for _ in range(events_each):
            reader = rng.choice(readers)
            at = sent + dt.timedelta(seconds=rng.randint(30, 72 * 3600))
            event = {
                "at": at.isoformat(timespec="seconds"),
                "campaign_id": cid,
                "subscriber_id": reader,
                "method": "GET",
                "user_agent": rng.choice(BROWSERS),
                "ip": f"203.0.113.{rng.randint(1, 254)}",
            }
            if rng.random() < 0.8 or not links:
                writer.put({**event, "kind": "open"})
            else:
                link = rng.choice(links)
                writer.put(
                    {
                        **event,
                        "kind": "click",
                        "link_id": link["id"],
                        "article_id": link["article_id"],
                    }
                )
    writer.close()
    counts = store.conn.execute(
        "SELECT (SELECT COUNT(*) FROM subscribers), (SELECT COUNT(*) FROM deliveries), "
        "(SELECT COUNT(*) FROM events)"
    ).fetchone()
    ws.close()
    print(
        f"workspace: {counts[0]:,} subscribers, {len(ids)} sent campaigns, "
        f"{counts[1]:,} deliveries, {counts[2]:,} events "
        f"(built in {built - started:.0f} s, events in {time.perf_counter() - built:.0f} s)"
    )


def sign_in(url: str, email: str) -> requests.Session:
    session = requests.Session()
    form = session.get(url + "/admin/sign-in", timeout=30).text
    token = re.search(r'name="token" value="([^"]+)"', form).group(1)
    answer = session.post(
        url + "/admin/sign-in",
        data={"email": email, "password": PASSWORD, "token": token},
        allow_redirects=False,
        timeout=60,
    )
    if answer.status_code != 303:
        sys.exit(f"cannot sign in: {answer.status_code}")
    return session


def timed(session: requests.Session, url: str) -> float:
    """Milliseconds of one load; a page that does not answer stops the bench.

    The results' numbers answer 286 (htmx: stop polling) for a campaign whose numbers settled.
    """
    begin = time.perf_counter()
    answer = session.get(url, timeout=120)
    took = (time.perf_counter() - begin) * 1000
    if answer.status_code not in (200, 286):
        sys.exit(f"{url}: {answer.status_code}")
    return took


def pixel_p99(url: str, seconds: float, rate: int = PIXEL_RATE) -> tuple[float, int]:
    """The open pixel's p99 latency in ms at ``rate`` requests a second, and how many were sent.

    Paced like mail clients fetching images, not as fast as possible: a flood would
    measure the queue it makes itself. Two clients, each on its own connection.
    """
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        session = requests.Session()
        interval = 2 / rate
        due = time.perf_counter()
        while due < deadline:
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            begin = time.perf_counter()
            answer = session.get(url, timeout=60)
            took = (time.perf_counter() - begin) * 1000
            if answer.status_code != 200:
                sys.exit(f"pixel: {answer.status_code}")
            with lock:
                latencies.append(took)
            due += interval

    clients = [threading.Thread(target=client) for _ in range(2)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    latencies.sort()
    return latencies[int(len(latencies) * 0.99) - 1], len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 subscribers, 6 campaigns")
    args = parser.parse_args()
    people, weeks, events_each = (5_000, 6, 1_050) if args.quick else (50_000, 24, 10_500)
    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    root = work / "ws"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_WEB__PORT=str(port), NEWSLETTER_SITE__BASE_URL=base)
    python = [sys.executable, "-m", "newsletter", "--workspace", str(root)]
    build(root, people, weeks, events_each, env)

    staff = "editor@example.com"
    subprocess.run(
        [*python, "users", "add", staff, "--role", "editor"],
        check=True,
        env={**env, "NEWSLETTER_USER_PASSWORD": PASSWORD},
        capture_output=True,
    )
    ws = Workspace.open(root, env=env)
    newest = ws.store.conn.execute("SELECT MAX(id) FROM campaigns").fetchone()[0]
    reader = ws.store.conn.execute("SELECT MIN(id) FROM subscribers").fetchone()[0]
    pixel = Urls(base, ws.signer).open(newest, reader)
    ws.close()

    # The first run counts every campaign and keeps the numbers; the second reads them.
    took = []
    for _ in range(2):
        begin = time.perf_counter()
        done = subprocess.run(
            [*python, "stats", "--json"], env=env, capture_output=True, check=True
        )
        took.append(time.perf_counter() - begin)
    begin = time.perf_counter()
    subprocess.run([*python, "--version"], env=env, capture_output=True, check=True)
    start_s = time.perf_counter() - begin
    print(
        f"newsletter stats --json, all campaigns ({len(done.stdout) // 1024} KiB): "
        f"{took[0]:.2f} s counting, {took[1]:.2f} s with the numbers kept; "
        f"newsletter --version: {start_s:.2f} s"
    )
    db = sqlite3.connect(root / "newsletter.db")
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'kept_reports'").fetchone():
        # The server starts as after an upgrade: nothing kept, every page counts first.
        db.execute("DELETE FROM kept_reports")
        db.commit()
    db.close()

    begin = time.perf_counter()
    server = subprocess.Popen(
        [*python, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait(base + "/healthz", server)
        # Nothing kept: the dashboard counts every campaign's numbers before it answers.
        started_s = time.perf_counter() - begin
        print(f"newsletter serve, first start after an upgrade: {started_s:.2f} s")
        session = sign_in(base, staff)
        admin = base + "/admin"
        pages = {
            "/healthz (trivial)": base + "/healthz",
            "home": admin + "/",
            "campaigns list": admin + "/campaigns",
            "campaign page": f"{admin}/campaigns/{newest}",
            "campaign preview": f"{admin}/campaigns/{newest}/preview",
            "results": f"{admin}/campaigns/{newest}/results",
            "results numbers (poll)": f"{admin}/campaigns/{newest}/results/numbers",
            "subscribers list": admin + "/subscribers",
            "one subscriber's history": f"{admin}/subscribers/{reader}",
            "articles": admin + "/articles",
        }
        print(
            f"{'page':<28}{'first':>9}{'median':>9}{'max':>9}  (ms, {LOADS} loads after the first)"
        )
        for name, url in pages.items():
            first = timed(session, url)
            times = [timed(session, url) for _ in range(LOADS)]
            print(f"{name:<28}{first:>9.1f}{statistics.median(times):>9.1f}{max(times):>9.1f}")

        alone, _ = pixel_p99(pixel, PIXEL_SECONDS)
        stop = threading.Event()
        loads = [0]

        def browse() -> None:
            urls = [u for n, u in pages.items() if not n.startswith("/healthz")]
            while not stop.is_set():
                for url in urls:
                    timed(session, url)
                    loads[0] += 1

        staff_thread = threading.Thread(target=browse)
        staff_thread.start()
        try:
            busy, sent = pixel_p99(pixel, PIXEL_SECONDS)
        finally:
            stop.set()
            staff_thread.join()
        print(
            f"open pixel p99 at {PIXEL_RATE} requests/s: {alone:.1f} ms alone, {busy:.1f} ms "
            f"while staff loaded {loads[0]} pages ({sent} pixels in {PIXEL_SECONDS} s)"
        )
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
