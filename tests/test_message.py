"""Whole messages of a campaign: designs, personalisation, tracking, MIME, spam score, goldens."""

from __future__ import annotations

import email
import email.policy
import html
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from clocks import NOW
from emails import every_email
from newsletter import campaigns, jobs
from newsletter.errors import TemplateError
from newsletter.mail import CampaignMail
from newsletter.render import TemplateSet, inline_css
from newsletter.store import Store
from newsletter.workspace import Workspace
from workspaces import workspace_with_articles_and_subscribers

GOLDEN = Path(__file__).parent / "golden"
# An article in the shape of a clinic blog page: headings, a numbered list, a link.
SEED_SHAPED = {
    "key": "seed-shaped",
    "url": "https://clinic.example.com/post/sciatica-and-pt",
    "title": "Can physical therapy help sciatica?",
    "author": "Dana Whitfield, PT, DPT",
    "published": "2026-02-04",
    "summary": "How manual therapy, modalities and exercise ease nerve pain.",
    "body_html": (
        "<p>Sciatica is pain that follows the sciatic nerve from the lower back down the leg.</p>"
        "<h2>Understanding sciatica</h2><p>It usually comes from a nerve that is pressed or "
        'irritated. <a href="https://clinic.example.com/conditions/sciatica">More on causes</a>.'
        "</p><h2>Modalities and dry needling</h2><ol><li>Electrotherapy: stimulation, ultrasound "
        "or laser to calm pain.</li><li>Dry needling: thin needles into tight muscles.</li></ol>"
        '<p>Questions? <a href="mailto:frontdesk@clinic.example.com">Write to us</a>.</p>'
    ),
    "image": None,
    "content_hash": "x",
}


def _ws(ws_dir: Path, **env: str) -> Workspace:
    return Workspace.open(ws_dir, env={"NEWSLETTER_SECRET_KEY": "golden-key", **env})


def _campaign(
    ws: Workspace, articles: str = "new", template: str | None = None, tracking_on: bool = True
) -> int:
    store = ws.store
    workspace_with_articles_and_subscribers(ws, NOW)
    source = store.source_id("folder", "seed", NOW)
    store.save_articles(source, [SEED_SHAPED], NOW)
    return campaigns.create(
        store,
        ws.settings,
        "Fresh from the clinic",
        articles,
        template,
        None,
        NOW,
        tracking_on=tracking_on,
    )


def _mail(ws: Workspace, campaign_id: int) -> CampaignMail:
    mail, transport = jobs.prepare_send(ws, ws.store, campaign_id, NOW)
    transport.close()
    return mail


def _parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def _content(message: email.message.EmailMessage, kind: str) -> str:
    return message.get_body((kind,)).get_content().replace("\r\n", "\n")


def _seed_article_id(store: Store) -> int:
    return next(a["id"] for a in store.articles() if a["key"] == "seed-shaped")


