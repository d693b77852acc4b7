"""The HTML part compiled once per campaign plan: byte for byte the full path's, or the full path.

The full path renders, rewrites the tracked links, adds the open pixel and
encodes the part per message (``tracking``, ``mime.html_body``); the compiled
one joins bytes made once with each message's values. Every test builds both
ways and compares the bytes.
"""

from __future__ import annotations

import logging
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
from clocks import NOW
from newsletter import jobs, tracking
from newsletter.compiled_html import CompiledHtml, NotCompilable, compile_html
from newsletter.mail import CampaignMail
from newsletter.mime import UnsafeHeader, html_body
from newsletter.render import TemplateSet, article_context, subscriber_context
from newsletter.transports import FIELDS

# Names a list may hold: quotes, markup, entities, a tag end, an href, a registered
# article URL, right to left, emoji, CJK, a line far over SMTP's limit, empty names.
HOSTILE = [
    *MARKUP,
    ("body@example.org", "</body></html>", "</BODY>"),
    ("href@example.org", 'href="https://clinic.example.com/"', "href='x'"),
    ("url@example.org", ARTICLE_URL, "https://clinic.example.com/"),
    ("spelt@example.org", "href=", "href="),
    *SCRIPTS,
    ("cjk@example.org", "名前", "山田"),
    ("long@example.org", "A" * 2000, "B" * 10),
    *EDGES,
]


PEOPLE = [subscriber_row(n, *row) for n, row in enumerate(HOSTILE, start=1)]


def _full_path(
    document: str, spellings: dict[str, int], click: Callable[[int], str], pixel_url: str | None
) -> tuple[bytes, bytes]:
    """The HTML part as the full path builds it: rewrite, pixel, encode."""
    rewriter = tracking.LinkRewriter({url: n for url, n in spellings.items()})
    document = rewriter.rewrite_html(document, click)
    if pixel_url is not None:
        document = tracking.add_pixel(document, pixel_url)
    return html_body(document)


def _click(n: int) -> Callable[[int], str]:
    return lambda link: f"https://news.example.com/c/s{n}l{link}?x=1&y=2"


# --- Every built-in design, on its own ----------------------------------------------------


