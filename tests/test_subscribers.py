"""Subscriber CSV parsing, import into a real store, and spreadsheet-safe export."""

import csv
import io
import json
from datetime import timedelta

import pytest

from clocks import IMPORT_NOW as NOW
from newsletter.errors import InputError
from newsletter.subscribers import csv_cell, export_csv, import_file, parse_csv

MAILCHIMP_HEADER = (
    '"Email Address","First Name","Last Name",MEMBER_RATING,OPTIN_TIME,OPTIN_IP,'
    "CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,"
    "LAST_CHANGED,LEID,EUID,NOTES,TAGS"
)


def write_csv(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def consents(store):
    cursor = store.conn.execute(
        "SELECT subscriber_id, email, source, text, text_version FROM consents ORDER BY id"
    )
    return cursor.fetchall()


# -- parse_csv: shapes of real exports ----------------------------------------


def test_mailchimp_export():
    data = (
        MAILCHIMP_HEADER + "\n"
        'ann.lee@example.com,Ann,Lee,4,"2024-03-14 09:12:31",203.0.113.5,'
        '"2024-03-14 09:14:00",203.0.113.5,,,,,,,,"2024-05-01 10:00:00",111,abc,,"vip, running"\n'
        "bo.ma@example.org,Bo,Ma,2,,,,,,,,,,,,,222,def,,\n"
    ).encode()
    parsed = parse_csv(data, "subscribed_members_export.csv", confirmed=False)

    assert parsed.problems == []
    assert [r["email"] for r in parsed.rows] == ["ann.lee@example.com", "bo.ma@example.org"]
    ann, bo = parsed.rows
    assert (ann["first_name"], ann["last_name"]) == ("Ann", "Lee")
    assert ann["tags"] == ["vip", "running"]
    # Opt-in evidence goes to the consent record, not to template-visible attributes.
    assert ann["consent"] == {
        "optin_time": "2024-03-14 09:12:31",
        "optin_ip": "203.0.113.5",
        "confirm_time": "2024-03-14 09:14:00",
        "confirm_ip": "203.0.113.5",
    }
    assert ann["status"] == "confirmed"  # Mailchimp recorded a confirmed opt-in
    assert bo["status"] == "unconfirmed"
    assert ann["attributes"]["MEMBER_RATING"] == "4"
    assert ann["attributes"]["LEID"] == "111"
    # Recognised columns are not repeated as attributes, and empty cells are dropped.
    for known in ("Email Address", "First Name", "Last Name", "TAGS", "NOTES", "LATITUDE"):
        assert known not in ann["attributes"]
    for evidence in ("OPTIN_TIME", "OPTIN_IP", "CONFIRM_TIME", "CONFIRM_IP"):
        assert evidence not in ann["attributes"]
    assert bo["tags"] == []
    assert bo["attributes"] == {"MEMBER_RATING": "2", "LEID": "222", "EUID": "def"}


def test_ghost_export_splits_the_name():
    data = (
        b"email,name,note,subscribed_to_emails,labels,created_at\n"
        b'ann@example.com,Ann Lee,met at the clinic,true,"vip,running",2024-01-02T03:04:05.000Z\n'
        b"cher@example.com,Cher,,true,,2024-02-03T04:05:06.000Z\n"
        b"mary@example.com,Mary Ann Smith,,true,Newsletter,2024-02-03T04:05:06.000Z\n"
    )
    parsed = parse_csv(data, "ghost-members.csv", confirmed=True)

    assert parsed.problems == []
    by_email = {r["email"]: r for r in parsed.rows}
    ann = by_email["ann@example.com"]
    assert (ann["first_name"], ann["last_name"]) == ("Ann", "Lee")
    assert ann["tags"] == ["vip", "running"]
    assert ann["attributes"]["note"] == "met at the clinic"
    assert ann["attributes"]["created_at"] == "2024-01-02T03:04:05.000Z"
    assert "name" not in ann["attributes"] and "labels" not in ann["attributes"]
    cher = by_email["cher@example.com"]
    assert (cher["first_name"], cher["last_name"]) == ("Cher", None)
    mary = by_email["mary@example.com"]
    assert (mary["first_name"], mary["last_name"]) == ("Mary", "Ann Smith")


@pytest.mark.parametrize("confirmed", [False, True])
def test_ghost_member_who_turned_emails_off_is_not_imported_as_subscribed(confirmed):
    data = (
        b"email,name,note,subscribed_to_emails,labels,created_at\n"
        b"off@example.com,Opted Out,,false,,2024-01-02T03:04:05.000Z\n"
    )
    parsed = parse_csv(data, "ghost-members.csv", confirmed=confirmed)
    assert [r["email"] for r in parsed.rows] == ["off@example.com"]
    assert parsed.rows[0]["status"] == "unsubscribed"


def test_bare_list_without_header():
    data = b"ann@example.com\nbo@example.org\n\ncy@example.net\n"
    parsed = parse_csv(data, "list.txt", confirmed=False)
    assert parsed.problems == []
    assert [r["email"] for r in parsed.rows] == [
        "ann@example.com",
        "bo@example.org",
        "cy@example.net",
    ]
    assert all(r["first_name"] is None and r["attributes"] == {} for r in parsed.rows)


def test_bare_list_without_header_reports_the_right_line():
    data = b"ann@example.com\nnot-an-address\nbo@example.org\n"
    parsed = parse_csv(data, "list.txt", confirmed=False)
    assert [r["email"] for r in parsed.rows] == ["ann@example.com", "bo@example.org"]
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("list.txt:2:")


def test_bare_list_with_header():
    data = b"Email\nann@example.com\nbo@example.org\n"
    parsed = parse_csv(data, "list.csv", confirmed=False)
    assert parsed.problems == []
    assert [r["email"] for r in parsed.rows] == ["ann@example.com", "bo@example.org"]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_other_delimiters(delimiter):
    lines = [
        ["email", "first_name", "last_name", "tags"],
        ["ann@example.com", "Ann", "Lee", "vip"],
        ["bo@example.org", "Bo", "Ma", "running"],
    ]
    data = "".join(delimiter.join(line) + "\n" for line in lines).encode()
    parsed = parse_csv(data, "export.csv", confirmed=False)
    assert parsed.problems == []
    assert [(r["email"], r["first_name"], r["last_name"], r["tags"]) for r in parsed.rows] == [
        ("ann@example.com", "Ann", "Lee", ["vip"]),
        ("bo@example.org", "Bo", "Ma", ["running"]),
    ]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "latin-1"])
