"""The subscriber and list commands as a user runs them: a subprocess on a real workspace."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
from pathlib import Path

import pytest

from conftest import Cli, dump, one_line_error

DATA = Path(__file__).parent / "data" / "subscribers"


def outbox(ws_dir: Path, prefix: str) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted((ws_dir / "outbox").glob(f"{prefix}*.eml"))
    ]


def test_add_sends_a_confirmation_email_and_records_consent(cli: Cli, ws_dir: Path) -> None:
    assert "created (public)" in cli("lists", "create", "patients", "--public").stdout
    result = cli(
        "subscribers", "add", "Alice@Example.com", "--name", "Alice M", "--list", "patients"
    )

    assert "Alice@example.com: confirmation email sent" in result.stdout
    (mail,) = outbox(ws_dir, "confirm-")
    assert mail["To"].addresses[0].addr_spec == "Alice@example.com"
    assert re.search(r"/confirm/[\w-]+", mail.get_body(("plain",)).get_content())
    assert "Alice@example.com\tunconfirmed" in cli("subscribers", "list").stdout
    record = json.loads(cli("subscribers", "export", "alice@example.com", "--json").stdout)
    (given,) = record["consents"]
    assert (given["source"], given["lists"], given["confirmed_at"]) == ("cli", ["patients"], None)
    assert given["confirm_sent_at"] is not None
    # Asked again at once, in other capitals: the same mailbox, nothing more is sent.
    again = cli("subscribers", "add", "alice@EXAMPLE.com")
    assert "none sent now" in again.stdout
    assert len(outbox(ws_dir, "confirm-")) == 1


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("subscribers", "add", "not-an-address"), ("not-an-address", "not a valid")),
        (
            ("subscribers", "add", "ann@example.com", "--list", "nope"),
            ("list 'nope'", "lists create"),
        ),
        (("subscribers", "import", "--map", "email", "x.csv"), ("--map 'email'",)),
        (("subscribers", "import", "--list", " ", "x.csv"), ("--list",)),
        (("campaign", "create", "--subject", "S", "--segment", "back-pain"), ("--segment",)),
        (("subscribers", "list", "--list", "nope"), ("list 'nope'",)),
        (("lists", "create", " "), ("list name",)),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) and len(v) > 1 else None,
)
def test_bad_input_is_one_line_and_changes_nothing(cli: Cli, ws_dir: Path, args, needles) -> None:
    cli("subscribers", "import", "subscribers/example.csv")
    (ws_dir / "x.csv").write_text("email\nann@example.com\n")
    before = dump(ws_dir / "newsletter.db")
    one_line_error(cli(*args, check=False), *needles, exit_code=1)
    assert dump(ws_dir / "newsletter.db") == before
    assert not (ws_dir / "outbox").exists() or not list((ws_dir / "outbox").iterdir())


def test_import_with_map_and_list(cli: Cli, ws_dir: Path) -> None:
    result = cli(
        "subscribers",
        "import",
        str(DATA / "excel_semicolon_cp1252.csv"),
        "--map",
        "Vorname=first_name",
        "--map",
        "Nachname=last_name",
        "--map",
        "Stadt=attribute:city",
        "--list",
        "schweiz",
        "--confirmed",
    )
    assert "2 added" in result.stdout
    record = json.loads(cli("subscribers", "export", "uwe@example.de", "--json").stdout)
    assert (record["subscriber"]["last_name"], record["subscriber"]["attributes"]) == (
        "Müller",
        {"city": "Köln"},
    )
    assert [m["name"] for m in record["lists"]] == ["schweiz"]
    assert "schweiz\t2 confirmed\tprivate" in cli("lists", "list").stdout


def test_every_file_is_checked_before_anything_is_stored(cli: Cli, ws_dir: Path) -> None:
    cli("subscribers", "import", "subscribers/example.csv")
    (ws_dir / "junk.csv").write_bytes(b"PK\x03\x04" + bytes(range(256)))
    (ws_dir / "wide.csv").write_text(",".join(["email"] + [f"c{i}" for i in range(9999)]) + "\n")
    before = dump(ws_dir / "newsletter.db")
    good = str(DATA / "keila_contacts.csv")
    one_line_error(
        cli("subscribers", "import", good, "junk.csv", check=False),
        "junk.csv",
        "binary content",
        exit_code=1,
    )
    one_line_error(
        cli("subscribers", "import", good, "wide.csv", check=False),
        "wide.csv:1",
        "10,000 columns",
        exit_code=1,
    )
    one_line_error(
        cli("subscribers", "import", good, str(DATA / "wrong_delimiter.csv"), check=False),
        "wrong_delimiter.csv:1",
        "no email column",
        exit_code=1,
    )
    one_line_error(
        cli("subscribers", "import", good, "--map", "Mail=email", check=False),
        "--map",
        "no column 'mail'",
        exit_code=1,
    )
    strict = cli(
        "subscribers", "import", "--strict", good, str(DATA / "broken_quotes.csv"), check=False
    )
    one_line_error(strict, "broken_quotes.csv:3", "--strict: nothing imported", exit_code=1)
    assert dump(ws_dir / "newsletter.db") == before


def test_bad_rows_are_listed_and_the_good_ones_kept(cli: Cli, ws_dir: Path) -> None:
    result = cli("subscribers", "import", str(DATA / "broken_quotes.csv"), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "broken_quotes.csv:3: broken quotes" in result.stderr
    assert "1 bad row(s) skipped" in result.stderr
    assert "1 added" in result.stdout


def test_a_large_import_shows_progress_on_stderr(cli: Cli, ws_dir: Path) -> None:
    big = ws_dir / "big.csv"
    big.write_text(
        "email,first_name\n" + "".join(f"r{i}@example.com,R{i}\n" for i in range(25_000))
    )
    result = cli("subscribers", "import", "big.csv")
    # Read as it is stored: one bar, in lines of the file.
    assert "big.csv: importing" in result.stderr
    assert "25000 added" in result.stdout
    strict = cli("subscribers", "import", "--strict", "big.csv")
    assert "big.csv: reading" in strict.stderr and "big.csv: importing" in strict.stderr
    assert "0 added, 25000 already present" in strict.stdout


def test_suppression_list_erasure_and_reimport(cli: Cli, ws_dir: Path) -> None:
    cli("subscribers", "import", "subscribers/example.csv")
    cli("subscribers", "unsubscribe", "alice.moreno@example.com")
    cli("subscribers", "delete", "zoe.brennan@example.org")
    listed = cli("subscribers", "suppressed").stdout
    assert "alice.moreno@example.com\tunsubscribed" in listed
    assert re.search(r"^sha256:[0-9a-f]{64}\terased\t", listed, re.MULTILINE)
    assert "zoe.brennan" not in listed

    again = cli("subscribers", "import", "subscribers/example.csv", "--confirmed")

    assert "2 suppressed" in again.stdout
    people = cli("subscribers", "list").stdout
    assert "alice.moreno@example.com\tunsubscribed" in people
    assert "zoe.brennan" not in people


def test_export_of_one_person_holds_everything(cli: Cli, ws_dir: Path) -> None:
    cli(
        "subscribers",
        "import",
        str(DATA / "mailchimp_subscribed_members_export.csv"),
        "--list",
        "mc",
    )
    cli("subscribers", "unsubscribe", "ann.lee@example.com")
    record = json.loads(cli("subscribers", "export", "ann.lee@example.com", "--json").stdout)
    assert record["subscriber"]["status"] == "unsubscribed"
    assert record["subscriber"]["attributes"]["MEMBER_RATING"] == "4"
    assert record["lists"][0]["name"] == "mc"
    assert record["suppression"]["reason"] == "unsubscribed"
    assert record["consents"][0]["detail"]["optin_ip"] == "203.0.113.5"
    assert [e["kind"] for e in record["events"]] == ["unsubscribe"]


def test_a_segmented_campaign_reaches_only_its_segment(cli: Cli, ws_dir: Path) -> None:
    cli("fetch")
    cli("subscribers", "import", "subscribers/example.csv")
    created = cli("campaign", "create", "--subject", "For your back", "--segment", "tag:back-pain")
    campaign_id = created.stdout.strip()
    assert "1 subscriber matches now" in created.stderr
    cli("campaign", "send", campaign_id)
    sent = [m["To"].addresses[0].addr_spec for m in outbox(ws_dir, "")]
    assert sent == ["alice.moreno@example.com"]
    running = cli(
        "campaign",
        "create",
        "--subject",
        "Run",
        "--articles",
        "1",
        "--segment",
        "tag:running",
        "--segment",
        "!tag:knee-pain",
    )
    assert "1 subscriber matches now" in running.stderr  # Tom runs; Zoë runs with a sore knee


def test_config_check_names_bad_subscriber_settings(cli: Cli, env: dict[str, str]) -> None:
    env["NEWSLETTER_SUBSCRIBERS__CONFIRM_DAYS"] = "0"
    env["NEWSLETTER_CONSENT__VERSION"] = " "
    result = cli("config", "check", check=False)
    assert result.returncode == 1
    assert "subscribers.confirm_days" in result.stderr and "consent.version" in result.stderr


def _import_peak_rss(cli: Cli, name: str) -> tuple[int, str]:
    """Peak resident memory (bytes) of one `subscribers import` process, and its stdout."""
    import os

    proc = cli.popen("subscribers", "import", name)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, out
    return usage.ru_maxrss * 1024, out


def test_a_large_csv_is_imported_in_memory_that_does_not_grow_with_it(cli: Cli, ws_dir: Path):
    """200,000 rows (12 MB) used to take 230 MB more than a small file; now a few MB.

    The file is read a row at a time as the rows are stored: the import of the
    large file may use only a little more memory than that of a small one.
    """

    def write(name: str, count: int, offset: int = 0) -> None:
        with (ws_dir / name).open("w") as out:
            out.write("email,first_name,last_name,tags,city\n")
            for i in range(offset, offset + count):
                out.write(f'reader{i}@example.com,Reader{i},Family{i % 977},"a,b",Town {i % 300}\n')
            # A repeated address deep in the file is still found.
            out.write(f"reader{offset}@example.com,Again,,,\n")

    write("small.csv", 1_000)
    write("large.csv", 200_000, offset=1_000)
    small, _ = _import_peak_rss(cli, "small.csv")
    large, out = _import_peak_rss(cli, "large.csv")
    assert "200000 added, 0 already present" in out and "1 duplicate rows" in out
    assert large - small < 40_000_000, (small, large)


def test_a_file_of_thousands_of_bad_rows_is_counted_in_full_but_not_kept(
    cli: Cli, ws_dir: Path
) -> None:
    """5,000 bad rows: every one counted, 50 shown, only the first thousand lines held."""
    from newsletter import subscribers
    from newsletter.store import Store

    rows = "".join(f"not-an-address-{i}\n" for i in range(5_000))
    (ws_dir / "junk.csv").write_text("email\n" + rows + "good@example.com\n")
    result = cli("subscribers", "import", "junk.csv", check=False)
    assert result.returncode == 1
    shown = [line for line in result.stderr.splitlines() if "invalid address" in line]
    assert len(shown) == 50 and shown[0].startswith("junk.csv:2: invalid address")
    assert "junk.csv: and 4950 more bad rows" in result.stderr
    assert "1 added" in result.stdout and "5000 bad rows" in result.stdout
    store = Store(ws_dir / "newsletter.db")
    try:
        report = subscribers.import_file(store, ws_dir / "junk.csv", dt.datetime.now(dt.UTC))
    finally:
        store.close()
    assert report.bad_rows == 5_000 and len(report.problems) == subscribers.MAX_PROBLEMS


def test_add_folds_line_breaks_in_the_name_to_spaces(cli: Cli, ws_dir: Path) -> None:
    """A name with CR/LF given to the CLI must not make a person no message can reach."""
    cli("subscribers", "add", "ann@example.com", "--name", "Ann\r\nLee\x0bJones")
    record = json.loads(cli("subscribers", "export", "ann@example.com", "--json").stdout)
    (given,) = record["consents"]
    detail = given["detail"] if isinstance(given["detail"], dict) else json.loads(given["detail"])
    assert (detail["first_name"], detail["last_name"]) == ("Ann", "Lee Jones")


def test_add_refuses_an_address_that_asked_not_to_get_email(cli: Cli, ws_dir: Path) -> None:
    cli("subscribers", "add", "ann@example.com")
    cli("subscribers", "unsubscribe", "ann@example.com")
    sent = len(outbox(ws_dir, "confirm-"))
    before = dump(ws_dir / "newsletter.db")
    one_line_error(
        cli("subscribers", "add", "ANN@example.com", check=False),  # one mailbox, any capitals
        "ANN@example.com",
        "suppression list",
        "subscribe form",
        exit_code=1,
    )
    assert dump(ws_dir / "newsletter.db") == before
    assert len(outbox(ws_dir, "confirm-")) == sent
