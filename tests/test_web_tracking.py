"""Classification and privacy of tracking events, over real HTTP to the live server."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from conftest import LiveServer
from newsletter import campaigns, jobs, reports
from newsletter.mail import Urls
from newsletter.tracking import PIXEL_GIF
from newsletter.workspace import Workspace

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
GMAIL = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"


class Clock:
    """The server's clock, set by the test."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def sent(workspace: Workspace) -> dict:
    """A campaign sent at NOW to the example subscribers through the outbox."""
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    jobs.import_subscriber_folder(workspace, store, NOW)
    campaign_id = campaigns.create(store, workspace.settings, "Hi", "new", None, None, NOW)
    jobs.send_campaign(workspace, store, campaign_id, lambda: NOW)
    readers = store.subscribers("confirmed")
    return {
        "campaign_id": campaign_id,
        "readers": [r["id"] for r in readers],
        "links": store.links(campaign_id),
        "urls": Urls(workspace.settings.site.base_url, workspace.signer),
    }


@pytest.fixture
def serve(ws_dir: Path) -> Iterator:
    """Start a live server on the workspace with tracking settings from the environment."""
    started: list[tuple[LiveServer, Workspace]] = []

    def start(clock: Clock, **tracking: str) -> LiveServer:
        env = {f"NEWSLETTER_TRACKING__{key.upper()}": value for key, value in tracking.items()}
        ws = Workspace.open(ws_dir, env=env)
        server = LiveServer(ws, clock=clock)
        server.start()
        started.append((server, ws))
        return server

    yield start
    for server, ws in started:
        server.stop()
        ws.close()


def local(server: LiveServer, url: str) -> str:
    return server.url + urlsplit(url).path


def events(workspace: Workspace, kind: str) -> list[dict]:
    return workspace.store._rows("SELECT * FROM events WHERE kind = ? ORDER BY id", [kind])


def get(url: str, ua: str = BROWSER, method: str = "GET") -> requests.Response:
    return requests.request(method, url, headers={"User-Agent": ua}, allow_redirects=False)


def test_events_are_stored_raw_with_class_and_reason(workspace, sent, serve):
    cid, sid = sent["campaign_id"], sent["readers"][0]
    clock = Clock(NOW + dt.timedelta(seconds=2))
    server = serve(clock)
    pixel = local(server, sent["urls"].open(cid, sid))
    link_id = next(iter(sent["links"].values()))
    click = local(server, sent["urls"].click(cid, sid, link_id))
    assert get(pixel).content == PIXEL_GIF  # a prefetch two seconds after delivery
    clock.now = NOW + dt.timedelta(hours=1)
    assert get(pixel, ua=GMAIL).content == PIXEL_GIF
    assert get(click).status_code == 302
    assert get(click, method="HEAD").status_code == 302
    server.stop()

    opens = events(workspace, "open")
    assert [(o["classification"], o["reason"]) for o in opens] == [
        ("machine", "open 2 s after delivery"),
        ("unknown", "user agent: Gmail image proxy"),
    ]
    assert opens[1]["user_agent"] == GMAIL and opens[1]["ip"] == "127.0.0.0"
    clicks = events(workspace, "click")
    assert [(c["method"], c["classification"], c["reason"]) for c in clicks] == [
        ("GET", "human", "no machine signal"),
        ("HEAD", "machine", "HEAD request"),
    ]
    # The view of the article behind the link shares its click's class.
    views = events(workspace, "view")
    assert [(v["detail"], v["classification"]) for v in views] == [
        ("click", "human"),
        ("click", "machine"),
    ]