def _contexts() -> list[dict[str, Any]]:
    """One campaign's shared context (the same objects for everyone) and each person's."""
    shared = {
        "campaign": {"id": 3, "subject": "Hello", "preheader": "This week"},
        "articles": [
            article_context(
                {
                    "id": 1,
                    "title": 'Tips & <tricks> for "backs"',
                    "url": ARTICLE_URL,
                    "summary": "Sitting less, é and ü.",
                    "body_html": "<p>Stretch é, then <b>rest</b>.</p>",
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
    contexts = []
    for person in PEOPLE:
        n = person["id"]
        contexts.append(
            {
                **shared,
                "subscriber": subscriber_context(person),  # type: ignore[arg-type]
                "links": {
                    "unsubscribe": f"https://news.example.com/u/t{n}",
                    "preferences": f"https://news.example.com/p/t{n}",
                    "view_in_browser": f"https://news.example.com/v/t{n}",
                    "confirm": f"https://news.example.com/confirm/t{n}",
                },
            }
        )
    return contexts


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("tracked", (True, False))
def test_every_built_in_design_compiles_to_the_full_paths_bytes(design: str, tracked: bool) -> None:
    templates = TemplateSet(design)
    assert templates.splice(), templates.splice_reason
    # The article's URL in every spelling the rewriter knows, and one no design holds.
    rewriter = tracking.LinkRewriter({ARTICLE_URL: 1, "https://x.example/": 2})
    spellings = dict(rewriter.html_spellings) if tracked else {}
    compiled_once = None
    compiled_count = 0
    for context in _contexts():
        n = context["subscriber"]["email"]
        rendered, spliced = templates.render_spliced(context)
        assert spliced is not None
        if compiled_once is None:
            compiled_once = compile_html(spliced.pieces, spellings, pixel=tracked)
        click = _click(len(n))
        pixel_url = f"https://news.example.com/o/{len(n)}.gif?a=1&b=2" if tracked else None
        full = _full_path(rendered.html, spellings, click, pixel_url)
        body = compiled_once.body(spliced.values, click, pixel_url or "")
        if body is None:
            # Only a line past SMTP's limit sends a message the full way: quoted-printable.
            assert full[0] == b"quoted-printable"
            assert "A" * 2000 in rendered.html
        else:
            compiled_count += 1
            assert (b"7bit", body) == full
    assert compiled_count >= len(PEOPLE) - 1


# --- A campaign, built both ways --------------------------------------------------------


def _people(mail: CampaignMail) -> list[dict[str, Any]]:
    """The hostile people, and one named after each of the campaign's tracked links."""
    named = [
        subscriber_row(100 + n, f"link{n}@example.org", url, "")
        for n, url in enumerate(sorted(mail.link_ids))
    ]
    return PEOPLE + named


def _compiled_for(mail: CampaignMail, people: list[dict[str, Any]]) -> list[bool]:
    """Whether each person's HTML part comes from the compiled bytes (not the full path)."""
    [(_, form)] = mail._html.forms.values()
    assert isinstance(form, CompiledHtml)
    served = []
    for person in people:
        _, spliced = mail.templates.render_spliced(mail.context(person))
        assert spliced is not None
        served.append(form.body(spliced.values, str, "") is not None)
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
    compiled = messages(mail, people)
    assert compiled == in_full
    assert mail.compile_reason == ""
    # The plan was compiled, its first message proven, and its hrefs of values found.
    [(_, form)] = mail._html.forms.values()
    assert isinstance(form, CompiledHtml) and form.href_slots == 3 and mail._html.proven
    assert all(b"/c/" in message and b"/o/" in message for message in compiled)
    # Every message but the one whose greeting passes SMTP's line limit was compiled.
    served = _compiled_for(mail, people)
    assert [p["email"] for p, s in zip(people, served, strict=True) if not s] == [
        "long@example.org"
    ]
    ws.close()


def test_an_untracked_campaign_compiles_without_links_or_pixel(ws_dir: Path) -> None:
    ws, _, mail = prepared_campaign(ws_dir, tracking_on=False)
    assert not mail.tracked
    in_full = messages(mail, PEOPLE)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert messages(mail, PEOPLE) == in_full
    assert b"/o/" not in in_full[0] and b"/c/" not in in_full[0]
    assert mail._html.proven
    ws.close()


def test_a_test_send_of_a_tracked_campaign_is_compiled_untracked(ws_dir: Path) -> None:
    ws, _, mail = prepared_campaign(ws_dir)
    in_full = messages(mail, PEOPLE, tracked=False)
    tracked_full = messages(mail, PEOPLE)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert messages(mail, PEOPLE, tracked=False) == in_full
    assert messages(mail, PEOPLE) == tracked_full
    assert {tracked for _, tracked in mail._html.proven} == {True, False}
    ws.close()


def test_email_apis_get_the_same_fields_whatever_the_mime_path(ws_dir: Path) -> None:
    """A transport that takes the message as fields gets the HTML as text, as before;
    a send through one compiles nothing."""
    ws, _, mail = prepared_campaign(ws_dir)

    def fields() -> list[Any]:
        sender = "bounces@example.org"
        return [
            mail.envelope(p, f"k{p['id']}", NOW, sender, needs=FIELDS)[1].content for p in PEOPLE
        ]

    before = fields()
    assert mail.templates.splice()
    assert not mail.compile_html(FIELDS)
    assert mail.compile_reason == "the transport takes the message as fields"
    assert fields() == before
    assert mail.compile_html(), mail.compile_reason
    messages(mail, PEOPLE)
    assert mail._html.proven  # the MIME path compiled
    assert fields() == before
    ws.close()


def test_a_line_break_in_a_name_fails_that_message_alone(ws_dir: Path) -> None:
    ws, _, mail = prepared_campaign(ws_dir)
    assert mail.templates.splice() and mail.compile_html()
    broken = subscriber_row(7, "cr@example.org", "Ann\rBob", "")
    with pytest.raises(UnsafeHeader, match="carriage return"):
        mail.envelope(broken, "k7", NOW, "b@example.org")
    assert mail.compile_reason == ""
    assert messages(mail, PEOPLE[:2])  # the next ones go on, compiled
    ws.close()


def test_a_carriage_return_in_a_value_sends_that_message_the_full_way(ws_dir: Path) -> None:
    """A value the headers never see (an attribute) may hold a CR: the full path
    normalises line ends over the whole document, so that message takes it."""
    custom_design(ws_dir, lambda s: s.replace("Hi {{", "From {{ subscriber.city }}\nHi {{"))
    ws, _, mail = prepared_campaign(ws_dir, "custom")
    people = [
        subscriber_row(1, "a@example.org", "Ann", "", city="Cork\r\nKerry"),
        subscriber_row(2, "b@example.org", "Bob", "", city="Cork\r"),
        subscriber_row(3, "c@example.org", "Cy", "", city="\nCork\n"),
        subscriber_row(4, "d@example.org", "Di", "", city="Cork"),
    ]
    in_full = messages(mail, people)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert messages(mail, people) == in_full
    assert _compiled_for(mail, people) == [False, False, True, True]
    ws.close()


def test_a_raw_value_from_a_text_partial_sends_that_message_the_full_way(ws_dir: Path) -> None:
    """A text template included in the HTML one writes its values unescaped: a value
    with a quote, < or > could change the document's structure, so that message
    takes the full path; the others stay compiled."""
    custom_design(
        ws_dir,
        lambda s: s.replace(
            'Hi {{ subscriber.first_name | default("there", true) }}',
            'Hi {% include "_partials/name.txt" %}',
        ),
    )
    (ws_dir / "templates" / "_partials").mkdir()
    (ws_dir / "templates" / "_partials" / "name.txt").write_text(
        "{{ subscriber.first_name }}", encoding="utf-8"
    )
    ws, _, mail = prepared_campaign(ws_dir, "custom")
    # An opened comment makes the full path's part quoted-printable (é inside it).
    people = [*_people(mail), subscriber_row(200, "raw@example.org", "<!-- é", "")]
    in_full = messages(mail, people)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert messages(mail, people) == in_full
    assert b"Hi <b>Bold</b> & <i>co</i>," in in_full[1]  # written raw
    assert b"Content-Transfer-Encoding: quoted-printable\r\n\r\n<!DOCTYPE" in in_full[-1]
    served = dict(zip((p["email"] for p in people), _compiled_for(mail, people), strict=True))
    assert not served["quotes@example.org"] and not served["lt@example.org"]
    assert served["amp@example.org"] and served["accents@example.org"]
    ws.close()


def test_a_name_inside_an_href_is_looked_up_per_message(ws_dir: Path) -> None:
    """The rewriter replaces an href whose whole value is a registered URL, whoever
    spelt it: a name equal to an article's URL is tracked, in both paths alike."""
    custom_design(
        ws_dir,
        lambda s: s.replace(
            "View in browser</a>",
            'View in browser</a> <a href="{{ subscriber.first_name }}">you</a>'
            ' <a href="https://clinic.example.com/{{ subscriber.last_name }}">page</a>',
        ),
    )
    ws, _, mail = prepared_campaign(ws_dir, "custom")
    people = _people(mail)
    in_full = messages(mail, people)
    assert mail.templates.splice() and mail.compile_html(), mail.compile_reason
    assert messages(mail, people) == in_full
    [(_, form)] = mail._html.forms.values()
    assert isinstance(form, CompiledHtml) and form.href_slots == 5
    url = sorted(mail.link_ids)[0]
    named = people.index(next(p for p in people if p["first_name"] == url))
    assert f'<a href="{url}">you</a>'.encode() not in in_full[named]  # it was tracked
    ws.close()


# Partials are not whole documents: not inlined, so they may hold Jinja anywhere.
HEAD = "_partials/head.html"


@pytest.mark.parametrize(
    ("file", "change", "reason"),
    [
        (
            HEAD,
            lambda s: s.replace("@media", ".x{{ subscriber.first_name }} { top: 0 }\n@media", 1),
            "inside <style>, <script> or a comment",
        ),
        (
            "custom/body.html",
            lambda s: s.replace(
                "</body>",
                '<a href="{{ subscriber.first_name }}">x</a><!-- {{ subscriber.email }} --></body>',
            ),
            "inside <style>, <script> or a comment",
        ),
        (HEAD, lambda s: s.replace("@media", "/* Zoë */\n@media", 1), "non-ASCII text inside"),
        (
            "_partials/footer.html",
            lambda s: s.replace("Unsubscribe</a>", "Unsubscribe</a><{{ subscriber.first_name }}>"),
            "part of a tag's name",
        ),
        (
            "custom/body.html",
            lambda s: s.replace("Hi {{", ("x" * 1000) + "Hi {{").replace("<p style", "\n<p style"),
            None,
        ),
    ],
)
def test_a_part_that_cannot_be_proven_keeps_the_full_path(
    ws_dir: Path, file: str, change: Callable[[str], str], reason: str | None
) -> None:
    custom_design(ws_dir, change, file)
    ws, _, mail = prepared_campaign(ws_dir, "custom")
    people = _people(mail)
    in_full = messages(mail, people)
    assert mail.templates.splice(), mail.templates.splice_reason
    if reason is None:
        # A long line with a value on it: only the messages that pass 990 bytes differ.
        assert mail.compile_html(), mail.compile_reason
    else:
        assert not mail.compile_html()
        assert reason in mail.compile_reason
    assert messages(mail, people) == in_full
    ws.close()


def test_a_compiled_part_that_differs_from_the_full_path_is_never_used_again(
    ws_dir: Path,
) -> None:
    """The proof on a plan's first message: a compiled part with any byte wrong is
    caught, that message goes out from the full path, and so do all after it."""
    ws, _, mail = prepared_campaign(ws_dir)
    in_full = messages(mail, PEOPLE)
    assert mail.templates.splice() and mail.compile_html()
    [(_, form)] = mail._html.forms.values()
    assert isinstance(form, CompiledHtml)
    form._head = form._head.replace(b"<html", b"<HTML", 1)
    assert messages(mail, PEOPLE) == in_full
    assert mail.compile_reason == "a compiled HTML part differed from the full path's"
    assert not mail._html.proven
    ws.close()


def test_the_send_says_the_html_is_compiled(ws_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    ws, campaign_id, _ = prepared_campaign(ws_dir)
    with caplog.at_level(logging.INFO, logger="newsletter.delivery.loop"):
        progress = jobs.send_campaign(ws, ws.store, campaign_id, lambda: NOW)
    assert progress.finished and progress.sent
    assert (
        f"campaign {campaign_id}: rendering once and splicing per subscriber, "
        "the HTML part compiled once, the text part compiled once" in caplog.text
    )
    assert "stopped" not in caplog.text
    ws.close()


# --- The rules, on small documents ------------------------------------------------------

SPELLINGS = dict(tracking.LinkRewriter({"https://a.example/x?p=1&q=2": 1}).html_spellings)


@pytest.mark.parametrize(
    "pieces",
    [
        # A quote after a value: the value may spell href= before it.
        ["<p>", 0, '"https://a.example/x?p=1&amp;q=2"</p></body>'],
        ["<p>hr", 0, '"https://a.example/x?p=1&amp;q=2"</p></body>'],
        # An href made of values, whole or in part, quoted either way.
        ['<a href="', 0, "\">x</a><a href='https://a.example/x?p=", 1, "&amp;q=2'>y</a></body>"],
        # Two values side by side, and one at each end of the document.
        ["", 0, "", 1, ' and <a href="https://a.example/x?p=1&amp;q=2">z</a>', 0, ""],
        # Lines that grow past 990 bytes with a value, and a value with line ends.
        ["<p>" + "x" * 980, 0, "</p>\n<p>", 1, "</p>"],
    ],
)
@pytest.mark.parametrize(
    "values",
    [
        ("", ""),
        ("href=", "1"),
        ("https://a.example/x?p=1&amp;q=2", "https://a.example/x?p=1&amp;q=2"),
        ("é" * 5, "\n\nhref=\n"),
        ("x" * 20, "a\r\nb"),
    ],
)
def test_small_documents_compile_to_the_full_paths_bytes_or_say_not(
    pieces: list[Any], values: tuple[str, str]
) -> None:
    filled = {0: values[0], 1: values[1]}
    document = "".join(p if i % 2 == 0 else filled[p] for i, p in enumerate(pieces))
    click = _click(1)
    for spellings, pixel in ((SPELLINGS, "https://n.example/o/1.gif"), ({}, None)):
        full = _full_path(document, spellings, click, pixel)
        body = compile_html(pieces, spellings, pixel is not None).body(filled, click, pixel or "")
        if body is not None:
            assert (b"7bit", body) == full
        else:
            # The message goes the full way: a CR, a long line or an href= spelt by a value.
            assert "\r" in document or full[0] == b"quoted-printable" or "href=" in values[0]


@pytest.mark.parametrize(
    ("pieces", "spellings", "reason"),
    [
        (["<p>", 0, "</p></BODY>"], {}, "not in lower case"),
        (["<style>", 0, "</style>"], {}, "inside <style>"),
        (["<script>x=", 0, "</script>"], {}, "inside <style>"),
        (["<!-- ", 0, " -->"], {}, "a comment"),
        (["<", 0, ">"], {}, "tag's name"),
        (["</sty", 0, "le>"], {}, "tag's name"),
        (["<!-- a -", 0, "->"], {}, "delimiter"),
        (["a\r\nb", 0, ""], {}, "carriage returns"),
        (["\ue000", 0, ""], {}, "private-use"),
        (["<p>", 0, "</p>"], {"https://a.example/it's": 1}, "a quote"),
        (["x" * 991 + "\n", 0, ""], {}, "longer than 990"),
    ],
)
def test_documents_whose_bytes_could_depend_on_a_value_are_not_compiled(
    pieces: list[Any], spellings: dict[str, int], reason: str
) -> None:
    with pytest.raises(NotCompilable, match=reason):
        compile_html(pieces, spellings, pixel=True)
