"""The plain-text part of every email: lines of at most 78 characters, nothing cut."""

from __future__ import annotations

from pathlib import Path

from clocks import REAL_NOW as NOW
from emails import every_email_of
from newsletter.textify import wrap_lines


def test_every_line_of_every_email_fits(ws_dir: Path) -> None:
    found = every_email_of(ws_dir, NOW, preheader=None)
    assert len(found) == 5
    for name, message in found.items():
        text = message.get_body(("plain",)).get_content()
        lines = text.replace("\r\n", "\n").split("\n")
        too_long = [line for line in lines if len(line) > 78]
        assert too_long == [], name
        # Wrapping moved words, it did not lose any: the footer's sentence is whole.
        assert "You are receiving this email" in text or name in ("confirm", "welcome")


def test_wrapping_keeps_lists_quotes_urls_and_underlines() -> None:
    url = "https://clinic.example.com/" + "a" * 80
    text = "\n".join(
        [
            "A title long enough to need two lines when it is shown in a plain-text email part",
            "=" * 82,
            "2. Dry needling: thin needles into tight muscles, which relaxes them in a few "
            "minutes.",
            "> A quote that runs on for quite a while so that it must wrap onto a second line.",
            f"Read more: {url}",
            "short line",
        ]
    )
    assert wrap_lines(text).split("\n") == [
        "A title long enough to need two lines when it is shown in a plain-text email",
        "part",
        "=" * 76,
        "2. Dry needling: thin needles into tight muscles, which relaxes them in a few",
        "   minutes.",
        "> A quote that runs on for quite a while so that it must wrap onto a second",
        "> line.",
        "Read more:",
        url,  # a URL is never cut; it stands alone
        "short line",
    ]