def test_encodings_keep_accents(encoding):
    text = "email,first_name,last_name\njose@example.com,José,García\nzoe@example.org,Zoë,Brönte\n"
    parsed = parse_csv(text.encode(encoding), "people.csv", confirmed=False)
    assert parsed.problems == []
    assert [(r["first_name"], r["last_name"]) for r in parsed.rows] == [
        ("José", "García"),
        ("Zoë", "Brönte"),
    ]


def test_bad_rows_are_reported_with_their_line_numbers():
    data = (
        b"first_name,email\n"
        b"Ann,ann@example.com\n"
        b"Bad,not-an-address\n"
        b"Cy,cy@example.net\n"
        b"Short\n"
        b"Dee,dee@\n"
    )
    parsed = parse_csv(data, "people.csv", confirmed=False)
    assert [r["email"] for r in parsed.rows] == ["ann@example.com", "cy@example.net"]
    assert len(parsed.problems) == 3
    lines = [p.split(":")[1] for p in parsed.problems]
    assert lines == ["3", "5", "6"]
    assert all(p.startswith("people.csv:") for p in parsed.problems)
    assert "not-an-address" in parsed.problems[0]
    assert "missing email column" in parsed.problems[1]


def test_duplicates_within_a_file_are_counted_and_the_first_kept():
    data = (
        b"email,first_name\n"
        b"ann@example.com,First\n"
        b"bo@example.org,Bo\n"
        b"ann@EXAMPLE.COM,Second\n"
        b" ann@example.com ,Third\n"
    )
    parsed = parse_csv(data, "people.csv", confirmed=False)
    assert parsed.duplicates == 2
    assert [r["email"] for r in parsed.rows] == ["ann@example.com", "bo@example.org"]
    assert parsed.rows[0]["first_name"] == "First"


def test_domain_is_lower_cased_and_idn_normalised():
    data = ("email\nAnn.Lee@EXAMPLE.COM\nzoe@BÜCHER.example\nzoe@xn--bcher-kva.example\n").encode()
    parsed = parse_csv(data, "people.csv", confirmed=False)
    emails = [r["email"] for r in parsed.rows]
    # The local part is the mailbox owner's business; only the domain is case-insensitive.
    assert emails == ["Ann.Lee@example.com", "zoe@bücher.example"]
    assert parsed.duplicates == 1


@pytest.mark.parametrize(
    "junk",
    [
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)),
        bytes(range(256)) * 4,
        b"%PDF-1.7\n\x00\x00\x00\xff\xfe",
    ],
)
def test_binary_junk_is_refused_naming_the_file(junk):
    with pytest.raises(InputError) as excinfo:
        parse_csv(junk, "members.xlsx", confirmed=False)
    assert "members.xlsx" in str(excinfo.value)


