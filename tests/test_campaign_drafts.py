"""Drafts as staff use them: articles are taken only when sending starts; a draft can be
changed or deleted until then, from the core and from the command line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from clocks import NOW as T0
from clocks import REAL_NOW as NOW
from conftest import database_before
from newsletter import automations, campaigns, jobs
from newsletter.errors import NewsletterError, NotFound, StateError
from newsletter.status import CampaignStatus, DeliveryStatus, SubscriberStatus
from newsletter.workspace import Workspace
from workspaces import workspace_with_articles_and_subscribers


def _new_ids(ws: Workspace) -> list[int]:
    return [a["id"] for a in ws.store.articles(only_new=True)]


def _confirmed(ws: Workspace) -> int:
    return len(ws.store.subscribers(SubscriberStatus.CONFIRMED))


def test_cancelling_a_draft_leaves_its_articles_new(workspace: Workspace) -> None:
    ws = workspace_with_articles_and_subscribers(workspace, NOW)
    new = _new_ids(ws)
    assert len(new) == 3
    draft = campaigns.create(ws.store, ws.settings, "Hi", "new", None, None, NOW)
    assert _new_ids(ws) == new  # a draft only proposes them
    campaigns.cancel(ws.store, draft, NOW)
    listed = {a["id"]: a for a in ws.store.articles()}
    # Nothing went out: each article is still new, never shown as sent or archived.
    assert all(listed[i]["is_new"] and listed[i]["sent_at"] is None for i in new)
    again = campaigns.create(ws.store, ws.settings, "Hi again", "new", None, None, NOW)
    assert ws.store.campaign(again)["article_ids"] == new


def test_a_second_draft_can_take_the_same_new_articles(workspace: Workspace) -> None:
    ws = workspace_with_articles_and_subscribers(workspace, NOW)
    first = campaigns.create(ws.store, ws.settings, "First idea", "new", None, None, NOW)
    second = campaigns.create(ws.store, ws.settings, "Second idea", "new", None, None, NOW)
    ids = ws.store.campaign(first)["article_ids"]
    assert ws.store.campaign(second)["article_ids"] == ids and len(ids) == 3
    # Sending one of them is what uses the articles up.
    progress = jobs.send_campaign(ws, ws.store, second, lambda: NOW)
    assert progress.sent == _confirmed(ws) and _new_ids(ws) == []
    assert {a["id"]: a["sent_at"] is not None for a in ws.store.articles()} == dict.fromkeys(
        ids, True
    )
    # The other draft still carries them and can still be sent (staff chose to).
    assert ws.store.campaign(first)["article_ids"] == ids
    assert ws.store.campaign_status(first) == CampaignStatus.DRAFT


def test_a_cancelled_part_sent_campaign_uses_up_its_articles_only_for_those_it_reached(
    workspace: Workspace,
) -> None:
    """Decided: the articles stay new, and the ledger records who had them.

    Used up for everyone, the people the cancelled send did not reach would never
    be offered them by "new articles" or an automatic campaign; the people it did
    reach are in the ledger, so the next automatic campaign skips them for those
    articles (a campaign made by hand is one email for its whole list: staff see
    the articles offered as new and choose).
    """
    ws = workspace_with_articles_and_subscribers(workspace, NOW)
    store = ws.store
    cid = campaigns.create(store, ws.settings, "Hi", "new", None, None, NOW)
    ids = store.campaign(cid)["article_ids"]
    everyone = campaigns.start(store, cid, NOW)
    assert everyone == _confirmed(ws) > 1
    # One message goes out, then staff cancel the rest.
    [row] = store.next_pending(cid, 0, 1)
    store.claim_deliveries([(row["id"], "<one@example.com>")], NOW)
    store.record_outcomes([{"id": row["id"], "status": DeliveryStatus.SENT}], NOW)
    campaigns.cancel(store, cid, NOW)

    assert _new_ids(ws) == ids  # still new: the others never got them

    auto = automations.create_instant_campaign(ws, store, NOW)
    assert auto is not None and store.campaign(auto)["article_ids"] == ids
    progress = jobs.send_campaign(ws, store, auto, lambda: NOW)
    counts = store.delivery_counts(auto)
    assert progress.sent == counts[DeliveryStatus.SENT] == everyone - 1
    assert counts[DeliveryStatus.SKIPPED] == 1
    skipped = store.delivery(auto, row["subscriber_id"])
    assert skipped is not None and skipped["status"] == DeliveryStatus.SKIPPED
    counts = store.delivery_counts(auto)
    assert _new_ids(ws) == []  # the automatic campaign went out: used up now


def test_the_command_line_leaves_the_articles_of_a_cancelled_draft_new(cli) -> None:
    cli("fetch")
    first = cli("campaign", "create", "--subject", "First idea").stdout.strip()
    cli("campaign", "cancel", first)
    listed = cli("articles", "list").stdout
    assert "archived" not in listed and "sent" not in listed
    assert len(cli("articles", "list", "--new").stdout.splitlines()) == 3
    second = cli("campaign", "create", "--subject", "Second idea").stdout.strip()
    assert second != first


def test_a_draft_is_changed_with_the_same_checks_as_a_new_one(workspace: Workspace) -> None:
    ws = workspace_with_articles_and_subscribers(workspace, NOW)
    store = ws.store
    made = campaigns.create_draft(
        store, ws.settings, ws.templates, campaigns.NewCampaign(subject="First"), NOW
    )
    cid = made.campaign_id
    before = store.campaign(cid)
    oldest, middle, newest = before["article_ids"][::-1]
    typed = campaigns.as_typed(store, cid)
    wanted = dataclasses.replace(
        typed,
        subject="Back care in winter",
        preheader="Three short reads",
        articles=f"{oldest},{newest}",
        template="digest",
        segment=("tag:back-pain", "!attribute:city=Oslo"),
        tracking=False,
    )
    changed = campaigns.update_draft(store, ws.settings, ws.templates, cid, wanted)
    after = store.campaign(cid)
    assert (after["subject"], after["preheader"], after["template"]) == (
        "Back care in winter",
        "Three short reads",
        "digest",
    )
    assert after["article_ids"] == [oldest, newest] and after["tracking"] is False
    assert campaigns.as_typed(store, cid).segment == ["tag:back-pain", "!attribute:city=Oslo"]
    assert changed.matching == store.count_recipients(None, json.loads(after["segment"]))

    # Refused for the same reasons as a new campaign, and nothing of it is stored.
    for bad, field in (
        (dataclasses.replace(wanted, subject="  "), "--subject"),
        (dataclasses.replace(wanted, articles="999"), "article 999"),
        (dataclasses.replace(wanted, segment=("back-pain",)), "--segment"),
        (dataclasses.replace(wanted, template="no-such-design"), "no-such-design"),
        (dataclasses.replace(wanted, list_name="nobody"), "list 'nobody'"),
    ):
        with pytest.raises(NewsletterError) as refused:
            campaigns.update_draft(store, ws.settings, ws.templates, cid, bad)
        assert field in str(refused.value)
        with pytest.raises(NewsletterError) as created:
            campaigns.create_draft(store, ws.settings, ws.templates, bad, NOW)
        assert str(created.value) == str(refused.value)
        assert store.campaign(cid) == after

    # Once sending has started the campaign is what went out: no change, no delete.
    jobs.send_campaign(ws, store, cid, lambda: NOW)
    with pytest.raises(StateError, match="cannot change a campaign that is sent"):
        campaigns.update_draft(store, ws.settings, ws.templates, cid, typed)
    with pytest.raises(StateError, match="cannot delete a campaign that is sent"):
        campaigns.delete_draft(store, cid)


def test_deleting_a_draft_removes_it_and_leaves_its_articles_new(workspace: Workspace) -> None:
    ws = workspace_with_articles_and_subscribers(workspace, NOW)
    store = ws.store
    cid = campaigns.create(store, ws.settings, "Oops", "new", None, None, NOW)
    scheduled = campaigns.create(store, ws.settings, "Later", "new", None, None, NOW)
    campaigns.schedule(store, scheduled, NOW + dt.timedelta(days=1), NOW)
    assert campaigns.delete_draft(store, cid) == "Oops"
    assert [c["id"] for c in store.campaigns()] == [scheduled] and len(_new_ids(ws)) == 3
    with pytest.raises(NotFound):
        store.campaign(cid)
    # A scheduled campaign is unscheduled first, so nobody deletes one by mistake.
    with pytest.raises(StateError, match="cannot delete a campaign that is scheduled"):
        campaigns.delete_draft(store, scheduled)


def test_the_command_line_edits_and_deletes_a_draft(cli) -> None:
    cli("fetch")
    cid = cli("campaign", "create", "--subject", "First idea").stdout.strip()
    ids = [line.split()[0] for line in cli("articles", "list").stdout.splitlines()]
    result = cli(
        "campaign",
        "edit",
        cid,
        "--subject",
        "Back care",
        "--articles",
        f"{ids[2]},{ids[0]}",
        "--segment",
        "tag:back-pain",
        "--no-tracking",
    )
    assert (
        result.stdout.strip() == f"campaign {cid}: changed (articles, segment, subject, tracking)"
    )
    assert "subscribers match now" in result.stderr
    preview = cli("campaign", "preview", cid, "--out", "p.html").stdout
    assert preview.startswith("Subject: Back care")
    bad = cli("campaign", "edit", cid, "--subject", " ", check=False)
    assert bad.returncode == 1 and bad.stderr.strip().endswith("the subject must not be empty")
    nothing = cli("campaign", "edit", cid, check=False)
    assert nothing.returncode == 1 and "nothing to change" in nothing.stderr
    assert cli("campaign", "delete", cid).stdout.strip() == f"campaign {cid}: deleted"
    assert "no campaigns" in cli("campaign", "list").stdout
    gone = cli("campaign", "delete", cid, check=False)
    assert gone.returncode == 1 and "no such campaign" in gone.stderr


def test_a_database_of_the_previous_version_keeps_its_scheduled_campaigns(
    tmp_path: Path,
) -> None:
    """m014 adds the zone a campaign was scheduled in; older ones show in the workspace's."""
    store = database_before(tmp_path / "old.db", "m014")
    store.conn.execute(
        "INSERT INTO campaigns (subject, template, status, created_at, scheduled_at) "
        "VALUES ('Old', 'digest', 'scheduled', '2026-11-01T08:00:00+00:00', "
        "'2026-12-07T08:30:00+00:00')"
    )
    store.migrate()
    old = store.campaign(1)
    assert old["scheduled_tz"] is None
    local = campaigns.scheduled_local(old, "Europe/Berlin")
    assert local is not None and f"{local:%A %H:%M %Z}" == "Monday 09:30 CET"
    when, _ = campaigns.parse_local_time("2026-12-08 09:00", "America/New_York")
    campaigns.reschedule(store, 1, when, T0, zone="America/New_York")
    again = store.campaign(1)
    local = campaigns.scheduled_local(again, "Europe/Berlin")
    assert again["scheduled_tz"] == "America/New_York"
    assert local is not None and f"{local:%A %Y-%m-%d %H:%M %Z}" == "Tuesday 2026-12-08 09:00 EST"
    campaigns.unschedule(store, 1, T0)
    assert store.campaign(1)["scheduled_tz"] is None
    store.close()
