"""Staff look after people from the dashboard: add one, edit one, name lists, hand a person
their data, see who did what to them, and are asked before unsubscribing anyone.

Each test is the staff task it protects, in headless Chromium against the live server,
with the confirmation emails going to an SMTP sink on loopback.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import json
import re
import sqlite3
import threading
from pathlib import Path

import requests
from playwright.sync_api import expect

from conftest import Cli, LiveServer, add_staff, dump, import_in_dashboard, signed_in
from newsletter import consent
from newsletter.config import Settings
from newsletter.status import SubscriberStatus
from newsletter.store import Store
from newsletter.workspace import Workspace
from test_dashboard_access import PHONE, serious_violations
from test_dashboard_words import no_browser_checks, speaks_to_people
from workspaces import new_campaign


def fits_a_phone(page) -> None:
    """The page, shown 390 px wide, scrolls no wider than that; the size is put back."""
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], page.url
    finally:
        page.set_viewport_size(size)


def accessible(page) -> None:
    failures = serious_violations(page)
    assert not failures, "\n".join(failures)


def add_form(page, url: str, address: str, **fields: str) -> None:
    """Fill in "Add a subscriber" as a person would (the browser's own checks left out)."""
    page.goto(url + "/subscribers")
    page.get_by_role("link", name="Add a subscriber").click()
    page.get_by_label("Email address").fill(address)
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    no_browser_checks(page, "/subscribers/new")


def confirmation_links(sink, address: str) -> list[str]:
    links = []
    for message in sink.messages:
        mail = email.message_from_bytes(message.data, policy=email.policy.default)
        if address in str(mail["To"]):
            body = mail.get_body(("plain",)).get_content()
            links += re.findall(r"/confirm/[\w.-]+", body)
    return links


def asked_by_form(store: Store, address: str, now: dt.datetime) -> int:
    """``address`` asked to join on the sign-up form and waits to confirm; their id."""
    return store.request_opt_in(
        address,
        lists=[],
        source="form",
        text="t",
        version="1",
        ip=None,
        user_agent=None,
        detail={},
        now=now,
        quiet_since=now,
    )[1]


def test_staff_add_one_person_who_asked_to_join_and_one_to_confirm(admin_page, dashboard) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    ws.store.create_list("patients", "", False, now)
    ws.store.create_list("back-care", "", True, now)

    add_form(page, url, "Nia.Okafor@Example.com", **{"First name": "Nia", "Last name": "Okafor"})
    page.get_by_label("Tags").fill("back-pain, running")
    page.get_by_label("Details").fill("city=Springfield\nsince = 2019")
    page.get_by_label("patients").check()
    page.get_by_label("Yes, they asked to join").check()
    accessible(page)
    fits_a_phone(page)
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.get_by_role("status")).to_contain_text("added as confirmed")
    nia = ws.store.subscriber_by_email("nia.okafor@example.com")
    assert nia is not None and page.url.endswith(f"/subscribers/{nia['id']}")
    assert (nia["email"], nia["status"], nia["first_name"], nia["last_name"]) == (
        "Nia.Okafor@example.com",
        SubscriberStatus.CONFIRMED,
        "Nia",
        "Okafor",
    )
    assert nia["tags"] == ["back-pain", "running"]
    assert nia["attributes"] == {"city": "Springfield", "since": "2019"}
    record = ws.store.subscriber_record(nia["id"])
    assert [(m["name"], m["left_at"]) for m in record["lists"]] == [("patients", None)]
    (given,) = record["consents"]
    assert given["source"] == "staff:admin@example.com"
    assert given["confirmed_at"] and given["lists"] == ["patients"]
    assert "added by admin@example.com" in given["text"]
    expect(page.get_by_role("cell", name="staff:admin@example.com")).to_be_visible()
    dashboard.screenshot(page, "person-added")
    assert confirmation_links(dashboard.sink, "Nia.Okafor") == []  # no email: they asked

    # Someone who has not told staff they want it: the double opt-in of the public form.
    add_form(page, url, "sam.lee@example.org", **{"First name": "Sam"})
    page.get_by_label("back-care").check()
    page.get_by_label("Send them a confirmation email").check()
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.get_by_role("status")).to_contain_text("confirmation email is on its way")
    sam = ws.store.subscriber_by_email("sam.lee@example.org")
    assert (sam["status"], sam["first_name"]) == (SubscriberStatus.UNCONFIRMED, "Sam")
    assert ws.store.memberships(sam["id"]) == []  # joined on confirming
    (link,) = confirmation_links(dashboard.sink, "sam.lee@example.org")
    # They press the button on the link's page.
    assert requests.post(dashboard.server.url + link, timeout=10).status_code == 200
    assert ws.store.subscriber(sam["id"])["status"] == SubscriberStatus.CONFIRMED
    assert [m["name"] for m in ws.store.memberships(sam["id"])] == ["back-care"]


