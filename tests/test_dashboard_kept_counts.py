"""Staff open the campaigns list after an upgrade: its numbers were counted and kept when
the dashboard started, before the first page, and they are the numbers a fresh count gives.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import lxml.html
import pytest

from conftest import LiveServer, add_staff, signed_in
from newsletter import campaigns, jobs, reports
from newsletter.classify import HUMAN, MACHINE, UNKNOWN
from newsletter.status import CampaignStatus, SubscriberStatus
from newsletter.workspace import Workspace
from workspaces import new_campaign

CAMPAIGNS = 4


@pytest.fixture
def read_campaigns(ws_dir: Path) -> Workspace:
    """Campaigns sent days ago (dated from the real now) to a few dozen readers, with
    opens, clicks, bounces and unsubscribes of every class; a draft beside them."""
    rows = "\n".join(f"reader{i}@example.com,confirmed" for i in range(30))
    (ws_dir / "subscribers" / "more.csv").write_text(f"email,status\n{rows}\n")
    ws = Workspace.open(ws_dir, env={})
    store = ws.store
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ids = []
    for n in range(CAMPAIGNS):
        when = now - dt.timedelta(days=3 * (CAMPAIGNS - n))
        if n == 0:
            cid = new_campaign(ws, when, "Campaign 0")
        else:
            articles = str(store.campaign(ids[0])["article_ids"][0])
            cid = campaigns.create(store, ws.settings, f"Campaign {n}", articles, None, None, when)
        jobs.send_campaign(ws, store, cid, lambda when=when: when)
        ids.append(cid)
    readers = [s["id"] for s in store.subscribers(SubscriberStatus.CONFIRMED)]
    rng = random.Random(16)
    events = []
    for _ in range(400):
        cid = rng.choice(ids)
        links = store.campaign_links(cid)
        kind = rng.choice(["open", "open", "open", "click", "unsubscribe", "bounce"])
        link = rng.choice(links) if kind == "click" else None
        first = dt.datetime.fromisoformat(store.first_sent_at(cid))
        events.append(
            {
                "at": (first + dt.timedelta(minutes=rng.randint(1, 3000))).isoformat(
                    timespec="seconds"
                ),
                "kind": kind,
                "campaign_id": cid,
                "subscriber_id": rng.choice(readers),
                "link_id": link["id"] if link else None,
                "article_id": link["article_id"] if link else None,
                "method": "GET",
                "classification": rng.choice([HUMAN, MACHINE, UNKNOWN])
                if kind in ("open", "click")
                else None,
                "reason": None,
            }
        )
    store.insert_events(events)
    article = str(store.campaign(ids[0])["article_ids"][0])
    campaigns.create(store, ws.settings, "Draft", article, None, None, now)
    add_staff(ws, now)
    # As an upgrade leaves the database: nothing kept yet.
    store.conn.execute("DELETE FROM kept_reports")
    store.conn.commit()
    yield ws
    ws.close()


def shown_numbers(html: str) -> dict[str, list[str]]:
    """The campaigns list's numbers by campaign id: sent / recipients, failed, four rates."""
    rows = lxml.html.fromstring(html).xpath("//table/tbody/tr")
    return {
        row.xpath("td")[0].text_content(): [
            " ".join(td.text_content().split()) for td in row.xpath("td")[4:10]
        ]
        for row in rows
    }


def expected_numbers(report: dict) -> list[str]:
    rates = ("open_rate", "human_open_rate", "click_rate", "human_click_rate")
    return [
        f"{report['sent']} / {report['recipients']}",
        str(report["failed"]),
        *(f"{report[rate]:.1%}" for rate in rates),
    ]


def test_the_campaigns_list_after_an_upgrade_reads_kept_numbers_equal_to_a_fresh_count(
    read_campaigns: Workspace,
) -> None:
    ws = read_campaigns
    store = ws.store
    fresh = {row["campaign"]["id"]: row["report"] for row in reports.summaries(store)}
    sent = [c["id"] for c in store.report_campaigns() if c["status"] == CampaignStatus.SENT]
    assert len(sent) == CAMPAIGNS and all(fresh[cid]["opens_unique"] for cid in sent)

    server = LiveServer(ws)
    server.start()
    try:
        # Counted when the dashboard started, before anyone asked for a page.
        kept = store.conn.execute(
            "SELECT campaign_id FROM kept_reports WHERE part = 'summary' ORDER BY campaign_id"
        ).fetchall()
        assert [row[0] for row in kept] == sent
        session, _ = signed_in(server.url + "/admin")
        shown = shown_numbers(session.get(server.url + "/admin/campaigns", timeout=30).text)
        assert shown == {str(cid): expected_numbers(report) for cid, report in fresh.items()}

        # A new reader of the first campaign: the list follows, as a fresh count does.
        clicked = {
            row[0]
            for row in store.conn.execute(
                "SELECT subscriber_id FROM events WHERE campaign_id = ? AND kind = 'click'",
                [sent[0]],
            )
        }
        reader = next(
            s["id"] for s in store.subscribers(SubscriberStatus.CONFIRMED) if s["id"] not in clicked
        )
        link = store.campaign_links(sent[0])[0]
        first = dt.datetime.fromisoformat(store.first_sent_at(sent[0]))
        store.insert_events(
            [
                {
                    "at": (first + dt.timedelta(hours=1)).isoformat(timespec="seconds"),
                    "kind": "click",
                    "campaign_id": sent[0],
                    "subscriber_id": reader,
                    "link_id": link["id"],
                    "article_id": link["article_id"],
                    "method": "GET",
                    "classification": HUMAN,
                    "reason": None,
                }
            ]
        )
        again = reports.summaries(store)[0]["report"]
        assert again["clicks_unique"] == fresh[sent[0]]["clicks_unique"] + 1
        shown = shown_numbers(session.get(server.url + "/admin/campaigns", timeout=30).text)
        assert shown[str(sent[0])] == expected_numbers(again)
    finally:
        server.stop()
