"""Every tool's export, and the rule that keeps an opted-out person from becoming sendable.

The header lines in tests/fixtures/subscribers are those of the tools' real
exports (sources in tests/fixtures/README); the rows under them are made up.
One table says what each row becomes: its status, when it left (the export's
time, else the import's), and what is kept of it. Then the safety rule: a
column that says who opted out and that nothing reads stops the import with
one line, in the core, on the command line and in the dashboard, and once
mapped it brings those people in unsubscribed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from clocks import IMPORT_NOW as NOW
from conftest import Cli, dump, import_in_dashboard, one_line_error, signed_in
from newsletter.errors import InputError
from newsletter.store import Store
from newsletter.subscriber_csv import OptOutColumn
from newsletter.subscribers import import_file, parse_mapping

FIXTURES = Path(__file__).parent / "fixtures" / "subscribers"
DATA = Path(__file__).parent / "data" / "subscribers"
# A suppression dated by the import, because the export gave no time.
AT_IMPORT = NOW.isoformat(timespec="seconds")

# file, the format it is read as, and per address: status, when the person left
# (None: still in), and what must be kept of the row (names, tags, attributes).
Row = tuple[str, str | None, dict[str, Any]]
CASES: list[tuple[Path, str, dict[str, Row]]] = [
    (
        FIXTURES / "beehiiv.csv",
        "beehiiv",
        {
            "ada@example.com": (
                "confirmed",
                None,
                {"first_name": "Ada", "last_name": "Lind", "attributes": {"tier": "free"}},
            ),
            # status "active", but an unsubscribed_at: an unsubscribe, at that time.
            "ben@example.com": (
                "unsubscribed",
                "2024-03-13T11:33:53+00:00",
                {"attributes": {"stripe_customer_id": "cus_1234"}},
            ),
            "cal@example.com": ("unsubscribed", AT_IMPORT, {}),  # "inactive"
            "dot@example.com": ("unconfirmed", None, {}),  # "pending"
        },
    ),
    (
        FIXTURES / "kit.csv",
        "kit",
        {
            "eli@example.com": ("confirmed", None, {"first_name": "Eli"}),
            "flo@example.com": ("unsubscribed", "2024-06-30T08:15:00+00:00", {}),
            "gus@example.com": ("bounced", AT_IMPORT, {}),
            "hal@example.com": ("complained", AT_IMPORT, {}),
            "ida@example.com": ("unconfirmed", None, {}),  # Kit's "inactive": never confirmed
        },
    ),
    (
        FIXTURES / "buttondown.csv",
        "buttondown",
        {
            "jo@example.com": (
                "confirmed",
                None,
                {"tags": ["tips"], "attributes": {"plan": "free", "secondary_id": "1"}},
            ),
            "kim@example.com": (
                "unsubscribed",
                AT_IMPORT,
                {"attributes": {"notes": "left after the March issue"}},
            ),
            "lou@example.com": ("unconfirmed", None, {}),  # unactivated
            "mo@example.com": ("unsubscribed", AT_IMPORT, {}),  # spammy
            "ned@example.com": ("confirmed", None, {}),  # premium
        },
    ),
    (
        FIXTURES / "mailerlite.csv",
        "mailerlite",
        {
            "pia@example.com": ("confirmed", None, {"first_name": "Pia", "last_name": "Park"}),
            "quin@example.com": ("unsubscribed", "2024-04-01T12:30:00+00:00", {}),
            "ros@example.com": ("bounced", AT_IMPORT, {}),
            "sam@example.com": ("complained", AT_IMPORT, {}),  # "junk"
            "tia@example.com": ("unconfirmed", None, {}),
        },
    ),
    (
        # MailerLite's export from its app: "Subscriber" is the address, no status.
        FIXTURES / "mailerlite-app.csv",
        "mailerlite",
        {
            "yara@example.com": (
                "confirmed",
                None,
                {
                    "first_name": "Yara",
                    "last_name": "Young",
                    "tags": ["Newsletter", "Back care"],
                    "attributes": {},
                },
            ),
            "zed@example.com": ("confirmed", None, {"tags": ["Newsletter"]}),
        },
    ),
    (
        FIXTURES / "brevo.csv",
        "brevo",
        {
            "uma@example.com": ("confirmed", None, {"first_name": "Uma", "last_name": "Ulm"}),
            "vic@example.com": (
                "unsubscribed",
                AT_IMPORT,
                {"attributes": {"SMS": "+4915112345678"}},
            ),
        },
    ),
    (
        FIXTURES / "sendy.csv",
        "sendy",
        {
            "wes@example.com": (
                "confirmed",  # "Active"
                None,
                {
                    "first_name": "Wes",
                    "last_name": "Wu",
                    "attributes": {"Opt-in method": "Double opt-in", "Country code": "DE"},
                },
            ),
            "xan@example.com": ("unsubscribed", AT_IMPORT, {}),
            "yul@example.com": ("bounced", AT_IMPORT, {}),
            "abe@example.com": ("complained", AT_IMPORT, {}),  # marked as spam
            "bea@example.com": ("unconfirmed", None, {}),
        },
    ),
    (
        # EmailOctopus's own export has no status column: it holds whom its
        # filter chose, and the import's --confirmed says what they are.
        FIXTURES / "emailoctopus.csv",
        "emailoctopus",
        {
            "fin@example.com": (
                "confirmed",
                None,
                {
                    "first_name": "Fin",
                    "last_name": "Falk",
                    "tags": ["news"],
                    "attributes": {"Identifier": "9c1d7c0e-0011-11ee-be56-0242ac120002"},
                },
            ),
            "gil@example.com": ("confirmed", None, {}),
        },
    ),
    (
        # The same contacts as EmailOctopus's API names them (a contact's
        # fields, as API-based export tools write them), with their status.
        FIXTURES / "emailoctopus-api.csv",
        "emailoctopus",
        {
            "cai@example.com": (
                "confirmed",
                None,
                {"first_name": "Cai", "last_name": "Chen", "tags": ["news"]},
            ),
            "dan@example.com": ("unsubscribed", AT_IMPORT, {}),
            "eva@example.com": ("unconfirmed", None, {}),
        },
    ),
    (
        # Mailchimp's export in German: its header line as posted in listmonk's
        # issue 688; read as the English one is.
        FIXTURES / "mailchimp-de.csv",
        "mailchimp",
        {
            "jana@example.com": ("confirmed", None, {"first_name": "Jana", "last_name": "Keller"}),
            "max@example.com": ("confirmed", None, {"first_name": "Max", "last_name": "Moritz"}),
        },
    ),
    (
        DATA / "mailchimp_unsubscribed_members_export.csv",
        "mailchimp",
        {
            "dee.out@example.com": (
                "unsubscribed",
                "2024-02-01T12:00:00+00:00",  # UNSUB_TIME
                {"attributes": {"UNSUB_REASON": "No longer interested"}},
            ),
        },
    ),
    (
        DATA / "mailchimp_cleaned_members_export.csv",
        "mailchimp",
        {"gone@example.com": ("bounced", "2024-03-03T03:03:03+00:00", {})},  # CLEAN_TIME
    ),
    (
        DATA / "listmonk_subscribers.csv",
        "listmonk",
        {
            "eve@example.com": ("confirmed", None, {}),
            "fay@example.com": ("unsubscribed", AT_IMPORT, {}),
            "gus@example.com": ("unconfirmed", None, {}),
        },
    ),
    (
        DATA / "substack_email_list.csv",
        "substack",
        {"max@example.com": ("unsubscribed", AT_IMPORT, {})},
    ),
    (
        DATA / "ghost_members.csv",
        "ghost",
        {"ivy@example.com": ("unsubscribed", AT_IMPORT, {})},
    ),
    (
        DATA / "keila_contacts.csv",
        "keila",
        {"oto@example.com": ("unsubscribed", AT_IMPORT, {})},
    ),
]


def suppressions(store: Store) -> dict[str, str]:
    return {r["email"]: r["at"] for r in store.suppressions()}


@pytest.mark.parametrize(("path", "fmt", "rows"), CASES, ids=[f"{c[1]}-{c[0].stem}" for c in CASES])
def test_each_export_as_its_tool_meant_it(
    store: Store, path: Path, fmt: str, rows: dict[str, Row]
) -> None:
    # As someone moving their list would import it: rows without a status
    # count as confirmed, so nothing but the file's own words keeps anyone out.
    report = import_file(store, path, NOW, confirmed=True)

    assert (report.format, report.problems) == (fmt, [])
    people = {s["email"]: s for s in store.subscribers()}
    suppressed = suppressions(store)
    for address, (status, left, kept) in rows.items():
        person = people[address]
        assert person["status"] == status, address
        assert suppressed.get(address) == left, address
        # A person's unsubscribe time is the suppression's, for the unsubscribed.
        assert person["unsubscribed_at"] == (left if status == "unsubscribed" else None)
        for name, value in kept.items():
            if name == "attributes":
                assert person["attributes"].items() >= value.items(), address
            else:
                assert person[name] == value, (address, name)
    # Every address the table names is in the file and no one else is left out.
    assert set(rows) <= set(people)
    assert all(p["status"] != "confirmed" for a, p in people.items() if a in suppressed)


def test_every_fixture_is_in_the_table() -> None:
    assert {p.name for p in FIXTURES.glob("*.csv")} <= {c[0].name for c in CASES}


# -- the safety rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    "column",
    ["Bounced", "Opt-Out", "complaint_date", "Suppressed", "cancelled", "Blocked", "inactive"],
)
def test_an_opt_out_column_nothing_reads_stops_the_import(
    store: Store, tmp_path: Path, column: str
) -> None:
    path = tmp_path / "members.csv"
    path.write_text(f"email,first_name,{column}\nann@example.com,Ann,\nbob@example.com,Bob,yes\n")
    before = dump_store(store)

    with pytest.raises(OptOutColumn) as caught:
        import_file(store, path, NOW, confirmed=True)

    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"{path}:1: column '{column}' says who opted out")
    assert f"--map '{column}=unsubscribed'" in line and "nothing was imported" in line
    assert caught.value.column == column
    assert dump_store(store) == before


def test_an_opt_out_column_mapped_brings_those_people_in_unsubscribed(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "members.csv"
    path.write_text(
        "email,Bounced,left_on_complaint\n"
        "ann@example.com,,\n"
        "bob@example.com,yes,\n"
        "cy@example.com,,2025-05-05 05:05:05\n"
    )
    mapping = parse_mapping(["Bounced=unsubscribed", "left_on_complaint=unsubscribed_at"])

    report = import_file(store, path, NOW, confirmed=True, mapping=mapping)

    statuses = {s["email"]: s["status"] for s in store.subscribers()}
    assert statuses == {
        "ann@example.com": "confirmed",
        "bob@example.com": "unsubscribed",
        "cy@example.com": "unsubscribed",
    }
    assert suppressions(store) == {
        "bob@example.com": AT_IMPORT,
        "cy@example.com": "2025-05-05T05:05:05+00:00",
    }
    assert report.opted_out == 2


def test_an_opt_out_column_cannot_be_ignored_or_kept_as_an_attribute(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "members.csv"
    path.write_text("email,unsubscribed_flag\nann@example.com,yes\n")
    for target in ("ignore", "attribute:flag"):
        mapping = parse_mapping([f"unsubscribed_flag={target}"])
        with pytest.raises(OptOutColumn, match="'unsubscribed_flag' says who opted out"):
            import_file(store, path, NOW, mapping=mapping)
    assert store.subscribers() == []


def test_a_cell_saying_unsubscribed_in_an_unread_column_stops_the_import(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "email,list_state\nann@example.com,active\nbob@example.com,Unsubscribed\n",
    )
    before = dump_store(store)

    with pytest.raises(OptOutColumn) as caught:
        import_file(store, path, NOW, confirmed=True)

    line = str(caught.value)
    assert line.startswith(f"{path}:3: column 'list_state' holds 'Unsubscribed'")
    assert "--map 'list_state=status'" in line
    # The file is one transaction: Ann, read before Bob, is not stored either.
    assert dump_store(store) == before

    import_file(store, path, NOW, confirmed=True, mapping=parse_mapping(["list_state=status"]))
    statuses = {s["email"]: s["status"] for s in store.subscribers()}
    assert statuses == {"ann@example.com": "confirmed", "bob@example.com": "unsubscribed"}


def test_an_unsubscribe_link_is_not_a_sign_that_someone_left(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "links.csv"
    path.write_text("email,unsubscribe_url\nann@example.com,https://example.org/u/1\n")

    import_file(store, path, NOW, confirmed=True)

    ann = store.subscriber_by_email("ann@example.com")
    assert (ann["status"], ann["attributes"]) == (
        "confirmed",
        {"unsubscribe_url": "https://example.org/u/1"},
    )


@pytest.mark.parametrize("cell", ["Hard_Bounce", " blocklisted ", "MARKED AS SPAM", "opted-out"])
def test_opt_out_cells_in_any_spelling_stop_the_import(
    store: Store, tmp_path: Path, cell: str
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(f"email,note\nann@example.com,{cell}\n")

    with pytest.raises(OptOutColumn, match="list.csv:2: column 'note' holds"):
        import_file(store, path, NOW, confirmed=True)
    assert store.subscribers() == []


def test_a_state_column_outside_kit_is_a_place(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "clinic.csv"
    path.write_text("email,name,state\nann@example.com,Ann,CA\n")

    import_file(store, path, NOW, confirmed=True)

    ann = store.subscriber_by_email("ann@example.com")
    assert (ann["status"], ann["attributes"]) == ("confirmed", {"state": "CA"})


# -- the unsubscribe time -----------------------------------------------------------------


def test_a_newer_export_dates_a_known_persons_suppression_by_its_own_time(
    store: Store, tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    first.write_text("email\ndee.out@example.com\n")
    import_file(store, first, NOW - dt.timedelta(days=400), confirmed=True)

    import_file(store, DATA / "mailchimp_unsubscribed_members_export.csv", NOW)

    dee = store.subscriber_by_email("dee.out@example.com")
    assert (dee["status"], dee["unsubscribed_at"]) == ("unsubscribed", "2024-02-01T12:00:00+00:00")
    assert suppressions(store) == {"dee.out@example.com": "2024-02-01T12:00:00+00:00"}


@pytest.mark.parametrize(
    ("cell", "at"),
    [
        ("2099-01-01 00:00:00", AT_IMPORT),  # a wrong clock: never later than the import
        ("last spring", AT_IMPORT),  # not a time: the import's, still unsubscribed
        ("1700000000", "2023-11-14T22:13:20+00:00"),  # seconds since 1970
        ("2024-01-10 10:00:00+00", "2024-01-10T10:00:00+00:00"),
        ("2024-01-10T12:00:00+02:00", "2024-01-10T10:00:00+00:00"),
    ],
)
def test_the_time_an_export_gives(store: Store, tmp_path: Path, cell: str, at: str) -> None:
    path = tmp_path / "gone.csv"
    path.write_text(f"email,unsubscribed_at\nann@example.com,{cell}\n")

    import_file(store, path, NOW, confirmed=True)

    ann = store.subscriber_by_email("ann@example.com")
    assert (ann["status"], ann["unsubscribed_at"]) == ("unsubscribed", at)
    assert suppressions(store) == {"ann@example.com": at}


def dump_store(store: Store) -> list[str]:
    return list(store.conn.iterdump())


# -- the command line and the dashboard ------------------------------------------------------


def test_cli_stops_on_an_opt_out_column_and_imports_it_mapped(
    cli: Cli, ws_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "members.csv"
    path.write_text("email,first_name,Bounced\nann@example.com,Ann,\nbob@example.com,Bob,yes\n")
    db = ws_dir / "newsletter.db"
    before = dump(db)

    result = cli("subscribers", "import", str(path), "--confirmed", check=False)

    line = one_line_error(result, f"{path}:1", "'Bounced'", "--map 'Bounced=unsubscribed'")
    assert "nothing was imported" in line
    assert dump(db) == before

    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    cli("subscribers", "import", str(path), "--confirmed", "--map", "Bounced=unsubscribed")
    cli("subscribers", "import", str(FIXTURES / "beehiiv.csv"), "--confirmed")
    store = Store(db)
    try:
        people = {s["email"]: s["status"] for s in store.subscribers()}
        at = suppressions(store)
    finally:
        store.close()
    assert (people["ann@example.com"], people["bob@example.com"]) == ("confirmed", "unsubscribed")
    assert at["bob@example.com"] >= started  # no time in the file: the import's
    assert (people["ben@example.com"], at["ben@example.com"]) == (
        "unsubscribed",
        "2024-03-13T11:33:53+00:00",
    )


def test_cli_with_several_files_stores_none_when_one_says_who_opted_out(
    cli: Cli, ws_dir: Path, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    good.write_text("email\nann@example.com\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("email,list_state\nbob@example.com,active\ncy@example.com,cancelled\n")
    before = dump(ws_dir / "newsletter.db")

    result = cli("subscribers", "import", str(good), str(bad), check=False)

    one_line_error(result, f"{bad}:3", "'list_state'", "'cancelled'")
    assert dump(ws_dir / "newsletter.db") == before


def test_dashboard_import_reads_a_tools_export(dashboard) -> None:
    session, csrf = signed_in(dashboard.url)

    page = import_in_dashboard(
        session, dashboard.url, csrf, "beehiiv.csv", (FIXTURES / "beehiiv.csv").read_bytes(), 30
    )

    assert page.status_code == 200 and "(beehiiv export)" in page.text
    store = dashboard.ws.store
    assert store.subscriber_by_email("ben@example.com")["status"] == "unsubscribed"
    assert suppressions(store)["ben@example.com"] == "2024-03-13T11:33:53+00:00"


def test_dashboard_shows_the_column_to_read_and_imports_nothing_until_it_is(
    admin_page, dashboard, tmp_path: Path
) -> None:
    page, url = admin_page, dashboard.url
    upload = tmp_path / "members.csv"
    upload.write_text("email,first_name,Bounced\nann@example.com,Ann,\nbob@example.com,Bob,yes\n")

    page.goto(url + "/subscribers/import")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_label("Yes, they agreed").check()
    page.get_by_role("button", name="Check the file").click()
    alert = page.locator("#map-error")
    expect(alert).to_contain_text("Column 'Bounced' says who opted out")
    expect(page.get_by_role("button", name="Import 2 rows")).to_have_count(0)
    content = page.content()
    assert "--map" not in content and "newsletter subscribers" not in content
    dashboard.screenshot(page, "import-opt-out-column")

    page.get_by_label("Read column Bounced as").select_option("Bounced=unsubscribed")
    page.get_by_role("button", name="Check again with these columns").click()
    expect(page.get_by_role("cell", name="unsubscribed", exact=True).first).to_be_visible()
    page.get_by_role("button", name="Import 2 rows").click()
    expect(page.get_by_role("status")).to_contain_text("1 opted out in the file")
    store = dashboard.ws.store
    assert store.subscriber_by_email("bob@example.com")["status"] == "unsubscribed"
    assert store.is_suppressed("bob@example.com")


def test_mapping_errors_still_name_the_column(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_text("email\nann@example.com\n")
    with pytest.raises(InputError, match="has no column 'bounced'"):
        import_file(store, path, NOW, mapping=parse_mapping(["Bounced=status"]))
