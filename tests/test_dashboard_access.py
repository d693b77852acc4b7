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
from newsletter import campaigns
from newsletter.status import SubscriberStatus
from workspaces import campaign_urls, sent_campaign

PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
# Routes that answer with something other than a page of their own: files to download, data
# for a page's script, fragments that htmx polls into a page, the email preview shown inside
# a page's frame.
NOT_PAGES = re.compile(r"\.csv$|\.json$|/progress$|/results/numbers$|/preview$|/sign-out$")
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
            assert name == "id" and kind in ids, (
                f"{route.path}: give {{{name}}} the id of a real one of its kind here"
            )
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
    # A draft too: its page holds the forms and the preview frames a sent one no longer has.
    article = str(ws.store.articles()[0]["id"])
    draft = campaigns.create(ws.store, ws.settings, "Winter hours", article, None, None, now)
    admin_paths.append(f"/campaigns/{draft}")
    return {
        "admin": [dashboard.url + p for p in admin_paths],
        "public": [dashboard.server.url + p for p in public_paths(dashboard, campaign_id, reader)],
    }


def pages(page, urls: list[str]) -> list[str]:
    """The URLs that answer with a page of their own (a download or a fragment is left out)."""
    whole = []
    for url in urls:
        answer = page.request.get(url)
        assert answer.status == 200, (url, answer.status)
        if answer.headers.get("content-type", "").startswith("text/html") and re.match(
            r"\s*<!doctype html>", answer.text(), re.IGNORECASE
        ):
            whole.append(url)
    assert len(whole) >= len(MUST_SEE), whole
    return whole


