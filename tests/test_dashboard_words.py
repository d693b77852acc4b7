"""The dashboard speaks to people: bad input in any form is answered without a CLI flag or command.

The core words its errors for the command line (``--subject: ...``, ``run
`newsletter fetch```); the dashboard must say them in its own words, by the
field they are about, with what was typed kept. Each form here is sent with
what a person gets wrong, in headless Chromium against the live server, and
every page that comes back is read for a flag or a command.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from playwright.sync_api import expect

from newsletter import jobs, subscribers
from newsletter.cli.base import cli

TEMPLATES = Path(__file__).resolve().parent.parent / "src/newsletter/web/dashboard/templates"
# A flag such as --subject (not an en dash, not a word with hyphens inside).
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
# "newsletter" followed by one of the program's own commands.
COMMAND = re.compile(
    r"\bnewsletter\s+(?:" + "|".join(re.escape(name) for name in sorted(cli.commands)) + r")\b",
    re.IGNORECASE,
)
seen: list[str] = []


def speaks_to_people(page) -> str:
    """The page's text, after checking it names no flag and no command."""
    text = page.inner_text("body")
    seen.append(page.url)
    assert not FLAG.search(text), (page.url, FLAG.search(text).group(), text)
    assert not COMMAND.search(text), (page.url, COMMAND.search(text).group(), text)
    return text


def no_browser_checks(page, action: str) -> None:
    """Let the form send what the browser would stop: the server must say it too."""
    page.eval_on_selector(f'form[action$="{action}"]', "form => { form.noValidate = true; }")


