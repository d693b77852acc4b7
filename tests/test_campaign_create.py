"""Creating a campaign: the command line and the dashboard make the same call
(``campaigns.create_draft``), so they refuse the same input for the same reason."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from markupsafe import escape

from conftest import Cli, Dashboard, signed_in
from newsletter import campaigns, jobs
from newsletter.errors import InputError
from newsletter.web.wording import for_people

# (what is wrong, the command's options, the form's fields, the form field it is shown by)
BAD = [
    ("a blank subject", ["--subject", "   "], {"subject": "   "}, "subject"),
    (
        "a subject of two lines",
        ["--subject", "Hello\nBcc: all@example.com"],
        {"subject": "Hello\nBcc: all@example.com"},
        "subject",
    ),
    (
        "a segment that is not a rule",
        ["--segment", "back-pain"],
        {"segment": "back-pain"},
        "segment",
    ),
    ("a template that does not exist", ["--template", "nosuch"], {"template": "nosuch"}, None),
    ("a list that does not exist", ["--list", "vip-readers"], {"list": "vip-readers"}, "list"),
    ("no article named", ["--articles", ""], {"articles_mode": "chosen"}, "articles"),
    (
        "an article that does not exist",
        ["--articles", "999"],
        {"articles_mode": "chosen", "article": "999"},
        "articles",
    ),
]


def test_the_cli_and_the_dashboard_refuse_the_same_input_for_the_same_reason(
    dashboard: Dashboard, cli: Cli
) -> None:
    ws = dashboard.ws
    jobs.fetch_sources(ws, ws.store, dt.datetime.now(dt.UTC))  # new articles to send
    session, csrf = signed_in(dashboard.url)
    good = {"subject": "Back care", "articles_mode": "new", "template": "auto", "tracking": "on"}
    for what, options, fields, field in BAD:
        args = ["--subject", "Back care", *options] if "--subject" not in options else options
        result = cli("campaign", "create", *args, check=False)
        assert result.returncode == 1, (what, result.stdout)
        assert "Traceback" not in result.stderr, what
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), (what, result.stderr)
        reason = lines[0].removeprefix("Error: ")

        page = session.post(
            dashboard.url + "/campaigns/new", data={"csrf": csrf, **good, **fields}, timeout=30
        )
        assert page.status_code == 400, what
        # The page says the command's reason in its own words, by the field it is about.
        said = for_people(reason)
        assert said.field == field, (what, reason)
        shown = re.search(rf'id="{field or "form"}-error">(.*?)</p>', page.text, re.S)
        assert shown, (what, page.text)
        assert shown.group(1) == str(escape(said.text)), (what, reason)
        assert ws.store.campaigns() == [], f"{what}: a refused campaign was stored"


def test_one_core_function_checks_what_people_type(dashboard: Dashboard) -> None:
    """The checks are the core's: called directly, it refuses as both edges do."""
    ws = dashboard.ws
    now = dt.datetime.now(dt.UTC)
    jobs.fetch_sources(ws, ws.store, now)
    new = campaigns.NewCampaign(subject="Back care", segment=["back-pain"])
    with pytest.raises(InputError, match=r"^--segment 'back-pain': use tag:NAME"):
        campaigns.create_draft(ws.store, ws.settings, ws.templates, new, now)
    assert ws.store.campaigns() == []
    created = campaigns.create_draft(
        ws.store,
        ws.settings,
        ws.templates,
        campaigns.NewCampaign(subject="Back care", template="announcement", segment=["tag:x"]),
        now,
    )
    assert ws.store.campaign(created.campaign_id)["subject"] == "Back care"
    assert created.matching == 0  # nobody is tagged x
    # Several new articles: the announcement design gives way to the digest, and says so.
    assert created.article_count > 1 and created.announcement_became == "digest"
