"""Articles without a URL of their own link to a public page the web server keeps for them."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from pathlib import Path

import requests

from clocks import REAL_NOW as NOW
from conftest import LiveServer
from newsletter import campaigns, jobs
from newsletter.mail import SAMPLE_SUBSCRIBER, load_mail
from newsletter.render import article_page_url, article_slug
from newsletter.workspace import Workspace
from workspaces import sent_campaign

# A blog post saved from the browser as text: no URL of its own.
SAVED_PAGE = Path(__file__).parent / "data" / "long-drives.txt"


def _add_saved_page(folder: Path) -> None:
    (folder / "articles" / "long-drives.txt").write_text(SAVED_PAGE.read_text())


def _sent(workspace: Workspace) -> int:
    _add_saved_page(workspace.root)
    return sent_campaign(workspace, NOW)


def _outbox(workspace: Workspace) -> list:
    folder = workspace.path(workspace.settings.delivery.outbox_dir)
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(Path(folder).glob("*.eml"))
    ]


def test_no_empty_link_in_any_message(workspace: Workspace) -> None:
    campaign_id = _sent(workspace)
    store = workspace.store
    without_url = [
        a for a in store.articles_by_id(store.campaign(campaign_id)["article_ids"]) if not a["url"]
    ]
    assert without_url, "the sample articles include some without a URL"
    messages = _outbox(workspace)
    assert messages
    for message in messages:
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert not re.search(r'href\s*=\s*["\']\s*["\']', html)
        # Every "Read ...:" line of the text part carries a link.
        for line in text.splitlines():
            if line.startswith("Read"):
                assert re.search(r"https?://\S+", line), line
    # The saved page is announced alone: its button says where it leads.
    lone = campaigns.create(
        store, workspace.settings, "Hi", str(without_url[0]["id"]), None, None, NOW
    )
    mail = load_mail(
        store, lone, workspace.templates("announcement"), workspace.settings, workspace.signer
    )
    rendered = mail.render(SAMPLE_SUBSCRIBER, tracked=False)
    assert "Read it online" in rendered.html and "on the blog" not in rendered.html
    page = article_page_url(workspace.settings.site.base_url, without_url[0])
    # (The text part may wrap the line before the URL.)
    assert f"Read it online: {page}" in " ".join(rendered.text.split())
    # The page links are click-tracked like any article link, tied to their article.
    links = store._rows("SELECT url, article_id FROM links WHERE campaign_id = ?", [campaign_id])
    by_url = {r["url"]: r["article_id"] for r in links}
    for article in without_url:
        assert by_url[article_page_url(workspace.settings.site.base_url, article)] == article["id"]


def test_the_page_shows_the_article_and_nothing_about_the_reader(
    workspace: Workspace, live_server: LiveServer
) -> None:
    campaign_id = _sent(workspace)
    store = workspace.store
    article = next(
        a for a in store.articles_by_id(store.campaign(campaign_id)["article_ids"]) if not a["url"]
    )
    answer = requests.get(
        f"{live_server.url}/articles/{article_slug(article)}", timeout=5, allow_redirects=False
    )
    assert answer.status_code == 200
    page = answer.text
    assert article["title"].replace("'", "&#39;") in page
    # A sentence of the body, as stored.
    first = re.search(r"<p>([^<]{20,80})", article["body_html"]).group(1)
    assert first in page
    for subscriber in store.subscribers():
        assert subscriber["email"] not in page
    assert "/u/" not in page and "/p/" not in page
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "set-cookie" not in answer.headers


def test_stale_unknown_and_unsent_articles(workspace: Workspace, live_server: LiveServer) -> None:
    _add_saved_page(workspace.root)
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    articles = store.articles()
    no_url = [a for a in articles if not a["url"]]
    with_url = next(a for a in articles if a["url"])
    # Not in any campaign yet: not published.
    answer = requests.get(
        f"{live_server.url}/articles/{article_slug(no_url[0])}", timeout=5, allow_redirects=False
    )
    assert answer.status_code == 404
    campaigns.create(store, workspace.settings, "Hi", "new", None, None, NOW)
    stale = requests.get(
        f"{live_server.url}/articles/{no_url[0]['id']}-old-title", timeout=5, allow_redirects=False
    )
    assert stale.status_code == 301
    assert stale.headers["location"] == f"/articles/{article_slug(no_url[0])}"
    elsewhere = requests.get(
        f"{live_server.url}/articles/{with_url['id']}", timeout=5, allow_redirects=False
    )
    assert (elsewhere.status_code, elsewhere.headers["location"]) == (301, with_url["url"])
    for bad in ("999999-nothing", "not-a-number"):
        answer = requests.get(f"{live_server.url}/articles/{bad}", timeout=5)
        assert answer.status_code == 404


def test_slug_is_the_id_and_plain_words_of_the_title() -> None:
    assert article_slug({"id": 7, "title": "Neck Pain at the Desk: A Guide!"}) == (
        "7-neck-pain-at-the-desk-a-guide"
    )
    assert article_slug({"id": 8, "title": "Zoë's café — été"}) == "8-zoe-s-cafe-ete"
    assert article_slug({"id": 9, "title": "日本語"}) == "9"


def test_campaign_create_names_the_articles_that_got_a_page(cli, ws_dir: Path) -> None:
    _add_saved_page(ws_dir)
    cli("fetch")
    result = cli("campaign", "create", "--subject", "New on the blog")
    assert result.stdout.strip().isdigit()
    lines = [line for line in result.stderr.splitlines() if "has no URL of its own" in line]
    # Only the saved page; the sample articles have URLs of their own.
    assert len(lines) == 1
    assert "Does Your Back Hate Long Drives?" in lines[0]
    assert re.search(
        r"http://127\.0\.0\.1:\d+/articles/\d+-does-your-back-hate-long-drives$", lines[0]
    )


def test_article_addresses_made_to_break_the_id_are_404_not_500(
    workspace: Workspace, live_server: LiveServer
) -> None:
    store = workspace.store
    jobs.fetch_sources(workspace, store, NOW)
    campaigns.create(store, workspace.settings, "Hi", "new", None, None, NOW)
    published = store.articles()[0]["id"]
    for bad in (
        "999999999999999999999999999-x",  # larger than any SQLite integer
        "9223372036854775808-x",  # one past the largest
        "%C2%B2-x",  # superscript two: a digit to str.isdigit, not to int()
        "%D9%A3-x",  # Arabic-Indic three: int() reads it as 3
        f"%EF%BC%9{published}-x" if published < 10 else "%EF%BC%91-x",  # fullwidth digit
        "-x",
    ):
        answer = requests.get(f"{live_server.url}/articles/{bad}", timeout=5, allow_redirects=False)
        assert answer.status_code == 404, (bad, answer.status_code, answer.text[:200])
        assert "Traceback" not in answer.text
