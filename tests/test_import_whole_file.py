"""Staff say what everyone in a file is; opt-outs inside JSON columns stop the import.

An export without a status column (EmailOctopus's own: it holds whom its
filter chose) of people who left must come in as people who left: ``--status``
on the command line, the consent question on the dashboard. It never makes an
opted-out row sendable: a row whose own status says it left keeps that, with
its own time, and the report says how many rows kept their own status.

The safety rule reads JSON attribute columns too (listmonk's ``attributes``,
Buttondown's ``metadata``): a value there that says someone left stops the
import with one line naming the file, line and column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clocks import IMPORT_NOW as NOW
from conftest import Cli, dump, one_line_error
from newsletter.errors import InputError
from newsletter.status import SubscriberStatus
from newsletter.store import Store
from newsletter.subscriber_csv import OptOutColumn
from newsletter.subscribers import ImportReport, file_status, import_file

FIXTURES = Path(__file__).parent / "fixtures" / "subscribers"
DATA = Path(__file__).parent / "data" / "subscribers"
AT_IMPORT = NOW.isoformat(timespec="seconds")


def suppressions(store: Store) -> dict[str, str]:
    return {r["email"]: r["at"] for r in store.suppressions()}


# file, what staff say everyone in it is, and per address: (status, when the
# suppression is dated or None), then how many rows kept their own status.
WHOLE_FILE: list[tuple[str, Path, str, dict[str, tuple[str, str | None]], int]] = [
    (
        # EmailOctopus's export of its unsubscribed contacts: no status column,
        # and "Last changed" is when each one left.
        "emailoctopus export of people who left",
        FIXTURES / "emailoctopus.csv",
        "unsubscribed",
        {
            "fin@example.com": ("unsubscribed", "2024-02-01T10:00:00+00:00"),
            "gil@example.com": ("unsubscribed", "2023-05-05T05:05:05+00:00"),
        },
        0,
    ),
    (
        "emailoctopus export of bounced addresses",
        FIXTURES / "emailoctopus.csv",
        "bounced",
        {
            "fin@example.com": ("bounced", "2024-02-01T10:00:00+00:00"),
            "gil@example.com": ("bounced", "2023-05-05T05:05:05+00:00"),
        },
        0,
    ),
    (
        "emailoctopus export of complaints",
        FIXTURES / "emailoctopus.csv",
        "complained",
        {
            "fin@example.com": ("complained", "2024-02-01T10:00:00+00:00"),
            "gil@example.com": ("complained", "2023-05-05T05:05:05+00:00"),
        },
        0,
    ),
    (
        "emailoctopus export of people who never said yes here",
        FIXTURES / "emailoctopus.csv",
        "unconfirmed",
        {"fin@example.com": ("unconfirmed", None), "gil@example.com": ("unconfirmed", None)},
        0,
    ),
    (
        # Said confirmed: Dan's own unsubscribe stands, dated by the import (the
        # file gives no unsubscribe time; its last change dates only a file said
        # to have left as a whole), Eva is still pending.
        "emailoctopus api export said confirmed",
        FIXTURES / "emailoctopus-api.csv",
        "confirmed",
        {
            "cai@example.com": ("confirmed", None),
            "dan@example.com": ("unsubscribed", AT_IMPORT),
            "eva@example.com": ("unconfirmed", None),
        },
        2,
    ),
    (
        "emailoctopus api export said unsubscribed",
        FIXTURES / "emailoctopus-api.csv",
        "unsubscribed",
        {
            "cai@example.com": ("unsubscribed", "2024-01-01T00:00:00+00:00"),
            "dan@example.com": ("unsubscribed", "2024-03-03T03:03:03+00:00"),
            "eva@example.com": ("unsubscribed", "2024-06-01T00:00:00+00:00"),
        },
        0,
    ),
    (
        # Said confirmed, but three rows say otherwise: the opt-outs and the
        # one still pending keep what the file says of them.
        "beehiiv export said confirmed",
        FIXTURES / "beehiiv.csv",
        "confirmed",
        {
            "ada@example.com": ("confirmed", None),
            "ben@example.com": ("unsubscribed", "2024-03-13T11:33:53+00:00"),
            "cal@example.com": ("unsubscribed", AT_IMPORT),
            "dot@example.com": ("unconfirmed", None),
        },
        3,
    ),
    (
        "kit export said confirmed",
        FIXTURES / "kit.csv",
        "confirmed",
        {
            "eli@example.com": ("confirmed", None),
            "flo@example.com": ("unsubscribed", "2024-06-30T08:15:00+00:00"),
            "gus@example.com": ("bounced", AT_IMPORT),
            "hal@example.com": ("complained", AT_IMPORT),
            "ida@example.com": ("unconfirmed", None),
        },
        4,
    ),
    (
        # Said unsubscribed: the active come in unsubscribed (dated by the
        # import: Kit gives no time for them), a bounce stays a bounce.
        "kit export said unsubscribed",
        FIXTURES / "kit.csv",
        "unsubscribed",
        {
            "eli@example.com": ("unsubscribed", AT_IMPORT),
            "flo@example.com": ("unsubscribed", "2024-06-30T08:15:00+00:00"),
            "gus@example.com": ("bounced", AT_IMPORT),
            "hal@example.com": ("complained", AT_IMPORT),
            "ida@example.com": ("unsubscribed", AT_IMPORT),
        },
        2,
    ),
    (
        # MailerLite's export of one segment (here: the unsubscribed) has no
        # status column and no time of leaving: dated by the import.
        "mailerlite app export of people who left",
        FIXTURES / "mailerlite-app.csv",
        "unsubscribed",
        {
            "yara@example.com": ("unsubscribed", AT_IMPORT),
            "zed@example.com": ("unsubscribed", AT_IMPORT),
        },
        0,
    ),
    (
        "mailerlite export said unconfirmed",
        FIXTURES / "mailerlite.csv",
        "unconfirmed",
        {
            "pia@example.com": ("unconfirmed", None),
            "quin@example.com": ("unsubscribed", "2024-04-01T12:30:00+00:00"),
            "ros@example.com": ("bounced", AT_IMPORT),
            "sam@example.com": ("complained", AT_IMPORT),
            "tia@example.com": ("unconfirmed", None),
        },
        3,
    ),
    (
        # Substack's email_disabled=false says only "not opted out": the row
        # is what the file is said to be.
        "substack export said confirmed",
        DATA / "substack_email_list.csv",
        "confirmed",
        {
            "kai@example.com": ("confirmed", None),
            "lea@example.com": ("confirmed", None),
            "max@example.com": ("unsubscribed", AT_IMPORT),
        },
        1,
    ),
]


@pytest.mark.parametrize(
    ("path", "word", "rows", "overridden"),
    [case[1:] for case in WHOLE_FILE],
    ids=[case[0] for case in WHOLE_FILE],
)
def test_a_whole_file_comes_in_as_staff_say_and_opt_outs_keep_their_own(
    store: Store, path: Path, word: str, rows: dict[str, tuple[str, str | None]], overridden: int
) -> None:
    report = import_file(store, path, NOW, status=file_status(word))

    assert report.problems == []
    people = {s["email"]: s["status"] for s in store.subscribers()}
    assert {a: people[a] for a in rows} == {a: status for a, (status, _) in rows.items()}
    at = suppressions(store)
    assert {a: at.get(a) for a in rows} == {a: left for a, (_, left) in rows.items()}
    assert report.overridden == overridden
    counted = "person" if overridden == 1 else "people"
    assert f"everyone taken as {word} but {overridden} {counted} whose" in report.line()
    # The consent record says on whose word they came in.
    texts = {r["text"] for r in store._rows("SELECT text FROM consents")}
    assert texts == {
        f"Added by staff import from {path.name}; staff said everyone in the file is {word}"
    }
    # Nobody a suppression names is sendable, whatever was said of the file.
    assert not {a for a, status in people.items() if status == "confirmed"} & set(at)


def test_no_whole_file_answer_makes_an_opted_out_row_sendable(store: Store, tmp_path) -> None:
    # Every way a row can say it left, in one file said to be confirmed.
    path = tmp_path / "mixed.csv"
    path.write_text(
        "email,status,unsubscribed_at,email_disabled\n"
        "ann@example.com,,,\n"
        "bob@example.com,unsubscribed,,\n"
        "cy@example.com,active,2024-01-01 00:00:00,\n"
        "dee@example.com,,,true\n"
        "eve@example.com,bounced,,\n"
        "fay@example.com,spam complaint,,\n"
    )

    report = import_file(store, path, NOW, status=SubscriberStatus.CONFIRMED)

    people = {s["email"]: s["status"] for s in store.subscribers()}
    assert [a for a, s in people.items() if s == "confirmed"] == ["ann@example.com"]
    assert set(suppressions(store)) == set(people) - {"ann@example.com"}
    assert (report.overridden, report.opted_out) == (5, 5)


def test_status_and_confirmed_that_disagree_are_refused_in_one_line() -> None:
    assert file_status(None, confirmed=True) is None  # --confirmed alone: as before
    assert file_status("confirmed", confirmed=True) == SubscriberStatus.CONFIRMED
    with pytest.raises(InputError, match=r"^--confirmed with --status bounced: "):
        file_status("bounced", confirmed=True)
    with pytest.raises(InputError, match=r"^--status 'gone': use one of confirmed, "):
        file_status("gone")


def test_cli_imports_an_export_of_people_who_left_as_unsubscribed(
    cli: Cli, ws_dir: Path, tmp_path: Path
) -> None:
    result = cli(
        "subscribers", "import", str(FIXTURES / "emailoctopus.csv"), "--status", "unsubscribed"
    )

    assert "2 opted out in the file" in result.stdout
    assert "everyone taken as unsubscribed but 0 people" in result.stdout
    store = Store(ws_dir / "newsletter.db")
    try:
        people = {s["email"]: s["status"] for s in store.subscribers()}
        at = suppressions(store)
    finally:
        store.close()
    assert people == {"fin@example.com": "unsubscribed", "gil@example.com": "unsubscribed"}
    assert at == {
        "fin@example.com": "2024-02-01T10:00:00+00:00",
        "gil@example.com": "2023-05-05T05:05:05+00:00",
    }


def test_cli_refuses_disagreeing_answers_and_stores_nothing(
    cli: Cli, ws_dir: Path, tmp_path: Path
) -> None:
    before = dump(ws_dir / "newsletter.db")

    result = cli(
        "subscribers",
        "import",
        str(FIXTURES / "kit.csv"),
        "--confirmed",
        "--status",
        "bounced",
        check=False,
    )

    one_line_error(result, "--confirmed with --status bounced")
    assert dump(ws_dir / "newsletter.db") == before


def test_cli_says_how_many_rows_kept_their_own_status(cli: Cli) -> None:
    result = cli("subscribers", "import", str(FIXTURES / "kit.csv"), "--status", "confirmed")

    assert "everyone taken as confirmed but 4 people whose own status" in result.stdout
    assert "4 opted out in the file" not in result.stdout  # 3 left, 1 never confirmed
    assert "3 opted out in the file" in result.stdout


def test_the_report_counts_the_people_who_kept_their_own_status_not_rows() -> None:
    # The store counts each mailbox once, however many rows name it: the words say people.
    one = ImportReport("a.csv", whole=SubscriberStatus.CONFIRMED, overridden=1).line()
    assert "but 1 person whose own status in the file said otherwise" in one
    two = ImportReport("a.csv", whole=SubscriberStatus.CONFIRMED, overridden=2).line()
    assert "but 2 people whose own status in the file said otherwise" in two


# -- opt-outs inside JSON attribute columns ---------------------------------------------


def json_file(tmp_path: Path, header: str, cells: list[Any]) -> Path:
    """A listmonk-shaped file (or any header): one row per JSON value, the second row's line 3."""
    lines = [header]
    for number, value in enumerate(cells):
        cell = json.dumps(value).replace('"', '""')
        lines.append(f'p{number}@example.com,"{cell}"')
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("header", "value", "said"),
    [
        ("email,attributes", {"status": "unsubscribed"}, "status='unsubscribed'"),
        ("email,attributes", {"plan": {"unsubscribed_at": "2024-01-01"}}, "plan.unsubscribed_at="),
        (
            "email,attributes",
            {"lists": [{"name": "news", "state": "Blocklisted"}]},
            "lists[0].state",
        ),
        ("email,attributes", {"opted_out": True}, "opted_out='true'"),
        ("email,attributes", {"bounce": {"kind": "hard"}}, "bounce="),
        # Buttondown's metadata column is read as JSON too, and so is JSON in a
        # column kept as an attribute.
        ("email_address,metadata,secondary_id,type", {"why": "Hard bounce"}, "why='Hard bounce'"),
        ("email,profile", {"newsletter": {"state": "cancelled"}}, "newsletter.state="),
        # An opt-in field that says no, as a column of that name would.
        ("email,attributes", {"subscribed": False}, "subscribed='false'"),
        ("email,attributes", {"email_opt_in": False}, "email_opt_in='false'"),
        ("email,attributes", {"prefs": {"Subscribed to emails": "no"}}, "prefs.Subscribed "),
        ("email,attributes", {"opt_in": 0}, "opt_in='0'"),
    ],
)
def test_an_opt_out_inside_a_json_column_stops_the_import(
    store: Store, tmp_path: Path, header: str, value: dict[str, Any], said: str
) -> None:
    path = json_file(tmp_path, header, [{"city": "Oslo"}, value])
    before = list(store.conn.iterdump())

    with pytest.raises(OptOutColumn) as caught:
        import_file(store, path, NOW, confirmed=True)

    line = str(caught.value)
    column = header.split(",")[1]
    assert "\n" not in line
    assert line.startswith(f"{path}:3: column '{column}' holds {said}")
    assert "nothing was imported" in line
    assert caught.value.column == column
    assert list(store.conn.iterdump()) == before


