"""Which articles a campaign carries, in which order and design: every one in the email."""

from __future__ import annotations

import re

from clocks import REAL_NOW as NOW
from newsletter import automations, campaigns, jobs
from newsletter.mail import SAMPLE_SUBSCRIBER, load_mail
from newsletter.render import choose_template
from newsletter.workspace import Workspace


def _titles_in_order(html: str, titles: list[str]) -> list[str]:
    """The titles as they appear in the email, top to bottom."""
    found = sorted((html.index(t), t) for t in titles if t in html)
    return [t for _, t in found]


def _rendered(workspace: Workspace, campaign_id: int) -> str:
    store = workspace.store
    campaign = store.campaign(campaign_id)
    mail = load_mail(
        store,
        campaign_id,
        workspace.templates(campaign["template"]),
        workspace.settings,
        workspace.signer,
    )
    return mail.render(SAMPLE_SUBSCRIBER, tracked=False).html


def _escaped(title: str) -> str:
    return title.replace("'", "&#39;")


def test_new_articles_newest_first(workspace: Workspace) -> None:
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    articles = store.articles()  # newest first, as the blog lists them
    dates = [a["published"] for a in articles]
    assert dates == sorted(dates, reverse=True) and len(set(dates)) == 3
    campaign_id = campaigns.create(store, workspace.settings, "Hi", "new", None, None, NOW)
    campaign = store.campaign(campaign_id)
    assert campaign["article_ids"] == [a["id"] for a in articles]
    titles = [_escaped(a["title"]) for a in articles]
    assert _titles_in_order(_rendered(workspace, campaign_id), titles) == titles


def test_automatic_campaign_newest_first(workspace: Workspace) -> None:
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    campaign_id = automations.create_instant_campaign(workspace, store, NOW)
    assert store.campaign(campaign_id)["article_ids"] == [a["id"] for a in store.articles()]


def test_announcement_given_several_articles_uses_the_digest(workspace: Workspace) -> None:
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    campaign_id = campaigns.create(
        store, workspace.settings, "Hi", "new", "announcement", None, NOW
    )
    campaign = store.campaign(campaign_id)
    assert campaign["template"] == "digest"
    html = _rendered(workspace, campaign_id)
    # Every article the campaign carries (and will count as sent) is in the email.
    for article in store.articles_by_id(campaign["article_ids"]):
        assert _escaped(article["title"]) in html
    # One article: the announcement as asked.
    one = campaigns.create(store, workspace.settings, "Hi", "1", "announcement", None, NOW)
    assert store.campaign(one)["template"] == "announcement"


def test_the_rule_for_every_design_name() -> None:
    assert choose_template("auto", 1) == "announcement"
    assert choose_template("auto", 3) == "digest"
    assert choose_template("announcement", 1) == "announcement"
    assert choose_template("announcement", 2) == "digest"
    assert choose_template("digest", 1) == "digest"
    assert choose_template("custom", 4) == "custom"


def test_cli_says_which_design_it_used(cli) -> None:
    cli("fetch")
    result = cli("campaign", "create", "--subject", "News", "--template", "announcement")
    assert re.search(
        r"announcement design shows one article; these 3 articles go out in the "
        r"digest design",
        result.stderr,
    )


def test_a_stored_announcement_of_several_articles_renders_them_all(workspace: Workspace) -> None:
    """A draft made before the rule (stored as an announcement) shows every article."""
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    campaign_id = campaigns.create(store, workspace.settings, "Hi", "new", "digest", None, NOW)
    store.conn.execute("UPDATE campaigns SET template = 'announcement' WHERE id = ?", [campaign_id])
    mail = jobs.campaign_mail(workspace, store, campaign_id)
    html = mail.render(SAMPLE_SUBSCRIBER, tracked=False).html
    for article in store.articles():
        assert _escaped(article["title"]) in html
