"""One mailbox given twice in a file: an opt-out on either row wins, and the counts are true.

Whichever row says the person opted out, first or later, in the same batch or
thousands of rows on, in a file read whole (the dashboard's preview) or as it
is stored (every import), the person comes in opted out with that row's
reason and time, and the report counts people, not repeated rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clocks import IMPORT_NOW as NOW
from newsletter.status import SubscriberStatus
from newsletter.store import Store
from newsletter.store.base import IMPORT_BATCH
from newsletter.subscribers import import_data, import_file, parse_csv, save

CONFIRMED = SubscriberStatus.CONFIRMED
LEFT = "2024-03-01T09:30:00+00:00"

BOTH_ORDERS = [
    pytest.param(
        b"email,status,unsubscribed_at\n"
        b"ann@x.example,subscribed,\n"
        b"ANN@x.example,unsubscribed,2024-03-01 09:30:00\n",
        id="opt-out-later",
    ),
    pytest.param(
        b"email,status,unsubscribed_at\n"
        b"ann@x.example,unsubscribed,2024-03-01 09:30:00\n"
        b"ANN@x.example,subscribed,\n",
        id="opt-out-first",
    ),
]


def person(store: Store) -> dict:
    people = store.subscribers()
    assert len(people) == 1
    return people[0]


@pytest.mark.parametrize("data", BOTH_ORDERS)
def test_the_preview_reads_the_opt_out_of_a_repeated_mailbox(data: bytes) -> None:
    parsed = parse_csv(data, "people.csv", confirmed=False, status=CONFIRMED)

    assert [(r["email"], r["status"]) for r in parsed.rows] == [
        ("ann@x.example", SubscriberStatus.UNSUBSCRIBED)
    ]
    assert parsed.rows[0]["unsubscribed_at"] == LEFT
    assert (parsed.duplicates, parsed.overridden) == (1, 1)


@pytest.mark.parametrize("data", BOTH_ORDERS)
@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "read-whole"])
def test_an_opt_out_on_either_row_of_a_mailbox_wins(
    store: Store, data: bytes, streamed: bool
) -> None:
    store.create_list("news", "", False, NOW)
    if streamed:
        report = import_data(store, data, "people.csv", NOW, "news", status=CONFIRMED)
    else:
        parsed = parse_csv(data, "people.csv", confirmed=False, status=CONFIRMED)
        report = save(store, parsed, NOW, "news")

    ann = person(store)
    assert (ann["email"], ann["status"], ann["confirmed_at"]) == (
        "ann@x.example",
        "unsubscribed",
        None,
    )
    assert [(s["email"], s["reason"], s["at"]) for s in store.suppressions()] == [
        ("ann@x.example", "unsubscribed", LEFT)
    ]
    assert store.subscribers(list_id=store.list_id("news")) == []
    counts = (report.added, report.existing, report.opted_out, report.duplicates)
    assert counts == (1, 0, 1, 1)
    assert report.overridden == 1


def test_a_late_opt_out_in_another_batch_undoes_the_sendable_row(
    store: Store, tmp_path: Path
) -> None:
    # Far enough apart that the store holds the two rows in different batches.
    filler = "".join(f"p{i}@x.example,subscribed,\n" for i in range(IMPORT_BATCH + 10))
    path = tmp_path / "people.csv"
    path.write_text(
        "email,status,bounced_at\n"
        "ann@x.example,subscribed,\n"
        f"{filler}"
        "Ann@X.example,bounced,2024-03-01 09:30:00\n"
    )
    store.create_list("news", "", False, NOW)

    report = import_file(store, path, NOW, "news", status=CONFIRMED)

    ann = store.subscriber_by_email("ann@x.example")
    assert ann is not None
    assert (ann["email"], ann["status"], ann["confirmed_at"]) == ("ann@x.example", "bounced", None)
    assert {s["email"]: (s["reason"], s["at"]) for s in store.suppressions()} == {
        "ann@x.example": ("bounced", LEFT)
    }
    members = {s["email"] for s in store.subscribers(list_id=store.list_id("news"))}
    assert "ann@x.example" not in members and len(members) == IMPORT_BATCH + 10
    consent = store._row("SELECT confirmed_at FROM consents WHERE subscriber_id = ?", [ann["id"]])
    assert consent["confirmed_at"] is None
    counts = (report.added, report.existing, report.opted_out, report.duplicates)
    assert counts == (IMPORT_BATCH + 11, 0, 1, 1)
    assert report.overridden == 1


def test_a_known_person_repeated_in_a_file_is_counted_once(store: Store, tmp_path: Path) -> None:
    store.create_list("news", "", False, NOW)
    first = tmp_path / "first.csv"
    first.write_text("email\nann@x.example\n")
    import_file(store, first, NOW, status=CONFIRMED)
    filler = "".join(f"p{i}@x.example,subscribed\n" for i in range(IMPORT_BATCH))
    second = tmp_path / "second.csv"
    second.write_text(
        f"email,status\nann@x.example,subscribed\n{filler}ann@x.example,unsubscribed\n"
    )

    report = import_file(store, second, NOW, "news", status=CONFIRMED)

    ann = store.subscriber_by_email("ann@x.example")
    assert ann is not None and ann["status"] == "unsubscribed"
    # Not on the list this import would have put them on.
    members = {s["email"] for s in store.subscribers(list_id=store.list_id("news"))}
    assert "ann@x.example" not in members
    assert (report.added, report.existing, report.opted_out, report.duplicates) == (
        IMPORT_BATCH,
        0,
        1,
        1,
    )


def test_the_override_count_counts_people_not_repeated_rows(tmp_path: Path, store: Store) -> None:
    data = (
        b"email,status\n"
        b"bob@x.example,unsubscribed\n"
        b"BOB@x.example,unsubscribed\n"
        b"cy@x.example,\n"
        b"cy@x.example,\n"
    )
    parsed = parse_csv(data, "people.csv", confirmed=False, status=CONFIRMED)
    assert parsed.overridden == 1

    report = import_data(store, data, "people.csv", NOW, status=CONFIRMED)
    assert (report.overridden, report.opted_out, report.duplicates) == (1, 1, 2)
    assert "everyone taken as confirmed but 1 person whose own status" in report.line()
