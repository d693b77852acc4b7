"""Staff preview a campaign: as an inbox lists it, for a person found by name or part of
the address, and when something is wrong, a message on the page, never the dashboard
inside the email's frames.
"""

from __future__ import annotations

import datetime as dt
import shutil

import requests
from playwright.sync_api import expect

from newsletter import campaigns, jobs
from newsletter.render import DEFAULTS_DIR
from newsletter.status import SubscriberStatus
from test_dashboard_access import PHONE, serious_violations
from workspaces import new_campaign, workspace_with_articles_and_subscribers

DASHBOARD_MARKS = ("<nav", "Sign out", 'class="top"', "csrf")


def frame_answer(page, url: str, campaign_id: int, subscriber: str = ""):
    """What a preview frame loads for ``subscriber``, fetched with the page's session."""
    return page.request.get(
        f"{url}/campaigns/{campaign_id}/preview", params={"subscriber": subscriber}
    )


def assert_plain_document(answer, says: str) -> None:
    """The frame's answer is a short document with the reason, no page of the dashboard."""
    text = answer.text()
    assert says in text, text
    for mark in DASHBOARD_MARKS:
        assert mark not in text, (mark, text)
    assert answer.headers["content-security-policy"].startswith("sandbox")


def test_previewing_shows_the_inbox_line_above_the_desktop_and_phone_frames(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    workspace_with_articles_and_subscribers(ws, now)
    cid = campaigns.create(
        ws.store, ws.settings, "Winter hours", "new", None, None, now, preheader="Open till 8"
    )
    page.goto(f"{url}/campaigns/{cid}")
    inbox = page.get_by_role("group", name="As an inbox lists it")
    sender = ws.settings.sender
    expect(inbox).to_contain_text(sender.from_name)
    expect(inbox).to_contain_text(f"<{sender.from_address}>")
    expect(inbox).to_contain_text("Winter hours")
    expect(inbox).to_contain_text("Open till 8")
    # Above both frames, and the frames show the email, not a page of the dashboard.
    line = inbox.bounding_box()
    for frame in ("iframe.desktop", "iframe.phone"):
        box = page.locator(frame).bounding_box()
        assert line is not None and box is not None and line["y"] + line["height"] <= box["y"]
        expect(page.frame_locator(frame).get_by_text("Open till 8").first).to_be_attached()
    first = ws.store.first_subscriber(SubscriberStatus.CONFIRMED)
    expect(page.get_by_text(f"Rendered for {first['email']}")).to_be_visible()
    assert serious_violations(page) == []
    dashboard.screenshot(page, "campaign-preview-inbox", part="section[aria-labelledby=h-preview]")

    # On a phone the line is cut at the edge, not wider than the screen.
    page.set_viewport_size(PHONE)
    page.goto(f"{url}/campaigns/{cid}")
    expect(inbox).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_finding_the_person_to_preview_for_by_name_or_part_of_the_address(
    browser, admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    cid = new_campaign(ws, dt.datetime.now(dt.UTC), "Winter hours")

    # Part of a name, typed and shown: the one person with it.
    page.goto(f"{url}/campaigns/{cid}")
    page.get_by_label("As subscriber").fill("brenn")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("Rendered for zoe.brennan@example.org (Zoë Brennan)")).to_be_visible()
    expect(page.frame_locator("iframe.desktop").get_by_text("Zoë").first).to_be_attached()

    # Part of several addresses: the first, and the others offered as links.
    page.get_by_label("As subscriber").fill("example.org")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text("Rendered for zoe.brennan@example.org")).to_be_visible()
    page.get_by_role("link", name="mei.lindqvist@example.org").click()
    expect(page.get_by_text("Rendered for mei.lindqvist@example.org (Mei")).to_be_visible()
    expect(page.frame_locator("iframe.phone").get_by_text("Mei").first).to_be_attached()
    assert serious_violations(page) == []

    # As one types, the matching people are offered (the page's script asks the server).
    page.goto(f"{url}/campaigns/{cid}")
    page.get_by_label("As subscriber").press_sequentially("garc")
    options = page.locator("#subscriber-matches option")
    expect(options).to_have_count(1)
    expect(options.first).to_have_attribute("value", "jose.garcia@example.net")
    expect(options.first).to_have_attribute("label", "José García")

    # Without script the form alone does it.
    context = browser.new_context(java_script_enabled=False)
    try:
        plain = context.new_page()
        dashboard.sign_in(plain)
        plain.goto(f"{url}/campaigns/{cid}")
        plain.get_by_label("As subscriber").fill("Okafor")
        plain.get_by_role("button", name="Show").click()
        expect(plain.get_by_text("Rendered for sam.okafor@example.com")).to_be_visible()
    finally:
        context.close()


