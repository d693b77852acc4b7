"""Importing real export files into a real store: every shape, every kind of broken file.

The files in tests/data/subscribers are written in the shapes the tools
export (column names, quoting, line ends, encodings); the malformed ones are
made here.
"""

from __future__ import annotations

import random
import sqlite3
import string
from datetime import timedelta
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from clocks import IMPORT_NOW as NOW
from newsletter.errors import InputError
from newsletter.store import Store, erased_key
from newsletter.subscribers import (
    check_file,
    import_file,
    normalize_email,
    parse_csv,
    parse_mapping,
)

DATA = Path(__file__).parent / "data" / "subscribers"


def by_email(store: Store) -> dict[str, dict]:
    return {s["email"]: s for s in store.subscribers()}


def consents(store: Store) -> dict[str, dict]:
    return {r["email"]: r for r in store._rows("SELECT * FROM consents ORDER BY id")}


def suppressed(store: Store) -> dict[str, str]:
    return {r["email"]: r["reason"] for r in store.suppressions()}


def dump(store: Store) -> list[str]:
    return list(store.conn.iterdump())


# -- the export shapes ----------------------------------------------------------------


def test_mailchimp_exports_of_each_status(store: Store) -> None:
    reports = [
        import_file(store, DATA / f"mailchimp_{kind}_members_export.csv", NOW)
        for kind in ("subscribed", "unsubscribed", "cleaned")
    ]

    assert [r.format for r in reports] == ["mailchimp"] * 3
    assert "(Mailchimp export)" in reports[0].line()
    people = by_email(store)
    assert {e: s["status"] for e, s in people.items()} == {
        "ann.lee@example.com": "confirmed",  # CONFIRM_TIME: a confirmed double opt-in
        "Bo.Ma@example.org": "unconfirmed",  # opted in, never confirmed
        "cy.ng@example.net": "confirmed",
        "dee.out@example.com": "unsubscribed",
        "gone@example.com": "bounced",  # "cleaned" is Mailchimp's hard bounce
    }
    ann = people["ann.lee@example.com"]
    assert (ann["first_name"], ann["last_name"], ann["tags"]) == (
        "Ann",
        "Lee",
        ["back-pain", "posture"],
    )
    assert people["Bo.Ma@example.org"]["attributes"]["NOTES"] == "prefers the digest"
    assert people["cy.ng@example.net"]["attributes"]["TIMEZONE"] == "America/Los_Angeles"
    # The opt-in evidence is kept with the consent record.
    assert consents(store)["ann.lee@example.com"]["detail"] == (
        '{"optin_time":"2024-03-14 09:12:31","optin_ip":"203.0.113.5",'
        '"confirm_time":"2024-03-14 09:14:00","confirm_ip":"203.0.113.5"}'
    )
    assert suppressed(store) == {
        "dee.out@example.com": "unsubscribed",
        "gone@example.com": "bounced",
    }
    assert (reports[1].opted_out, reports[2].opted_out) == (1, 1)


def test_listmonk_export(store: Store) -> None:
    report = import_file(store, DATA / "listmonk_subscribers.csv", NOW)

    assert report.format == "listmonk" and report.added == 3
    people = by_email(store)
    eve = people["eve@example.com"]
    assert eve["status"] == "confirmed"  # listmonk's "enabled"
    assert (eve["first_name"], eve["last_name"]) == ("Eve", "Adams")
    # The attributes JSON is taken apart, nested values and all.
    assert eve["attributes"]["city"] == "Springfield"
    assert eve["attributes"]["plan"] == {"tier": "gold"}
    assert eve["attributes"]["uuid"] == "5e1f3c2a-1111-4c1e-9d7a-0a1b2c3d4e5f"
    assert "attributes" not in eve["attributes"]
    assert people["fay@example.com"]["status"] == "unsubscribed"  # blocklisted
    assert people["gus@example.com"]["status"] == "unconfirmed"  # disabled
    assert suppressed(store) == {"fay@example.com": "unsubscribed"}


def test_ghost_members_export(store: Store) -> None:
    report = import_file(store, DATA / "ghost_members.csv", NOW, confirmed=True)

    assert report.format == "ghost" and report.problems == []
    people = by_email(store)
    hal = people["hal@example.com"]
    assert hal["status"] == "confirmed"
    assert hal["tags"] == ["knee-pain", "vip"]
    assert hal["attributes"]["note"] == "Met at the open day,\nasked about knee exercises"
    assert people["ivy@example.com"]["status"] == "unsubscribed"  # subscribed_to_emails false
    jon = people["jon@example.com"]
    assert (jon["first_name"], jon["last_name"]) == ("Jon", "van der Berg")
    assert jon["attributes"]["tiers"] == "Premium"