@pytest.mark.parametrize(
    "value",
    [
        {"unsubscribed": False},
        {"unsubscribed_at": None},
        {"unsubscribed": "no"},
        {"unsubscribe_url": "https://example.org/u/1"},
        {"bounces": 0},
        {"plan": {"tier": "gold"}, "tags": ["active", "news"]},
        {"subscribed": True, "email_opt_in": "yes"},
        {"opt_in": 1, "subscribed": None},
    ],
)
def test_json_that_says_nobody_left_is_kept_as_attributes(
    store: Store, tmp_path: Path, value: dict[str, Any]
) -> None:
    path = json_file(tmp_path, "email,attributes", [value])

    import_file(store, path, NOW, confirmed=True)

    person = store.subscriber_by_email("p0@example.com")
    assert (person["status"], person["attributes"]) == ("confirmed", value)


def test_cli_names_the_file_line_and_column_of_an_opt_out_in_json(
    cli: Cli, ws_dir: Path, tmp_path: Path
) -> None:
    path = json_file(tmp_path, "email,attributes", [{}, {"status": "unsubscribed"}])
    cli("subscribers", "list")  # the database made, as a workspace in use has it
    before = dump(ws_dir / "newsletter.db")

    result = cli("subscribers", "import", str(path), "--confirmed", check=False)

    one_line_error(result, f"{path}:3", "'attributes'", "status='unsubscribed'")
    assert dump(ws_dir / "newsletter.db") == before


def test_json_after_leading_spaces_in_a_kept_column_is_read_too(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        'email,profile\nann@example.com,{}\nbob@example.com," {""status"":""unsubscribed""}"\n'
    )
    before = list(store.conn.iterdump())

    with pytest.raises(OptOutColumn, match=r":3: column 'profile' holds status='unsubscribed'"):
        import_file(store, path, NOW, confirmed=True)

    assert list(store.conn.iterdump()) == before


def test_an_opt_in_column_that_says_no_is_an_opt_out(store: Store, tmp_path: Path) -> None:
    # The same names inside JSON stop the import; as a column they are read.
    path = tmp_path / "people.csv"
    path.write_text("email,email_opt_in\nann@example.com,yes\nbob@example.com,no\n")

    report = import_file(store, path, NOW, status=SubscriberStatus.CONFIRMED)

    people = {s["email"]: s["status"] for s in store.subscribers()}
    assert people == {"ann@example.com": "confirmed", "bob@example.com": "unsubscribed"}
    assert (report.opted_out, report.overridden) == (1, 1)
