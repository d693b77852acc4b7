"""Compile once, splice per subscriber: byte for byte the full render, or the full render."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from clocks import NOW
from newsletter import campaigns, composer, jobs
from newsletter.render import DEFAULTS_DIR, TemplateSet, article_context, subscriber_context
from newsletter.workspace import Workspace
from workspaces import workspace_with_articles_and_subscribers

DESIGNS = ("announcement", "digest", "confirm", "welcome")

# Names and addresses a list may hold: markup, quotes, entities, scripts, right to
# left, emoji, combining marks, private-use characters and a forged splice marker,
# empty and very long names (the greeting falls back to "there" without one).
HOSTILE = [
    ("zoe@example.org", "Zoë", "Brennan"),
    ("ann@example.org", "", ""),
    ("x@example.org", "<script>alert(1)</script>", 'O\'Brien & "Sons"'),
    ("amp@example.org", "&amp; &lt;b&gt;", "{{ subscriber.email }}"),
    ("rtl@example.org", "\u05e9\u05dc\u05d5\u05dd", "\u202eevil"),
    ("emoji@example.org", "\U0001f600\u0301", "Z\u0336a\u0336"),
    ("pua@example.org", "\ue000deadbeefdeadbeef:0\ue001", "\ue001\ue000"),
    ("long@example.org", "A" * 2000, "B " * 500),
    ("我@例え.jp", "名前", ""),
    ("dots@example.org", ".", ".\n.\r\n."),
]


def _subscriber(email: str, first: str, last: str, n: int) -> dict:
    return {
        "id": n,
        "email": email,
        "first_name": first,
        "last_name": last,
        "attributes": {"city": first},
    }


def _contexts(count: int = len(HOSTILE)):
    """One campaign's shared context and, per hostile subscriber, their own parts."""
    articles = [
        article_context(
            {
                "id": 1,
                "title": 'Tips & <tricks> \ue000 for "backs"',
                "url": "https://clinic.example.com/p?a=1&b=2",
                "summary": "Sitting less. {{ links.unsubscribe }} \ue000x:1\ue001",
                "body_html": "<p>Stretch é, then <b>rest</b>.</p>",
                "published": "2026-01-02",
                "tags": ["backs"],
            }
        )
    ]
    shared = {
        "campaign": {"id": 3, "subject": "Hello", "preheader": "This week"},
        "articles": articles,
        "sender": {"name": "Clinic & Co", "postal_address": "1 River Road", "address": "a@b.c"},
        "site": {"base_url": "https://news.example.com", "language": "en", "direction": "ltr"},
        # The confirmation and welcome emails' own data.
        "lists": ["Backs & Necks"],
        "expires": {"date": "3 January 2026", "days": 7},
        "consent": {"text": "I agree <to> & more", "version": "v1"},
    }
    for n, (email, first, last) in enumerate(HOSTILE[:count], start=1):
        token = f"t{n}&q=\"'<>"
        yield {
            **shared,
            "subscriber": subscriber_context(_subscriber(email, first, last, n)),
            "links": {
                "unsubscribe": f"https://news.example.com/u/{token}",
                "preferences": f"https://news.example.com/p/{token}",
                "view_in_browser": f"https://news.example.com/v/{token}",
                "confirm": f"https://news.example.com/confirm/{token}",
            },
        }


@pytest.mark.parametrize("design", DESIGNS)
def test_every_built_in_design_splices_byte_for_byte(design: str) -> None:
    full, spliced = TemplateSet(design), TemplateSet(design)
    assert spliced.splice(), spliced.splice_reason
    shared = next(_contexts(1))
    for context in _contexts():
        # The campaign's part is the very same objects for every subscriber, as a send
        # passes them: one compiled form serves them all.
        context.update({k: shared[k] for k in ("campaign", "articles", "sender", "site")})
        assert spliced.render(context) == full.render(context)
    assert spliced.splice_reason == ""  # still splicing: no message differed
    assert spliced._splicer is not None and len(spliced._splicer._plans) == 1


