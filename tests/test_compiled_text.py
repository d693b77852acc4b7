"""The text part compiled once per campaign plan: byte for byte the full path's, or the full path.

The full path wraps the spliced text, rewrites its tracked links, wraps it
again and encodes it quoted-printable per message (``render.plain_text``,
``tracking``, ``mime``); the compiled one joins bytes made once with the
lines that hold each message's values and links, worked out by the same
functions. Every test builds both ways and compares the bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from both_ways import (
    ARTICLE_URL,
    DESIGNS,
    EDGES,
    MARKUP,
    SCRIPTS,
    custom_design,
    messages,
    prepared_campaign,
    subscriber_row,
)
from newsletter import tracking
from newsletter.compiled_html import NotCompilable
from newsletter.compiled_text import CompiledText, compile_text
from newsletter.mail import CampaignMail
from newsletter.mime import quoted_printable
from newsletter.render import (
    TemplateSet,
    article_context,
    plain_text,
    subscriber_context,
)
from newsletter.textify import wrap_lines
from newsletter.transports import FIELDS

OTHER_URL = "https://x.example/"
WORDS = "Lorem ipsum dolor sit amet, consectetur adipiscing elit sed do eiusmod"

# Names a list may hold: quotes, markup, entities, registered URLs (whole, after
# http://, inside words), long names with and without spaces, right to left, emoji,
# CJK, = and . where a wrapped line starts, trailing spaces, rules, empty names.
HOSTILE = [
    *MARKUP,
    ("url@example.org", ARTICLE_URL, OTHER_URL),
    ("http@example.org", "http://" + ARTICLE_URL, "x" + OTHER_URL),
    ("dots@example.org", ARTICLE_URL + "...", "(" + OTHER_URL + ")"),
    ("long@example.org", "A" * 200, "B" * 2000),
    ("spaced@example.org", (WORDS + " ") * 3, ARTICLE_URL + " " + WORDS),
    *SCRIPTS,
    ("cjk@example.org", "名前" * 50, "山田"),
    ("dot@example.org", "a " * 36 + ". =41 .", "="),
    ("equals@example.org", "b " * 37 + "=" * 60, "." * 90),
    ("trailing@example.org", "Ann   ", "  "),
    ("rule@example.org", "=" * 100, "-" * 10),
    *EDGES,
]


PEOPLE = [subscriber_row(n, *row) for n, row in enumerate(HOSTILE, start=1)]


def _click(n: int) -> Callable[[int], str]:
    return lambda link: f"https://news.example.com/c/s{n}l{link}" + "x" * n


def _full_path(
    text: str, rewriter: tracking.LinkRewriter | None, click: Callable[[int], str]
) -> bytes:
    """The text part as the full path builds it from the rendered text."""
    if rewriter is not None:
        text = wrap_lines(rewriter.rewrite_text(text, click))
    return quoted_printable(text)


# --- Every built-in design, on its own ----------------------------------------------------


def _links(n: int, person: dict[str, Any]) -> dict[str, str]:
    """Personal links, some of them hostile too: long, blank, spaces at the end, a rule."""
    links = {
        "unsubscribe": f"https://news.example.com/u/t{n}",
        "preferences": f"https://news.example.com/p/t{n}",
        "view_in_browser": f"https://news.example.com/v/t{n}",
        "confirm": f"https://news.example.com/confirm/t{n}",
    }
    strange = ["   ", "", "=" * 90, ARTICLE_URL, "x  ", "https://n.example/" + "v" * 120]
    if n % 3 == 0:
        links["view_in_browser"] = links["preferences"] = strange[n // 3 % len(strange)]
    return links


def _contexts() -> list[dict[str, Any]]:
    """One campaign's shared context (the same objects for everyone) and each person's."""
    shared = {
        "campaign": {"id": 3, "subject": "Hello", "preheader": "This week"},
        "articles": [
            article_context(
                {
                    "id": 1,
                    "title": "A title long enough to need two lines when it is shown in a "
                    "plain-text email part",
                    "url": ARTICLE_URL,
                    "summary": f"Sitting less, é and ü. See {ARTICLE_URL}.",
                    "body_html": f'<p>Stretch é, then <a href="{ARTICLE_URL}">rest</a>.</p>'
                    f'<p><a href="{OTHER_URL}">more</a> and {WORDS} {WORDS}</p>',
                    "image": "https://clinic.example.com/img.png",
                    "published": "2026-01-02",
                }
            )
        ],
        "sender": {"name": "Clinic & Co", "postal_address": "1 River Road", "address": "a@b.c"},
        "site": {"base_url": "https://news.example.com", "language": "en", "direction": "ltr"},
        # The confirmation and welcome emails' own data.
        "lists": ["Backs & Necks"],
        "expires": {"date": "3 January 2026", "days": 7},
        "consent": {"text": "I agree <to> & more", "version": "v1"},
    }
    return [
        {
            **shared,
            "subscriber": subscriber_context(person),  # type: ignore[arg-type]
            "links": _links(person["id"], person),
        }
        for person in PEOPLE
    ]


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("tracked", (True, False))
def test_every_built_in_design_compiles_to_the_full_paths_bytes(design: str, tracked: bool) -> None:
    templates = TemplateSet(design)
    assert templates.splice(), templates.splice_reason
    rewriter = tracking.LinkRewriter({ARTICLE_URL: 1, OTHER_URL: 2}) if tracked else None
    compiled: CompiledText | None = None
    built = 0
    for context in _contexts():
        rendered, spliced = templates.render_spliced(context)
        assert spliced is not None
        if compiled is None:
            compiled = compile_text(spliced.text_pieces, rewriter)
        click = _click(context["subscriber"]["name"].count("a") % 7)
        full = _full_path(rendered.text, rewriter, click)
        body = compiled.body(spliced.values, click)
        assert body == full, context["subscriber"]["email"]
        built += 1
    assert compiled is not None and compiled.personal_runs >= 1
    assert built == len(PEOPLE)


# --- Small texts: every rule, against the full path --------------------------------------

REWRITER = tracking.LinkRewriter({ARTICLE_URL: 1, OTHER_URL: 2})
TITLE = "A title long enough to need two lines when it is shown in a plain-text email part"

TEXTS: list[list[Any]] = [
    # A value at either end, alone or with blanks around it.
    ["", 0, ""],
    ["  \n", 0, " \n\n", 1, "\n "],
    ["Hi ", 0, ",\n\nBye ", 1, ""],
    # An underline after a line with a value, and after a static title around one.
    ["", 0, "\n=====\n\n" + TITLE + "\n-----\n", 1, "\n" + TITLE + "\n===\nend"],
    [TITLE + " ", 0, "\n" + "=" * 10 + "\n" + "-" * 100 + "\ntext"],
    # Registered URLs: after text, at a value's edge, with punctuation, in a list.
    ["Read: " + ARTICLE_URL + "\n", 0, ARTICLE_URL + ".\n[1] " + OTHER_URL + "\n- x", 1, "y"],
    ["", 0, "", 1, ""],
    ["See " + OTHER_URL, 0, " and " + ARTICLE_URL + "\n\n" + WORDS + " " + ARTICLE_URL, 1, ""],
    # Long lines: list items and quotes carried on, a word longer than a line.
    ["- " + WORDS * 2 + " ", 0, "\n> " + WORDS + " ", 1, " " + WORDS + "\n" + "w" * 90],
    ["", 0, " " + ARTICLE_URL, 1, "\n" + "=" * 8],
    ["1. ", 0, "\n" + TITLE + "\n", 1, "\n" + TITLE + " " + ARTICLE_URL + "\n====\n" + TITLE],
    # Lines with links only, wrapped (or wrapped again, tracked) above an underline.
    ["Hi ", 0, "\n\n" + TITLE + " " + ARTICLE_URL + "\n=====\n\n[1] " + OTHER_URL + "\n---\nend"],
    # No value at all, and static lines that start with . or =, or end in spaces.
    [".\n=3D\nend  \n" + TITLE],
]

VALUES = [
    ("", ""),
    ("Ann", "   "),
    (ARTICLE_URL, "http://" + OTHER_URL),
    ("=" * 40, "-" * 100),
    (WORDS + " " + WORDS, ". " + "é" * 80),
    ("\U0001f600 名前 \u05e9\u05dc\u05d5\u05dd", "x" * 300),
    ("a\nb", "c\r\nd"),
]


@pytest.mark.parametrize("pieces", TEXTS)
@pytest.mark.parametrize("values", VALUES)
def test_small_texts_compile_to_the_full_paths_bytes_or_say_not(
    pieces: list[Any], values: tuple[str, str]
) -> None:
    filled = {0: values[0], 1: values[1]}
    spliced = "".join(p if i % 2 == 0 else filled[p] for i, p in enumerate(pieces))
    for rewriter in (REWRITER, tracking.LinkRewriter({}), None):
        click = _click(len(values[0]) % 5)
        full = _full_path(plain_text(spliced), rewriter, click)
        body = compile_text(pieces, rewriter).body(filled, click)
        if body is None:
            # Only a line break in a value, or a blank value where the text's ends are
            # stripped (past its lines), take the full path.
            used = [filled[p] for p in pieces[1::2]]
            assert any("\n" in v or "\r" in v or not v.strip() for v in used)
        else:
            assert body == full


def test_random_texts_compile_to_the_full_paths_bytes() -> None:
    """Lines drawn from the shapes that matter (titles, rules, lists, quotes, links,
    long words, blanks), values anywhere: seeded, so a failure repeats."""
    shapes = [
        "",
        " ",
        "=" * 5,
        "-" * 90,
        TITLE,
        "- " + WORDS + " " + WORDS,
        "> " + WORDS + " " + WORDS,
        "[1] " + ARTICLE_URL,
        "Read more: " + OTHER_URL,
        WORDS + " " + ARTICLE_URL + ", " + WORDS,
        "w" * 85,
        ". =",
    ]
    values = ["", "Ann", "=" * 12, ARTICLE_URL, WORDS + " " + WORDS, "x" * 90, "  ", "é ü"]
    chance = random.Random(17)
    compiled = 0
    for _ in range(400):
        pieces: list[Any] = [""]
        for _ in range(chance.randint(1, 12)):
            if chance.random() < 0.3:
                pieces += [chance.randint(0, 2), ""]
            pieces[-1] += chance.choice(shapes) + chance.choice(["\n", "\n", " ", ""])
        filled = {i: chance.choice(values) for i in range(3)}
        spliced = "".join(p if i % 2 == 0 else filled[p] for i, p in enumerate(pieces))
        rewriter = chance.choice([REWRITER, None])
        click = _click(chance.randint(0, 60))
        body = compile_text(pieces, rewriter).body(filled, click)
        if body is None:
            assert any(not filled[p].strip() for p in pieces[1::2]), pieces
        else:
            assert body == _full_path(plain_text(spliced), rewriter, click), pieces
            compiled += 1
    assert compiled > 300


@pytest.mark.parametrize(
    ("pieces", "rewriter", "reason"),
    [
        (["a\r\nb", 0, ""], None, "carriage returns"),
        (["\ue002", 0, ""], None, "private-use"),
        (["\ue000", 0, ""], None, "private-use"),
        (["a", 0, ""], tracking.LinkRewriter({"https://a.example/\nx": 1}), "line break"),
    ],
)
def test_texts_whose_bytes_could_depend_on_a_value_are_not_compiled(
    pieces: list[Any], rewriter: tracking.LinkRewriter | None, reason: str
) -> None:
    with pytest.raises(NotCompilable, match=reason):
        compile_text(pieces, rewriter)


def test_lines_without_values_or_links_are_encoded_once() -> None:
    """Only the lines with a value or a link, and an underline after one, are worked
    out per message; the rest is bytes made once."""
    pieces = ["Hi ", 0, ",\n=====\n\n" + TITLE + "\n" + "=" * 20 + "\nRead: " + OTHER_URL + "\nBye"]
    compiled = compile_text(pieces, REWRITER)
    assert compiled.personal_runs == 2  # "Hi …,\n=====" and "Read: …"
    assert compile_text(pieces, None).personal_runs == 1
    assert compile_text(["no value, " + OTHER_URL], None).personal_runs == 0


# --- A campaign, built both ways --------------------------------------------------------


def _people(mail: CampaignMail) -> list[dict[str, Any]]:
    """The hostile people (but the one whose name no header takes), and one named
    after each of the campaign's tracked links."""
    named = [
        subscriber_row(100 + n, f"link{n}@example.org", url, "http://" + url)
        for n, url in enumerate(sorted(mail.link_ids))
    ]
    return PEOPLE + named


