"""Email markup for Outlook for Windows and for other languages: buttons, lang and dir."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from clocks import REAL_NOW as NOW
from emails import every_email_of


class _Buttons(HTMLParser):
    """Each link styled as a button (it has a background), with the cell around it."""

    def __init__(self) -> None:
        super().__init__()
        self.cell: dict[str, str] = {}
        self.buttons: list[tuple[dict[str, str], dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "td":
            self.cell = attrs
        elif tag == "a" and "background-color" in attrs.get("style", ""):
            self.buttons.append((self.cell, attrs))


def _html(message) -> str:
    return message.get_body(("html",)).get_content()


def test_buttons_keep_their_padding_in_outlook(ws_dir: Path) -> None:
    found = every_email_of(ws_dir, NOW, preheader=None)
    counted = 0
    for name, message in found.items():
        parser = _Buttons()
        parser.feed(_html(message))
        for cell, _link in parser.buttons:
            # Outlook for Windows ignores padding on <a>: the cell carries it for Outlook.
            assert re.search(r"mso-padding-alt:\s*\d+px \d+px", cell.get("style", "")), name
            assert cell.get("bgcolor"), name
            counted += 1
    assert counted >= 5  # announcements, digest (one per article), confirm


def test_language_and_direction_come_from_the_settings(ws_dir: Path) -> None:
    found = every_email_of(
        ws_dir, NOW, preheader=None, env={"NEWSLETTER_TEMPLATES__LANGUAGE": "ar"}
    )
    for name, message in found.items():
        assert re.search(r'<html lang="ar" dir="rtl"', _html(message)), name


def test_a_bad_language_is_one_clear_line(cli) -> None:
    cli.env["NEWSLETTER_TEMPLATES__LANGUAGE"] = "english please"
    result = cli("config", "check", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "templates.language: 'english please' is not a language tag" in result.stderr


def test_direction_of_languages() -> None:
    from newsletter.render import text_direction

    assert [text_direction(t) for t in ("en", "de-CH", "ar", "he-IL", "fa", "ur", "az-Arab")] == [
        "ltr",
        "ltr",
        "rtl",
        "rtl",
        "rtl",
        "rtl",
        "rtl",
    ]
    assert text_direction("ku-Latn") == "ltr"