def test_a_spliced_message_that_differs_from_the_full_render_ends_splicing() -> None:
    """The proof on a campaign's first message: a splice that gets any value wrong is
    caught, the full render is sent, and the set never splices again."""
    full, spliced = TemplateSet("digest"), TemplateSet("digest")
    assert spliced.splice()
    assert spliced._splicer is not None
    spliced._splicer.env.slots[0] = lambda context: "a wrong value"
    context = next(_contexts(1))
    assert spliced.render(context) == full.render(context)
    assert spliced._splicer is None
    assert spliced.splice_reason == "a spliced message differed from the full render"
    second = next(_contexts(2))
    assert spliced.render(second) == full.render(second)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{% if subscriber.first_name %}Hi{% endif %}", "decides what the template does"),
        ("{{ subscriber.first_name | upper }}", "the filter 'upper'"),
        ("{{ subscriber.first_name ~ '!' }}", "used in an expression"),
        ("{% filter upper %}{{ subscriber.email }}{% endfilter %}", "inside a FilterBlock"),
        ("{% set x %}{{ links.unsubscribe }}{% endset %}{{ x }}", "inside a AssignBlock"),
        ("{% for c in subscriber.email %}{{ c }}{% endfor %}", "decides what the template does"),
        ('{% include "part-" ~ site.language ~ ".txt" %}', "whose name varies"),
        ('{% include "_partials/who.txt" %}', "decides what the template does"),
        ('{% filter trim %}{% include "_partials/name.txt" %}{% endfilter %}', "holds an include"),
        ('{% import "macros.txt" as links %}{{ links.unsubscribe }}', "an import takes"),
        ('{% from "macros.txt" import unsubscribe as links %}{{ links() }}', "an import takes"),
    ],
)
def test_a_set_that_uses_personal_data_otherwise_renders_in_full(
    tmp_path: Path, body: str, reason: str
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULTS_DIR / "templates" / "digest", templates / "custom")
    (templates / "_partials").mkdir()
    (templates / "_partials" / "who.txt").write_text(
        "{% if subscriber.email %}{{ subscriber.email }}{% endif %}", encoding="utf-8"
    )
    (templates / "part-en.txt").write_text("en", encoding="utf-8")
    (templates / "_partials" / "name.txt").write_text(
        "{{ subscriber.first_name }}", encoding="utf-8"
    )
    (templates / "macros.txt").write_text(
        "{% macro unsubscribe() %}no{% endmacro %}", encoding="utf-8"
    )
    (templates / "custom" / "body.txt").write_text(body, encoding="utf-8")
    template_set = TemplateSet("custom", templates)
    assert not template_set.splice()
    assert reason in template_set.splice_reason


def test_a_custom_set_with_personal_values_in_its_own_partials_splices(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULTS_DIR / "templates" / "digest", templates / "custom")
    (templates / "_partials").mkdir()
    (templates / "_partials" / "hello.txt").write_text(
        'Dear {{ subscriber.first_name | default("reader", true) }} '
        "{{ subscriber.last_name | d('') }} ({{ subscriber.missing }})\n"
        "{% for a in articles %}{{ a.title }}: {{ links.view_in_browser }}\n{% endfor %}",
        encoding="utf-8",
    )
    (templates / "custom" / "body.txt").write_text(
        '{% include "_partials/hello.txt" %}\n{{ subscriber.email }}', encoding="utf-8"
    )
    spliced, full = TemplateSet("custom", templates), TemplateSet("custom", templates)
    assert spliced.splice(), spliced.splice_reason
    shared = next(_contexts(1))
    for context in _contexts():
        context.update({k: shared[k] for k in ("campaign", "articles", "sender", "site")})
        assert spliced.render(context) == full.render(context)
    assert spliced.splice_reason == ""