def phone(browser, dashboard):
    """A phone-sized browser page signed in as an admin."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    dashboard.sign_in(page)
    return context, page


def test_every_page_fits_a_phone(browser, dashboard, site, tmp_path: Path) -> None:
    context, page = phone(browser, dashboard)
    try:
        wide = {}
        for url in pages(page, site["admin"] + site["public"]):
            answer = page.goto(url)
            assert answer is not None and answer.status == 200, url
            width = page.evaluate("document.documentElement.scrollWidth")
            # Named by the path, a reader's token left out: phone-admin-campaigns-1, phone-p.
            path = re.sub(r"/[\w-]{20,}", "", urlsplit(url).path)
            dashboard.screenshot(page, "phone" + re.sub(r"\W+", "-", path))
            if width > PHONE["width"]:
                wide[url] = width
        assert not wide, f"wider than a phone's {PHONE['width']} px: {wide}"

        # A file being checked before it is imported: its table of rows scrolls in its box.
        members = tmp_path / "members.csv"
        members.write_text(
            "Email Address,First Name,Last Name,Company,City,Country,Tags,Opt-in time\n"
            "maria.lopez.de.la.fuente@clinic-partners.example.com,María José,López de la "
            "Fuente,Clínica Fisioterapia del Norte,Santiago de Compostela,Spain,"
            '"back-pain,knee,running",2026-11-02 09:30:00\n',
            encoding="utf-8",
        )
        page.goto(dashboard.url + "/subscribers/import")
        page.get_by_label("CSV file").set_input_files(str(members))
        page.get_by_label("No, or I am not sure").check()
        page.get_by_role("button", name="Check the file").click()
        expect(page.get_by_text("maria.lopez.de.la.fuente").first).to_be_attached()
        dashboard.screenshot(page, "phone-import-preview")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        # The header spans the screen; its links wait behind one Menu button.
        page.goto(dashboard.url + "/")
        header = page.locator("header.top").bounding_box()
        assert header is not None and (header["x"], header["width"]) == (0, PHONE["width"])
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(page.get_by_role("link", name="Subscribers")).to_be_hidden()
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        dashboard.screenshot(page, "phone-menu-open")
        page.get_by_role("link", name="Subscribers").click()
        page.wait_for_url(dashboard.url + "/subscribers")
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        page.get_by_role("button", name="Menu").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        expect(page.get_by_role("button", name="Menu")).to_be_focused()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()


def serious_violations(page) -> list[str]:
    """What axe-core finds serious or critical on the page, one line a rule and element."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations
                .filter((v) => v.impact === "serious" || v.impact === "critical")
                .flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${n.target.join(" ")}`
                    + ` - ${n.failureSummary.replace(/\\s+/g, " ")}`));
        }"""
    )
    return [f"{page.url}: {line}" for line in found]


def test_no_page_has_a_serious_accessibility_failure(
    admin_page, dashboard, site, tmp_path: Path
) -> None:
    page = admin_page
    failures = []
    for url in pages(page, site["admin"] + site["public"]):
        answer = page.goto(url)
        assert answer is not None and answer.status == 200, url
        failures += serious_violations(page)
    # Pages that only an action shows: a form sent back with its errors by the fields,
    # a page that is not there, a file being checked before it is imported.
    page.goto(dashboard.url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("   ")
    page.get_by_role("button", name="Create draft").click()
    expect(page.locator("[aria-invalid=true]").first).to_be_visible()
    failures += serious_violations(page)
    assert page.goto(dashboard.url + "/campaigns/999999").status == 404
    failures += serious_violations(page)
    csv = tmp_path / "members.csv"
    csv.write_text("email,name\nnew.one@example.com,Nia\nnot an address,Bo\n", encoding="utf-8")
    page.goto(dashboard.url + "/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(csv))
    page.get_by_label("No, or I am not sure").check()
    page.get_by_role("button", name="Check the file").click()
    expect(page.get_by_text("new.one@example.com").first).to_be_visible()
    failures += serious_violations(page)
    # On a phone, with the menu open.
    page.set_viewport_size(PHONE)
    page.goto(dashboard.url + "/")
    page.get_by_role("button", name="Menu").click()
    failures += serious_violations(page)
    # The reader's pages in the reader's dark mode, and the answer to subscribing.
    page.emulate_media(color_scheme="dark")
    for url in site["public"]:
        page.goto(url)
        failures += serious_violations(page)
    page.goto(dashboard.server.url + "/subscribe")
    page.get_by_label("Email address").fill("one.more@example.org")
    page.get_by_role("checkbox").first.check()
    page.get_by_role("button").first.click()
    expect(page.get_by_role("heading").first).to_be_visible()
    failures += serious_violations(page)
    assert not failures, "\n".join(failures)


# Where the focused element's ring is drawn, and what is under it there: the ring lies
# outside the element (outline-offset; inside it when the offset is negative), so it is
# seen against whatever the page shows just beyond the element's edge (elementsFromPoint).
RING = """() => {
    const el = document.activeElement;
    if (!el || el === document.body || el.tagName === "IFRAME") return null;
    const style = getComputedStyle(el);
    const rect = el.getBoundingClientRect();
    const width = parseFloat(style.outlineWidth) || 0;
    const away = (parseFloat(style.outlineOffset) || 0) + width / 2;
    const points = [
        [rect.left - away, rect.top + rect.height / 2],
        [rect.right + away, rect.top + rect.height / 2],
        [rect.left + rect.width / 2, rect.top - away],
        [rect.left + rect.width / 2, rect.bottom + away],
    ].filter(([x, y]) => x >= 0 && y >= 0 && x < innerWidth && y < innerHeight);
    const under = points.map(([x, y]) => {
        // A ring drawn inside the element (a negative offset) lies on the element itself.
        let node = away < 0 ? el
            : document.elementsFromPoint(x, y).find((n) => n !== el && !el.contains(n));
        for (; node; node = node.parentElement) {
            const bg = getComputedStyle(node).backgroundColor;
            if (!/^rgba\\(.*, 0\\)$/.test(bg) && bg !== "transparent") return bg;
        }
        return "rgb(255, 255, 255)";
    });
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
        + (el.className && typeof el.className === "string" ? "." + el.className : "")
        + " " + (el.innerText || el.value || "").trim().slice(0, 30);
    return { name, style: style.outlineStyle, width, colour: style.outlineColor, under };
}"""


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(v) for v in re.findall(r"[\d.]+", css)[:3])


def contrast(one: str, other: str) -> float:
    """WCAG's contrast ratio of two CSS rgb() colours."""

    def luminance(css: str) -> float:
        linear = [
            c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
            for c in (v / 255 for v in _rgb(css))
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def weak_focus_rings(page, most: int = 120) -> tuple[int, list[str]]:
    """Tab through the page; how many stops, and each whose ring is missing or under 3:1."""
    page.locator("body").focus()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    seen, weak, stops = set(), [], 0
    for _ in range(most):
        page.keyboard.press("Tab")
        ring = page.evaluate(RING)
        if ring is None:
            continue
        if ring["name"] in seen:
            break  # round the page and back
        seen.add(ring["name"])
        stops += 1
        if ring["style"] == "none" or ring["width"] < 2:
            weak.append(f"{page.url}: {ring['name']}: no focus ring")
            continue
        for under in ring["under"]:
            ratio = contrast(ring["colour"], under)
            if ratio < 3:
                weak.append(
                    f"{page.url}: {ring['name']}: ring {ring['colour']} on {under} is {ratio:.1f}:1"
                )
    return stops, weak


def test_the_focus_ring_stands_out_from_what_it_sits_on(browser, admin_page, dashboard, site):
    page, weak = admin_page, []
    for url in pages(page, site["admin"] + site["public"]):
        page.goto(url)
        stops, found = weak_focus_rings(page)
        assert stops > 0, url
        weak += found
    # The reader's pages follow the reader's dark mode: the ring must show there too.
    page.emulate_media(color_scheme="dark")
    for url in site["public"]:
        page.goto(url)
        weak += weak_focus_rings(page)[1]
    assert not weak, "\n".join(weak)
    assert contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") == 21
