"""Blog pages saved as plain text (the Wix form), read from an article folder."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from clocks import FETCH_NOW as NOW
from newsletter.config import SourceSpec
from newsletter.errors import SourceError
from newsletter.sources import folder, intake, textpage

SAVED_PAGE = """top of page

Does Your Back Hate Long Drives?

Updated: Feb 4

Hello from the clinic! Long car journeys are a classic trigger for low back pain, and this \
time of year plenty of you are on the road. Here is why it happens and what helps.

Why Sitting Still Hurts:

Discs and joints like movement. Two hours in the same seat means the same tissues carry \
the same load the whole way, and they complain about it.

A driver stretching at a rest stop

What Helps on the Road:

Set yourself up before you leave, then keep moving when you stop.

  1. Seat Position: Sit close enough that your knees stay slightly bent at full pedal.

  2. Lumbar Support: A small rolled towel behind your lower back keeps its natural curve.

  3. Breaks: Stop every hour, walk for five minutes, and do a few standing back bends.

None of this needs special equipment, and it works for passengers too.


9 views0 comments


bottom of page"""


def test_saved_wix_page_gives_title_date_list_and_counters():
    article = folder.parse("long-drives.txt", SAVED_PAGE, NOW)

    assert article["title"] == "Does Your Back Hate Long Drives?"
    # No year on the page: the most recent 4 February not after "now".
    assert article["updated"] == "2026-02-04"
    assert article["published"] == "2026-02-04"
    assert (article["views"], article["comments"]) == (9, 0)
    body = article["body_html"]
    assert "<h2>Why Sitting Still Hurts</h2>" in body
    assert "<h2>What Helps on the Road</h2>" in body
    # The numbered list: one <ol>, its three items in order, each label in bold.
    assert body.count("<ol>") == 1 and body.count("<li>") == 3
    assert (
        "<ol>"
        "<li><strong>Seat Position:</strong> Sit close enough that your knees stay slightly "
        "bent at full pedal.</li>"
        "<li><strong>Lumbar Support:</strong> A small rolled towel behind your lower back "
        "keeps its natural curve.</li>"
        "<li><strong>Breaks:</strong> Stop every hour, walk for five minutes, and do a few "
        "standing back bends.</li>"
        "</ol>"
    ) in body
    # An image caption saved as a line of its own stays a paragraph.
    assert "<p>A driver stretching at a rest stop</p>" in body
    assert body.startswith("<p>Hello from the clinic!")
    assert body.endswith(
        "<p>None of this needs special equipment, and it works for passengers too.</p>"
    )
    for banner in ("top of page", "bottom of page", "9 views", "Updated:"):
        assert banner not in body
    assert article["summary"].startswith("Hello from the clinic!")


@pytest.mark.parametrize(
    ("shown", "now", "expected"),
    [
        ("Feb 4", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "2026-02-04"),
        ("Dec 30", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "2025-12-30"),
        ("Nov 27", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "2026-11-27"),
        ("February 29", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "2024-02-29"),
        ("Feb 4, 2023", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "2023-02-04"),
        ("4 February 2024", dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "2024-02-04"),
        ("2025-06-01", None, "2025-06-01"),
        ("3 days ago", dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC), "2026-11-24"),
        ("yesterday", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "2025-12-31"),
    ],
)
def test_dates_as_blogs_show_them(shown, now, expected):
    assert textpage.parse_date(shown, now, "page.txt:3") == expected


@pytest.mark.parametrize(
    ("shown", "now", "reason"),
    [
        ("Feb 4", None, "has no year"),
        ("Smarch 4", NOW, "no month"),
        ("Feb 31, 2026", NOW, "does not exist"),
        ("soon", NOW, "not a date"),
    ],
)
def test_bad_dates_name_the_file_and_line(shown, now, reason):
    with pytest.raises(SourceError) as excinfo:
        textpage.parse_date(shown, now, "page.txt:3")
    assert str(excinfo.value).startswith("page.txt:3: date")
    assert reason in str(excinfo.value)


def test_a_bad_updated_line_names_its_line_in_the_file():
    text = "top of page\n\nA Title\n\nUpdated: Smarch 40\n\nBody.\n"
    with pytest.raises(SourceError) as excinfo:
        folder.parse("notes/page.txt", text, NOW)
    assert str(excinfo.value).startswith("notes/page.txt:5: date 'Smarch 40'")


def test_whatever_follows_the_counters_is_not_the_article():
    text = (
        "My Title\n\nUpdated: 2026-11-02\n\n2 min read\n\nThe body.\n\n12 views3 comments\n\n"
        "Recent Posts\n\nSee All\n\nbottom of page\n"
    )
    page = textpage.parse("t.txt", text, NOW)
    assert page["body_html"] == "<p>The body.</p>"
    assert (page["views"], page["comments"], page["date"]) == (12, 3, "2026-11-02")


def test_a_date_without_a_year_is_read_as_of_the_day_the_file_was_saved(
    tmp_path: Path, store, fetcher
):
    articles = tmp_path / "articles"
    articles.mkdir()
    saved = dt.datetime(2026, 12, 24, 18, 0, tzinfo=dt.UTC)
    page = articles / "holiday-hours.txt"
    page.write_text(
        "top of page\n\nHoliday Hours\n\nUpdated: Dec 20\n\nWe close at noon on the 24th.\n",
        encoding="utf-8",
    )
    os.utime(page, (saved.timestamp(), saved.timestamp()))
    spec = SourceSpec("folder", "articles", backfill=None)

    first = intake.run_source(
        spec, store, fetcher, dt.datetime(2027, 1, 5, tzinfo=dt.UTC), root=tmp_path
    )
    [article] = store.articles()
    assert first.counts["new"] == 1
    assert article["published"] == article["updated"] == "2026-12-20"

    # A year on, the same file gives the same date: nothing looks edited.
    later = dt.datetime(2027, 12, 25, tzinfo=dt.UTC)
    again = intake.run_source(spec, store, fetcher, later, root=tmp_path)
    assert again.counts == {"new": 0, "updated": 0, "unchanged": 1, "archived": 0}
    assert store.articles()[0]["updated"] == "2026-12-20"


def test_a_text_page_in_a_workspace_folder_shows_its_counters(cli, ws_dir: Path):
    (ws_dir / "articles" / "long-drives.txt").write_text(SAVED_PAGE, encoding="utf-8")
    fetched = cli("fetch").stdout
    assert "articles: 4 new" in fetched
    listed = cli("articles", "list").stdout
    [line] = [line for line in listed.splitlines() if "Long Drives" in line]
    assert "views     9" in line and "comments   0" in line and "new" in line