class _Structure(HTMLParser):
    """Tags, their attributes and the text, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        style = attrs.pop("style", None)
        declarations = sorted(d.strip() for d in (style or "").split(";") if d.strip())
        self.items.append((tag, sorted(attrs.items()), declarations))

    def handle_data(self, data):
        if data.strip():
            self.items.append(" ".join(data.split()))


def _body(document: str) -> str:
    return document[document.index("<body") :]


def _structure(document: str) -> list[tuple]:
    parser = _Structure()
    parser.feed(document)
    return parser.items


@pytest.mark.parametrize("design", ["announcement", "digest"])
def test_inlining_once_per_campaign_equals_inlining_each_message(ws_dir: Path, design) -> None:
    """Inlining the template once gives the same markup as inlining every rendered message."""
    ws = _ws(ws_dir)
    _campaign(ws, "new", tracking_on=False)
    articles = str(_seed_article_id(ws.store)) if design == "announcement" else "1,2,3"
    campaign_id = campaigns.create(
        ws.store, ws.settings, "S", articles, design, None, NOW, tracking_on=False
    )
    mail = _mail(ws, campaign_id)
    # The same templates loaded plainly, the CSS inlined after rendering instead.
    raw_env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(mail.templates.env.loader.searchpath),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
    )
    for subscriber in ws.store.subscribers():
        once = mail.render(subscriber).html
        context = mail.context(subscriber)
        each = inline_css(raw_env.get_template(f"{design}/body.html").render(context))
        # Parsed the way a mail client parses it (inline_css adds nothing: only @media
        # rules are left), the body matches; the head differs only in where those sit.
        assert _structure(_body(inline_css(once))) == _structure(_body(each))
        # And the inlining really happened once, in the template: no re-inlining needed.
        assert "border-collapse: collapse" in _body(once)
        assert "@media (max-width: 620px)" in once and "prefers-color-scheme: dark" in once


@pytest.mark.parametrize("design,count", [("announcement", 1), ("digest", 3)])
def test_seed_shaped_article_in_both_designs(ws_dir: Path, design: str, count: int) -> None:
    ws = _ws(ws_dir)
    _campaign(ws)  # loads the articles
    seed_id = _seed_article_id(ws.store)
    others = [a["id"] for a in ws.store.articles() if a["id"] != seed_id][: count - 1]
    ids = ",".join(str(i) for i in [seed_id, *others])
    campaign_id = campaigns.create(ws.store, ws.settings, "S", ids, design, None, NOW)
    mail = _mail(ws, campaign_id)
    subscriber = ws.store.subscribers("confirmed")[0]
    parsed = _parse(mail.message(subscriber, "k", NOW)[1])
    html = _content(parsed, "html")
    text = _content(parsed, "plain")
    assert SEED_SHAPED["title"] in html
    assert "Hi Alice," in text
    if design == "announcement":
        # The whole body, styled inline: headings and the numbered list survive.
        assert re.search(r'<h2 style="[^"]*font-size: ?21px', html)
        assert re.search(r"<ol style=", html) and html.count("<li") >= 2
        assert "Understanding sciatica\n======================" in text
        assert "1. Electrotherapy: stimulation, ultrasound" in text
        assert "2. Dry needling" in text
        # The body's link became a numbered reference, tracked like every other link.
        assert re.search(r"More on\s+causes \[\d\]", text)
        assert "Write to us <frontdesk@clinic.example.com>" in text
    else:
        assert html.count("Read more</a>") == count
        assert SEED_SHAPED["summary"] in text


def test_personalisation_and_defaults(ws_dir: Path) -> None:
    ws = _ws(ws_dir)
    templates = ws_dir / "templates" / "digest"
    templates.mkdir(parents=True)
    for part in ("subject.txt", "body.html"):
        shutil.copy(TemplateSet("digest").templates[part].filename, templates / part)
    (templates / "body.txt").write_text(
        'Dear {{ subscriber.first_name | default("there") }} from {{ subscriber.city }}.\n'
    )
    campaign_id = _campaign(ws, "new", template="digest")
    ws.store.add_subscribers(
        [{"email": "nameless@example.com", "status": "confirmed", "attributes": {"city": "Köln"}}],
        None,
        "test",
        "test",
        NOW,
    )
    mail = _mail(ws, campaign_id)
    nameless = ws.store.subscriber_by_email("nameless@example.com")
    assert mail.render(nameless).text.startswith("Dear there from Köln.")
    alice = ws.store.subscriber_by_email("alice.moreno@example.com")
    assert mail.render(alice).text.startswith("Dear Alice from .")


def test_links_rewritten_except_mailto_and_own_pages(ws_dir: Path) -> None:
    ws = _ws(ws_dir)
    campaign_id = _campaign(ws, str(1))
    store = ws.store
    seed = _seed_article_id(store)
    campaign_id = campaigns.create(store, ws.settings, "S", str(seed), None, None, NOW)
    mail = _mail(ws, campaign_id)
    links = store.links(campaign_id)
    assert SEED_SHAPED["url"] in links
    assert "https://clinic.example.com/conditions/sciatica" in links
    assert not any(url.startswith(ws.settings.site.base_url) for url in links)
    subscriber = store.subscribers("confirmed")[0]
    html = mail.render(subscriber).html
    hrefs = re.findall(r'href="([^"]+)"', html)
    base = ws.settings.site.base_url
    for href in hrefs:
        assert href.startswith((f"{base}/c/", f"{base}/u/", f"{base}/p/", f"{base}/v/", "mailto:"))
    assert "mailto:frontdesk@clinic.example.com" in hrefs
    assert f'href="{mail.urls.unsubscribe(campaign_id, subscriber["id"])}"' in html
    assert html.count(f"{base}/o/") == 1


@pytest.mark.parametrize("where", ["campaign", "global"])
def test_tracking_off_leaves_no_tracking_markup(ws_dir: Path, where: str) -> None:
    env = {"NEWSLETTER_TRACKING__ENABLED": "false"} if where == "global" else {}
    ws = _ws(ws_dir, **env)
    campaign_id = _campaign(ws, "new", tracking_on=False)
    mail = _mail(ws, campaign_id)
    assert ws.store.links(campaign_id) == {}
    data = mail.message(ws.store.subscribers("confirmed")[0], "k", NOW)[1]
    parsed = _parse(data)
    for part in (parsed.get_body(("html",)), parsed.get_body(("plain",))):
        content = part.get_content()
        assert "/c/" not in content and "/o/" not in content
        assert SEED_SHAPED["url"] in content or "clinic.example.com/post/" in content


def test_message_parses_back_into_the_rendered_parts(ws_dir: Path) -> None:
    ws = _ws(ws_dir)
    store = ws.store
    campaign_id = _campaign(ws)
    store.conn.execute(
        "UPDATE campaigns SET subject = ? WHERE id = ?", ["Grüße 🎉 — Zoë’s pick", campaign_id]
    )
    mail = _mail(ws, campaign_id)
    zoe = store.subscriber_by_email("zoe.brennan@example.org")
    rendered = mail.render(zoe)
    msg_id, data = mail.message(zoe, "c1-d2", NOW)
    data.decode("ascii")  # 7-bit clean on the wire
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    parsed = _parse(data)
    assert parsed["Subject"] == "Grüße 🎉 — Zoë’s pick"
    assert parsed["To"].addresses[0].display_name == "Zoë Brennan"
    assert parsed["From"].addresses[0].display_name == ws.settings.sender.from_name
    assert parsed["Message-ID"] == msg_id and msg_id.endswith("@clinic.example.com>")
    assert parsed["Date"].datetime == NOW
    assert parsed["List-Id"] and parsed["Feedback-ID"].startswith(f"c{campaign_id}:")
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == rendered.text
    # The HTML travels as 7-bit ASCII, non-ASCII as character references: the same page.
    received = parts[1].get_content().replace("\r\n", "\n").rstrip("\n")
    assert received.isascii()
    assert html.unescape(received) == html.unescape(rendered.html.rstrip("\n"))


def test_broken_template_cannot_start_sending(ws_dir: Path) -> None:
    ws = _ws(ws_dir)
    campaign_id = _campaign(ws, "new", template="digest")
    broken = ws_dir / "templates" / "digest"
    broken.mkdir(parents=True)
    (broken / "body.txt").write_text("line one\n{{ articles[0].title | nosuchfilter }}\n")
    before = ws.store.campaign(campaign_id)
    with pytest.raises(TemplateError, match=r"digest/body\.txt:2"):
        jobs.prepare_send(ws, ws.store, campaign_id, NOW)
    assert ws.store.campaign(campaign_id) == before
    assert ws.store.delivery_counts(campaign_id)["pending"] == 0


def test_preview_reports_template_errors_with_name_and_line(cli, ws_dir: Path) -> None:
    cli("fetch")
    cli("campaign", "create", "--subject", "x", "--template", "digest")
    broken = ws_dir / "templates" / "digest"
    broken.mkdir(parents=True)
    (broken / "body.txt").write_text("ok\n\n{{ 1 / 0 }}\n")
    result = cli("campaign", "preview", "1", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "template digest/body.txt:3" in result.stderr


def test_test_send_is_marked_and_not_counted(cli, ws_dir: Path) -> None:
    cli("fetch")
    cli("subscribers", "import", "subscribers/example.csv")
    cli("campaign", "create", "--subject", "Hello there")
    cli("campaign", "test", "1", "--to", "boss@example.net")
    [sent] = list((ws_dir / "outbox").glob("*.eml"))
    parsed = _parse(sent.read_bytes())
    assert parsed["Subject"] == "[TEST] Hello there"
    assert parsed["To"].addresses[0].addr_spec == "boss@example.net"
    assert "/o/" not in parsed.get_body(("html",)).get_content()
    stats = cli("stats", "1", "--json").stdout
    assert '"recipients": 0' in stats


def _blank(data: bytes) -> str:
    text = data.decode("ascii")
    boundary = re.search(r'boundary="([^"]+)"', text).group(1)
    text = text.replace(boundary, "BOUNDARY")
    text = re.sub(r"^Message-ID: .*$", "Message-ID: <BLANKED>", text, flags=re.M)
    return re.sub(r"^Date: .*$", "Date: BLANKED", text, flags=re.M)


@pytest.mark.parametrize("design", ["announcement", "digest"])
def test_golden_messages(ws_dir: Path, design: str) -> None:
    """Rendered messages match the reviewed golden files (UPDATE_GOLDEN=1 rewrites them)."""
    ws = _ws(ws_dir)
    _campaign(ws)
    articles = str(_seed_article_id(ws.store)) if design == "announcement" else "1,2,3"
    campaign_id = campaigns.create(
        ws.store, ws.settings, "Fresh from the clinic", articles, design, None, NOW
    )
    mail = _mail(ws, campaign_id)
    zoe = ws.store.subscriber_by_email("zoe.brennan@example.org")
    actual = _blank(mail.message(zoe, "c2-d2", NOW)[1])
    golden = GOLDEN / f"{design}.eml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_bytes(actual.encode("ascii"))
    assert actual == golden.read_bytes().decode("ascii")


# SpamAssassin rules that a mistake in our templates or MIME would fire; none may.
TEMPLATE_MISTAKE_RULES = frozenset(
    {
        # hidden text coloured like its background (the preheader's old near-white filler)
        "HTML_FONT_LOW_CONTRAST",
        # tiny or off-page text, hidden content tricks
        "HTML_FONT_TINY_NORDNS",
        "HTML_OFF_PAGE",
        "HTML_SHORT_CENTER",
        # too little text for the images (a hero image with no words, a lost body)
        *(f"HTML_IMAGE_ONLY_{n:02}" for n in range(4, 36, 4)),
        *(f"HTML_IMAGE_RATIO_0{n}" for n in (2, 4, 6, 8)),
        "HTML_SHORT_LINK_IMG_1",
        "HTML_SHORT_LINK_IMG_2",
        "HTML_SHORT_LINK_IMG_3",
        # broken markup: an unclosed or extra tag, no <html>, made-up tags or attributes
        "HTML_TAG_BALANCE_BODY",
        "HTML_TAG_BALANCE_HEAD",
        "HTML_EXTRA_CLOSE",
        "HTML_MIME_NO_HTML_TAG",
        "HTML_MISSING_CTYPE",
        "HTML_BADATTR",
        *(f"HTML_BADTAG_{r}" for r in ("40_50", "50_60", "60_70", "90_100")),
        *(f"HTML_NONELEMENT_{r}" for r in ("30_40", "40_50", "60_70", "80_90")),
        # entities where letters belong (an escaping mistake)
        *(f"HTML_OBFUSCATE_{r}" for r in ("05_10", "10_20", "20_30", "30_40", "50_60")),
        "HTML_ENTITY_ASCII",
        "HTML_ENTITY_ASCII_TINY",
        "HTML_TITLE_SUBJ_DIFF",
        "HTML_FONT_SIZE_HUGE",
        "HTML_IFRAME_SRC",
        "HTML_EMBEDS",
        # the text part missing, empty or unlike the HTML one
        "MIME_HTML_ONLY",
        "MIME_HTML_ONLY_MULTI",
        "MIME_HTML_MOSTLY",
        "MIME_NO_TEXT",
        "MIME_PHP_NO_TEXT",
        "MPART_ALT_DIFF",
        "MPART_ALT_DIFF_COUNT",
        "EMPTY_MESSAGE",
        # MIME built wrong: long quoted-printable lines, base64 text, a bad header block
        "MIME_QP_LONG_LINE",
        "MIME_BASE64_TEXT",
        "MIME_HEADER_CTYPE_ONLY",
        "MIME_BAD_ISO_CHARSET",
        "MISSING_MIME_HB_SEP",
        "MISSING_HB_SEP",
        "MISSING_HEADERS",
        "MISSING_DATE",
        "MISSING_MID",
        "MISSING_SUBJECT",
        "MISSING_FROM",
    }
)
# HTML_MESSAGE only says there is an HTML part, which every email has (score 0.001).
HARMLESS_RULES = frozenset({"HTML_MESSAGE"})


@pytest.mark.parametrize("preheader", ["", "auto"])
def test_every_email_scores_low_with_spamassassin(ws_dir: Path, preheader: str) -> None:
    """Both designs (one and several articles), confirm and welcome, with and without a
    preheader, score under 1.0 with SpamAssassin's local tests, and fire none of the rules
    a template or MIME mistake would."""
    assert shutil.which("spamassassin"), "spamassassin is not installed; `make test` installs it"
    ws = _ws(ws_dir, NEWSLETTER_TEMPLATES__PREHEADER=preheader)
    found = every_email(ws, NOW, preheader=None)
    shown = re.compile(r'<div style="display:\s*none[^"]*">\S')
    for name, message in found.items():
        html_part = message.get_body(("html",)).get_content()
        if name not in ("confirm", "welcome"):
            assert bool(shown.search(html_part)) == bool(preheader), name
        # -L: local tests only, no network lookups.
        report = subprocess.run(
            ["spamassassin", "-L", "-t"], input=message.as_bytes(), capture_output=True, timeout=120
        ).stdout.decode(errors="replace")
        score = float(re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report).group(1))
        assert score < 1.0, (name, report[report.find("Content analysis") :])
        # With -L and no Received headers most scores are about 0, so the score alone
        # would let a template mistake through: the rules such a mistake fires must not.
        hit = _rules_hit(report)
        assert not hit & TEMPLATE_MISTAKE_RULES, (name, sorted(hit & TEMPLATE_MISTAKE_RULES))
        # Any other HTML, MIME or multipart rule is a mistake too, named or not.
        stray = {
            r for r in hit if r.startswith(("HTML_", "MIME_", "MPART_")) and r not in HARMLESS_RULES
        }
        assert not stray, (name, sorted(stray))


def _rules_hit(report: str) -> set[str]:
    """The names of the rules that fired, from the X-Spam-Status header (folded lines)."""
    status = re.search(r"X-Spam-Status: .*?tests=(.*?)\s+autolearn=", report, re.S)
    assert status, report[:2000]
    return {rule for rule in re.split(r"[,\s]+", status.group(1)) if rule and rule != "none"}


def _custom_digest(ws_dir: Path, body_html: str) -> None:
    folder = ws_dir / "templates" / "digest"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "body.html").write_text(body_html)


def test_jinja_the_css_inliner_would_drop_is_refused(ws_dir: Path) -> None:
    _custom_digest(
        ws_dir,
        "<!DOCTYPE html><html><head><style>{% if dark %}.x { color: red }{% endif %}"
        ".y { color: blue }</style></head><body><p class='y'>{{ campaign.subject }}</p>"
        "</body></html>",
    )
    with pytest.raises(TemplateError, match=r"digest/body\.html: the CSS inliner cannot keep"):
        TemplateSet("digest", ws_dir / "templates")


def test_errors_in_an_inlined_template_name_the_line_as_written(ws_dir: Path) -> None:
    _custom_digest(
        ws_dir,
        "<!DOCTYPE html>\n<html>\n<head>\n<style>\np { color: red }\n</style>\n</head>\n"
        "<body>\n<p>one</p>\n<p>two</p>\n<p>{{ 1 / 0 }}</p>\n</body>\n</html>\n",
    )
    templates = TemplateSet("digest", ws_dir / "templates")
    assert (
        'style="color: red' in templates.env.loader.get_source(templates.env, "digest/body.html")[0]
    )
    with pytest.raises(TemplateError, match=r"digest/body\.html:11:"):
        templates.render(
            {"campaign": {}, "articles": [], "subscriber": {}, "sender": {}, "links": {}}
        )


@pytest.mark.parametrize("design", ["announcement", "digest"])
def test_the_preheader_is_hidden_at_the_top_of_both_designs(ws_dir: Path, design: str) -> None:
    ws = _ws(ws_dir)
    _campaign(ws)
    articles = str(_seed_article_id(ws.store)) if design == "announcement" else "1,2,3"
    campaign_id = campaigns.create(
        ws.store, ws.settings, "S", articles, design, None, NOW, preheader="Five minutes <daily>"
    )
    html = _mail(ws, campaign_id).render(ws.store.subscribers("confirmed")[0]).html
    body = _body(html)
    hidden = re.search(r'<div style="display:\s*none[^"]*">([^<]*)', body)
    assert hidden and hidden.group(1).startswith("Five minutes &lt;daily&gt;")
    assert body.index(hidden.group(0)) < body.index("View in browser")


@pytest.mark.parametrize(
    ("document", "encoding"),
    [
        ("<p>Zoë’s pick</p>\n", "7bit"),  # references are fine in text
        ("<style>/* Zoë */ p { color: #333 }</style><p>Zoë</p>\n", "quoted-printable"),
        ("<!-- Zoë --><p>Zoë</p>\n", "quoted-printable"),
        ("<p>" + "x" * 1200 + "</p>\n", "quoted-printable"),  # too long for a 7bit line
    ],
)
def test_html_goes_7bit_unless_references_would_change_it(document: str, encoding: str) -> None:
    from newsletter.mime import compose

    data = compose(
        subject="s",
        text="t",
        html=document,
        from_name="Clinic",
        from_address="news@clinic.example.com",
        to_address="zoe@example.org",
        msg_id="<1@clinic.example.com>",
        date=NOW,
    )
    html_part = list(_parse(data).iter_parts())[1]
    assert html_part["Content-Transfer-Encoding"] == encoding
    # Either way the reader gets the same page back.
    assert html.unescape(html_part.get_content().replace("\r\n", "\n")) == document
