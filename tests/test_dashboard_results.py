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


def test_results_lead_with_people_who_opened_and_clicked_and_say_why_machines(
    dashboard,
) -> None:
    """A non-technical reader reports the headline; the totals and the machines' reasons
    wait under Details, in plain words."""
    ws = dashboard.ws
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sent_at = now - dt.timedelta(hours=3)
    campaign_id = _send(ws, sent_at, "Three readers")
    store = ws.store
    people = [
        row[0]
        for row in store.conn.execute(
            "SELECT subscriber_id FROM deliveries WHERE campaign_id = ? ORDER BY id",
            [campaign_id],
        )
    ]
    link = store.campaign_links(campaign_id)[0]
    later = (sent_at + dt.timedelta(minutes=30)).isoformat(timespec="seconds")
    soon = (sent_at + dt.timedelta(seconds=1)).isoformat(timespec="seconds")

    def event(kind: str, who: int, cls: str, reason: str, at: str = later) -> dict:
        clicked = {"link_id": link["id"], "article_id": link["article_id"]}
        return {
            "at": at,
            "kind": kind,
            "campaign_id": campaign_id,
            "subscriber_id": who,
            "classification": cls,
            "reason": reason,
            **(clicked if kind == "click" else {}),
        }

    store.insert_events(
        [
            event("open", people[0], "human", "no machine signal"),
            event("click", people[0], "human", "no machine signal"),
            event("open", people[1], "unknown", "user agent: Gmail image proxy"),
            event("click", people[1], "human", "no machine signal"),
            event("open", people[2], "machine", "open 1 s after delivery", soon),
            event("open", people[3], "machine", "network: Apple Mail Privacy Protection"),
            event("click", people[3], "machine", "every link clicked within 10 s"),
        ]
    )
    delivered = len(people)
    session, _ = signed_in(dashboard.url)
    page = session.get(f"{dashboard.url}/campaigns/{campaign_id}/results", timeout=30).text
    main = page[page.index("<main") :]
    opened = f"2 of {delivered} people opened</strong> ({2 / delivered:.1%})"
    clicked = f"2 of {delivered} people clicked a link</strong> ({2 / delivered:.1%})"
    assert opened in main and clicked in main
    # The headline comes before every other number, the totals under Details.
    assert main.index(opened) < main.index('data-stat="sent"')
    details = main[main.index('<details id="details">') : main.index("</details>")]
    assert 'data-stat="opens_total">4<' in details and 'data-stat="opens_machine">2<' in details
    assert "1 × Opened seconds after delivery, before anyone could read it" in details
    assert "1 × Came from the network of Apple Mail Privacy Protection" in details
    assert "1 × Every link of the email clicked at once (a link scanner)" in details
    # No number that only repeats another, no column that could only say "unknown".
    assert "Article views" not in main
    assert "Blog views before the send" not in main and "unknown</td>" not in main
    assert "the source of these articles does not publish them" in main