def _text_compiled_for(mail: CampaignMail, people: list[dict[str, Any]]) -> list[bool]:
    """Whether each person's text part comes from the compiled bytes."""
    [(_, form)] = mail._text.forms.values()
    assert isinstance(form, CompiledText)
    served = []
    for person in people:
        _, spliced = mail.templates.render_spliced(mail.context(person))
        assert spliced is not None
        served.append(form.body(spliced.values, str) is not None)
    return served


@pytest.mark.parametrize("design", ("announcement", "digest"))
def test_a_campaign_sends_the_same_bytes_compiled_as_built_in_full(
    ws_dir: Path, design: str
) -> None:
    ws, _, mail = prepared_campaign(ws_dir, design)
    people = _people(mail)
    assert len(mail.link_ids) >= 2
    in_full = messages(mail, people)
    assert mail.templates.splice(), mail.templates.splice_reason
    assert mail.compile_html(), mail.compile_reason
    assert mail.text_reason == ""
    compiled = messages(mail, people)
    assert compiled == in_full
    assert mail.text_reason == "" and mail._text_compiling and mail._text.proven
    assert all(_text_compiled_for(mail, people))
    [(_, form)] = mail._text.forms.values()
    assert isinstance(form, CompiledText) and form.personal_runs >= 3
    assert form._link_runs >= 1  # the article links: rewritten once, click URLs per message
    ws.close()


