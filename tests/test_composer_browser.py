"""A clinic's marketing person writes a campaign in the dashboard's composer, in headless
Chromium against the live server: the toolbar, the live preview in the campaign's own
design, an uploaded image, an error said by the field, on a phone and for everyone."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from pathlib import Path

from playwright.sync_api import expect

from newsletter import jobs
from test_composer import png
from test_dashboard_access import PHONE, phone, serious_violations
from workspaces import workspace_with_articles_and_subscribers


def _filled(dashboard) -> None:
    workspace_with_articles_and_subscribers(dashboard.ws, dt.datetime.now(dt.UTC))


def _untick_all(page) -> None:
    for box in page.locator("#article-list input[type=checkbox]").all():
        box.uncheck()


def test_the_live_preview_follows_the_text_and_a_one_off_is_created_and_mailed(
    admin_page, dashboard, tmp_path: Path
) -> None:
    page = admin_page
    _filled(dashboard)
    page.goto(dashboard.url + "/campaigns/new")
    preview = page.frame_locator("#composer-preview")
    history = page.evaluate("history.length")
    page.get_by_label("Subject", exact=True).fill("Closed over the holidays")
    _untick_all(page)

    text = page.get_by_label("Text", exact=False).and_(page.locator("textarea#content"))
    text.fill("We are closed from 24 December.")
    shown = preview.locator(".article-body")  # the campaign's text as the email shows it
    expect(shown).to_contain_text("We are closed from 24 December.")
    # The design the campaign will have: the digest's header names the sender.
    expect(
        preview.get_by_role("heading", name=dashboard.ws.settings.sender.from_name)
    ).to_be_visible()

    # The toolbar makes the selected words bold, and the preview follows.
    text.press("End")
    text.type(" See you in January.")
    text.evaluate("el => el.setSelectionRange(7, 13)")  # "closed"
    page.get_by_role("button", name="Bold").click()
    expect(text).to_have_value("We are **closed** from 24 December. See you in January.")
    expect(preview.locator("strong", has_text="closed")).to_be_visible()
    page.get_by_role("button", name="Bulleted list").click()
    expect(text).to_have_value(re.compile(r"^- We are \*\*closed\*\*"))
    expect(preview.locator("li", has_text="See you in January.")).to_be_visible()

    # An image from the computer: uploaded, written in as Markdown, shown in the preview.
    image = tmp_path / "room.png"
    image.write_bytes(png(4, 3))
    page.get_by_label("Add an image from your computer").set_input_files(str(image))
    expect(page.locator("#upload-status")).to_contain_text("room.png added")
    expect(text).to_have_value(
        re.compile(r"!\[image description\]\(http://127\.0\.0\.1:\d+/uploads/[0-9a-f]{64}\.png\)")
    )
    expect(preview.locator("img[src*='/uploads/']")).to_have_count(1)
    dashboard.screenshot(page, "composer")
    # Many previews later, the browser's Back button still leaves the form at once.
    assert page.evaluate("history.length") == history
    assert page.locator("iframe[name^=composer-preview]").count() == 1
    # A file that is no image is refused by its bytes, whatever its name says.
    fake = tmp_path / "fake.png"
    fake.write_text("<html>not an image</html>", encoding="utf-8")
    page.get_by_label("Add an image from your computer").set_input_files(str(fake))
    expect(page.locator("#upload-status")).to_contain_text("not a PNG, JPEG, GIF or WebP image")

    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("created as a draft")
    store = dashboard.ws.store
    (row,) = store.campaigns()
    campaign = store.campaign(row["id"])
    assert campaign["article_ids"] == [] and "**closed**" in campaign["body"]
    assert len(store.articles(only_new=True)) == 3

    jobs.send_campaign(dashboard.ws, store, row["id"], lambda: dt.datetime.now(dt.UTC))
    message = email.message_from_bytes(dashboard.sink.messages[0].data, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    assert "<strong>closed</strong>" in html
    assert re.search(r'<img src="http://127\.0\.0\.1:\d+/uploads/[0-9a-f]{64}\.png"', html)


def test_a_design_that_fails_is_said_next_to_the_text(admin_page, dashboard) -> None:
    broken = dashboard.ws.root / "templates" / "broken"
    broken.mkdir(parents=True)
    (broken / "subject.txt").write_text("x", encoding="utf-8")
    (broken / "body.txt").write_text("{{ 1 / 0 }}", encoding="utf-8")
    (broken / "body.html").write_text("<p>{{ campaign.body_html }}</p>", encoding="utf-8")
    page = admin_page
    _filled(dashboard)
    page.goto(dashboard.url + "/campaigns/new")
    page.locator("textarea#content").fill("Hello")
    page.get_by_label("Design").select_option("broken")
    said = page.locator("#content-preview-error")
    expect(said).to_be_visible()
    expect(said).to_contain_text("division by zero")
    assert "--" not in said.inner_text()
    expect(page.locator("textarea#content")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("textarea#content")).to_have_attribute(
        "aria-describedby", "content-preview-error"
    )
    # Back to a working design: the message goes and the preview shows the text.
    page.get_by_label("Design").select_option("digest")
    expect(said).to_be_hidden()
    expect(page.frame_locator("#composer-preview").locator(".article-body")).to_have_text("Hello")


def test_an_old_design_copy_that_would_not_show_the_text_is_said_next_to_it(
    admin_page, dashboard
) -> None:
    from test_composer import _old_copies

    _old_copies(dashboard.ws.root)
    page = admin_page
    _filled(dashboard)
    page.goto(dashboard.url + "/campaigns/new")
    page.get_by_label("Design").select_option("digest")
    page.locator("textarea#content").fill("Winter hours start Monday.")
    said = page.locator("#content-preview-error")
    # The words saving refuses it with, before anything is saved.
    expect(said).to_contain_text("The design digest is a copy kept in this workspace")
    assert "--" not in said.inner_text() and "docs/" not in said.inner_text()
    expect(page.locator("textarea#content")).to_have_attribute("aria-invalid", "true")
    assert dashboard.ws.store.campaigns() == []


def test_the_composer_works_without_script(browser, dashboard) -> None:
    """No script: the text is typed Markdown, and "Show preview" renders into the frame."""
    _filled(dashboard)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        dashboard.sign_in(page)
        page.goto(dashboard.url + "/campaigns/new")
        expect(page.get_by_role("toolbar")).to_be_hidden()
        page.locator("textarea#content").fill("A **plain** note.")
        page.get_by_role("button", name="Show preview").click()
        expect(
            page.frame_locator("#composer-preview").locator("strong", has_text="plain")
        ).to_be_visible()
    finally:
        context.close()


def test_the_composer_fits_a_phone_and_has_no_serious_accessibility_failure(
    browser, admin_page, dashboard
) -> None:
    _filled(dashboard)
    page = admin_page
    page.goto(dashboard.url + "/campaigns/new")
    page.locator("textarea#content").fill("## Our hours\n\n- Monday to Friday, 8 to 18")
    expect(page.frame_locator("#composer-preview").locator(".article-body li")).to_have_text(
        "Monday to Friday, 8 to 18"
    )
    assert serious_violations(page) == []

    context, small = phone(browser, dashboard)
    try:
        small.goto(dashboard.url + "/campaigns/new")
        small.locator("textarea#content").fill("A long line " * 40)
        expect(small.frame_locator("#composer-preview").locator(".article-body")).to_be_visible()
        dashboard.screenshot(small, "phone-composer")
        assert small.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()


def test_the_design_is_picked_from_thumbnails_and_the_preview_follows(
    admin_page, dashboard
) -> None:
    page = admin_page
    _filled(dashboard)
    page.goto(dashboard.url + "/campaigns/new")
    newest = dashboard.ws.store.articles()[0]["title"]
    # The thumbnails load lazily: only once they are on screen.
    page.locator(".design-thumbnails").scroll_into_view_if_needed()
    for design in ("announcement", "digest"):
        thumbnail = page.frame_locator(f"iframe[title='The {design} design with sample content']")
        expect(thumbnail.get_by_role("link", name=newest).first).to_be_attached()
    page.get_by_role("button", name="Use announcement").click()
    expect(page.get_by_label("Design")).to_have_value("announcement")
    expect(page.locator(".design-thumbnails li.chosen")).to_have_attribute(
        "data-design", "announcement"
    )
    # One article ticked: the announcement shows it with its title as the email's heading.
    boxes = page.locator("#article-list input[type=checkbox]")
    for n in range(1, boxes.count()):
        boxes.nth(n).uncheck()
    preview = page.frame_locator("#composer-preview")
    expect(preview.get_by_role("heading", level=1)).to_have_text(newest)


def test_every_preview_frame_the_script_makes_is_sandboxed(admin_page, dashboard) -> None:
    page = admin_page
    _filled(dashboard)
    page.goto(dashboard.url + "/campaigns/new")
    _untick_all(page)
    page.locator("textarea#content").fill("First words.")
    preview = page.frame_locator("#composer-preview")
    expect(preview.locator(".article-body")).to_contain_text("First words.", timeout=15_000)
    page.locator("textarea#content").fill("Second words.")
    expect(preview.locator(".article-body")).to_contain_text("Second words.", timeout=15_000)
    # The frame shown now is one the script made in place of the page's own.
    frame = page.locator("#composer-preview")
    expect(frame).to_have_attribute("name", re.compile(r"^composer-preview-\d+$"))
    expect(frame).to_have_attribute("sandbox", "allow-same-origin")
    for made in page.locator("iframe[name^=composer-preview]").all():
        assert made.get_attribute("sandbox") == "allow-same-origin"


def test_moving_an_article_up_or_down_refreshes_the_preview(admin_page, dashboard) -> None:
    page = admin_page
    _filled(dashboard)
    page.goto(dashboard.url + "/campaigns/new")
    # Every article ticked, in the digest design ("auto" with several): each one's heading.
    titles = [a["title"] for a in dashboard.ws.store.articles()]
    preview = page.frame_locator("#composer-preview")

    def first_title():
        return preview.get_by_role("heading", level=2).first

    # A preview is a render on the server and a new frame: given time on a busy machine.
    expect(first_title()).to_have_text(titles[0], timeout=15_000)
    page.get_by_role("button", name=f"Move “{titles[0]}” down").click()
    expect(first_title()).to_have_text(titles[1], timeout=15_000)
    page.get_by_role("button", name=f"Move “{titles[0]}” up").click()
    expect(first_title()).to_have_text(titles[0], timeout=15_000)
