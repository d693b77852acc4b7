"""The inbox preview text: a default for every campaign, configurable, hidden without tricks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clocks import REAL_NOW as NOW
from newsletter import automations, campaigns, jobs
from newsletter.mail import SAMPLE_SUBSCRIBER, load_mail
from newsletter.render import default_preheader
from newsletter.workspace import Workspace


def _preheader(html: str) -> str | None:
    found = re.search(r'<div style="display:\s*none[^"]*">([^<&]*)', html)
    return found.group(1) if found else None


def _html(ws: Workspace, campaign_id: int) -> str:
    mail = load_mail(
        ws.store,
        campaign_id,
        ws.templates(ws.store.campaign(campaign_id)["template"]),
        ws.settings,
        ws.signer,
    )
    return mail.render(SAMPLE_SUBSCRIBER, tracked=False).html


def _open(ws_dir: Path, **env: str) -> Workspace:
    ws = Workspace.open(ws_dir, env=env)
    jobs.fetch_sources(ws, ws.store, NOW)
    return ws


def test_one_article_previews_its_summary(ws_dir: Path) -> None:
    ws = _open(ws_dir)
    article = ws.store.articles()[0]
    campaign_id = campaigns.create(ws.store, ws.settings, "S", str(article["id"]), None, None, NOW)
    assert _preheader(_html(ws, campaign_id)) == article["summary"].replace("'", "&#39;")
    ws.close()


def test_several_articles_preview_their_titles_newest_first(ws_dir: Path) -> None:
    ws = _open(ws_dir)
    campaign_id = campaigns.create(ws.store, ws.settings, "S", "new", None, None, NOW)
    titles = " · ".join(a["title"] for a in ws.store.articles())
    expected = default_preheader([{"title": t} for t in titles.split(" · ")], "auto")
    assert _preheader(_html(ws, campaign_id)) == expected.replace("'", "&#39;")
    assert expected.startswith(ws.store.articles()[0]["title"])
    ws.close()


def test_automatic_campaigns_get_one_too(ws_dir: Path) -> None:
    ws = _open(ws_dir)
    campaign_id = automations.create_instant_campaign(ws, ws.store, NOW)
    assert _preheader(_html(ws, campaign_id)).startswith(
        ws.store.articles()[0]["title"].replace("'", "&#39;")
    )
    ws.close()


def test_the_campaigns_own_preheader_wins(ws_dir: Path) -> None:
    ws = _open(ws_dir)
    campaign_id = campaigns.create(
        ws.store, ws.settings, "S", "new", None, None, NOW, preheader="Our autumn picks"
    )
    assert _preheader(_html(ws, campaign_id)) == "Our autumn picks"
    ws.close()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("", None), ("Weekly notes from the clinic", "Weekly notes from the clinic")],
)
def test_configured(ws_dir: Path, setting: str, expected: str | None) -> None:
    ws = _open(ws_dir, NEWSLETTER_TEMPLATES__PREHEADER=setting)
    campaign_id = campaigns.create(ws.store, ws.settings, "S", "new", None, None, NOW)
    assert _preheader(_html(ws, campaign_id)) == expected
    ws.close()


def test_long_text_is_cut_at_a_word() -> None:
    long = {"title": "t", "summary": "word " * 60}
    text = default_preheader([long], "auto")
    assert len(text) <= 140 and text.endswith("word…")


def test_hidden_without_text_coloured_like_the_background(ws_dir: Path) -> None:
    ws = _open(ws_dir)
    campaign_id = campaigns.create(ws.store, ws.settings, "S", "new", None, None, NOW)
    hidden = re.search(r'<div style="(display:\s*none[^"]*)"', _html(ws, campaign_id)).group(1)
    assert "color" not in hidden
    ws.close()