def test_substack_export(store: Store) -> None:
    report = import_file(store, DATA / "substack_email_list.csv", NOW, confirmed=True)

    assert report.format == "substack"
    people = by_email(store)
    assert people["kai@example.com"]["status"] == "confirmed"
    assert people["lea@example.com"]["attributes"]["plan"] == "yearly"
    assert people["max@example.com"]["status"] == "unsubscribed"  # email_disabled true
    assert "email_disabled" not in people["kai@example.com"]["attributes"]


def test_keila_export(store: Store) -> None:
    report = import_file(store, DATA / "keila_contacts.csv", NOW)

    assert report.format == "keila"
    people = by_email(store)
    nia = people["nia@example.com"]
    assert (nia["status"], nia["first_name"], nia["last_name"]) == ("confirmed", "Nia", "Novak")
    assert nia["attributes"] == {"city": "Eugene", "source": "clinic"}
    assert people["oto@example.com"]["status"] == "unsubscribed"
    assert people["pia@example.com"]["status"] == "bounced"  # Keila's "unreachable"


@pytest.mark.parametrize("name", ["plain_list.txt", "plain_with_header.csv"])
def test_bare_lists_of_addresses(store: Store, name: str) -> None:
    report = import_file(store, DATA / name, NOW)
    assert report.format == "plain" and report.problems == []
    assert {"quinn@example.com", "rae@example.org"} <= set(by_email(store))


def test_excel_semicolons_windows_1252_and_sep_line_with_map(store: Store) -> None:
    mapping = parse_mapping(
        ["Vorname=first_name", "Nachname=last_name", "Stadt=attribute:city", "E-Mail=email"]
    )
    report = import_file(store, DATA / "excel_semicolon_cp1252.csv", NOW, mapping=mapping)

    assert report.problems == []
    uwe = by_email(store)["uwe@example.de"]
    assert (uwe["first_name"], uwe["last_name"], uwe["attributes"]) == (
        "Uwe",
        "Müller",
        {"city": "Köln"},
    )
    assert by_email(store)["vera@example.de"]["first_name"] == "Véra"


def test_excel_unicode_text_is_utf16_with_tabs(store: Store) -> None:
    import_file(store, DATA / "excel_unicode_text.txt", NOW)
    xia = by_email(store)["xia@example.com"]
    assert (xia["first_name"], xia["last_name"]) == ("Xiā", "Líu")


