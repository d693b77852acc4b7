"""Importing a list from the dashboard, as staff do it, in headless Chromium.

The page asks whether these people agreed to receive email and says what
each answer means; an export of people who left comes in suppressed; the
preview marks and counts the addresses already on the list; a file without
a recognised email column gets the column mapper, in plain words; the
person's page shows when the file says they signed up and confirmed. Each
page passes axe-core and fits a 390 px phone.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from conftest import import_in_dashboard, signed_in
from test_dashboard_access import PHONE, serious_violations

FIXTURES = Path(__file__).parent / "fixtures" / "subscribers"
DATA = Path(__file__).parent / "data" / "subscribers"


def choose_file(page, url: str, path: Path, answer: str | None) -> None:
    """Open the import page, choose ``path`` and the answer to the consent question, check."""
    page.goto(url + "/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(path))
    if answer is not None:
        page.get_by_label(answer).check()
    page.get_by_role("button", name="Check the file").click()


def fits_a_phone(page) -> None:
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size({"width": 1280, "height": 900})


def test_the_page_asks_whether_people_agreed_and_says_what_unconfirmed_means(
    admin_page, dashboard
) -> None:
    page, url = admin_page, dashboard.url
    page.goto(url + "/subscribers/import")
    question = page.get_by_role("group", name="Did these people agree to receive email from you?")
    expect(question).to_be_visible()
    expect(question).to_contain_text("they get no newsletter and no other email from you")
    assert serious_violations(page) == []
    fits_a_phone(page)
    dashboard.screenshot(page, "import-consent-question")

    # Not answered: the browser asks for it, nothing is checked yet.
    choose_file(page, url, FIXTURES / "beehiiv.csv", None)
    assert page.evaluate("document.querySelector('input[name=consent]').validity.valueMissing"), (
        "the question must be answered"
    )
    expect(page.get_by_role("button", name="Import 4 rows")).to_have_count(0)

    page.get_by_label("No, or I am not sure").check()
    page.get_by_role("button", name="Check the file").click()
    expect(page.get_by_text("You said: No, or I am not sure.")).to_be_visible()
    # Ben (an unsubscribe time) and Cal (beehiiv's "inactive") keep what the file says.
    expect(page.get_by_text("2 rows keep their own status from the file")).to_be_visible()
    page.get_by_role("button", name="Import 4 rows").click()
    expect(page.get_by_role("status")).to_contain_text(
        "everyone taken as unconfirmed but 2 rows whose own status"
    )
    store = dashboard.ws.store
    statuses = {s["email"]: s["status"] for s in store.subscribers()}
    assert {a: statuses[a] for a in ("ada@example.com", "ben@example.com", "cal@example.com")} == {
        "ada@example.com": "unconfirmed",  # "active" in the file, but no consent said here
        "ben@example.com": "unsubscribed",
        "cal@example.com": "unsubscribed",
    }


def test_an_export_of_people_who_left_comes_in_suppressed_at_its_own_times(
    admin_page, dashboard
) -> None:
    page, url = admin_page, dashboard.url

    choose_file(page, url, FIXTURES / "emailoctopus.csv", "Everyone in this file has unsubscribed")
    expect(page.get_by_text("You said: Everyone in this file has unsubscribed.")).to_be_visible()
    expect(page.get_by_role("cell", name="unsubscribed", exact=True)).to_have_count(2)
    page.get_by_role("button", name="Import 2 rows").click()
    expect(page.get_by_role("status")).to_contain_text("2 opted out in the file")

    store = dashboard.ws.store
    assert {r["email"]: r["at"] for r in store.suppressions()} == {
        "fin@example.com": "2024-02-01T10:00:00+00:00",  # its "Last changed"
        "gil@example.com": "2023-05-05T05:05:05+00:00",
    }


def test_a_file_said_confirmed_never_makes_an_opted_out_row_sendable(admin_page, dashboard) -> None:
    page, url = admin_page, dashboard.url

    choose_file(page, url, FIXTURES / "kit.csv", "Yes, they agreed")
    expect(page.get_by_text("4 rows keep their own status from the file")).to_be_visible()
    page.get_by_role("button", name="Import 5 rows").click()
    expect(page.get_by_role("status")).to_contain_text("but 4 rows whose own status")

    statuses = {s["email"]: s["status"] for s in dashboard.ws.store.subscribers()}
    assert [a for a, s in statuses.items() if s == "confirmed"] == ["eli@example.com"]


def test_rows_already_on_the_list_are_marked_and_counted(
    admin_page, dashboard, tmp_path: Path
) -> None:
    page, url = admin_page, dashboard.url
    session, csrf = signed_in(url)
    import_in_dashboard(session, url, csrf, "first.csv", b"email\nann@example.com\n", 30)
    again = tmp_path / "again.csv"
    # The same mailbox in other capitals is the same person.
    again.write_text("email,name\nANN@Example.com,Ann\nnew.one@example.com,Nia\n")

    choose_file(page, url, again, "Yes, they agreed")

    expect(page.locator("#known-count")).to_contain_text(
        "1 of these addresses are already on your list: they keep their status"
    )
    rows = page.get_by_role("row")
    expect(rows.filter(has_text="ANN@Example.com")).to_contain_text("already on your list")
    expect(rows.filter(has_text="new.one@example.com")).to_contain_text("new")
    assert serious_violations(page) == []
    fits_a_phone(page)
    dashboard.screenshot(page, "import-known-rows")
    page.get_by_role("button", name="Import 2 rows").click()
    expect(page.get_by_role("status")).to_contain_text("1 added")


def test_a_file_without_an_email_column_gets_the_column_mapper_in_plain_words(
    admin_page, dashboard, tmp_path: Path
) -> None:
    page, url = admin_page, dashboard.url
    upload = tmp_path / "praxis.csv"
    upload.write_text("E-Post,Vorname,Stadt\nnia@example.com,Nia,Springfield\n")

    choose_file(page, url, upload, "Yes, they agreed")

    expect(
        page.get_by_role("heading", name="praxis.csv: which column holds the email addresses?")
    ).to_be_visible()
    expect(page.locator("#map-error")).to_contain_text("no column of email addresses")
    expect(page.locator("#map-error")).to_contain_text("Choose “Email address” below")
    choices = page.locator("#map-1 option").all_inner_texts()
    assert "Email address" in choices and "First name" in choices and "Leave out" in choices
    assert not [c for c in choices if "_" in c or c in ("email", "ignore")], choices
    expect(page.get_by_role("button", name="Import 1 rows")).to_have_count(0)
    assert serious_violations(page) == []
    fits_a_phone(page)
    dashboard.screenshot(page, "import-no-email-column")

    page.get_by_label("Read column E-Post as").select_option(label="Email address")
    page.get_by_label("Read column Vorname as").select_option(label="First name")
    page.get_by_role("button", name="Check again with these columns").click()
    expect(page.get_by_role("cell", name="Email address", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="Extra field “Stadt”", exact=True)).to_be_visible()
    page.get_by_role("button", name="Import 1 rows").click()
    expect(page.get_by_role("status")).to_contain_text("1 added")
    nia = dashboard.ws.store.subscriber_by_email("nia@example.com")
    assert (nia["first_name"], nia["status"], nia["attributes"]) == (
        "Nia",
        "confirmed",
        {"Stadt": "Springfield"},
    )


def test_the_persons_page_shows_when_the_file_says_they_signed_up_and_confirmed(
    admin_page, dashboard
) -> None:
    page, url = admin_page, dashboard.url
    choose_file(page, url, DATA / "mailchimp_subscribed_members_export.csv", "Yes, they agreed")
    page.get_by_role("button", name="Import 3 rows").click()
    expect(page.get_by_role("status")).to_contain_text("3 added")

    ann = dashboard.ws.store.subscriber_by_email("ann.lee@example.com")
    page.goto(f"{url}/subscribers/{ann['id']}")
    zone = ZoneInfo(dashboard.ws.settings.schedule.timezone)

    def shown(iso: str) -> str:
        return datetime.fromisoformat(iso).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    signed, confirmed = shown("2024-03-14T09:12:31+00:00"), shown("2024-03-14T09:14:00+00:00")
    consent = page.get_by_role("table").filter(has_text="Text (version)")
    expect(consent).to_contain_text(f"signed up {signed}, as the imported file says")
    expect(consent).to_contain_text(f"confirmed {confirmed}, as the imported file says")
    expect(consent).to_contain_text("staff said everyone in the file is confirmed")
    history = page.get_by_role("row").filter(has_text="signed up, as the imported file says")
    expect(history).to_contain_text(signed)
    expect(
        page.get_by_role("row").filter(has_text="confirmed, as the imported file says")
    ).to_contain_text(confirmed)
    assert serious_violations(page) == []
    fits_a_phone(page)
    dashboard.screenshot(page, "subscriber-consent-times")


def test_an_opt_out_inside_json_stops_the_import_with_words_for_people(
    admin_page, dashboard, tmp_path: Path
) -> None:
    page, url = admin_page, dashboard.url
    upload = tmp_path / "listmonk.csv"
    upload.write_text(
        "email,name,attributes\n"
        'ann@example.com,Ann,"{""city"": ""Oslo""}"\n'
        'bob@example.com,Bob,"{""newsletter"": {""status"": ""unsubscribed""}}"\n'
    )

    choose_file(page, url, upload, "Yes, they agreed")

    alert = page.locator("#map-error")
    expect(alert).to_contain_text(
        "Line 3: column 'attributes' holds newsletter.status='unsubscribed' in its JSON"
    )
    expect(alert).to_contain_text("Give that field a column of its own")
    expect(page.get_by_role("button", name="Import 2 rows")).to_have_count(0)
    assert "--map" not in page.content()
    assert dashboard.ws.store.subscribers() == []
