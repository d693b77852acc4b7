"""The rest of the dashboard's forms, sent wrong: still no CLI flag and no command on the page.

tests/test_dashboard_words.py walks the forms of making, scheduling and testing a campaign
and of importing; this walks the others a person meets: signing in, the second factor,
the campaign's buttons on a page that has gone stale, a person erased while their page was
open, an import confirmed twice, links to things that are not there, and a configuration
with many problems on the Check page.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyotp
from playwright.sync_api import expect

from conftest import STAFF_PASSWORD
from newsletter import campaigns, jobs
from test_dashboard_words import no_browser_checks, speaks_to_people
from workspaces import new_campaign


def send_form(page, action: str, fields: dict[str, str]) -> None:
    """Send a form to ``action`` from the page, as a page left open in another tab would."""
    with page.expect_navigation():
        page.evaluate(
            """([action, fields]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = action;
                const csrf = document.querySelector('meta[name="csrf-token"]').content;
                for (const [name, value] of Object.entries({ csrf, ...fields })) {
                    const input = document.createElement("input");
                    input.type = "hidden";
                    input.name = name;
                    input.value = value;
                    form.append(input);
                }
                document.body.append(form);
                form.submit();
            }""",
            [action, fields],
        )


def test_the_other_forms_with_bad_input_answer_in_peoples_words(
    browser, admin_page, dashboard, tmp_path: Path
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    page.on("dialog", lambda dialog: dialog.accept())
    now = dt.datetime.now(dt.UTC)
    campaign_id = new_campaign(ws, now, "Winter hours")

    # The preview for someone who is not a subscriber.
    page.goto(f"{url}/campaigns/{campaign_id}?subscriber=nobody@example.org")
    expect(page.get_by_text("nobody@example.org").first).to_be_visible()
    speaks_to_people(page)

    # Schedule with nothing chosen, and a test message to no one.
    page.goto(f"{url}/campaigns/{campaign_id}")
    no_browser_checks(page, "/schedule")
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator("#schedule-date-error")).to_be_visible()
    speaks_to_people(page)
    no_browser_checks(page, "/test")
    page.get_by_role("button", name="Send test").click()
    expect(page.locator("#test-error")).to_be_visible()
    speaks_to_people(page)

    # A page left open while the campaign went out elsewhere: its buttons are stale.
    page.goto(f"{url}/campaigns/{campaign_id}")
    jobs.send_campaign(ws, ws.store, campaign_id, lambda: now)
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("alert")).to_have_text(
        f"Campaign {campaign_id}: you cannot send a campaign that is sent. This page may be "
        "older than the campaign: open the campaign again to see what you can do."
    )
    speaks_to_people(page)
    article = str(ws.store.articles()[0]["id"])
    other = campaigns.create(ws.store, ws.settings, "Spring", article, None, None, now)
    campaigns.schedule(ws.store, other, now + dt.timedelta(days=2), now)
    page.goto(f"{url}/campaigns/{other}")
    campaigns.cancel(ws.store, other, now)
    page.get_by_role("button", name="Unschedule").click()
    expect(page.get_by_role("alert")).to_contain_text("cancelled")
    speaks_to_people(page)

    # Every button of a campaign, sent from a page older than the campaign (it is sent now).
    for action in ("pause", "resume", "cancel", "unschedule", "retry"):
        send_form(page, f"{url}/campaigns/{campaign_id}/{action}", {})
        expect(page.locator("[role=alert], [role=status]").first).to_be_visible()
        speaks_to_people(page)
    for action in ("schedule", "test"):  # the page of a sent campaign has no such form
        send_form(page, f"{url}/campaigns/{campaign_id}/{action}", {})
        speaks_to_people(page)

    # A search with values no form offers (an edited address bar).
    page.goto(url + "/subscribers?status=asleep&tag=%00&list=nowhere&q=%27%22%3C")
    speaks_to_people(page)

    # Things that are not there: a campaign's results, a subscriber, an old page number.
    for path in ("/campaigns/424242/results", "/subscribers/424242", "/audit?page=zwei"):
        page.goto(url + path)
        speaks_to_people(page)

    # A person erased while their page was open.
    person = ws.store.subscribers()[0]
    page.goto(f"{url}/subscribers/{person['id']}")
    ws.store.delete_subscriber(person["id"], now)
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("alert")).to_have_text(
        f"There is no subscriber {person['id']}: erased, or never there."
    )
    speaks_to_people(page)
    send_form(page, f"{url}/subscribers/{person['id']}/delete", {})
    expect(page.get_by_role("alert")).to_contain_text("There is no subscriber")
    speaks_to_people(page)

    # An import confirmed twice (the back button, a second tab).
    members = tmp_path / "members.csv"
    members.write_text("email\nnew.one@example.com\n", encoding="utf-8")
    page.goto(url + "/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(members))
    page.get_by_label("No, or I am not sure").check()
    page.get_by_role("button", name="Check the file").click()
    stale = page.eval_on_selector('form[action$="/import/confirm"]', "form => form.outerHTML")
    page.get_by_role("button", name="Import 1 rows").click()
    speaks_to_people(page)
    # The same form sent again, as from a second tab still showing it.
    page.evaluate("html => { document.body.insertAdjacentHTML('beforeend', html); }", stale)
    with page.expect_navigation():
        page.locator('form[action$="/import/confirm"] button').last.click()
    speaks_to_people(page)

    # Two-factor sign-in: a wrong code while setting it up, then at sign-in.
    page.goto(url + "/account")
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    page.get_by_label("Code from the app").fill("000000")
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    speaks_to_people(page)
    key = page.locator("#totp-key").inner_text().replace(" ", "")
    page.get_by_label("Code from the app").fill(pyotp.TOTP(key).now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_text("Two-factor sign-in is on.")).to_be_visible()

    signing_in = browser.new_context().new_page()
    try:
        signing_in.goto(url + "/sign-in")
        no_browser_checks(signing_in, "/sign-in")
        signing_in.get_by_role("button", name="Sign in").click()
        speaks_to_people(signing_in)
        signing_in.get_by_label("Email address").fill("admin@example.com")
        signing_in.get_by_label("Password").fill("not the password")
        signing_in.get_by_role("button", name="Sign in").click()
        expect(signing_in.get_by_role("alert")).to_contain_text("Wrong email address")
        speaks_to_people(signing_in)
        signing_in.get_by_label("Password").fill(STAFF_PASSWORD)
        signing_in.get_by_role("button", name="Sign in").click()
        signing_in.get_by_label("Code").fill("123456")
        signing_in.get_by_role("button", name="Verify").click()
        expect(signing_in.get_by_role("alert")).to_contain_text("not right")
        speaks_to_people(signing_in)
    finally:
        signing_in.context.close()

    # A configuration file with several problems: Check lists them, in words.
    config_file = ws.root / "newsletter.toml"
    text = config_file.read_text(encoding="utf-8")
    text = text.replace('transport = "outbox"', 'transport = "carrier-pigeon"')
    text = text.replace('base_url = "http://127.0.0.1:8080"', 'base_url = "news.example.com"')
    config_file.write_text(text, encoding="utf-8")
    page.goto(url + "/settings/check")
    expect(page.locator("#problems li").first).to_be_visible()
    speaks_to_people(page)