def test_map_can_ignore_a_column_and_name_the_email_column(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text("Kontakt,Notiz,Geheim\nann@example.com,hi,s3cret\n", encoding="utf-8")
    mapping = parse_mapping(["Kontakt=email", "Geheim=ignore"])
    import_file(store, path, NOW, mapping=mapping)
    assert by_email(store)["ann@example.com"]["attributes"] == {"Notiz": "hi"}


@pytest.mark.parametrize(
    ("pairs", "needle"),
    [
        (["email"], "COLUMN=FIELD"),
        (["E-Mail=mailbox"], "unknown field 'mailbox'"),
        (["=email"], "COLUMN=FIELD"),
        (["Ort=attribute:"], "unknown field"),
    ],
)
def test_bad_map_options_are_named(pairs: list[str], needle: str) -> None:
    with pytest.raises(InputError) as excinfo:
        parse_mapping(pairs)
    assert str(excinfo.value).startswith("--map")
    assert needle in str(excinfo.value)


def test_map_naming_a_missing_column_lists_the_real_ones() -> None:
    with pytest.raises(InputError) as excinfo:
        check_file(
            DATA / "keila_contacts.csv", mapping=parse_mapping(["Mail=email"]), every_row=False
        )
    assert "no column 'mail'" in str(excinfo.value)
    assert "First name" in str(excinfo.value)


# -- broken files ----------------------------------------------------------------------


def test_wrong_delimiter_says_so_on_one_line() -> None:
    with pytest.raises(InputError) as excinfo:
        check_file(DATA / "wrong_delimiter.csv", every_row=False)
    message = str(excinfo.value)
    assert "wrong_delimiter.csv:1:" in message and "\n" not in message
    assert "seem not to be separated by a comma, semicolon, tab or |" in message


def test_broken_quotes_name_the_lines_and_keep_the_good_rows(store: Store) -> None:
    report = import_file(store, DATA / "broken_quotes.csv", NOW)
    assert [p.split(":")[1] for p in report.problems] == ["3"]
    assert "broken quotes" in report.problems[0] and "lines 3-5" in report.problems[0]
    assert set(by_email(store)) == {"yan@example.com"}


def test_broken_quotes_under_strict_import_nothing(store: Store) -> None:
    before = dump(store)
    with pytest.raises(InputError) as excinfo:
        import_file(store, DATA / "broken_quotes.csv", NOW, strict=True)
    assert "broken_quotes.csv:3:" in str(excinfo.value) and "--strict" in str(excinfo.value)
    assert dump(store) == before


def test_a_quote_that_swallows_rows_without_a_csv_error_is_caught() -> None:
    data = (
        b"email,name,city\n"
        b'ann@example.com,"Ann\nbo@example.org,Bo,Oslo\ncy@example.net,Cy",Rome\n'
        b"dee@example.com,Dee,Bern\n"
    )
    parsed = parse_csv(data, "people.csv", confirmed=False)
    assert [r["email"] for r in parsed.rows] == ["dee@example.com"]
    assert parsed.problems[0].startswith("people.csv:2: a quoted cell runs on to line 4")


def test_a_stray_quote_inside_a_cell_is_kept_as_written(store: Store) -> None:
    report = import_file(store, DATA / "stray_quote.csv", NOW)
    assert report.problems == []
    people = by_email(store)
    assert people["bad@example.com"]["first_name"] == 'Bad"quote'
    assert people["ok1@example.com"]["first_name"] == 'Ok "One"'


def test_ten_thousand_columns_are_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    header = ",".join(["email"] + [f"c{i}" for i in range(9999)])
    path.write_text(header + "\nann@example.com" + ",x" * 9999 + "\n")
    with pytest.raises(InputError) as excinfo:
        check_file(path, every_row=False)
    assert str(excinfo.value).startswith(f"{path}:1: 10,000 columns")
    assert "\n" not in str(excinfo.value)


def test_a_long_row_under_a_short_header_is_cut_to_the_header(store: Store, tmp_path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("email,city\nann@example.com,Oslo" + ",junk" * 10_000 + "\n")
    import_file(store, path, NOW)
    assert by_email(store)["ann@example.com"]["attributes"] == {"city": "Oslo"}


@pytest.mark.parametrize(
    "junk",
    [
        random.Random(4).randbytes(20_000),
        b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 8,
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512,
        b"email\nann@example.com\n" + b"\x00\x01\x02\x03" * 100,
        bytes(random.Random(5).choices(b"\x01\x02\x03\x04\x05abc,\n", k=5000)),
    ],
    ids=["random bytes", "xlsx", "xls", "nul bytes after text", "control characters"],
)
def test_binary_junk_is_one_clear_line(store: Store, tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "members.csv"
    path.write_bytes(junk)
    before = dump(store)
    with pytest.raises(InputError) as excinfo:
        import_file(store, path, NOW)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: binary content") and "\n" not in message
    assert dump(store) == before


def test_invalid_attributes_json_is_a_bad_row_with_its_line(store: Store, tmp_path) -> None:
    path = tmp_path / "listmonk.csv"
    path.write_text(
        "uuid,email,name,attributes,status\n"
        'u1,ann@example.com,Ann,"{""city"": ""Oslo""}",enabled\n'
        "u2,bo@example.org,Bo,{not json,enabled\n"
        'u3,cy@example.net,Cy,"[1, 2]",enabled\n'
    )
    report = import_file(store, path, NOW)
    assert [p.split(":")[1] for p in report.problems] == ["3", "4"]
    assert "not valid JSON" in report.problems[0] and "not a JSON object" in report.problems[1]
    assert set(by_email(store)) == {"ann@example.com"}


def test_line_numbers_count_physical_lines_after_a_multiline_cell() -> None:
    data = b'email,note\nann@example.com,"two\nlines"\nnot-an-address,x\nbo@example.org,y\n'
    parsed = parse_csv(data, "notes.csv", confirmed=False)
    assert [r["email"] for r in parsed.rows] == ["ann@example.com", "bo@example.org"]
    assert parsed.problems[0].startswith("notes.csv:4: invalid address 'not-an-address'")


def test_a_header_only_file_imports_nothing(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("email,first_name\n")
    report = import_file(store, path, NOW)
    assert (report.added, report.problems) == (0, [])


def test_a_data_line_where_the_header_should_be_is_named(tmp_path: Path) -> None:
    path = tmp_path / "noheader.csv"
    path.write_text("ann@example.com,Ann,Lee\nbo@example.org,Bo,Ma\n")
    with pytest.raises(InputError) as excinfo:
        check_file(path, every_row=False)
    assert str(excinfo.value).startswith(f"{path}:1: this line holds an address")


def test_addresses_with_display_names_and_mailto(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "pasted.txt"
    path.write_text("Ann Lee <ann@example.com>\nmailto:bo@example.org\n")
    import_file(store, path, NOW)
    people = by_email(store)
    assert (people["ann@example.com"]["first_name"], people["ann@example.com"]["last_name"]) == (
        "Ann",
        "Lee",
    )
    assert "bo@example.org" in people


# -- re-import and suppression ---------------------------------------------------------


def test_reimporting_every_shape_changes_nothing(store: Store) -> None:
    files = sorted(
        p
        for p in DATA.iterdir()
        if p.name not in ("wrong_delimiter.csv", "excel_semicolon_cp1252.csv")
    )
    for path in files:
        import_file(store, path, NOW, list_name="all")
    before = dump(store)
    for path in files:
        again = import_file(store, path, NOW + timedelta(days=3), list_name="all", confirmed=True)
        assert again.added == 0
    assert dump(store) == before


def test_suppressed_addresses_are_never_turned_back_on_by_an_import(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "email,status\n"
        "ann@example.com,subscribed\n"
        "bo@example.org,subscribed\n"
        "cy@example.net,subscribed\n"
        "dee@example.com,subscribed\n"
    )
    import_file(store, path, NOW)
    people = by_email(store)
    store.unsubscribe(people["ann@example.com"]["id"], None, NOW, "link")
    store.mark_bounced(people["bo@example.org"]["id"], None, NOW, "550 no such user")
    # A complaint arrives as a plain status change (a provider webhook): the
    # suppression list follows whoever writes the status.
    store.conn.execute(
        "UPDATE subscribers SET status = 'complained', updated_at = ? WHERE email = ?",
        [NOW.isoformat(), "cy@example.net"],
    )
    assert suppressed(store) == {
        "ann@example.com": "unsubscribed",
        "bo@example.org": "bounced",
        "cy@example.net": "complained",
    }
    later = tmp_path / "later.csv"
    # The same people in a later export, one spelled in capitals, all "subscribed".
    later.write_text(
        "email,status\n"
        "ANN@example.com,subscribed\n"
        "bo@example.org,subscribed\n"
        "cy@example.net,subscribed\n"
        "dee@example.com,subscribed\n"
    )

    report = import_file(store, later, NOW + timedelta(days=1), confirmed=True, list_name="news")

    assert (report.added, report.existing, report.suppressed) == (0, 1, 3)
    assert "3 suppressed" in report.line()
    assert {e: s["status"] for e, s in by_email(store).items()} == {
        "ann@example.com": "unsubscribed",
        "bo@example.org": "bounced",
        "cy@example.net": "complained",
        "dee@example.com": "confirmed",
    }
    # Nor are they put on the list they would be mailed through.
    news = store.list_id("news")
    assert [s["email"] for s in store.subscribers(list_id=news)] == ["dee@example.com"]


def test_an_opted_out_row_stays_out_even_when_a_later_row_says_otherwise(store, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("email,status\nann@example.com,unsubscribed\nAnn@example.com,subscribed\n")
    report = import_file(store, path, NOW)
    # The second row is the same mailbox in other capitals: a duplicate, never a new person.
    assert (report.added, report.opted_out, report.duplicates) == (1, 1, 1)
    assert [s["status"] for s in store.subscribers()] == ["unsubscribed"]


def test_the_database_refuses_to_lift_a_suppression_by_a_status_change(store, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("email,status\nann@example.com,unsubscribed\n")
    import_file(store, path, NOW)
    with pytest.raises(sqlite3.IntegrityError, match="only a confirmed opt-in"):
        store.conn.execute("UPDATE subscribers SET status = 'confirmed'")
    assert store.subscribers()[0]["status"] == "unsubscribed"


def test_an_erased_person_is_not_brought_back_by_an_old_export(store, tmp_path):
    path = tmp_path / "old-export.csv"
    path.write_text("email,status\nann@example.com,subscribed\nbo@example.org,subscribed\n")
    import_file(store, path, NOW)
    store.delete_subscriber(by_email(store)["ann@example.com"]["id"], NOW)

    report = import_file(store, path, NOW + timedelta(days=30))

    assert (report.added, report.existing, report.suppressed) == (0, 1, 1)
    assert set(by_email(store)) == {"bo@example.org"}
    # Only a hash of the address is kept to recognise it.
    assert suppressed(store) == {erased_key("ann@example.com"): "erased"}
    assert "ann@example.com" not in "\n".join(dump(store))


def test_progress_is_reported_while_reading_and_saving(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("email\n" + "".join(f"r{i}@example.com\n" for i in range(12_000)))
    seen: list[tuple[str, int, int]] = []
    import_file(store, path, NOW, on_progress=lambda *a: seen.append(a))
    # Read as it is stored: one phase, counted in lines of the file, to its end.
    assert {s[0] for s in seen} == {"importing"}
    assert seen[-1] == ("importing", 12_002, 12_002) and len(seen) >= 3
    assert sum(store.subscriber_counts().values()) == 12_000


# -- the fast path of address validation ---------------------------------------------


def _addresses(rng: random.Random, count: int) -> list[str]:
    """Plausible and implausible addresses: every character class, length and shape."""
    local_chars = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-.\"() ,:;<>@[]\\"
    domain_chars = string.ascii_letters + string.digits + "-._"
    tlds = ["com", "org", "COM", "io", "x", "test", "local", "arpa", "xn--p1ai", "c0m", "museum"]
    special = [
        "info@Example.COM",
        "Postmaster@example.org",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@ex--ample.com",
        "a@xn--bcher-kva.example",
        "a@localhost",
        "a@example",
        "a@123.123.123.123",
        "a@[127.0.0.1]",
        '"quoted"@example.com',
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "a@" + "b" * 63 + ".com",
        "a@" + "b" * 64 + ".com",
        "a@" + ".".join(["abcdefghij"] * 24) + ".com",
        "zoë@example.com",
        "a@bücher.example",
    ]
    out = list(special)
    for _ in range(count):
        local = "".join(rng.choice(local_chars) for _ in range(rng.randint(0, 70)))
        labels = [
            "".join(rng.choice(domain_chars) for _ in range(rng.randint(0, 12)))
            for _ in range(rng.randint(1, 3))
        ]
        out.append(f"{local}@{'.'.join(labels + [rng.choice(tlds)])}")
        clean = "".join(rng.choice(string.ascii_letters + string.digits + "._+-") for _ in range(8))
        out.append(f"{clean}@{rng.choice(['Mail.Example', 'example', 'a-b.c'])}.{rng.choice(tlds)}")
    return out


def test_the_fast_path_accepts_exactly_what_email_validator_accepts() -> None:
    for address in _addresses(random.Random(11), 4000):
        try:
            expected = validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError:
            with pytest.raises(EmailNotValidError):
                normalize_email(address)
            continue
        assert normalize_email(address) == expected, address


def test_a_newer_export_saying_a_known_address_opted_out_suppresses_it(tmp_path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.migrate()
    first = tmp_path / "first.csv"
    first.write_text("email,status\nann@example.com,subscribed\nbob@example.com,subscribed\n")
    later = tmp_path / "later.csv"
    later.write_text("email,status\nann@example.com,unsubscribed\nbob@example.com,subscribed\n")
    import_file(store, first, NOW)
    report = import_file(store, later, NOW)
    assert store.subscriber_by_email("ann@example.com")["status"] == "unsubscribed"
    assert store.subscriber_by_email("bob@example.com")["status"] == "confirmed"
    assert report.opted_out == 1
    # Importing the first file again never turns the opt-out back on.
    import_file(store, first, NOW)
    assert store.subscriber_by_email("ann@example.com")["status"] == "unsubscribed"
    store.close()


def test_ids_of_erased_people_are_never_given_to_someone_new(tmp_path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.migrate()
    people = tmp_path / "people.csv"
    people.write_text("email,status\nann@example.com,subscribed\nbob@example.com,subscribed\n")
    import_file(store, people, NOW)
    bob = store.subscriber_by_email("bob@example.com")
    store.delete_subscriber(bob["id"], NOW)
    newcomer = tmp_path / "newcomer.csv"
    newcomer.write_text("email,status\ncarol@example.com,subscribed\n")
    import_file(store, newcomer, NOW)
    carol = store.subscriber_by_email("carol@example.com")
    assert carol["id"] > bob["id"]
    store.close()


def test_a_file_read_as_it_is_stored_counts_repeats_as_the_whole_file_did(
    store: Store, tmp_path: Path
) -> None:
    """The streamed import keeps the first row of an address and counts the rest, as before."""
    import_file(store, _write(tmp_path / "old.csv", "email\nknown@example.com\n"), NOW)
    body = "email,first_name,status\n" + "".join(f"p{i}@example.com,P{i},\n" for i in range(1_200))
    body += (
        "known@example.com,Known,\n"
        "p3@example.com,Second,\n"  # a repeat in another batch
        "known@example.com,Again,\n"
        "quit@example.com,Quit,unsubscribed\n"
        "quit@example.com,Back,subscribed\n"  # an opt-out is not undone by a later row
        "p1199@EXAMPLE.com,Case,\n"
    )
    report = import_file(store, _write(tmp_path / "new.csv", body), NOW, confirmed=True)
    assert (report.added, report.existing, report.duplicates) == (1_201, 1, 4)
    assert report.opted_out == 1 and report.problems == []
    people = by_email(store)
    assert people["p3@example.com"]["first_name"] == "P3"
    assert people["quit@example.com"]["status"] == "unsubscribed"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("quoted", [False, True], ids=["bare", "quoted"])
def test_a_huge_cell_is_named_as_too_large_not_as_broken_quotes(
    store: Store, tmp_path: Path, quoted: bool
) -> None:
    """A 200,000-character note (a pasted document) fails its row with the right reason."""
    note = "x" * 200_000
    cell = f'"{note}"' if quoted else note
    body = f"email,note\nann@example.com,{cell}\nbo@example.com,fine\n"
    report = import_file(store, _write(tmp_path / "notes.csv", body), NOW)
    [problem] = report.problems
    assert problem.startswith(
        f"{tmp_path / 'notes.csv'}:2: a field larger than the limit of 131,072 characters;"
    )
    assert "broken quotes" not in problem
    assert set(by_email(store)) == {"bo@example.com"}


def test_a_header_with_a_huge_field_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "blob.csv", "email," + "y" * 200_000 + "\nann@example.com,1\n")
    with pytest.raises(InputError, match=r"blob.csv:1: the header line has a field larger"):
        check_file(path, every_row=False)


def test_a_file_that_changes_while_it_is_imported_stores_nothing(
    store: Store, tmp_path: Path
) -> None:
    """Still being copied into the folder: bytes that no longer decode stop the import cleanly."""
    from newsletter.subscribers import save, stream_file

    path = _write(
        tmp_path / "growing.csv", "email\n" + "".join(f"g{i}@example.com\n" for i in range(5_000))
    )
    parsed = stream_file(path)  # checked whole: valid UTF-8
    with path.open("r+b") as changing:
        changing.seek(-40, 2)
        changing.write(b"\xff\xfe\xfd")
    with pytest.raises(InputError, match="growing.csv: the file changed while it was being"):
        save(store, parsed, NOW)
    assert store.subscribers() == []


def test_line_breaks_and_controls_in_imported_names_become_single_spaces(
    store: Store, tmp_path: Path
) -> None:
    """A quoted CR/LF in a name cell would break the To header of every message to the person."""
    path = tmp_path / "people.csv"
    path.write_bytes(
        b"email,first_name,last_name,name\r\n"
        b'ann@example.com,"Ann\r\nMarie","\tLee\x0b ",\r\n'
        b'ben@example.com,,,"Ben\nvan\x1b\xc2\x85Dam"\r\n'
    )
    report = import_file(store, path, NOW)
    assert report.added == 2 and report.bad_rows == 0
    people = by_email(store)
    ann, ben = people["ann@example.com"], people["ben@example.com"]
    assert (ann["first_name"], ann["last_name"]) == ("Ann Marie", "Lee")
    assert (ben["first_name"], ben["last_name"]) == ("Ben", "van Dam")