def test_the_people_finder_answers_ten_at_most_matching_percent_and_underscore_as_typed(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    cid = new_campaign(ws, now, "Winter hours")
    many = [{"email": f"member{n:02}@club.example", "status": "confirmed"} for n in range(15)]
    odd = [
        {"email": "first_last@club.example", "status": "confirmed"},
        {"email": "firstXlast@club.example", "status": "confirmed"},
        {"email": "ten%off@club.example", "status": "confirmed"},
        {"email": "tenpercent@club.example", "status": "confirmed"},
    ]
    ws.store.add_subscribers(many + odd, None, "test", "test", now)
    find = f"{url}/campaigns/{cid}/preview/people.json"

    def found(text: str) -> list[str]:
        answer = page.request.get(find, params={"q": text})
        assert answer.status == 200 and answer.headers["content-type"] == "application/json"
        return [person["email"] for person in answer.json()]

    assert found("member") == [f"member{n:02}@club.example" for n in range(10)]
    # % and _ are the characters typed, not LIKE's wildcards.
    assert found("first_") == ["first_last@club.example"]
    assert found("ten%") == ["ten%off@club.example"]
    assert found("alice") == ["alice.moreno@example.com"]
    assert found("   ") == []
    # Like every page of the dashboard: not for someone who is not signed in.
    stranger = requests.get(find, params={"q": "member"}, allow_redirects=False, timeout=10)
    assert stranger.status_code in (302, 303)
    assert "sign-in" in stranger.headers["location"]
    assert "member" not in stranger.text


def test_an_unknown_subscriber_is_said_on_the_page_and_the_frames_never_show_the_dashboard(
    browser, admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    cid = new_campaign(ws, dt.datetime.now(dt.UTC), "Winter hours")
    page.goto(f"{url}/campaigns/{cid}?subscriber=nobody%40example.org")
    alert = page.locator("#preview-error")
    expect(alert).to_have_text("No subscriber's name or address contains “nobody@example.org”.")
    field = page.get_by_label("As subscriber")
    expect(field).to_have_value("nobody@example.org")
    expect(field).to_have_attribute("aria-invalid", "true")
    assert "preview-error" in (field.get_attribute("aria-describedby") or "")
    expect(page.locator("iframe")).to_have_count(0)
    assert serious_violations(page) == []
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # The frame's own address, asked for directly: a plain document saying why.
    answer = frame_answer(page, url, cid, "nobody@example.org")
    assert answer.status == 404
    assert_plain_document(answer, "nobody@example.org")
    # Signed out (the session ended while the page stayed open): no sign-in page inside.
    context = browser.new_context()
    try:
        answer = frame_answer(context.new_page(), url, cid)
        assert answer.status == 401
        assert_plain_document(answer, "Sign in again")
    finally:
        context.close()


def test_a_broken_template_is_said_on_the_page_not_drawn_in_the_frames(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    workspace_with_articles_and_subscribers(ws, now)
    # A design of the workspace that fails while it renders.
    broken = ws.root / "templates" / "broken"
    shutil.copytree(DEFAULTS_DIR / "templates" / "digest", broken)
    body = broken / "body.html"
    body.write_text(body.read_text(encoding="utf-8") + "{{ 1 / 0 }}\n", encoding="utf-8")
    cid = campaigns.create(ws.store, ws.settings, "Winter hours", "new", "broken", None, now)

    page.goto(f"{url}/campaigns/{cid}")
    alert = page.locator("#preview-error")
    expect(alert).to_contain_text("broken/body.html")
    expect(page.locator("iframe")).to_have_count(0)
    # The field is not to blame.
    expect(page.get_by_label("As subscriber")).not_to_have_attribute("aria-invalid", "true")
    assert serious_violations(page) == []
    answer = frame_answer(page, url, cid)
    assert answer.status == 400
    assert_plain_document(answer, "broken/body.html")


def test_with_no_subscribers_the_preview_is_for_a_made_up_reader_and_a_search_says_none(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    jobs.fetch_sources(ws, ws.store, now)
    cid = campaigns.create(ws.store, ws.settings, "Winter hours", "new", None, None, now)
    page.goto(f"{url}/campaigns/{cid}")
    expect(
        page.get_by_text("No confirmed subscriber yet: rendered for a made-up reader")
    ).to_be_visible()
    expect(page.frame_locator("iframe.desktop").get_by_text("Sample").first).to_be_attached()
    page.get_by_label("As subscriber").fill("alice")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#preview-error")).to_have_text(
        "No subscriber's name or address contains “alice”."
    )
    expect(page.locator("iframe")).to_have_count(0)