def test_a_confirmation_email_the_mail_server_refuses_is_said_and_the_request_kept(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    dashboard.sink.handler.rcpt_replies["nobody@example.org"] = "550 5.1.1 No such user"
    ws.store.create_list("patients", "", False, dt.datetime.now(dt.UTC))
    add_form(page, url, "nobody@example.org")
    page.get_by_label("patients").check()
    page.get_by_label("Send them a confirmation email").check()
    page.get_by_role("button", name="Add subscriber").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text("the confirmation email could not be sent")
    expect(status).to_contain_text("No such user")
    speaks_to_people(page)
    # Their request stays recorded as unconfirmed: it is the consent proof.
    person = ws.store.subscriber_by_email("nobody@example.org")
    assert person["status"] == SubscriberStatus.UNCONFIRMED
    (asked,) = ws.store.subscriber_record(person["id"])["consents"]
    assert (asked["confirm_sent_at"], asked["confirmed_at"]) == (None, None)

    # Once the mail server takes it, it is sent again from their page, for the same lists.
    del dashboard.sink.handler.rcpt_replies["nobody@example.org"]
    page.get_by_role("button", name="Send the confirmation email again").click()
    expect(page.get_by_role("status")).to_contain_text("a confirmation email is on its way")
    assert len(confirmation_links(dashboard.sink, "nobody@example.org")) == 1
    again = ws.store.subscriber_record(person["id"])["consents"][-1]
    assert again["confirm_sent_at"] and again["source"] == "staff:admin@example.com"
    assert again["lists"] == ["patients"]
    log = [(e["actor"], e["action"]) for e in ws.store.audit_entries()]
    assert ("admin@example.com", "asked to confirm again") in log


def test_a_wrong_or_known_address_is_said_by_its_field_with_what_was_typed_kept(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    db = ws.path(ws.settings.database.path)
    add_form(page, url, "nia at example", **{"First name": "Nia"})
    page.get_by_label("Tags").fill("knee")
    page.get_by_label("Yes, they asked to join").check()
    page.get_by_role("button", name="Add subscriber").click()
    field = page.get_by_label("Email address")
    expect(page.locator("#email-error")).to_contain_text("is not a valid email address")
    expect(field).to_have_value("nia at example")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", "email-error")
    expect(page.get_by_label("First name")).to_have_value("Nia")
    expect(page.get_by_label("Tags")).to_have_value("knee")
    expect(page.get_by_label("Yes, they asked to join")).to_be_checked()
    speaks_to_people(page)
    accessible(page)
    fits_a_phone(page)
    dashboard.screenshot(page, "person-add-refused")
    assert ws.store.subscriber_by_email("nia@example.com") is None

    # An address already there, in other capitals: the same mailbox, refused by its field.
    asked_by_form(ws.store, "zoe@example.org", dt.datetime.now(dt.UTC))
    before = list(sqlite3.connect(db).iterdump())
    field.fill("ZOE@example.org")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#email-error")).to_contain_text("is already a subscriber")
    expect(field).to_have_value("ZOE@example.org")
    expect(field).to_have_attribute("aria-invalid", "true")
    speaks_to_people(page)

    # No answer to "did they ask?", and a detail line without its = sign.
    field.fill("new.one@example.org")
    page.get_by_label("Details").fill("city Springfield")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#attributes-error")).to_contain_text("has no = sign")
    expect(page.get_by_label("Details")).to_have_attribute("aria-describedby", "attributes-error")
    expect(page.get_by_label("Details")).to_have_value("city Springfield")
    speaks_to_people(page)
    page.evaluate(
        "document.querySelectorAll('input[name=consent]').forEach(r => r.checked = false)"
    )
    page.get_by_label("Details").fill("")
    no_browser_checks(page, "/subscribers/new")
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#consent-error")).to_contain_text("Choose whether they asked")
    speaks_to_people(page)
    assert list(sqlite3.connect(db).iterdump()) == before


def test_staff_neither_add_nor_mail_an_address_that_asked_not_to_get_email(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    db = ws.path(ws.settings.database.path)
    now = dt.datetime.now(dt.UTC)
    gone = asked_by_form(ws.store, "left@example.org", now)
    ws.store.unsubscribe(gone, None, now, "link")
    ws.store.delete_subscriber(gone, now)  # erased: only a hash of the address is left
    before = dump(db)
    refusal = (
        "This address asked not to get email from you: only they can sign up again, on your "
        "subscribe form."
    )
    # Neither as someone who asked to join, nor with a confirmation email: only their own
    # sign-up on the subscribe form takes the address off the suppression list.
    add_form(page, url, "Left@example.org")
    page.get_by_label("Yes, they asked to join").check()
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#email-error")).to_have_text(refusal)
    expect(page.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
    speaks_to_people(page)
    page.get_by_label("Send them a confirmation email").check()
    page.get_by_role("button", name="Add subscriber").click()
    expect(page.locator("#email-error")).to_have_text(refusal)
    assert ws.store.subscriber_by_email("left@example.org") is None
    assert dump(db) == before
    assert confirmation_links(dashboard.sink, "left@example.org") == []


def alice_and_two_lists(ws: Workspace, now: dt.datetime) -> dict:
    """The fixture's subscribers with a campaign, the lists "patients" and "back-care"
    (public), and Alice's row (on neither list yet)."""
    new_campaign(ws, now)
    ws.store.create_list("patients", "", False, now)
    ws.store.create_list("back-care", "", True, now)
    return ws.store.subscriber_by_email("alice.moreno@example.com")


def test_staff_edit_a_persons_name_tags_details_and_lists(admin_page, dashboard) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    alice = alice_and_two_lists(ws, now)
    ws.store.join_list(alice["id"], ws.store.list_id("patients"), now, "form", "t", "1")

    page.goto(f"{url}/subscribers/{alice['id']}")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_text("The address cannot be changed")).to_be_visible()
    assert page.locator("input[name=email]").count() == 0
    expect(page.get_by_label("First name")).to_have_value("Alice")
    expect(page.get_by_label("Tags")).to_have_value("back-pain, posture")
    expect(page.get_by_label("patients")).to_be_checked()
    accessible(page)
    fits_a_phone(page)

    page.get_by_label("Details").fill("city=Springfield\noops")
    page.get_by_label("Last name").fill("Moreno-Ruiz")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#attributes-error")).to_contain_text("Line 2 of the details")
    expect(page.get_by_label("Last name")).to_have_value("Moreno-Ruiz")
    speaks_to_people(page)
    assert ws.store.subscriber(alice["id"])["last_name"] == "Moreno"

    page.get_by_label("Details").fill("city=Springfield")
    page.get_by_label("Tags").fill("posture, yoga")
    page.get_by_label("patients").uncheck()
    page.get_by_label("back-care").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    changed = ws.store.subscriber(alice["id"])
    assert (changed["last_name"], changed["tags"], changed["attributes"]) == (
        "Moreno-Ruiz",
        ["posture", "yoga"],
        {"city": "Springfield"},
    )
    lists = {m["name"]: m["unsubscribed_at"] for m in ws.store.memberships(alice["id"])}
    assert lists["patients"] is not None and lists["back-care"] is None
    joined = ws.store.subscriber_record(alice["id"])["consents"][-1]
    assert (joined["source"], joined["lists"]) == ("staff:admin@example.com", ["back-care"])

    # Someone still to confirm cannot be put on a list by staff: they join when they confirm.
    sam = ws.store.subscriber_by_email("sam.okafor@example.com")
    page.goto(f"{url}/subscribers/{sam['id']}/edit")
    page.get_by_label("patients").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#list-error")).to_contain_text("only a confirmed subscriber")
    expect(page.get_by_label("patients")).to_be_checked()
    speaks_to_people(page)
    assert ws.store.memberships(sam["id"]) == []


def test_staff_create_and_rename_lists(admin_page, dashboard) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    page.goto(url + "/subscribers")
    page.get_by_role("link", name="Lists").click()
    expect(page.get_by_text("No lists yet.")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("  back   care ")
    page.get_by_label("Description").fill("Exercises for a sore back")
    page.get_by_label("Offer it on the subscribe form").check()
    page.get_by_role("button", name="Create list").click()
    expect(page.get_by_role("status")).to_contain_text("List back care created")
    (made,) = ws.store.lists()
    assert (made["name"], made["description"], made["public"]) == (
        "back care",
        "Exercises for a sore back",
        True,
    )
    accessible(page)
    fits_a_phone(page)

    page.get_by_label("Name", exact=True).fill("back care")
    page.get_by_role("button", name="Create list").click()
    expect(page.locator("#name-error")).to_contain_text("There is a list 'back care' already")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    speaks_to_people(page)
    page.get_by_label("Name", exact=True).fill("patients")
    page.get_by_role("button", name="Create list").click()
    expect(page.get_by_role("status")).to_contain_text("List patients created")

    # Someone who asked for "back care" and has not confirmed yet lands on it renamed.
    now = dt.datetime.now(dt.UTC)
    consent_id = consent.request(
        ws.store, ws.settings, "reader@example.org", lists=["back care"], source="form", now=now
    )
    page.get_by_label("New name for back care").fill("patients")
    page.get_by_role("button", name="Rename").first.click()
    expect(page.locator("[id$=-error]")).to_contain_text("There is a list 'patients' already")
    expect(page.get_by_label("New name for back care")).to_have_value("patients")
    speaks_to_people(page)
    page.get_by_label("New name for back care").fill("Back care")
    page.get_by_role("button", name="Rename").first.click()
    expect(page.get_by_role("status")).to_contain_text("List back care is now called Back care")
    dashboard.screenshot(page, "lists")
    assert sorted(row["name"] for row in ws.store.lists()) == ["Back care", "patients"]
    reader = ws.store.subscriber_by_email("reader@example.org")
    assert ws.store.confirm_opt_in(consent_id, reader["id"], now, None) == "confirmed"
    assert [m["name"] for m in ws.store.memberships(reader["id"])] == ["Back care"]
    actions = [(e["actor"], e["action"]) for e in ws.store.audit_entries()]
    assert ("admin@example.com", "renamed a list") in actions
    assert ("admin@example.com", "created a list") in actions


def test_staff_download_one_persons_data_as_the_command_line_exports_it(
    admin_page, dashboard, env, tmp_path: Path
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    new_campaign(ws, dt.datetime.now(dt.UTC))
    alice = ws.store.subscriber_by_email("alice.moreno@example.com")
    page.goto(f"{url}/subscribers/{alice['id']}")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download their data").click()
    download = info.value
    assert download.suggested_filename == f"subscriber-{alice['id']}.json"
    saved = tmp_path / "data.json"
    download.save_as(saved)
    from_cli = Cli(ws.root, env)("subscribers", "export", "alice.moreno@example.com").stdout
    assert json.loads(saved.read_text(encoding="utf-8")) == json.loads(from_cli)
    assert json.loads(from_cli)["subscriber"]["email"] == "alice.moreno@example.com"
    answer = page.request.get(f"{url}/subscribers/{alice['id']}/data.json")
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="subscriber-{alice["id"]}.json"'
    )
    (entry, *_) = [e for e in ws.store.audit_entries() if e["action"] == "downloaded their data"]
    assert (entry["actor"], entry["target"]) == ("admin@example.com", f"subscriber {alice['id']}")


def test_the_history_says_which_staff_account_did_what(
    browser, admin_page, dashboard, ws_dir: Path
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    page.on("dialog", lambda dialog: dialog.accept())
    now = dt.datetime.now(dt.UTC)
    session, csrf = signed_in(url)
    answer = import_in_dashboard(
        session, url, csrf, "clinic.csv", b"email,name\nann@example.com,Ann\n", 30
    )
    assert answer.ok
    ann = ws.store.subscriber_by_email("ann@example.com")
    campaign_id = new_campaign(ws, now, "Winter hours")
    # The file did not say Ann opted in: as if she clicked her confirmation link.
    with ws.store.transaction():
        ws.store.conn.execute(
            "UPDATE subscribers SET status = 'confirmed' WHERE id = ?", [ann["id"]]
        )

    # An editor sends the campaign; the admin edits Ann and unsubscribes her.
    editor = browser.new_context().new_page()
    dashboard.sign_in(editor, "editor@example.com")
    editor.on("dialog", lambda dialog: dialog.accept())
    editor.goto(f"{url}/campaigns/{campaign_id}")
    editor.get_by_role("button", name="Send now").click()
    expect(editor.locator("[data-status]")).to_have_text("sent", timeout=60_000)
    editor.context.close()
    page.goto(f"{url}/subscribers/{ann['id']}/edit")
    page.get_by_label("Tags").fill("knee")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("status")).to_contain_text("unsubscribed")

    rows = page.locator("#history + table tbody tr")
    expect(rows.first).to_be_visible()
    history = [[cell.strip() for cell in row.locator("td").all_inner_texts()] for row in rows.all()]
    what_who = [(row[1], row[2]) for row in history]
    assert ("imported from clinic.csv", "admin@example.com") in what_who, history
    assert ("edited", "admin@example.com") in what_who, history
    assert ("unsubscribed", "admin@example.com") in what_who, history
    sent = [row for row in history if row[1] == "delivery sent"]
    assert sent and sent[0][2] == "editor@example.com", history
    assert sent[0][4] == "sent by editor@example.com"
    dashboard.screenshot(page, "person-history")
    accessible(page)
    fits_a_phone(page)

    # The audit log says the same, each action by its account.
    page.goto(url + "/audit")
    log = page.locator("tbody tr").all_inner_texts()
    for who, what, on in (
        ("admin@example.com", "imported", "clinic.csv"),
        ("editor@example.com", "sent", f"campaign {campaign_id}"),
        ("admin@example.com", "edited", f"subscriber {ann['id']}"),
        ("admin@example.com", "unsubscribed", f"subscriber {ann['id']}"),
    ):
        assert any(who in line and f"\t{what}\t" in line and on in line for line in log), (
            who,
            what,
            log,
        )


def test_unsubscribing_or_erasing_a_person_asks_first(admin_page, dashboard) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    new_campaign(ws, dt.datetime.now(dt.UTC))
    alice = ws.store.subscriber_by_email("alice.moreno@example.com")
    asked: list[str] = []

    def answer(dialog, yes: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if yes else dialog.dismiss()

    page.goto(f"{url}/subscribers/{alice['id']}")
    # The question comes from the dashboard's small confirm script, not the campaign pages'.
    scripts = page.evaluate("() => [...document.scripts].map((s) => s.src.split('/').pop())")
    assert "confirm.js" in scripts and "campaign.js" not in scripts, scripts
    page.once("dialog", lambda dialog: answer(dialog, False))
    page.get_by_role("button", name="Unsubscribe").click()
    page.once("dialog", lambda dialog: answer(dialog, False))
    page.get_by_role("button", name="Delete (erase this person)").click()
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
    assert ws.store.subscriber(alice["id"])["status"] == SubscriberStatus.CONFIRMED
    assert asked[0].startswith("Unsubscribe alice.moreno@example.com?")
    assert asked[1].startswith("Erase alice.moreno@example.com?")

    page.once("dialog", lambda dialog: answer(dialog, True))
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("status")).to_have_text("alice.moreno@example.com: unsubscribed.")
    assert ws.store.subscriber(alice["id"])["status"] == SubscriberStatus.UNSUBSCRIBED


def test_a_person_from_the_folder_is_not_credited_to_a_later_import_of_the_same_file(
    store, tmp_path: Path
) -> None:
    from newsletter import people, subscribers

    first = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    later = first + dt.timedelta(days=3)
    csv = tmp_path / "clinic.csv"
    # The subscribers folder imports on a poll, with no staff account and no audit entry.
    csv.write_text("email\nann@example.com\n", encoding="utf-8")
    subscribers.import_file(store, csv, first)
    # Then someone imports a file of the same name from the dashboard.
    csv.write_text("email\nann@example.com\nbea@example.com\n", encoding="utf-8")
    report = subscribers.import_file(store, csv, later)
    store.audit(
        later + dt.timedelta(seconds=2),
        "admin@example.com",
        "imported",
        csv.name,
        report.line(),
        data=report.record(),
    )

    def imported_by(address: str) -> list[tuple[str, str]]:
        person = store.subscriber_by_email(address)
        record = store.subscriber_record(person["id"])
        return [
            (row["what"], row["who"])
            for row in people.history(store, person["id"], record)
            if row["what"].startswith("imported")
        ]

    assert imported_by("ann@example.com") == [("imported from clinic.csv", "")]
    assert imported_by("bea@example.com") == [("imported from clinic.csv", "admin@example.com")]


def test_what_is_done_from_the_command_line_is_credited_to_it_in_the_history(cli, ws_dir) -> None:
    from newsletter import people
    from newsletter.workspace import Workspace

    cli("subscribers", "add", "ann@example.com")
    cli("subscribers", "unsubscribe", "ann@example.com")
    ws = Workspace.open(ws_dir, env={})
    try:
        ann = ws.store.subscriber_by_email("ann@example.com")
        rows = people.history(ws.store, ann["id"], ws.store.subscriber_record(ann["id"]))
    finally:
        ws.close()
    done = {row["what"]: row["who"] for row in rows}
    assert done["added"].startswith("command line (") and done["added"].endswith(")")
    assert done["unsubscribed"] == done["added"]


def test_a_list_the_person_left_themselves_is_theirs_to_rejoin_not_staffs(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    alice = alice_and_two_lists(ws, now)
    for name in ("patients", "back-care"):
        ws.store.join_list(alice["id"], ws.store.list_id(name), now, "form", "t", "1")
    # Alice leaves "patients" on her preferences page (no staff account on the event).
    ws.store.leave_list(alice["id"], ws.store.list_id("patients"), None, now)

    page.goto(f"{url}/subscribers/{alice['id']}/edit")
    box = page.get_by_label("patients")
    expect(box).to_be_disabled()
    expect(box).not_to_be_checked()
    expect(page.locator("#list")).to_contain_text("only they can rejoin")
    accessible(page)

    # A form sent with "patients" ticked anyway is refused, and nothing changes.
    db = ws.path(ws.settings.database.path)
    before = dump(db)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    answer = page.request.post(
        f"{url}/subscribers/{alice['id']}/edit",
        form={"csrf": csrf, "first_name": "Alicia", "list": "patients"},
    )
    assert answer.status == 400
    said = html.unescape(answer.text())
    assert "left 'patients' themselves" in said and "only they can rejoin it" in said
    assert dump(db) == before

    # A list staff took her off is staff's to put back (she did not choose to leave it).
    page.get_by_label("back-care").uncheck()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("left back-care")
    page.goto(f"{url}/subscribers/{alice['id']}/edit")
    page.get_by_label("back-care").check()
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("joined back-care")
    lists = {m["name"]: m["unsubscribed_at"] for m in ws.store.memberships(alice["id"])}
    assert lists["patients"] is not None and lists["back-care"] is None


def test_the_history_names_the_list_left_and_the_staff_account_that_took_them_off(
    store,
) -> None:
    from newsletter import people

    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    store.create_list("patients", "", False, now)
    store.create_list("back-care", "", False, now)
    person = people.add(
        store,
        Settings(),
        "ann@example.com",
        people.Details(),
        ["patients", "back-care"],
        asked=True,
        actor="admin@example.com",
        now=now,
    )
    # Ann leaves one list herself (her preferences page); staff take her off the other.
    store.leave_list(person.subscriber_id, store.list_id("patients"), None, now)
    later = now + dt.timedelta(minutes=5)
    assert people.edit(
        store, person.subscriber_id, people.Details(), [], actor="editor@example.com", now=later
    ) == ["left back-care"]
    record = store.subscriber_record(person.subscriber_id)
    left = [
        (row["what"], row["who"], row["detail"])
        for row in people.history(store, person.subscriber_id, record)
        if row["what"] == "left a list"
    ]
    assert left == [
        ("left a list", "the subscriber", "patients"),
        ("left a list", "editor@example.com", "back-care"),
    ]


def test_editing_a_person_keeps_imported_details_that_are_not_plain_text(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    new_campaign(ws, now)
    alice = ws.store.subscriber_by_email("alice.moreno@example.com")
    imported = {
        "plan": {"tier": "gold"},
        "visits": 3,
        "vip": True,
        "note": "first line\nsecond line",
        "city": "Springfield",
    }
    ws.store.update_subscriber_details(
        alice["id"],
        first_name="Alice",
        last_name="Moreno",
        tags=[],
        attributes=imported,
        now=now,
    )

    page.goto(f"{url}/subscribers/{alice['id']}/edit")
    expect(page.get_by_label("Details")).to_have_value("city=Springfield")
    expect(page.locator("#kept-details")).to_contain_text('plan = {"tier": "gold"}')
    expect(page.locator("#kept-details")).to_contain_text("visits = 3")
    page.get_by_label("First name").fill("Alicia")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("saved (first name)")
    assert ws.store.subscriber(alice["id"])["attributes"] == imported

    # A changed line is written; the details kept out of the box stay as they are.
    page.goto(f"{url}/subscribers/{alice['id']}/edit")
    page.get_by_label("Details").fill("city=Berlin\nfloor=2")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("saved (attributes)")
    assert ws.store.subscriber(alice["id"])["attributes"] == {
        **imported,
        "city": "Berlin",
        "floor": "2",
    }

    # A line that would turn a kept detail into text is refused by the box, nothing changed.
    page.goto(f"{url}/subscribers/{alice['id']}/edit")
    page.get_by_label("Details").fill("city=Berlin\nvisits=4")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#attributes-error")).to_contain_text("The detail 'visits'")
    speaks_to_people(page)
    assert ws.store.subscriber(alice["id"])["attributes"]["visits"] == 3


def test_with_sending_not_set_up_nobody_is_added_for_a_confirmation_email(ws_dir: Path) -> None:
    from newsletter.workspace import Workspace

    # Mailgun chosen, and neither its domain nor its key given: nothing can be sent.
    ws = Workspace.open(ws_dir, env={"NEWSLETTER_DELIVERY__TRANSPORT": "mailgun"})
    assert ws.sending_problems
    add_staff(ws, dt.datetime.now(dt.UTC))
    server = LiveServer(ws)
    server.start()
    try:
        url = server.url + "/admin"
        session, csrf = signed_in(url)
        db = ws.path(ws.settings.database.path)
        before = dump(db)
        answer = session.post(
            url + "/subscribers/new",
            data={"csrf": csrf, "email": "sam@example.org", "consent": "confirm"},
            timeout=30,
        )
        assert answer.status_code == 400
        said = html.unescape(answer.text)
        assert "Sending email is not set up yet" in said and "nobody was added" in said
        assert 'id="consent-error"' in answer.text
        assert dump(db) == before  # no person, no consent, no audit entry

        # Someone who asked to join needs no email: they are added as before.
        answer = session.post(
            url + "/subscribers/new",
            data={"csrf": csrf, "email": "sam@example.org", "consent": "asked"},
            timeout=30,
        )
        assert answer.ok and "added as confirmed" in answer.text

        # Nor is a confirmation email sent again: refused before a new request is recorded.
        now = dt.datetime.now(dt.UTC)
        zoe = asked_by_form(ws.store, "zoe@example.org", now)
        before = dump(db)
        answer = session.post(f"{url}/subscribers/{zoe}/ask-again", data={"csrf": csrf})
        assert answer.status_code == 409
        assert "Sending email is not set up yet" in html.unescape(answer.text)
        assert dump(db) == before
    finally:
        server.stop()
        ws.close()


def test_someone_imported_without_a_confirmation_request_is_not_sent_one(
    admin_page, dashboard
) -> None:
    page, url, ws = admin_page, dashboard.url, dashboard.ws
    session, csrf = signed_in(url)
    # Imported with no word that they agreed: unconfirmed, and promised no email.
    answer = import_in_dashboard(
        session, url, csrf, "clinic.csv", b"email,name\nann@example.com,Ann\n", 30
    )
    assert answer.ok
    ann = ws.store.subscriber_by_email("ann@example.com")
    assert ann["status"] == SubscriberStatus.UNCONFIRMED
    page.goto(f"{url}/subscribers/{ann['id']}")
    expect(page.get_by_role("link", name="Edit")).to_be_visible()
    expect(page.get_by_role("button", name="Send the confirmation email again")).to_have_count(0)

    db = ws.path(ws.settings.database.path)
    before = dump(db)
    answer = session.post(f"{url}/subscribers/{ann['id']}/ask-again", data={"csrf": csrf})
    assert answer.status_code == 409
    assert "the import promised them no email" in html.unescape(answer.text)
    assert dump(db) == before
    assert confirmation_links(dashboard.sink, "ann@example.com") == []


def test_the_importer_is_found_by_the_imports_record_whatever_its_report_says(
    store, tmp_path: Path
) -> None:
    from newsletter import people, subscribers

    at = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)

    def imported(name: str, text: str, when: dt.datetime, audited: str | None) -> None:
        csv = tmp_path / name
        csv.write_text(text, encoding="utf-8")
        report = subscribers.import_file(store, csv, when)
        if audited:
            # Reworded on purpose: the words are for people, the record for the history.
            store.audit(when, audited, "imported", name, "whatever", data=report.record())

    def imported_by(address: str) -> str:
        person = store.subscriber_by_email(address)
        record = store.subscriber_record(person["id"])
        (row,) = [
            r
            for r in people.history(store, person["id"], record)
            if r["what"].startswith("imported")
        ]
        return row["who"]

    imported("clinic.csv", "email\nann@example.com\n", at, "admin@example.com")
    assert imported_by("ann@example.com") == "admin@example.com"
    # The same file again later adds nobody: Ann stays credited to the first import.
    imported(
        "clinic.csv", "email\nann@example.com\n", at + dt.timedelta(hours=1), "eve@example.com"
    )
    assert imported_by("ann@example.com") == "admin@example.com"
    # A folder import of a file of that name in the same second as an audited one:
    # more people came in than the entry added, so nobody is named, not the wrong one.
    later = at + dt.timedelta(days=1)
    imported("spa.csv", "email\nbea@example.com\n", later, None)
    imported("spa.csv", "email\ncleo@example.com\n", later, "admin@example.com")
    assert imported_by("bea@example.com") == imported_by("cleo@example.com") == ""


def test_a_persons_data_download_says_staff_not_the_staff_accounts_address(dashboard, env) -> None:
    url, ws = dashboard.url, dashboard.ws
    now = dt.datetime.now(dt.UTC)
    ws.store.create_list("patients", "", False, now)
    ws.store.create_list("back-care", "", False, now)
    session, csrf = signed_in(url)
    added = session.post(
        url + "/subscribers/new",
        data={
            "csrf": csrf,
            "email": "ann@example.com",
            "consent": "asked",
            "list": ["patients", "back-care"],
        },
        timeout=30,
    )
    assert added.ok
    ann = ws.store.subscriber_by_email("ann@example.com")
    # Staff take her off a list, then unsubscribe her: each recorded with the account.
    session.post(
        f"{url}/subscribers/{ann['id']}/edit",
        data={"csrf": csrf, "list": "patients"},
        timeout=30,
    ).raise_for_status()
    session.post(
        f"{url}/subscribers/{ann['id']}/unsubscribe", data={"csrf": csrf}, timeout=30
    ).raise_for_status()
    record = ws.store.subscriber_record(ann["id"])
    assert "admin@example.com" in json.dumps(record)  # the store keeps who it was

    body = session.get(f"{url}/subscribers/{ann['id']}/data.json", timeout=30).text
    assert "admin@example.com" not in body
    given = json.loads(body)
    assert given["subscriber"]["email"] == "ann@example.com"
    assert given["subscriber"]["source"] == "staff"
    (consent_given,) = given["consents"]
    assert consent_given["source"] == "staff"
    assert consent_given["text"] == "They asked to join; added by staff"
    assert [e["detail"] for e in given["events"]] == [
        f"list {ws.store.list_id('back-care')}; staff",
        "staff",
    ]
    # The command line gives the person the same copy.
    from_cli = Cli(ws.root, env)("subscribers", "export", "ann@example.com").stdout
    assert json.loads(from_cli) == given


class SlowAfterASend:
    """The dashboard's clock, a second later at each reading. Read by a request (Starlette
    runs them in AnyIO's worker threads) while a campaign is being sent, it first waits for
    that send to end, as a slow request would; the dashboard's sender names its threads
    "send-c<id>"."""

    def __init__(self, start: dt.datetime):
        self.now, self.lock = start, threading.Lock()

    def __call__(self) -> dt.datetime:
        if threading.current_thread().name.startswith("AnyIO worker"):
            for thread in threading.enumerate():
                if thread.name.startswith("send-c"):
                    thread.join(timeout=60)
        with self.lock:
            self.now += dt.timedelta(seconds=1)
            return self.now


def test_a_send_is_credited_to_who_pressed_send_however_fast_it_goes(ws_dir: Path) -> None:
    from newsletter import people
    from newsletter.workspace import Workspace
    from smtp_sink import SmtpSink, smtp_env

    clock = SlowAfterASend(dt.datetime.now(dt.UTC))
    with SmtpSink() as sink:
        ws = Workspace.open(ws_dir, env=smtp_env(sink))
        add_staff(ws, clock())
        campaign_id = new_campaign(ws, clock())
        server = LiveServer(ws, clock=clock)
        server.start()
        try:
            url = server.url + "/admin"
            session, csrf = signed_in(url)
            answer = session.post(
                f"{url}/campaigns/{campaign_id}/send", data={"csrf": csrf}, timeout=60
            )
            assert answer.ok
            assert ws.store.campaign_status(campaign_id) == "sent"
            alice = ws.store.subscriber_by_email("alice.moreno@example.com")
            record = ws.store.subscriber_record(alice["id"])
            sent = [
                (row["who"], row["detail"])
                for row in people.history(ws.store, alice["id"], record)
                if row["what"] == "delivery sent"
            ]
            assert sent == [("admin@example.com", "sent by admin@example.com")]
        finally:
            server.stop()
            ws.close()
