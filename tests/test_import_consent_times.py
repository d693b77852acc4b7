"""When the imported file says a person signed up and confirmed: kept in the consent record.

The consent record of an import is dated by the import; the file's own times
(Mailchimp's OPTIN_TIME and CONFIRM_TIME, MailerLite's subscribed_at, the
tools' creation times, Sendy's Joined) are kept beside it, in UTC.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clocks import IMPORT_NOW as NOW
from conftest import database_before
from newsletter.store import Store
from newsletter.subscribers import import_file

FIXTURES = Path(__file__).parent / "fixtures" / "subscribers"
DATA = Path(__file__).parent / "data" / "subscribers"


def consent_times(store: Store) -> dict[str, tuple[str | None, str | None]]:
    rows = store._rows(
        "SELECT s.email, c.file_signed_up_at, c.file_confirmed_at, c.at FROM consents c "
        "JOIN subscribers s ON s.id = c.subscriber_id"
    )
    assert {r["at"] for r in rows} == {NOW.isoformat(timespec="seconds")}  # the import's own
    return {r["email"]: (r["file_signed_up_at"], r["file_confirmed_at"]) for r in rows}


# file, and per address: (signed up, confirmed) as the file says, in UTC.
CASES = [
    (
        DATA / "mailchimp_subscribed_members_export.csv",
        {
            "ann.lee@example.com": ("2024-03-14T09:12:31+00:00", "2024-03-14T09:14:00+00:00"),
            "Bo.Ma@example.org": ("2024-04-02T17:40:10+00:00", None),
        },
    ),
    (
        FIXTURES / "mailchimp-de.csv",
        {"jana@example.com": ("2024-02-12T17:59:31+00:00", "2024-02-12T18:06:58+00:00")},
    ),
    (
        FIXTURES / "mailerlite.csv",
        {"pia@example.com": ("2024-01-10T08:00:00+00:00", None)},  # subscribed_at
    ),
    (
        FIXTURES / "mailerlite-app.csv",
        {"yara@example.com": ("2024-01-10T08:00:00+00:00", None)},  # "Subscribed"
    ),
    (
        FIXTURES / "beehiiv.csv",
        {"ada@example.com": ("2023-03-24T10:23:10+00:00", None)},  # created_at, " UTC"
    ),
    (
        FIXTURES / "kit.csv",
        {"eli@example.com": ("2024-01-05T10:00:00+00:00", None)},
    ),
    (
        FIXTURES / "sendy.csv",
        {"wes@example.com": ("2024-01-05T10:00:00+00:00", None)},  # "2024/01/05, 10:00AM"
    ),
    (
        FIXTURES / "emailoctopus.csv",
        {"fin@example.com": ("2024-01-01T09:00:00+00:00", None)},  # Created
    ),
    (
        # A file that says nothing of when: nothing is made up.
        DATA / "plain_with_header.csv",
        None,
    ),
]


@pytest.mark.parametrize(("path", "times"), CASES, ids=[c[0].stem for c in CASES])
def test_the_consent_record_keeps_when_the_file_says_they_signed_up_and_confirmed(
    store: Store, path: Path, times: dict[str, tuple[str | None, str | None]] | None
) -> None:
    import_file(store, path, NOW, confirmed=True)

    kept = consent_times(store)
    if times is None:
        assert kept and set(kept.values()) == {(None, None)}
    else:
        assert {a: kept[a] for a in times} == times


def test_the_time_columns_stay_attributes_too(store: Store) -> None:
    import_file(store, FIXTURES / "beehiiv.csv", NOW, confirmed=True)

    ada = store.subscriber_by_email("ada@example.com")
    assert ada["attributes"]["created_at"] == "2023-03-24 10:23:10 UTC"


def test_m018_gives_old_consent_records_a_place_for_the_files_times(tmp_path: Path) -> None:
    store = database_before(tmp_path / "old.db", "m018")
    import_file(store, DATA / "plain_with_header.csv", NOW)  # an import before the upgrade
    before = store._rows("SELECT * FROM consents ORDER BY id")

    assert "m018_consent_times_from_file" in store.migrate()

    after = store._rows("SELECT * FROM consents ORDER BY id")
    assert [{k: r[k] for k in before[0]} for r in after] == before
    assert {(r["file_signed_up_at"], r["file_confirmed_at"]) for r in after} == {(None, None)}
    import_file(store, FIXTURES / "kit.csv", NOW)
    assert consent_times(store)["eli@example.com"] == ("2024-01-05T10:00:00+00:00", None)
    store.close()
