"""Tracking endpoints and subscriber pages over real HTTP on loopback."""

from __future__ import annotations

import datetime as dt
import html
from urllib.parse import urlsplit

import pytest
import requests

from conftest import LiveServer
from newsletter import campaigns, clock, jobs
from newsletter.mail import Urls
from newsletter.tracking import PIXEL_GIF
from newsletter.workspace import Workspace


@pytest.fixture
def sent(workspace: Workspace) -> dict:
    """A campaign sent to the example subscribers through the outbox, a minute ago.

    Dated from the real clock, which the server records opens and clicks on: an open
    seconds after the send would count as a machine's.
    """
    store = workspace.store
    now = clock.utcnow() - dt.timedelta(minutes=1)
    jobs.fetch_sources(workspace, store, now)
    jobs.import_subscriber_folder(workspace, store, now)
    campaign_id = campaigns.create(store, workspace.settings, "Hi", "new", None, None, now)
    jobs.send_campaign(workspace, store, campaign_id, lambda: now)
    subscriber = store.subscribers("confirmed")[0]
    links = store.links(campaign_id)
    return {
        "campaign_id": campaign_id,
        "subscriber": subscriber,
        "links": links,
        "urls": Urls(workspace.settings.site.base_url, workspace.signer),
    }


def _path(url: str) -> str:
    return urlsplit(url).path


def _events(workspace: Workspace, kind: str) -> list[dict]:
    return workspace.store._rows("SELECT * FROM events WHERE kind = ? ORDER BY id", [kind])


def test_healthz(live_server: LiveServer) -> None:
    assert requests.get(live_server.url + "/healthz", timeout=5).text == "ok"


def test_pixel_records_open_and_always_answers_the_gif(
    workspace: Workspace, sent: dict, live_server: LiveServer
) -> None:
    cid, sid = sent["campaign_id"], sent["subscriber"]["id"]
    good = live_server.url + _path(sent["urls"].open(cid, sid))
    tampered = good[:-8] + ("A" if good[-8] != "A" else "B") + good[-7:]
    for url in (good, tampered, live_server.url + "/o/not-a-token.gif"):
        answer = requests.get(url, timeout=5, headers={"User-Agent": "Mail/1.0"})
        assert answer.status_code == 200
        assert answer.content == PIXEL_GIF
        assert "no-store" in answer.headers["cache-control"]
    live_server.stop()
    opens = _events(workspace, "open")
    assert [(e["campaign_id"], e["subscriber_id"]) for e in opens] == [(cid, sid)]
    assert opens[0]["user_agent"] == "Mail/1.0"
    assert opens[0]["ip"] == "127.0.0.0"  # truncated to the /24
    assert len(_events(workspace, "bad_token")) == 2


def test_click_redirects_only_to_the_campaigns_links(
    workspace: Workspace, sent: dict, live_server: LiveServer
) -> None:
    cid, sid = sent["campaign_id"], sent["subscriber"]["id"]
    target, link_id = next(iter(sent["links"].items()))
    url = live_server.url + _path(sent["urls"].click(cid, sid, link_id))
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302 and answer.headers["location"] == target
    head = requests.head(url, allow_redirects=False, timeout=5)
    assert head.status_code == 302
    # A genuine token naming a link id this campaign never contained: no redirect.
    foreign = live_server.url + _path(sent["urls"].click(cid, sid, 9999))
    assert requests.get(foreign, allow_redirects=False, timeout=5).status_code == 404
    # A link id of this campaign under another campaign's id: no redirect either.
    other = live_server.url + _path(sent["urls"].click(cid + 1, sid, link_id))
    assert requests.get(other, allow_redirects=False, timeout=5).status_code == 404
    assert requests.get(url[:-3] + "abc", allow_redirects=False, timeout=5).status_code == 404
    live_server.stop()
    clicks = _events(workspace, "click")
    assert [(c["link_id"], c["method"]) for c in clicks] == [(link_id, "GET"), (link_id, "HEAD")]
    views = _events(workspace, "view")
    assert len(views) == 2 and all(v["article_id"] is not None for v in views)