def test_no_email_column_names_line_one():
    data = b"name,phone\nAnn Lee,555-0100\n"
    with pytest.raises(InputError) as excinfo:
        parse_csv(data, "contacts.csv", confirmed=False)
    message = str(excinfo.value)
    assert message.startswith("contacts.csv:1:")
    assert "name, phone" in message


def test_empty_file_gives_nothing():
    parsed = parse_csv(b"  \n\n", "empty.csv", confirmed=True)
    assert (parsed.rows, parsed.problems, parsed.duplicates) == ([], [], 0)


@pytest.mark.parametrize(
    ("word", "confirmed", "expected"),
    [
        ("subscribed", False, "confirmed"),
        ("Subscribed", False, "confirmed"),
        ("confirmed", False, "confirmed"),
        ("unsubscribed", False, "unsubscribed"),
        ("unsubscribed", True, "unsubscribed"),
        # Mailchimp's "cleaned" is a hard bounce: suppressed as bounced, not as an opt-out.
        ("cleaned", True, "bounced"),
        ("bounced", True, "bounced"),
        ("complained", True, "complained"),
        ("blocklisted", True, "unsubscribed"),
        ("pending", False, "unconfirmed"),
        ("", False, "unconfirmed"),
        ("", True, "confirmed"),
    ],
)
def test_status_words(word, confirmed, expected):
    data = f"email,status\nann@example.com,{word}\n".encode()
    parsed = parse_csv(data, "people.csv", confirmed=confirmed)
    assert parsed.rows[0]["status"] == expected


@pytest.mark.parametrize(("confirmed", "expected"), [(True, "confirmed"), (False, "unconfirmed")])
def test_confirmed_flag_applies_when_the_file_has_no_status(confirmed, expected):
    data = b"email\nann@example.com\nbo@example.org\n"
    parsed = parse_csv(data, "people.csv", confirmed=confirmed)
    assert {r["status"] for r in parsed.rows} == {expected}


# -- import_file against a real store -------------------------------------------

PEOPLE = (
    "email,first_name,last_name,status,tags\n"
    "ann@example.com,Ann,Lee,subscribed,vip;running\n"
    "bo@example.org,Bo,Ma,subscribed,\n"
    "cy@example.net,Cy,Ng,pending,desk-work\n"
)


def test_import_adds_subscribers(store, tmp_path):
    path = write_csv(tmp_path / "people.csv", PEOPLE)
    report = import_file(store, path, NOW)

    assert (report.added, report.existing, report.suppressed) == (3, 0, 0)
    assert report.problems == [] and report.duplicates == 0
    rows = {s["email"]: s for s in store.subscribers()}
    assert set(rows) == {"ann@example.com", "bo@example.org", "cy@example.net"}
    assert rows["ann@example.com"]["status"] == "confirmed"
    assert rows["ann@example.com"]["tags"] == ["vip", "running"]
    assert rows["ann@example.com"]["confirmed_at"] is not None
    assert rows["cy@example.net"]["status"] == "unconfirmed"
    assert rows["cy@example.net"]["confirmed_at"] is None
    assert all(s["source"] == "import:people.csv" for s in rows.values())
    assert "3 added" in report.line()


def test_reimport_changes_nothing(store, tmp_path):
    path = write_csv(tmp_path / "people.csv", PEOPLE)
    import_file(store, path, NOW)
    before = store.subscribers()
    consents_before = consents(store)

    again = import_file(store, path, NOW + timedelta(days=1))

    assert (again.added, again.existing, again.suppressed) == (0, 3, 0)
    assert store.subscribers() == before
    assert consents(store) == consents_before


def test_import_never_resubscribes_an_unsubscribed_address(store, tmp_path):
    path = write_csv(tmp_path / "people.csv", PEOPLE)
    import_file(store, path, NOW)
    ann = store.subscriber_by_email("ann@example.com")
    assert store.unsubscribe(ann["id"], None, NOW, "link")

    report = import_file(store, path, NOW + timedelta(days=1), confirmed=True)

    assert (report.added, report.existing, report.suppressed) == (0, 2, 1)
    assert store.subscriber_by_email("ann@example.com")["status"] == "unsubscribed"


def test_an_address_imported_as_unsubscribed_stays_out(store, tmp_path):
    first = write_csv(tmp_path / "old.csv", "email,status\nann@example.com,unsubscribed\n")
    later = write_csv(tmp_path / "new.csv", "email,status\nann@example.com,subscribed\n")

    assert import_file(store, first, NOW).added == 1
    assert store.subscriber_by_email("ann@example.com")["status"] == "unsubscribed"
    report = import_file(store, later, NOW + timedelta(hours=1))

    assert (report.added, report.existing, report.suppressed) == (0, 0, 1)
    assert store.subscriber_by_email("ann@example.com")["status"] == "unsubscribed"


