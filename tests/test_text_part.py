"""The plain-text part of every email: lines of at most 78 characters, nothing cut."""

from __future__ import annotations

from pathlib import Path

from clocks import REAL_NOW as NOW
from emails import every_email_of
from newsletter.textify import _wrap_line, wrap_lines


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


def test_a_line_wrapped_before_wraps_the_same_in_another_text() -> None:
    # Long lines are wrapped once and remembered (a campaign's paragraphs repeat in
    # every message); what comes around them must still decide the rest.
    title = "A title long enough to need two lines when it is shown in a plain-text email part"
    under_title = wrap_lines(f"{title}\n{'=' * 82}")
    assert under_title.splitlines()[-1] == "=" * max(map(len, under_title.splitlines()[:-1]))
    alone = wrap_lines(f"{'=' * 82}\n{title}")
    # Here the rule comes first (nothing wrapped above it): cut to the width only.
    assert alone.splitlines()[0] == "=" * 78
    assert alone.splitlines()[1:] == under_title.splitlines()[:-1]
    again = wrap_lines(f"{title}\n{'=' * 82}")
    assert again == under_title
    # The cached lines are a tuple: nothing a caller does to them reaches the next text.
    assert isinstance(_wrap_line(title, 78), tuple)