def test_unsubscribe_get_never_unsubscribes(
    workspace: Workspace, sent: dict, live_server: LiveServer
) -> None:
    cid, subscriber = sent["campaign_id"], sent["subscriber"]
    url = live_server.url + _path(sent["urls"].unsubscribe(cid, subscriber["id"]))
    page = requests.get(url, timeout=5)
    assert page.status_code == 200
    assert subscriber["email"] in page.text and 'method="post"' in page.text
    assert workspace.store.subscriber(subscriber["id"])["status"] == "confirmed"
    # Link scanners also send HEAD: it must not unsubscribe either.
    assert requests.head(url, timeout=5).status_code == 200
    assert workspace.store.subscriber(subscriber["id"])["status"] == "confirmed"


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_post(
    workspace: Workspace, sent: dict, live_server: LiveServer, encoding: str
) -> None:
    cid, subscriber = sent["campaign_id"], sent["subscriber"]
    url = live_server.url + _path(sent["urls"].unsubscribe(cid, subscriber["id"]))
    if encoding == "urlencoded":
        answer = requests.post(
            url,
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            timeout=5,
        )
    else:
        answer = requests.post(
            url,
            files={"List-Unsubscribe": (None, "One-Click")},
            allow_redirects=False,
            timeout=5,
        )
    assert answer.status_code == 200
    assert "set-cookie" not in answer.headers
    assert workspace.store.subscriber(subscriber["id"])["status"] == "unsubscribed"
    events = _events(workspace, "unsubscribe")
    assert [(e["campaign_id"], e["subscriber_id"], e["detail"]) for e in events] == [
        (cid, subscriber["id"], "one-click")
    ]
    # A second POST is harmless and still answers 200.
    again = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=5)
    assert again.status_code == 200
    assert len(_events(workspace, "unsubscribe")) == 1


def test_unsubscribe_refuses_forged_tokens(
    workspace: Workspace, sent: dict, live_server: LiveServer
) -> None:
    cid, subscriber = sent["campaign_id"], sent["subscriber"]
    # An open-pixel token for the same ids must not work as an unsubscribe token.
    token = _path(sent["urls"].open(cid, subscriber["id"])).split("/")[2].removesuffix(".gif")
    answer = requests.post(
        f"{live_server.url}/u/{token}", data={"List-Unsubscribe": "One-Click"}, timeout=5
    )
    assert answer.status_code == 404
    assert workspace.store.subscriber(subscriber["id"])["status"] == "confirmed"


def test_view_in_browser_and_preferences(
    workspace: Workspace, sent: dict, live_server: LiveServer
) -> None:
    cid, subscriber = sent["campaign_id"], sent["subscriber"]
    view = requests.get(live_server.url + _path(sent["urls"].view(cid, subscriber["id"])))
    assert view.status_code == 200
    page = html.unescape(view.text)
    for article in workspace.store.articles():
        assert article["title"] in page
    assert "/o/" not in view.text  # the page is counted as a view, not as an open
    prefs = requests.get(live_server.url + _path(sent["urls"].preferences(cid, subscriber["id"])))
    assert prefs.status_code == 200 and subscriber["email"] in prefs.text
    live_server.stop()
    assert [e["detail"] for e in _events(workspace, "view")] == ["browser"]


def test_every_answered_pixel_is_stored_after_shutdown(
    workspace: Workspace, sent: dict, live_server: LiveServer
) -> None:
    cid, sid = sent["campaign_id"], sent["subscriber"]["id"]
    url = live_server.url + _path(sent["urls"].open(cid, sid))
    answered = 0
    with requests.Session() as session:
        for _ in range(300):
            if session.get(url, timeout=5).status_code == 200:
                answered += 1
    live_server.stop()
    assert len(_events(workspace, "open")) == answered == 300
