"""Every page on a phone and for everyone: no sideways scrolling at 390 px, no serious
accessibility failure (axe-core), a focus ring that can be seen.

The pages are taken from the dashboard's own routes, so a page added later is checked
too; each is shown with real data behind it (a sent campaign, subscribers, the audit
log, an import being checked), in headless Chromium against the live server.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import expect
from starlette.routing import Mount, Route

from conftest import subscribe_form
from newsletter.status import SubscriberStatus
from workspaces import campaign_urls, sent_campaign

PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
# Routes that answer with something other than a page of their own: files to download,
# fragments that htmx polls into a page, the email preview shown inside a page's frame.
NOT_PAGES = re.compile(r"\.csv$|/progress$|/results/numbers$|/preview$|/sign-out$")
# Pages every run must have reached, whatever else the routes hold.
MUST_SEE = (
    "/",
    "/articles",
    "/campaigns",
    "/campaigns/new",
    "/campaigns/{campaign}",
    "/campaigns/{campaign}/results",
    "/subscribers",
    "/subscribers/{subscriber}",
    "/subscribers/import",
    "/settings",
    "/settings/check",
    "/audit",
    "/account",
)


def dashboard_paths(dashboard, campaign_id: int, subscriber_id: int) -> list[str]:
    """The path of every page the dashboard serves by GET, with real ids filled in."""
    (admin,) = [
        r for r in dashboard.server.app.routes if isinstance(r, Mount) and r.path == "/admin"
    ]
    ids = {"campaigns": campaign_id, "subscribers": subscriber_id}
    paths = []
    for route in admin.routes:
        if not isinstance(route, Route) or "GET" not in (route.methods or ()):
            continue
        if NOT_PAGES.search(route.path):
            continue
        path = route.path
        for name in re.findall(r"\{(\w+)(?::\w+)?\}", path):
            # A page of one thing takes the id of a real one of its kind.
            kind = path.strip("/").split("/")[0]
            assert name == "id" and kind in ids, f"{route.path}: no real value for {{{name}}}"
            path = re.sub(r"\{id(?::\w+)?\}", str(ids[kind]), path)
        paths.append(path)
    return paths


def confirmation_link(dashboard, address: str) -> str:
    """The link of the confirmation email that subscribing ``address`` sends."""
    assert subscribe_form(dashboard.server.url, address).status_code == 200
    dashboard.server.app.state.subscriber_pages.mail.flush()
    for data in reversed([m.data for m in dashboard.sink.messages]):
        mail = email.message_from_bytes(data, policy=email.policy.default)
        if address in str(mail["To"]):
            found = re.search(r"/confirm/[\w.-]+", mail.get_body(("plain",)).get_content())
            assert found, mail
            return found.group()
    raise AssertionError(f"no confirmation email reached {address}")


def public_paths(dashboard, campaign_id: int, subscriber_id: int) -> list[str]:
    """A reader's pages: subscribe, confirm, preferences, unsubscribe, an article's own page."""
    from newsletter import render

    ws = dashboard.ws
    urls = campaign_urls(ws)
    paths = [
        "/subscribe",
        confirmation_link(dashboard, "new.reader@example.org"),
        urls.preferences(campaign_id, subscriber_id),
        urls.unsubscribe(campaign_id, subscriber_id),
    ]
    own = [a for a in ws.store.articles() if not a.get("url")]
    paths += ["/articles/" + render.article_slug(a) for a in own[:1]]
    base = ws.settings.site.base_url
    return [p[len(base) :] if p.startswith(base) else p for p in paths]


@pytest.fixture
def site(dashboard) -> dict[str, list[str]]:
    """The dashboard with a sent campaign that was read; every page's URL, both sides."""
    ws = dashboard.ws
    now = dt.datetime.now(dt.UTC)
    campaign_id = sent_campaign(ws, now, "Autumn at the clinic")
    reader = ws.store.subscribers(status=SubscriberStatus.CONFIRMED)[0]["id"]
    urls = campaign_urls(ws)
    # A reader's open, so the results have numbers and a chart.
    assert requests.get(urls.open(campaign_id, reader), timeout=10).status_code == 200
    admin_paths = dashboard_paths(dashboard, campaign_id, reader)
    for must in MUST_SEE:
        path = must.format(campaign=campaign_id, subscriber=reader)
        assert path in admin_paths, f"the routes no longer hold {path}"
    return {
        "admin": [dashboard.url + p for p in admin_paths],
        "public": [dashboard.server.url + p for p in public_paths(dashboard, campaign_id, reader)],
    }


def phone(browser, dashboard):
    """A phone-sized browser page signed in as an admin."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    dashboard.sign_in(page)
    return context, page


def test_every_page_fits_a_phone(browser, dashboard, site) -> None:
    context, page = phone(browser, dashboard)
    try:
        wide = {}
        for url in site["admin"] + site["public"]:
            answer = page.goto(url)
            assert answer is not None and answer.status == 200, url
            width = page.evaluate("document.documentElement.scrollWidth")
            dashboard.screenshot(page, "phone" + re.sub(r"\W+", "-", urlsplit(url).path))
            if width > PHONE["width"]:
                wide[url] = width
        assert not wide, f"wider than a phone's {PHONE['width']} px: {wide}"

        # The header spans the screen; its links wait behind one Menu button.
        page.goto(dashboard.url + "/")
        header = page.locator("header.top").bounding_box()
        assert header is not None and (header["x"], header["width"]) == (0, PHONE["width"])
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(page.get_by_role("link", name="Subscribers")).to_be_hidden()
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        page.get_by_role("link", name="Subscribers").click()
        page.wait_for_url(dashboard.url + "/subscribers")
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        page.get_by_role("button", name="Menu").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()