def _wait_for(workspace: Workspace, kind: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(events(workspace, kind)) < count:
        assert time.monotonic() < deadline, f"{count} {kind} events were not stored"
        time.sleep(0.02)


def test_every_link_clicked_at_once_turns_the_earlier_clicks_machine(workspace, sent, serve):
    cid, scanned, reader = sent["campaign_id"], sent["readers"][0], sent["readers"][1]
    link_ids = list(sent["links"].values())
    assert len(link_ids) >= 2
    server = serve(Clock(NOW + dt.timedelta(hours=1)))
    get(local(server, sent["urls"].click(cid, scanned, link_ids[0])))
    _wait_for(workspace, "click", 1)  # stored as human before the others arrive
    assert events(workspace, "click")[0]["classification"] == "human"
    get(local(server, sent["urls"].click(cid, reader, link_ids[0])))
    for link_id in link_ids[1:]:
        get(local(server, sent["urls"].click(cid, scanned, link_id)))
    server.stop()

    by_reader: dict[int, set] = {}
    for row in events(workspace, "click") + events(workspace, "view"):
        by_reader.setdefault(row["subscriber_id"], set()).add(
            (row["classification"], row["reason"])
        )
    assert by_reader[scanned] == {("machine", "every link clicked within 10 s")}
    assert by_reader[reader] == {("human", "no machine signal")}


def test_a_workspace_signals_file_replaces_the_built_in_one(workspace, sent, serve, ws_dir):
    (ws_dir / "signals.toml").write_text(
        '[[network]]\nname = "loopback scanner"\nnetworks = ["127.0.0.0/8"]\nclick = "machine"\n'
    )
    cid, sid = sent["campaign_id"], sent["readers"][0]
    server = serve(Clock(NOW + dt.timedelta(hours=1)), signals_file="signals.toml")
    link_id = next(iter(sent["links"].values()))
    get(local(server, sent["urls"].click(cid, sid, link_id)))
    # The built-in file's Gmail rule is gone: this open is a human's now.
    get(local(server, sent["urls"].open(cid, sid)), ua=GMAIL)
    server.stop()
    click = events(workspace, "click")[0]
    assert (click["classification"], click["reason"]) == ("machine", "network: loopback scanner")
    assert click["ip"] == "127.0.0.0"  # matched on the full address, stored truncated
    assert events(workspace, "open")[0]["classification"] == "human"


def test_anonymous_mode_counts_without_the_subscriber(workspace, sent, serve):
    cid, sid = sent["campaign_id"], sent["readers"][0]
    clock = Clock(NOW + dt.timedelta(seconds=1))
    server = serve(clock, anonymous="true")
    get(local(server, sent["urls"].open(cid, sid)))
    clock.now = NOW + dt.timedelta(hours=3)
    link_id = next(iter(sent["links"].values()))
    get(local(server, sent["urls"].click(cid, sid, link_id)))
    server.stop()
    stored = events(workspace, "open") + events(workspace, "click") + events(workspace, "view")
    assert len(stored) == 3
    assert {e["subscriber_id"] for e in stored} == {None}
    assert {e["campaign_id"] for e in stored} == {cid}
    # Classified with the delivery time before the subscriber was dropped.
    assert stored[0]["reason"] == "open 1 s after delivery"
    report = reports.campaign_report(workspace.store, cid)
    assert (report["opens_total"], report["opens_unique"]) == (1, 0)
    assert (report["clicks_total"], report["clicks_unique"]) == (1, 0)
    assert report["anonymous_events"] == 3
    assert [link["clicks_total"] for link in report["links"] if link["link_id"] == link_id] == [1]


def test_tracking_off_globally_answers_and_records_nothing(workspace, sent, serve):
    cid, sid = sent["campaign_id"], sent["readers"][0]
    server = serve(Clock(NOW + dt.timedelta(hours=1)), enabled="false")
    target, link_id = next(iter(sent["links"].items()))
    assert get(local(server, sent["urls"].open(cid, sid))).content == PIXEL_GIF
    answer = get(local(server, sent["urls"].click(cid, sid, link_id)))
    assert answer.status_code == 302 and answer.headers["location"] == target
    assert get(local(server, sent["urls"].view(cid, sid))).status_code == 200
    server.stop()
    assert workspace.store._value("SELECT COUNT(*) FROM events WHERE campaign_id = ?", [cid]) == 0


def test_ip_truncation_can_be_turned_off(workspace, sent, serve):
    cid, sid = sent["campaign_id"], sent["readers"][0]
    server = serve(Clock(NOW + dt.timedelta(hours=1)), truncate_ip="false")
    get(local(server, sent["urls"].open(cid, sid)))
    server.stop()
    assert events(workspace, "open")[0]["ip"] == "127.0.0.1"
