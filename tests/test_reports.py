"""Campaign reports on a real SQLite file: unique and human-unique, links, articles, hours."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest

from clocks import NOW
from newsletter import campaigns, jobs, reports
from newsletter.errors import NotFound
from newsletter.workspace import Workspace
from workspaces import new_campaign


def at(**delta: float) -> str:
    return (NOW + dt.timedelta(**delta)).isoformat(timespec="seconds")


@pytest.fixture
def sent(workspace: Workspace) -> dict:
    """A campaign sent at NOW to eight readers, with blog view snapshots around the send."""
    (workspace.root / "subscribers" / "more.csv").write_text(
        "email,status\nr6@example.com,confirmed\nr7@example.com,confirmed\n"
        "r8@example.com,confirmed\n"
    )
    store = workspace.store
    campaign_id = new_campaign(workspace, NOW)
    article_id = store.campaign(campaign_id)["article_ids"][0]
    store.record_stats([(article_id, 100, None, None)], NOW - dt.timedelta(days=1))
    store.record_stats([(article_id, 120, None, None)], NOW - dt.timedelta(minutes=5))
    jobs.send_campaign(workspace, store, campaign_id, lambda: NOW)
    store.record_stats([(article_id, 150, None, None)], NOW + dt.timedelta(hours=6))
    store.record_stats([(article_id, 175, None, None)], NOW + dt.timedelta(days=2))
    links = store.campaign_links(campaign_id)
    article_link = next(link for link in links if link["article_id"] == article_id)
    other_link = next(link for link in links if link["id"] != article_link["id"])
    return {
        "campaign_id": campaign_id,
        "readers": [s["id"] for s in store.subscribers("confirmed")],
        "article_id": article_id,
        "link": article_link,
        "other_link": other_link,
    }


def record(workspace: Workspace, campaign_id: int, rows: list[tuple]) -> None:
    """Events as the writer stores them: (when, kind, reader, class, link)."""
    links = {link["id"]: link for link in workspace.store.campaign_links(campaign_id)}
    events = []
    for when, kind, reader, cls, link in rows:
        events.append(
            {
                "at": when,
                "kind": kind,
                "campaign_id": campaign_id,
                "subscriber_id": reader,
                "link_id": link["id"] if link else None,
                "article_id": links[link["id"]]["article_id"] if link else None,
                "method": "GET",
                "classification": cls,
                "reason": "set by the test" if cls else None,
            }
        )
    workspace.store.insert_events(events)


@pytest.fixture
def report(workspace: Workspace, sent: dict) -> dict:
    r = sent["readers"]
    link, other = sent["link"], sent["other_link"]
    record(
        workspace,
        sent["campaign_id"],
        [
            # r0 reads and clicks: human both ways.
            (at(minutes=10), "open", r[0], "human", None),
            (at(minutes=11), "click", r[0], "human", link),
            (at(hours=49), "open", r[0], "human", None),  # past the 48 hours of the series
            # r1 reads in Gmail: the proxy open alone is not human, the click makes it so.
            (at(hours=2), "open", r[1], "unknown", None),
            (at(hours=2, minutes=1), "click", r[1], "human", other),
            # r2: only Apple's prefetch.
            (at(seconds=1), "open", r[2], "machine", None),
            # r3: a scanner opened and clicked everything.
            (at(seconds=3), "open", r[3], "machine", None),
            (at(seconds=4), "click", r[3], "machine", link),
            (at(seconds=4), "click", r[3], "machine", other),
            # r4 clicked with images off: a human click, but no open event.
            (at(hours=5), "click", r[4], "human", link),
            # r5: an open stored before events were classified.
            (at(hours=30), "open", r[5], None, None),
            # r6: Gmail alone, opened twice.
            (at(hours=1), "open", r[6], "unknown", None),
            (at(hours=1, minutes=30), "open", r[6], "unknown", None),
        ],
    )
    workspace.store.mark_bounced(r[7], sent["campaign_id"], NOW, "550 no such user")
    return reports.campaign_report(workspace.store, sent["campaign_id"])


def test_delivery_counts_and_rates_over_delivered(report, sent):
    assert report["recipients"] == report["sent"] == 8
    assert (report["failed"], report["bounced"], report["delivered"]) == (0, 1, 7)
    assert (report["complaints"], report["unsubscribes"]) == (0, 0)
    assert report["open_rate"] == round(6 / 7, 4)
    assert report["human_open_rate"] == round(2 / 7, 4)
    assert report["click_rate"] == round(4 / 7, 4)
    assert report["human_click_rate"] == round(3 / 7, 4)
    assert report["click_to_open_rate"] == round(4 / 6, 4)
    assert report["human_click_to_open_rate"] == round(3 / 2, 4)


def test_opens_total_unique_and_human_unique(report):
    # Unique: r0, r1, r2, r3, r5, r6 opened. Human: r0 (own open), r1 (Gmail + human click).
    assert (report["opens_total"], report["opens_unique"], report["opens_human_unique"]) == (
        8,
        6,
        2,
    )
    assert (report["opens_machine"], report["opens_unknown"]) == (2, 4)


def test_clicks_total_unique_and_human_unique(report):
    assert (report["clicks_total"], report["clicks_unique"], report["clicks_human_unique"]) == (
        5,
        4,
        3,
    )
    assert report["clicks_machine"] == 2
    assert report["machine_reasons"] == {"set by the test": 4}


def test_per_link(report, sent):
    by_id = {link["link_id"]: link for link in report["links"]}
    link = by_id[sent["link"]["id"]]
    assert (link["clicks_total"], link["clicks_unique"], link["clicks_human_unique"]) == (3, 3, 2)
    other = by_id[sent["other_link"]["id"]]
    assert (other["clicks_total"], other["clicks_unique"], other["clicks_human_unique"]) == (
        2,
        2,
        1,
    )
    untouched = [
        x for x in report["links"] if x["link_id"] not in (link["link_id"], other["link_id"])
    ]
    assert all(x["clicks_total"] == 0 for x in untouched)


def test_per_article_clicks_beside_the_blogs_own_views(report, sent):
    article = next(a for a in report["articles"] if a["article_id"] == sent["article_id"])
    expected_clicks = 3 if sent["other_link"]["article_id"] != sent["article_id"] else 5
    assert article["clicks_total"] == expected_clicks
    # The last snapshot before the send, and the latest after it.
    assert (article["blog_views_before"], article["blog_views_after"]) == (120, 175)
    assert article["blog_views_gained"] == 55
    assert article["blog_views_before_at"] == at(minutes=-5)
    assert article["blog_views_after_at"] == at(days=2)


def test_hourly_series_for_the_first_48_hours_human_and_machine_apart(report):
    hourly = report["hourly"]
    assert [h["hour"] for h in hourly] == list(range(48))
    assert hourly[0]["start"] == at()
    assert (hourly[0]["opens_human"], hourly[0]["opens_machine"]) == (1, 2)
    assert (hourly[0]["clicks_human"], hourly[0]["clicks_machine"]) == (1, 2)
    assert hourly[1]["opens_unknown"] == 2
    assert (hourly[2]["opens_unknown"], hourly[2]["clicks_human"]) == (1, 1)
    assert hourly[5]["clicks_human"] == 1
    assert hourly[30]["opens_unknown"] == 1  # stored before classification: unknown
    # The open at hour 49 is in the totals but past the series.
    assert sum(h["opens_human"] for h in hourly) == 1


def test_a_campaign_without_events_reports_zeros(workspace, sent):
    store = workspace.store
    second = campaigns.create(
        store, workspace.settings, "Again", str(sent["article_id"]), None, None, NOW
    )
    report = reports.campaign_report(store, second)
    assert report["recipients"] == 0 and report["opens_unique"] == 0
    assert report["open_rate"] == 0.0 and report["hourly"] == []
    assert [r["campaign_id"] for r in reports.reports(store)] == [sent["campaign_id"], second]


def test_an_unknown_campaign_is_not_found(workspace):
    with pytest.raises(NotFound, match="campaign 42"):
        reports.campaign_report(workspace.store, 42)


# -- the command --------------------------------------------------------------------------


def test_stats_prints_json_csv_and_text(cli, report, sent, workspace):
    cid = str(sent["campaign_id"])
    workspace.close()  # the CLI process opens its own connection
    data = json.loads(cli("stats", cid, "--json").stdout)[0]
    for key in ("opens_human_unique", "clicks_human_unique", "links", "articles", "hourly"):
        assert data[key] == report[key]

    rows = list(csv.DictReader(io.StringIO(cli("stats", "--csv").stdout)))
    assert [r["campaign_id"] for r in rows] == [cid]
    assert rows[0]["opens_human_unique"] == "2" and rows[0]["delivered"] == "7"
    hourly = list(
        csv.DictReader(io.StringIO(cli("stats", cid, "--csv", "--table", "hourly").stdout))
    )
    assert len(hourly) == 48 and hourly[0]["opens_machine"] == "2"
    links = list(csv.DictReader(io.StringIO(cli("stats", cid, "--csv", "--table", "links").stdout)))
    assert {r["link_id"] for r in links} == {str(x["link_id"]) for x in report["links"]}

    text = cli("stats", cid).stdout
    assert "opens  8 total, 6 unique (85.7%), 2 human (28.6%); 2 machine, 4 unknown" in text
    assert "clicks 5 total, 4 unique (57.1%), 3 human (42.9%); 2 machine" in text
    assert "blog views 120 before the send, 175 now (+55)" in text
    assert "machine: 4 x set by the test" in text


def test_stats_csv_is_spreadsheet_safe(cli, workspace, sent):
    store = workspace.store
    store.conn.execute("UPDATE campaigns SET subject = '=HYPERLINK(1)'")
    store.conn.execute(
        "UPDATE links SET url = '=cmd|'' /C calc''!A0' WHERE id = ?", [sent["link"]["id"]]
    )
    store.conn.execute(
        "UPDATE articles SET title = '@SUM(A1:A9) tips' WHERE id = ?", [sent["article_id"]]
    )
    workspace.close()
    rows = list(csv.DictReader(io.StringIO(cli("stats", "--csv").stdout)))
    assert rows[0]["subject"] == "'=HYPERLINK(1)"
    links = cli("stats", "--csv", "--table", "links").stdout
    assert next(csv.reader(io.StringIO(links))) == reports.LINK_FIELDS
    by_id = {r["link_id"]: r for r in csv.DictReader(io.StringIO(links))}
    assert by_id[str(sent["link"]["id"])]["url"] == "'=cmd|' /C calc'!A0"
    articles = csv.DictReader(io.StringIO(cli("stats", "--csv", "--table", "articles").stdout))
    by_id = {r["article_id"]: r for r in articles}
    assert by_id[str(sent["article_id"])]["title"] == "'@SUM(A1:A9) tips"


def test_stats_text_leads_with_the_people_who_opened_and_clicked(cli, report, sent, workspace):
    workspace.close()
    lines = cli("stats", str(sent["campaign_id"])).stdout.splitlines()
    # Right under the campaign's name, before the delivery counts and the totals.
    assert lines[1] == "  2 of 7 people opened (28.6%), 3 clicked a link (42.9%); machines left out"
