"""The results page as staff read it: numbers that follow a campaign while it is read,
and stay still (without asking the server every few seconds) once it is old."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

from conftest import one_line_error, signed_in
from newsletter import campaigns, jobs, reports

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


def test_staff_download_who_opened_or_clicked_from_the_page_and_the_command(dashboard, cli) -> None:
    ws = dashboard.ws
    sent_at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=3)
    campaign_id = _send(ws, sent_at, "Who read it")
    store = ws.store
    people = [
        row[0]
        for row in store.conn.execute(
            "SELECT subscriber_id FROM deliveries WHERE campaign_id = ? ORDER BY id",
            [campaign_id],
        )
    ]
    # A name a spreadsheet would run as a formula.
    store.conn.execute(
        "UPDATE subscribers SET first_name = '=HYPERLINK(\"http://x\")' WHERE id = ?",
        [people[1]],
    )
    link = store.campaign_links(campaign_id)[0]
    later = (sent_at + dt.timedelta(minutes=30)).isoformat(timespec="seconds")
    base = {"at": later, "campaign_id": campaign_id}
    store.insert_events(
        [
            {**base, "kind": "open", "subscriber_id": people[0], "classification": "human"},
            {**base, "kind": "open", "subscriber_id": people[1], "classification": "unknown"},
            {
                **base,
                "kind": "click",
                "subscriber_id": people[1],
                "classification": "human",
                "link_id": link["id"],
                "article_id": link["article_id"],
            },
            {**base, "kind": "open", "subscriber_id": people[2], "classification": "machine"},
            {**base, "kind": "open", "subscriber_id": None, "classification": "human"},
        ]
    )
    emails = {s["id"]: s["email"] for s in store.subscribers()}
    report = reports.campaign_report(store, campaign_id)
    session, _ = signed_in(dashboard.url)
    page = session.get(f"{dashboard.url}/campaigns/{campaign_id}/results", timeout=30).text
    hrefs = dict(re.findall(r'href="([^"]+)" data-export="(\w+)"', page))
    by_kind = {kind: href for href, kind in hrefs.items()}

    def rows(text: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(text)))

    answer = session.get(dashboard.server.url + by_kind["people"], timeout=30)
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    human = rows(answer.text)
    # The people of the headline, no more: the machine's open and the nameless one are not.
    assert [r["email"] for r in human] == sorted([emails[people[0]], emails[people[1]]])
    assert len([r for r in human if r["opened_human"] == "1"]) == report["opens_human_unique"]
    assert len([r for r in human if r["clicked_human"] == "1"]) == report["clicks_human_unique"]
    clicker = next(r for r in human if r["email"] == emails[people[1]])
    assert clicker["first_name"] == '\'=HYPERLINK("http://x")'
    assert (clicker["opened"], clicker["clicked"], clicker["first_clicked_at"]) == ("1", "1", later)

    everyone = rows(session.get(dashboard.server.url + by_kind["all"], timeout=30).text)
    assert {r["email"] for r in everyone} == {emails[p] for p in people[:3]}
    machine = next(r for r in everyone if r["email"] == emails[people[2]])
    assert (machine["opened"], machine["opened_human"], machine["machine_opens"]) == ("1", "0", "1")

    # The same files from the command line.
    assert rows(cli("stats", str(campaign_id), "--csv", "--table", "recipients").stdout) == human
    assert (
        rows(cli("stats", str(campaign_id), "--csv", "--table", "recipients", "--machines").stdout)
        == everyone
    )
    refused = cli("stats", "--csv", "--table", "recipients", check=False)
    one_line_error(refused, "people of one campaign", "stats ID --csv", exit_code=1)
