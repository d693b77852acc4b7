"""The results page as staff read it: numbers that follow a campaign while it is read,
and stay still (without asking the server every few seconds) once it is old."""

from __future__ import annotations

import datetime as dt

from conftest import signed_in
from newsletter import campaigns, jobs

WEEK = dt.timedelta(days=7)


def _send(ws, when: dt.datetime, subject: str) -> int:
    jobs.fetch_sources(ws, ws.store, when)
    jobs.import_subscriber_folder(ws, ws.store, when)
    ids = ",".join(str(a["id"]) for a in ws.store.articles())
    campaign_id = campaigns.create(ws.store, ws.settings, subject, ids, None, None, when)
    jobs.send_campaign(ws, ws.store, campaign_id, lambda: when)
    return campaign_id


def test_results_follow_a_new_campaign_and_stop_asking_for_an_old_one(dashboard) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    old = _send(dashboard.ws, now - WEEK, "Last week")
    new = _send(dashboard.ws, now - dt.timedelta(minutes=5), "Just now")
    session, _ = signed_in(dashboard.url)

    page = session.get(f"{dashboard.url}/campaigns/{new}/results", timeout=30).text
    assert 'hx-trigger="every 5s"' in page
    assert session.get(f"{dashboard.url}/campaigns/{new}/results/numbers").status_code == 200

    page = session.get(f"{dashboard.url}/campaigns/{old}/results", timeout=30).text
    assert "hx-trigger" not in page and 'data-stat="sent"' in page
    # A page left open since the campaign was new is told to stop asking (htmx: 286).
    numbers = session.get(f"{dashboard.url}/campaigns/{old}/results/numbers", timeout=30)
    assert numbers.status_code == 286 and 'data-stat="sent"' in numbers.text