def test_the_text_part_compiles_where_the_html_part_does_not(ws_dir: Path) -> None:
    custom_design(
        ws_dir,
        lambda s: s.replace("</body>", "<!-- {{ subscriber.email }} --></body>"),
    )
    ws, _, mail = prepared_campaign(ws_dir, "custom")
    people = _people(mail)
    in_full = messages(mail, people)
    assert mail.templates.splice()
    assert not mail.compile_html()
    assert "comment" in mail.compile_reason and mail.text_reason == ""
    assert messages(mail, people) == in_full
    assert mail._text.proven and not mail._html.proven
    ws.close()


def test_untracked_and_test_sends_compile_the_text_part_untracked(ws_dir: Path) -> None:
    ws, _, mail = prepared_campaign(ws_dir)
    untracked = messages(mail, PEOPLE, tracked=False)
    tracked = messages(mail, PEOPLE)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert messages(mail, PEOPLE, tracked=False) == untracked
    assert messages(mail, PEOPLE) == tracked
    assert {t for _, t in mail._text.proven} == {True, False}
    ws.close()


def test_an_untracked_campaign_compiles_its_text_part(ws_dir: Path) -> None:
    ws, _, mail = prepared_campaign(ws_dir, tracking_on=False)
    in_full = messages(mail, PEOPLE)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert messages(mail, PEOPLE) == in_full
    assert {t for _, t in mail._text.proven} == {False}
    ws.close()