def test_a_campaign_sends_the_same_bytes_spliced_as_rendered_in_full(
    ws_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = Workspace.open(ws_dir, env={"NEWSLETTER_SECRET_KEY": "splice-key"})
    workspace_with_articles_and_subscribers(ws, NOW)
    campaign_id = campaigns.create(ws.store, ws.settings, "Fresh", "new", None, None, NOW)
    mail, transport = jobs.prepare_send(ws, ws.store, campaign_id, NOW)
    transport.close()
    people = [_subscriber(e, f, last, n) for n, (e, f, last) in enumerate(HOSTILE, start=1)]
    people = [p for p in people if "\n" not in p["last_name"]]  # a header refuses those

    def messages() -> list[bytes]:
        sender = ws.settings.sender.from_address
        return [mail.envelope(p, f"k{p['id']}", NOW, sender)[1].data for p in people]

    in_full = messages()
    assert mail.templates.splice(), mail.templates.splice_reason
    assert messages() == in_full
    assert mail.templates.splice_reason == ""
    # And the send says which way it rendered.
    with caplog.at_level(logging.INFO, logger="newsletter.delivery.loop"):
        progress = jobs.send_campaign(ws, ws.store, campaign_id, lambda: NOW)
    assert progress.finished
    assert f"campaign {campaign_id}: rendering once and splicing per subscriber" in caplog.text
    assert "splicing stopped" not in caplog.text
    ws.close()


# A campaign's own Markdown, as hostile as its subscribers: markup, a forged marker,
# Jinja that must stay text, a script and a javascript: link that the sanitiser drops.
OWN_WORDS = (
    "# Closed \ue000deadbeefdeadbeef:0\ue001 over the holidays\n\n"
    "Dear {{ subscriber.email }}, we are **closed** <script>alert(1)</script> "
    '<a href="javascript:alert(1)">until</a> the 2nd & [back](https://clinic.example.com/).'
)


@pytest.mark.parametrize("design", ("announcement", "digest"))
@pytest.mark.parametrize("words", ("intro", "body"))
def test_a_campaign_with_its_own_words_splices_byte_for_byte(design: str, words: str) -> None:
    """An intro above the articles, or the body of a campaign without them: the same
    for every subscriber, so one compiled form still serves them all."""
    full, spliced = TemplateSet(design), TemplateSet(design)
    assert spliced.splice(), spliced.splice_reason
    shared = next(_contexts(1))
    own = composer.content(OWN_WORDS, "https://news.example.com")
    campaign = {**shared["campaign"], f"{words}_html": own.html, f"{words}_text": own.text}
    for other in {"intro", "body"} - {words}:
        campaign.update({f"{other}_html": "", f"{other}_text": ""})
    articles = shared["articles"] if words == "intro" else []
    for context in _contexts():
        context.update(campaign=campaign, articles=articles)
        context.update({k: shared[k] for k in ("sender", "site")})
        out = spliced.render(context)
        assert out == full.render(context)
        assert "we are closed" in out.text
        assert "<strong>closed</strong>" in out.html
        assert "<script" not in out.html and "javascript:" not in out.html
    assert spliced.splice_reason == ""
    assert spliced._splicer is not None and len(spliced._splicer._plans) == 1


def test_a_campaign_without_articles_sends_the_same_bytes_spliced_as_in_full(
    ws_dir: Path,
) -> None:
    ws = Workspace.open(ws_dir, env={"NEWSLETTER_SECRET_KEY": "splice-key"})
    workspace_with_articles_and_subscribers(ws, NOW)
    new = campaigns.NewCampaign(subject="Closed", articles="none", body=OWN_WORDS)
    created = campaigns.create_draft(ws.store, ws.settings, ws.templates, new, NOW)
    mail, transport = jobs.prepare_send(ws, ws.store, created.campaign_id, NOW)
    transport.close()
    people = [_subscriber(e, f, last, n) for n, (e, f, last) in enumerate(HOSTILE, start=1)]
    people = [p for p in people if "\n" not in p["last_name"]]

    def messages() -> list[bytes]:
        sender = ws.settings.sender.from_address
        return [mail.envelope(p, f"k{p['id']}", NOW, sender)[1].data for p in people]

    in_full = messages()
    assert mail.templates.splice(), mail.templates.splice_reason
    assert messages() == in_full
    assert mail.templates.splice_reason == ""
    ws.close()
