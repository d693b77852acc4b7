"""Importing a list from the dashboard, as staff do it, in headless Chromium.

The page asks whether these people agreed to receive email and says what
each answer means; an export of people who left comes in suppressed; the
preview marks and counts the addresses already on the list; a file without
a recognised email column gets the column mapper, in plain words; the
person's page shows when the file says they signed up and confirmed. Each
page passes axe-core and fits a 390 px phone.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from conftest import import_in_dashboard, signed_in
from newsletter.status import SubscriberStatus
from newsletter.web.dashboard.subscriber_views import CONSENT_ANSWERS
from newsletter.web.wording import FIELD_WORDS, for_people
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
        "everyone taken as unconfirmed but 2 people whose own status"
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
    expect(page.get_by_role("status")).to_contain_text("but 4 people whose own status")

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


# -- the answer is required; the known-addresses line says what the answer does ----------


def upload(session, url: str, csrf: str, name: str, data: bytes, **fields: str):
    """The preview page of an upload (the import page's first form, sent as a browser would)."""
    return session.post(
        url + "/subscribers/import",
        data={"csrf": csrf, "list": "", **fields},
        files={"file": (name, data, "text/csv")},
        timeout=30,
    )


def token_of(page) -> str:
    return re.search(r'name="token" value="([^"]+)"', page.text).group(1)


def confirm(session, url: str, csrf: str, preview):
    """The answer to pressing the import button of an upload's preview page."""
    return session.post(
        url + "/subscribers/import/confirm",
        data={"csrf": csrf, "token": token_of(preview)},
        timeout=30,
    )


def ann_waiting_to_join_news(
    dashboard,
    name: str = "people.csv",
    address: str = "ann@x.example",
    consent: str = "confirmed",
    known: bool = False,
):
    """A signed-in session, its csrf, and the preview of a file ``name`` of ``address`` said
    ``consent``, to go into the new list "news", not yet confirmed; Ann imported first if
    ``known``."""
    session, csrf = signed_in(dashboard.url)
    dashboard.ws.store.create_list("news", "", False, datetime.now(ZoneInfo("UTC")))
    if known:
        first = b"email\nann@x.example\n"
        import_in_dashboard(session, dashboard.url, csrf, "first.csv", first, 30)
    data = f"email\n{address}\n".encode()
    preview = upload(session, dashboard.url, csrf, name, data, list="news", consent=consent)
    return session, csrf, preview


def known_line(preview) -> str:
    """What the preview says of the addresses already known."""
    return re.search(r'<p id="known-count">(.*?)</p>', preview.text, re.DOTALL).group(1)


def test_an_import_without_the_consent_answer_asks_for_it_and_imports_nothing(
    admin_page, dashboard
) -> None:
    session, csrf = signed_in(dashboard.url)
    store = dashboard.ws.store
    store.create_list("news", "", False, datetime.now(ZoneInfo("UTC")))

    answer = upload(
        session, dashboard.url, csrf, "people.csv", b"email\nann@x.example\n", list="news"
    )

    assert answer.status_code == 400
    assert 'id="consent-error"' in answer.text
    assert "Say whether these people agreed to receive email from you" in answer.text
    assert answer.text.count('aria-invalid="true"') == 5  # each answer, not the file
    assert 'name="token"' not in answer.text  # nothing waits to be imported
    assert '<option value="news" selected>' in answer.text  # the list chosen stays chosen
    assert store.subscribers() == []

    # As a browser shows it, once its own check is passed by: marked, and accessible.
    page = admin_page
    page.goto(dashboard.url + "/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(FIXTURES / "beehiiv.csv"))
    page.eval_on_selector_all(
        "input[name=consent]", "inputs => inputs.forEach(i => i.required = false)"
    )
    page.get_by_role("button", name="Check the file").click()
    question = page.get_by_role("group", name="Did these people agree to receive email from you?")
    expect(question.get_by_role("alert")).to_contain_text("Say whether these people agreed")
    expect(page.get_by_label("Yes, they agreed")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-error")).to_have_count(0)  # said once, by the question
    assert serious_violations(page) == []
    assert store.subscribers() == []


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ("unsubscribed", "they are marked unsubscribed and go on the suppression list"),
        ("bounced", "they are marked bounced and go on the suppression list"),
        ("complained", "they are marked as having marked your email as spam"),
    ],
)
def test_known_addresses_in_a_file_of_people_who_left_are_said_to_leave(
    dashboard, answer: str, said: str
) -> None:
    session, csrf, preview = ann_waiting_to_join_news(
        dashboard, "left.csv", "Ann@x.example", answer, known=True
    )
    store = dashboard.ws.store

    known = known_line(preview)
    assert said in known and "nobody from this file is added to a list" in known
    assert "keep their status" not in known and "are added to list" not in known
    assert "into list news" not in preview.text
    confirm(session, dashboard.url, csrf, preview)
    assert store.subscriber_by_email("ann@x.example")["status"] == answer
    assert store.subscribers(list_id=store.list_id("news")) == []


def test_known_addresses_of_a_sendable_file_keep_their_status_and_join_the_list(dashboard) -> None:
    _, _, preview = ann_waiting_to_join_news(dashboard, "more.csv", known=True)

    known = known_line(preview)
    assert "they keep their status and details" in known and "added to list news" in known


# -- every error is shown; a pending import keeps its list by id --------------------------


def test_a_confirm_refused_for_a_column_read_as_nothing_says_why(dashboard) -> None:
    session, csrf = signed_in(dashboard.url)
    data = b"email,Bounced\nann@x.example,\nbob@x.example,yes\n"
    preview = upload(session, dashboard.url, csrf, "members.csv", data, consent="confirmed")
    assert "Import 2 rows" not in preview.text  # blocked: no button to press

    # The confirmation sent anyway (a stale or tampered form).
    answer = confirm(session, dashboard.url, csrf, preview)

    assert answer.status_code == 400
    shown = re.search(r'<p class="error" role="alert" id="form-error">(.*?)</p>', answer.text)
    assert shown is not None and "Column &#39;Bounced&#39; says who opted out" in shown.group(1)
    assert dashboard.ws.store.subscribers() == []


def test_a_file_without_an_address_column_refused_at_confirm_says_why(dashboard) -> None:
    session, csrf = signed_in(dashboard.url)
    preview = upload(session, dashboard.url, csrf, "names.csv", b"name\nNia\n", consent="confirmed")

    answer = confirm(session, dashboard.url, csrf, preview)

    assert answer.status_code == 400
    assert 'id="form-error"' in answer.text
    assert "no column of email addresses found" in answer.text


def test_a_list_renamed_before_the_import_is_confirmed_is_still_the_one(dashboard) -> None:
    session, csrf, preview = ann_waiting_to_join_news(dashboard)
    store = dashboard.ws.store
    store.rename_list(store.list_id("news"), "letters")

    done = confirm(session, dashboard.url, csrf, preview)

    assert done.status_code == 200
    assert [x["name"] for x in store.lists()] == ["letters"]
    members = store.subscribers(list_id=store.list_id("letters"))
    assert [s["email"] for s in members] == ["ann@x.example"]
    consent = store._row("SELECT lists FROM consents")
    assert consent["lists"] == '["letters"]'


def test_a_list_gone_before_the_import_is_confirmed_stops_it_with_words(dashboard) -> None:
    session, csrf, preview = ann_waiting_to_join_news(dashboard)
    store = dashboard.ws.store
    with store.transaction():
        store.conn.execute("DELETE FROM lists WHERE name = 'news'")

    answer = confirm(session, dashboard.url, csrf, preview)

    assert answer.status_code == 400
    assert "the list chosen for this import no longer exists" in answer.text
    assert store.subscribers() == [] and store.lists() == []


# -- one source for the words of the consent question and of the column mapper ---------


def test_the_consent_question_offers_the_answers_the_import_knows(dashboard, monkeypatch) -> None:
    # Reworded in the one place the answers are written, the page follows.
    monkeypatch.setitem(CONSENT_ANSWERS, SubscriberStatus.CONFIRMED, "Yes, every one agreed")
    session, _ = signed_in(dashboard.url)

    page = session.get(dashboard.url + "/subscribers/import", timeout=10).text

    radios = re.findall(r'name="consent" value="(\w+)"[^>]*> ([^<]+)</label>', page)
    assert radios == [(str(value), words) for value, words in CONSENT_ANSWERS.items()]
    assert radios[0] == ("confirmed", "Yes, every one agreed")


@pytest.mark.parametrize(
    ("message", "roles"),
    [
        (
            "people.csv:1: column 'Bounced' says who opted out, and nothing reads it",
            ("unsubscribed", "unsubscribed_at", "status"),
        ),
        (
            "people.csv:3: column 'note' holds 'unsubscribed', which says someone opted out",
            ("status", "unsubscribed"),
        ),
        ("people.csv:1: no email column found in the header (name); name one of: x", ("email",)),
    ],
)
def test_a_refusal_names_the_choices_as_the_column_mapper_offers_them(
    message: str, roles: tuple[str, ...]
) -> None:
    said = for_people(message)

    assert said.field == "map"
    for role in roles:
        assert f"“{FIELD_WORDS[role]}”" in said.text