def test_email_apis_compile_no_text_part(ws_dir: Path) -> None:
    ws, _, mail = prepared_campaign(ws_dir)
    assert mail.templates.splice()
    assert not mail.compile_html(FIELDS)
    assert mail.text_reason == "the transport takes the message as fields"
    assert not mail._text_compiling
    ws.close()


def test_a_line_break_in_a_value_sends_that_message_the_full_way(ws_dir: Path) -> None:
    """A value the headers never see (an attribute) may hold line breaks: that message
    takes the full path; the others stay compiled."""
    custom_design(
        ws_dir,
        lambda s: s.replace("Hi {{", "From {{ subscriber.city }}\n=====\nHi {{"),
        "custom/body.txt",
    )
    ws, _, mail = prepared_campaign(ws_dir, "custom")
    people = [
        subscriber_row(1, "a@example.org", "Ann", "", city="Cork\r\nKerry"),
        subscriber_row(2, "b@example.org", "Bob", "", city="Cork\r"),
        subscriber_row(3, "c@example.org", "Cy", "", city="\nCork\n"),
        subscriber_row(4, "d@example.org", "Di", "", city="Cork " * 30),
        subscriber_row(5, "e@example.org", "Ed", "", city="Cork"),
    ]
    in_full = messages(mail, people)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert mail.text_reason == ""
    assert messages(mail, people) == in_full
    assert _text_compiled_for(mail, people) == [False, False, False, True, True]
    ws.close()


def test_a_value_at_the_end_of_the_text_is_stripped_per_message(ws_dir: Path) -> None:
    custom_design(ws_dir, lambda s: s + "\n\n{{ subscriber.city }}  \n", "custom/body.txt")
    ws, _, mail = prepared_campaign(ws_dir, "custom")
    people = [
        subscriber_row(1, "a@example.org", "Ann", "", city="  Cork  "),
        subscriber_row(2, "b@example.org", "Bob", "", city=""),
        subscriber_row(3, "c@example.org", "Cy", "", city="   "),
        subscriber_row(4, "d@example.org", "Di", "", city=ARTICLE_URL),
    ]
    in_full = messages(mail, people)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert messages(mail, people) == in_full
    # A blank value: the full path strips on into the lines before it.
    assert _text_compiled_for(mail, people) == [True, False, False, True]
    ws.close()


def test_a_compiled_text_part_that_differs_from_the_full_path_is_never_used_again(
    ws_dir: Path,
) -> None:
    """The proof on a plan's first message: a compiled part with any byte wrong is
    caught, that message goes out from the full path, and so do all after it."""
    ws, _, mail = prepared_campaign(ws_dir)
    in_full = messages(mail, PEOPLE)
    assert mail.templates.splice() and mail.compile_html()
    [(_, form)] = mail._text.forms.values()
    assert isinstance(form, CompiledText)
    form._layout = [b.replace(b"-", b"=", 1) if isinstance(b, bytes) else b for b in form._layout]
    assert messages(mail, PEOPLE) == in_full
    assert mail.text_reason == "a compiled text part differed from the full path's"
    assert not mail._text.proven and not mail._text_compiling
    assert mail.compile_reason == "" and mail._html.proven  # the HTML part stays compiled
    ws.close()
