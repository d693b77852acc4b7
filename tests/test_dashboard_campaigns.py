"""Staff write, change, delete and send campaigns in the dashboard, in headless Chromium
against the live server: the article checklist, editable drafts, articles that stay new
until a send starts, and the questions asked before what cannot be undone."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from playwright.sync_api import expect

from conftest import signed_in
from newsletter import campaigns
from newsletter.status import CampaignStatus, SubscriberStatus
from workspaces import workspace_with_articles_and_subscribers


def _filled(dashboard) -> list[dict]:
    """The sample articles and subscribers taken in; the articles newest first."""
    ws = workspace_with_articles_and_subscribers(dashboard.ws, dt.datetime.now(dt.UTC))
    return ws.store.articles()


def _confirmed(dashboard) -> int:
    return len(dashboard.ws.store.subscribers(SubscriberStatus.CONFIRMED))


def _checklist(page) -> list[tuple[str, bool]]:
    """(title, ticked) of each article of the form, top to bottom."""
    rows = page.locator("#article-list li")
    return [
        (
            rows.nth(i).locator("[data-title]").inner_text(),
            rows.nth(i).get_by_role("checkbox").is_checked(),
        )
        for i in range(rows.count())
    ]


def test_articles_are_one_checklist_ticked_with_the_new_ones_in_the_order_chosen(
    admin_page, dashboard
) -> None:
    page, url = admin_page, dashboard.url
    newest, middle, oldest = (a["title"] for a in _filled(dashboard))
    page.goto(url + "/campaigns/new")
    assert _checklist(page) == [(newest, True), (middle, True), (oldest, True)]

    page.get_by_label("Subject", exact=True).fill("Oldest first")
    page.get_by_role("checkbox", name=middle).uncheck()
    page.get_by_role("button", name=f"Move “{oldest}” up").click()
    page.get_by_role("button", name=f"Move “{oldest}” up").click()
    expect(page.locator("#order-status")).to_have_text(f"{oldest} is now number 1 of 3.")
    assert _checklist(page) == [(oldest, True), (newest, True), (middle, False)]
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("created as a draft")
    expect(page.locator("section[aria-labelledby=h-articles] li")).to_have_text([oldest, newest])
    store = dashboard.ws.store
    by_title = {a["title"]: a["id"] for a in store.articles()}
    assert store.campaign(store.campaigns()[-1]["id"])["article_ids"] == [
        by_title[oldest],
        by_title[newest],
    ]


def test_enter_in_the_subject_creates_the_draft_and_moves_no_article(admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url
    titles = [a["title"] for a in _filled(dashboard)]
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Sent with Enter")
    page.get_by_label("Subject", exact=True).press("Enter")
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("created as a draft")
    store = dashboard.ws.store
    (campaign,) = store.campaigns()
    by_id = {a["id"]: a["title"] for a in store.articles()}
    assert campaign["subject"] == "Sent with Enter"
    assert [by_id[i] for i in store.campaign(campaign["id"])["article_ids"]] == titles


def test_the_order_buttons_work_without_the_pages_script(dashboard) -> None:
    """A browser without script sends the press to the server, which redraws the form."""
    newest, middle, oldest = (a["id"] for a in _filled(dashboard))
    session, csrf = signed_in(dashboard.url)
    form = {
        "csrf": csrf,
        "subject": "Kept as typed",
        "order": [newest, middle, oldest],
        "article": [newest, oldest],
        "move": f"down:{newest}",
        "template": "auto",
    }
    page = session.post(dashboard.url + "/campaigns/new", data=form, timeout=30)
    assert page.status_code == 200 and dashboard.ws.store.campaigns() == []
    shown = re.findall(r'name="article" value="(\d+)" ?(checked)?', page.text)
    assert shown == [(str(middle), ""), (str(newest), "checked"), (str(oldest), "checked")]
    assert 'value="Kept as typed"' in page.text


def test_a_draft_is_changed_until_sending_starts_and_deleted_after_a_question(
    admin_page, dashboard
) -> None:
    page, url = admin_page, dashboard.url
    newest, middle, oldest = (a["title"] for a in _filled(dashboard))
    store = dashboard.ws.store
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("First try")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    cid = store.campaigns()[-1]["id"]

    page.get_by_role("link", name="Edit draft").click()
    expect(page.get_by_label("Subject", exact=True)).to_have_value("First try")
    page.get_by_label("Subject", exact=True).fill("Back care in winter")
    page.get_by_label("Preheader").fill("Two short reads")
    page.get_by_role("checkbox", name=middle).uncheck()
    page.get_by_label("Design").select_option("digest")
    page.get_by_label("Tagged", exact=True).select_option("back-pain")
    page.get_by_label("Not tagged").select_option("running")
    page.get_by_label("Track opens and clicks").uncheck()
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(re.compile(rf".*/campaigns/{cid}$"))
    expect(page.get_by_role("status")).to_contain_text(f"Campaign {cid} saved")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Campaign {cid}: Back care in winter"
    )
    expect(page.locator("section[aria-labelledby=h-articles] li")).to_have_text([newest, oldest])
    matching = store.count_recipients(
        None,
        [
            {"kind": "tag", "value": "back-pain", "negate": False},
            {"kind": "tag", "value": "running", "negate": True},
        ],
    )
    words = "subscriber matches" if matching == 1 else "subscribers match"
    expect(page.get_by_text(f"{matching} {words} now")).to_be_visible()
    saved = store.campaign(cid)
    assert (saved["preheader"], saved["template"], saved["tracking"]) == (
        "Two short reads",
        "digest",
        False,
    )

    # The form comes back as saved, choices chosen; a bad change is refused by its field.
    page.get_by_role("link", name="Edit draft").click()
    expect(page.get_by_label("Tagged", exact=True)).to_have_value("back-pain")
    expect(page.get_by_label("Not tagged")).to_have_value("running")
    assert _checklist(page)[:2] == [(newest, True), (oldest, True)]
    page.get_by_label("Subject", exact=True).fill("  ")
    page.eval_on_selector("form.card", "form => { form.noValidate = true; }")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#subject-error")).to_contain_text("Write a subject")
    expect(page.get_by_label("Subject", exact=True)).to_have_attribute("aria-invalid", "true")
    assert store.campaign(cid)["subject"] == "Back care in winter"

    # Deleting asks first; "no" keeps the draft, "yes" removes it and its articles stay new.
    page.goto(f"{url}/campaigns/{cid}")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Delete draft").click()
    expect(page.get_by_role("button", name="Delete draft")).to_be_visible()
    assert asked == [f"Delete draft {cid} “Back care in winter”? Its articles stay new."]
    assert store.campaign(cid)["status"] == CampaignStatus.DRAFT
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete draft").click()
    page.wait_for_url(re.compile(r".*/campaigns$"))
    expect(page.get_by_role("status")).to_contain_text(f"Draft {cid} “Back care in winter” deleted")
    assert store.campaigns() == []
    page.goto(url + "/articles")
    expect(page.locator("td .status", has_text="new")).to_have_count(3)


def test_cancelling_a_draft_leaves_its_articles_new(admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url
    titles = [a["title"] for a in _filled(dashboard)]
    page.on("dialog", lambda d: d.accept())
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Not now")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.locator("[data-status]")).to_have_text("cancelled")
    page.goto(url + "/articles")
    expect(page.locator("td .status", has_text="new")).to_have_count(3)
    expect(page.get_by_text("archived")).to_have_count(0)
    # A new campaign finds them new, ticked.
    page.goto(url + "/campaigns/new")
    assert _checklist(page) == [(title, True) for title in titles]


def test_saying_no_to_send_now_leaves_the_page_as_it_was(admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url
    _filled(dashboard)
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Not yet")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Send now").click()
    assert asked and asked[0].startswith("Send to ")
    expect(page.get_by_role("button", name="Send now")).to_be_enabled()
    expect(page.locator("#progress [data-status]")).to_have_text("draft")
    assert len(dashboard.sink.messages) == 0


def test_send_now_asks_with_the_count_and_shows_sending_at_once(admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url
    _filled(dashboard)
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Now")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    asked: list[str] = []
    page.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    # See the page as it stands once the click is handled, before the server answers:
    # a listener added after the page's own one holds the form back.
    page.evaluate(
        """() => document.addEventListener("submit", (event) => {
            event.preventDefault();
            window.seen = [event.target.querySelector("button").disabled,
                           document.querySelector("#progress [data-status]").textContent];
        })"""
    )
    page.get_by_role("button", name="Send now").click()
    assert page.evaluate("() => window.seen") == [True, "sending"]
    assert asked == [f"Send to {_confirmed(dashboard)} confirmed subscribers now?"]
    assert len(dashboard.sink.messages) == 0
    page.evaluate("() => document.querySelector('form[data-sending]').submit()")
    expect(page.locator("[data-status]")).to_have_text("sent", timeout=30_000)
    assert len(dashboard.sink.messages) == _confirmed(dashboard)


def test_a_time_zone_is_picked_from_the_list_and_the_time_shown_in_it_with_its_weekday(
    admin_page, dashboard
) -> None:
    page, url = admin_page, dashboard.url
    _filled(dashboard)
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Later")
    page.get_by_role("button", name="Create draft").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    # Every IANA zone is offered; the workspace's zone is there to start with.
    zones = page.locator("#zones option")
    expect(zones).to_have_count(len(zoneinfo.available_timezones() - {"localtime"}))
    assert "Europe/Berlin" in zones.evaluate_all("options => options.map(o => o.value)")
    expect(page.get_by_label("Time zone")).to_have_value(dashboard.ws.settings.schedule.timezone)

    day = dt.date.today() + dt.timedelta(days=60)
    page.get_by_label("Date", exact=True).fill(day.isoformat())
    page.get_by_label("Time", exact=True).fill("09:30")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.locator("[data-status]")).to_have_text("scheduled")
    local = dt.datetime.combine(day, dt.time(9, 30), zoneinfo.ZoneInfo("Europe/Berlin"))
    shown = f"{local:%A} {local.day} {local:%B %Y, 09:30 %Z} (Europe/Berlin)"
    expect(page.locator("#progress")).to_contain_text(f"Scheduled for {shown}")
    expect(page.get_by_role("status")).to_contain_text(f"{local:%A} {day.isoformat()} 09:30")

    # Rescheduling starts from the time as it is.
    expect(page.get_by_label("Date", exact=True)).to_have_value(day.isoformat())
    expect(page.get_by_label("Time", exact=True)).to_have_value("09:30")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    page.get_by_label("Time", exact=True).fill("10:15")
    page.get_by_role("button", name="Reschedule", exact=True).click()
    expect(page.locator("#progress")).to_contain_text(f"{local:%B %Y}, 10:15")


def test_only_a_draft_is_deleted_and_a_started_campaign_is_not_changed(dashboard) -> None:
    """What a stale page (or a forged form) asks is refused in words, by the page."""
    _filled(dashboard)
    ws = dashboard.ws
    session, csrf = signed_in(dashboard.url)
    made = session.post(
        dashboard.url + "/campaigns/new",
        data={"csrf": csrf, "subject": "Out", "articles_mode": "new", "template": "auto"},
        timeout=30,
    )
    cid = ws.store.campaigns()[-1]["id"]
    assert made.ok
    campaigns.start(ws.store, cid, dt.datetime.now(dt.UTC))
    refused = session.post(f"{dashboard.url}/campaigns/{cid}/delete", data={"csrf": csrf})
    assert refused.status_code == 409
    assert re.search(
        r'id="delete-error">[^<]*cannot delete a campaign that is sending', refused.text
    )
    edit = session.get(f"{dashboard.url}/campaigns/{cid}/edit", timeout=10)
    assert "it can no longer be changed" in edit.text and "Save changes" not in edit.text
    assert ws.store.campaign(cid)["status"] == CampaignStatus.SENDING
