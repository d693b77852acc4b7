"""Drafts as staff use them: articles are taken only when sending starts; a draft can be
changed or deleted until then, from the core and from the command line."""

from __future__ import annotations

from clocks import REAL_NOW as NOW
from newsletter import automations, campaigns, jobs
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