def test_strict_imports_nothing_when_any_row_is_bad(store, tmp_path):
    write_csv(tmp_path / "first.csv", "email\nold@example.com\n")
    import_file(store, tmp_path / "first.csv", NOW)
    before, consents_before = store.subscribers(), consents(store)
    path = write_csv(
        tmp_path / "people.csv", "email\nann@example.com\nnot-an-address\nbo@example.org\n"
    )

    with pytest.raises(InputError) as excinfo:
        import_file(store, path, NOW, strict=True)

    assert "people.csv:3:" in str(excinfo.value)
    assert "--strict" in str(excinfo.value)
    assert store.subscribers() == before
    assert consents(store) == consents_before


def test_without_strict_good_rows_are_imported_and_bad_ones_reported(store, tmp_path):
    path = write_csv(
        tmp_path / "people.csv", "email\nann@example.com\nnot-an-address\nbo@example.org\n"
    )
    report = import_file(store, path, NOW)
    assert report.added == 2
    assert len(report.problems) == 1 and ":3:" in report.problems[0]
    assert {s["email"] for s in store.subscribers()} == {"ann@example.com", "bo@example.org"}


def test_a_consent_record_is_written_per_new_subscriber(store, tmp_path):
    path = write_csv(tmp_path / "people.csv", PEOPLE)
    import_file(store, path, NOW)

    rows = consents(store)
    by_email = {s["email"]: s["id"] for s in store.subscribers()}
    assert len(rows) == len(by_email) == 3
    for subscriber_id, email, source, text, version in rows:
        assert by_email[email] == subscriber_id
        assert source == "import:people.csv"
        assert "people.csv" in text
        assert version == "import"
    confirmed_at = dict(
        store.conn.execute(
            "SELECT email, confirmed_at FROM consents WHERE subscriber_id IS NOT NULL"
        ).fetchall()
    )
    assert confirmed_at["ann@example.com"] is not None
    assert confirmed_at["cy@example.net"] is None


def test_import_into_a_named_list(store, tmp_path):
    path = write_csv(tmp_path / "people.csv", PEOPLE)
    import_file(store, path, NOW, list_name="patients")
    list_id = store.list_id("patients")
    members = store.conn.execute(
        "SELECT COUNT(*) FROM memberships WHERE list_id = ?", [list_id]
    ).fetchone()[0]
    assert members == 3


def test_import_of_a_missing_file_names_it(store, tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(InputError) as excinfo:
        import_file(store, missing, NOW)
    assert str(missing) in str(excinfo.value)


# -- export ---------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cell_quotes_formula_prefixes(prefix):
    value = prefix + 'HYPERLINK("http://evil.example")'
    cell = csv_cell(value)
    assert cell == "'" + value


@pytest.mark.parametrize("value", ["alice", "a=b", "", "Zoë", "1+1", " =not-first"])
def test_csv_cell_leaves_safe_text_alone(value):
    assert csv_cell(value) == value


def test_csv_cell_of_non_text():
    assert csv_cell(None) == ""
    assert csv_cell(42) == "42"
    assert csv_cell(-3) == "'-3"


def test_export_csv_parses_back(store, tmp_path):
    text = (
        "email,first_name,last_name,status,tags,Plan\n"
        'ann@example.com,"=cmd|\' /C calc\'!A0","Lee, ""Jr.""",subscribed,vip;running,Gold\n'
        "bo@example.org,Bo,Ma,unsubscribed,,\n"
        "zoe@example.net,Zoë,@home,subscribed,-x,\n"
    )
    import_file(store, write_csv(tmp_path / "people.csv", text), NOW)
    subscribers = store.subscribers()

    rows = list(csv.reader(io.StringIO(export_csv(subscribers))))

    assert rows[0] == [
        "email",
        "first_name",
        "last_name",
        "status",
        "tags",
        "created_at",
        "attributes",
    ]
    body = {r[0]: r for r in rows[1:]}
    assert len(rows) == 1 + len(subscribers)
    ann = body["ann@example.com"]
    assert ann[1] == "'=cmd|' /C calc'!A0"
    assert ann[2] == 'Lee, "Jr."'
    assert ann[3] == "confirmed"
    assert ann[4].split(";") == ["vip", "running"]
    assert ann[5] == store.subscriber_by_email("ann@example.com")["created_at"]
    assert json.loads(ann[6]) == {"Plan": "Gold"}
    bo = body["bo@example.org"]
    assert bo[3] == "unsubscribed"
    assert (bo[4], bo[6]) == ("", "")
    zoe = body["zoe@example.net"]
    assert (zoe[1], zoe[2], zoe[4]) == ("Zoë", "'@home", "'-x")
    # No cell of the export can start a spreadsheet formula.
    for row in rows[1:]:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)