def test_every_form_with_bad_input_answers_in_peoples_words(
    admin_page, dashboard, tmp_path: Path
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    # No articles yet: the articles page and a campaign of "new articles".
    page.goto(url + "/articles")
    speaks_to_people(page)

    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("   ")
    page.get_by_text("More rules, typed").click()
    page.get_by_label("Segment").fill("tag:back-pain")
    page.get_by_role("button", name="Create draft").click()
    expect(page.locator("#subject-error")).to_contain_text("Write a subject")
    expect(page.get_by_label("Segment")).to_have_value("tag:back-pain")
    speaks_to_people(page)

    # No article ticked (there are none yet): nothing is sent "by default".
    page.get_by_label("Subject", exact=True).fill("Back care in winter")
    page.get_by_role("button", name="Create draft").click()
    expect(page.locator("#articles-error")).to_contain_text("Tick the articles")
    expect(page.get_by_label("Subject", exact=True)).to_have_value("Back care in winter")
    speaks_to_people(page)

    now = dt.datetime.now(dt.UTC)
    jobs.fetch_sources(ws, ws.store, now)
    subscribers.import_file(ws.store, ws.root / "subscribers" / "example.csv", now)
    page.goto(url + "/campaigns/new")
    page.get_by_label("Subject", exact=True).fill("Back care in winter")
    page.get_by_text("More rules, typed").click()
    page.get_by_label("Segment").fill("back-pain")
    page.get_by_role("button", name="Create draft").click()
    expect(page.locator("#segment-error")).to_contain_text("'back-pain' is not a rule")
    expect(page.get_by_label("Segment")).to_have_value("back-pain")
    speaks_to_people(page)

    # A list deleted since the form was shown (or a tampered form).
    page.get_by_label("Segment").fill("")
    page.eval_on_selector("#list", "select => { select.options[0].value = 'vip-readers'; }")
    page.get_by_role("button", name="Create draft").click()
    expect(page.locator("#list-error")).to_contain_text("There is no list 'vip-readers'")
    expect(page.get_by_label("Subject", exact=True)).to_have_value("Back care in winter")
    speaks_to_people(page)

    page.get_by_role("button", name="Create draft").click()
    expect(page.get_by_role("status")).to_contain_text("created as a draft")
    speaks_to_people(page)
    campaign_url = page.url

    # Scheduling: a zone that does not exist, then a time in the past.
    page.get_by_label("Date").fill("2030-03-01")
    page.get_by_label("Time", exact=True).fill("09:30")
    page.get_by_label("Time zone").fill("Mars/Olympus_Mons")
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator("#schedule-tz-error")).to_contain_text("is not a time zone")
    expect(page.get_by_label("Time zone")).to_have_value("Mars/Olympus_Mons")
    expect(page.get_by_label("Date")).to_have_value("2030-03-01")
    speaks_to_people(page)

    page.get_by_label("Date").fill("2020-03-01")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator("#schedule-date-error")).to_contain_text("is in the past")
    speaks_to_people(page)

    # A test message to something that is not an address.
    page.get_by_label("To any address").fill("reader at example")
    no_browser_checks(page, "/test")
    page.get_by_role("button", name="Send test").click()
    expect(page.locator("#test-error")).to_contain_text("not a valid email address")
    expect(page.get_by_label("To any address")).to_have_value("reader at example")
    speaks_to_people(page)

    # One person added or edited, and the lists: each mistake said by its field.
    page.goto(url + "/subscribers/new")
    page.get_by_label("Email address").fill("reader at example")
    page.get_by_label("Yes, they asked to join").check()
    no_browser_checks(page, "/subscribers/new")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#email-error")).to_contain_text("not a valid email address")
    speaks_to_people(page)
    page.get_by_label("Email address").fill("ALICE.MORENO@example.com")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#email-error")).to_contain_text("already a subscriber")
    speaks_to_people(page)
    page.get_by_label("Email address").fill("new.reader@example.com")
    page.get_by_label("Details").fill("no equals sign here")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#attributes-error")).to_be_visible()
    speaks_to_people(page)
    page.get_by_label("Details").fill("")
    page.evaluate("document.querySelectorAll('[name=consent]').forEach(r => r.checked = false)")
    no_browser_checks(page, "/subscribers/new")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#consent-error")).to_be_visible()
    speaks_to_people(page)
    page.goto(url + "/subscribers/lists")
    no_browser_checks(page, "/subscribers/lists")
    page.get_by_label("Name", exact=True).fill("   ")
    page.get_by_role("button", name="Create list").click()
    expect(page.locator("#name-error")).to_be_visible()
    speaks_to_people(page)
    for name in ("patients", "patients"):
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_role("button", name="Create list").click()
    expect(page.locator("#name-error")).to_contain_text("There is a list 'patients' already")
    speaks_to_people(page)
    waiting = ws.store.subscriber_by_email("sam.okafor@example.com")
    page.goto(f"{url}/subscribers/{waiting['id']}/edit")
    page.get_by_label("patients").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#list-error")).to_be_visible()
    speaks_to_people(page)

    # Paused part-way through its send, then scheduled: the page says to resume it.
    campaign_id = int(campaign_url.rstrip("/").rsplit("/", 1)[1])
    assert ws.store.set_campaign_status(
        campaign_id, "paused", ("draft",), now, started_at=now.isoformat(timespec="seconds")
    )
    page.goto(campaign_url)
    page.get_by_label("Date").fill("2030-03-01")
    page.get_by_label("Time", exact=True).fill("09:30")
    page.get_by_role("button", name="Schedule").click()
    expect(page.locator("#schedule-error")).to_contain_text("press Resume")
    speaks_to_people(page)

    # A campaign and a subscriber that do not exist.
    page.goto(url + "/campaigns/999999")
    expect(page.get_by_role("alert")).to_contain_text("no campaign 999999")
    speaks_to_people(page)

    # Importing: a file without an address column, then a column read as nothing known.
    no_email = tmp_path / "names.csv"
    no_email.write_text("name,city\nNia,Springfield\n", encoding="utf-8")
    page.goto(url + "/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(no_email))
    page.get_by_label("No, or I am not sure").check()
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#map-error")).to_contain_text("no column of email addresses")
    speaks_to_people(page)

    members = tmp_path / "members.csv"
    members.write_text("E-Mail,Stadt\nnew.one@example.com,Springfield\n", encoding="utf-8")
    page.goto(url + "/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(members))
    page.get_by_label("No, or I am not sure").check()
    page.get_by_role("button", name="Check the file").click()
    speaks_to_people(page)
    # What a tampered (or stale) form would send: a field that does not exist.
    page.eval_on_selector("#map-2", "select => { select.options[1].value = 'Stadt=shoe_size'; }")
    page.locator("#map-2").select_option(index=1)
    page.get_by_role("button", name="Check again with these columns").click()
    expect(page.locator("#map-error")).to_contain_text("shoe_size")
    speaks_to_people(page)

    # The pages that show the core's words about the rest: results, check, settings.
    page.goto(f"{url}/campaigns/{campaign_id}/results")
    speaks_to_people(page)
    page.goto(url + "/settings/check")
    speaks_to_people(page)
    page.get_by_role("button", name="Test the connection").click()
    speaks_to_people(page)
    page.goto(url + "/settings")
    speaks_to_people(page)
    assert len(seen) >= 18


def test_the_dashboard_templates_name_no_flag_and_no_command() -> None:
    templates = sorted(TEMPLATES.glob("*.html"))
    assert len(templates) > 10
    for template in templates:
        # Template comments and Jinja tags are not shown; the rest is page text.
        text = re.sub(r"\{#.*?#\}", "", template.read_text(encoding="utf-8"), flags=re.DOTALL)
        text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
        assert not FLAG.search(text), (template.name, FLAG.search(text).group())
        assert not COMMAND.search(text), (template.name, COMMAND.search(text).group())
