"""Templates, the sandbox, CSS inlining and the MIME message of one delivery."""

import datetime as dt
import email
import email.policy
import html
import shutil
from html.parser import HTMLParser

import pytest

from newsletter.errors import TemplateError
from newsletter.mime import compose
from newsletter.render import (
    DEFAULTS_DIR,
    PARTS,
    Rendered,
    TemplateSet,
    article_context,
    inline_css,
    message_id,
    subscriber_context,
)
from newsletter.tracking import Signer

SENDER_NAME = "Riverside Physio"
UNSUBSCRIBE = "https://news.clinic.example.com/u/AQMBAgBZRA0lF10UufA7FEg"

ARTICLE = {
    "id": 5,
    "title": "Neck Pain at the Desk",
    "url": "https://clinic.example.com/post/neck-pain",
    "summary": "A few small changes make a big difference.",
    "image": "https://clinic.example.com/images/neck.jpg",
    "image_alt": "A laptop on a stack of books",
    "author": "Dana Whitfield",
    "published": "2026-10-05",
    "tags": ["neck-pain", "posture"],
    "body_html": "<p>Full text.</p>",
}


def context(articles=(ARTICLE,), subscriber=None):
    subscriber = subscriber or {
        "email": "zoe@example.org",
        "first_name": "Zoë",
        "last_name": "Brennan",
        "attributes": {},
    }
    return {
        "campaign": {"id": 3, "subject": "", "preheader": "This week at the clinic"},
        "articles": [article_context(a) for a in articles],
        "subscriber": subscriber_context(subscriber),
        "sender": {"name": SENDER_NAME, "postal_address": "1 River Road, Springfield"},
        "site": {"base_url": "https://news.clinic.example.com"},
        "links": {
            "unsubscribe": UNSUBSCRIBE,
            "preferences": "https://news.clinic.example.com/p/TOKEN",
            "view_in_browser": "https://news.clinic.example.com/v/TOKEN",
        },
    }


def custom_set(tmp_path, **parts):
    """A workspace template set 'custom' made of the defaults with some parts replaced."""
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULTS_DIR / "templates" / "digest", templates / "custom")
    for part, text in parts.items():
        (templates / "custom" / part.replace("_", ".")).write_text(text, encoding="utf-8")
    return templates


class Elements(HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def elements(document):
    parser = Elements()
    parser.feed(document)
    return parser.found


# -- template sets ----------------------------------------------------------------


def test_builtin_set_loads_and_renders():
    templates = TemplateSet("digest")
    assert set(templates.templates) == set(PARTS)

    rendered = templates.render(context())

    assert rendered.subject == ARTICLE["title"]
    assert "Hi Zoë," in rendered.text
    assert ARTICLE["url"] in rendered.text and UNSUBSCRIBE in rendered.text
    assert rendered.text.endswith("\n") and not rendered.text.endswith("\n\n")
    hrefs = [attrs.get("href") for tag, attrs in elements(rendered.html) if tag == "a"]
    assert ARTICLE["url"] in hrefs and UNSUBSCRIBE in hrefs
    assert "1 River Road, Springfield" in rendered.html
    assert "This week at the clinic" in rendered.html


def test_builtin_subject_for_several_articles_and_greeting_fallback():
    second = {**ARTICLE, "id": 6, "title": "Running After a Knee Injury"}
    subscriber = {"email": "anon@example.org", "first_name": None, "last_name": None}
    rendered = TemplateSet("digest").render(context([ARTICLE, second], subscriber))
    assert SENDER_NAME in rendered.subject and "2" in rendered.subject
    assert "Hi there," in rendered.text
    assert ARTICLE["title"] in rendered.text and second["title"] in rendered.text


def test_subject_method_renders_one_line():
    templates = TemplateSet("digest")
    assert templates.subject(context()) == ARTICLE["title"]


def test_workspace_file_overrides_the_builtin_one(tmp_path):
    folder = tmp_path / "templates" / "digest"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text(
        "Override: {{ articles | length }} from {{ sender.name }}", encoding="utf-8"
    )

    rendered = TemplateSet("digest", tmp_path / "templates").render(context())

    assert rendered.subject == f"Override: 1 from {SENDER_NAME}"
    # Parts the workspace does not have still come from the built-in set.
    assert UNSUBSCRIBE in rendered.text
    assert UNSUBSCRIBE in rendered.html


def test_subject_is_always_one_line(tmp_path):
    templates = custom_set(tmp_path, subject_txt="Hello\r\nBcc: victim@example.org\n\n  there  ")
    rendered = TemplateSet("custom", templates).render(context())
    assert rendered.subject == "Hello Bcc: victim@example.org there"


def test_missing_template_set_is_named():
    with pytest.raises(TemplateError) as excinfo:
        TemplateSet("no-such-set")
    assert "no-such-set/subject.txt" in str(excinfo.value)


def test_missing_part_is_named(tmp_path):
    folder = tmp_path / "templates" / "partial"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Subject", encoding="utf-8")
    with pytest.raises(TemplateError) as excinfo:
        TemplateSet("partial", tmp_path / "templates")
    assert "partial/body.html" in str(excinfo.value)


@pytest.mark.parametrize(
    ("part", "broken"),
    [
        ("body_html", "<p>one</p>\n<p>two</p>\n{% if %}\n<p>four</p>\n"),
        ("body_txt", "one\ntwo\n{{ article.title + }}\nfour\n"),
        ("subject_txt", "one\ntwo\n{% for a in articles %}{{ a.title }}{% endfro %}\n"),
    ],
)
def test_syntax_error_names_the_file_and_line(tmp_path, part, broken):
    templates = custom_set(tmp_path, **{part: broken})
    with pytest.raises(TemplateError) as excinfo:
        TemplateSet("custom", templates)
    assert f"custom/{part.replace('_', '.')}:3" in str(excinfo.value)


@pytest.mark.parametrize(
    "expression", ["nope.attribute", "1 / 0", "'text' + 1", "range(10 ** 9) | list"]
)
def test_runtime_error_is_a_template_error(tmp_path, expression):
    templates = custom_set(tmp_path, body_txt=f"one\ntwo\n{{{{ {expression} }}}}\n")
    template_set = TemplateSet("custom", templates)
    with pytest.raises(TemplateError) as excinfo:
        template_set.render(context())
    assert "custom/body.txt" in str(excinfo.value)


@pytest.mark.parametrize("expression", ["nope.attribute", "1 / 0"])
def test_runtime_error_in_the_subject_is_a_template_error(tmp_path, expression):
    templates = custom_set(tmp_path, subject_txt=f"{{{{ {expression} }}}}")
    template_set = TemplateSet("custom", templates)
    with pytest.raises(TemplateError) as excinfo:
        template_set.subject(context())
    assert "custom/subject.txt" in str(excinfo.value)


@pytest.mark.parametrize("line", [1, 3, 7])
def test_runtime_error_names_the_line(tmp_path, line):
    text = "plain line\n" * (line - 1) + "{{ nope.attribute }}\n" + "after\n" * 3
    templates = custom_set(tmp_path, body_txt=text)
    with pytest.raises(TemplateError) as excinfo:
        TemplateSet("custom", templates).render(context())
    assert f"custom/body.txt:{line}:" in str(excinfo.value)


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__",
        "''.__class__.__mro__[1].__subclasses__()",
        "cycler.__init__.__globals__",
        "lipsum.__globals__['os'].getcwd()",
        "articles.append(1)",
        "sender.update({'name': 'Mallory'})",
        "articles[0].tags.clear()",
    ],
)
def test_sandbox_refuses_internals_and_mutation(tmp_path, expression):
    templates = custom_set(tmp_path, subject_txt=f"x {{{{ {expression} }}}}")
    ctx = context()
    with pytest.raises(TemplateError):
        TemplateSet("custom", templates).render(ctx)
    assert ctx["sender"]["name"] == SENDER_NAME
    assert ctx["articles"][0]["tags"] == ARTICLE["tags"]


def test_sandbox_does_not_reveal_python_objects(tmp_path):
    templates = custom_set(tmp_path, subject_txt="[{{ ''.__class__ }}][{{ cycler.__init__ }}]")
    rendered = TemplateSet("custom", templates).render(context())
    assert "class" not in rendered.subject
    assert "function" not in rendered.subject and "method" not in rendered.subject


def test_jinja_globals_work_in_every_template_and_render_after_render(tmp_path):
    # Each template's globals are one flat dict made when the set is loaded (not a
    # ChainMap copied per render): Jinja's own names still work, in a template and
    # in what it includes, and a render leaves nothing behind for the next.
    (tmp_path / "templates" / "_partials").mkdir(parents=True)
    (tmp_path / "templates" / "_partials" / "count.txt").write_text(
        "{% for i in range(3) %}{{ i }}{% endfor %}", encoding="utf-8"
    )
    body = (
        "{% set ns = namespace(n=0) %}{% for a in articles %}{% set ns.n = ns.n + 1 %}"
        '{% endfor %}{{ ns.n }}/{% include "_partials/count.txt" %}/'
        "{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}/{{ subscriber.email }}"
    )
    templates = custom_set(tmp_path, body_txt=body)
    template_set = TemplateSet("custom", templates)
    first = template_set.render(context())
    assert first.text == f"1/012/ab/{context()['subscriber']['email']}\n"
    assert template_set.render(context()) == first


def test_html_is_autoescaped_and_text_is_not():
    hostile = {
        **ARTICLE,
        "title": "<script>alert(1)</script> Tips & Tricks",
        "url": 'https://clinic.example.com/p?a=1&b=2" onmouseover="alert(2)',
    }
    rendered = TemplateSet("digest").render(context([hostile]))

    assert "<script>alert(1)</script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tips &amp; Tricks" in rendered.html
    found = elements(rendered.html)
    assert not any("onmouseover" in attrs for _, attrs in found)
    # The quote in the URL stayed inside the href instead of closing it.
    assert hostile["url"] in [attrs.get("href") for tag, attrs in found if tag == "a"]
    # The text part and subject are plain text: nothing to escape there.
    assert hostile["title"] in rendered.text
    assert rendered.subject == hostile["title"]


# -- contexts ---------------------------------------------------------------------


def test_article_context():
    ctx = article_context(ARTICLE)
    assert ctx["id"] == ARTICLE["id"]
    assert ctx["title"] == ARTICLE["title"]
    assert ctx["url"] == ARTICLE["url"]
    assert ctx["summary"] == ARTICLE["summary"]
    assert ctx["image"] == ARTICLE["image"] and ctx["image_alt"] == ARTICLE["image_alt"]
    assert ctx["author"] == ARTICLE["author"]
    assert ctx["published"] == ARTICLE["published"]
    day = dt.date.fromisoformat(ARTICLE["published"])
    assert ctx["published_display"] == f"{day.day} {day:%B} {day.year}"
    assert ctx["tags"] == ARTICLE["tags"] and ctx["tags"] is not ARTICLE["tags"]


def test_article_context_fills_gaps():
    ctx = article_context({"id": 1, "title": "Bare", "url": None, "published": None})
    assert (ctx["url"], ctx["summary"], ctx["published"], ctx["published_display"]) == (
        "",
        "",
        "",
        "",
    )
    assert ctx["tags"] == [] and ctx["image"] is None and ctx["author"] is None


def test_article_context_display_date_of_a_timestamp():
    ctx = article_context({"id": 1, "title": "T", "published": "2026-03-09T22:15:00+00:00"})
    assert ctx["published_display"].startswith("9 ")
    assert ctx["published_display"].endswith(" 2026")


def test_subscriber_context():
    attributes = {"Plan": "Gold", "email": "spoof@evil.example", "first_name": "Spoof"}
    ctx = subscriber_context(
        {
            "email": "zoe@example.org",
            "first_name": "Zoë",
            "last_name": "Brennan",
            "attributes": attributes,
        }
    )
    assert ctx["email"] == "zoe@example.org"
    assert ctx["first_name"] == "Zoë" and ctx["last_name"] == "Brennan"
    assert ctx["name"] == "Zoë Brennan"
    assert ctx["Plan"] == "Gold"
    assert ctx["attributes"] == attributes and ctx["attributes"] is not attributes


@pytest.mark.parametrize(
    ("first", "last", "name"),
    [("Zoë", None, "Zoë"), (None, "Brennan", "Brennan"), (None, None, ""), ("", "", "")],
)
def test_subscriber_context_name(first, last, name):
    ctx = subscriber_context({"email": "z@example.org", "first_name": first, "last_name": last})
    assert ctx["name"] == name
    assert ctx["attributes"] == {}


# -- message ids, CSS, MIME ---------------------------------------------------------


def test_message_id_is_deterministic():
    first = message_id(7, "delivery-12", "clinic.example.com")
    assert message_id(7, "delivery-12", "clinic.example.com") == first
    assert first.startswith("<") and first.endswith("@clinic.example.com>")
    assert first.count("@") == 1


def test_message_id_differs_across_keys_and_campaigns():
    ids = {
        message_id(7, "12", "clinic.example.com"),
        message_id(7, "13", "clinic.example.com"),
        message_id(8, "12", "clinic.example.com"),
        message_id(7, "12-test", "clinic.example.com"),
    }
    assert len(ids) == 4


def test_inline_css_moves_rules_into_style_attributes_and_keeps_media_queries():
    document = (
        "<html><head><style>"
        "p.note { color: #c00000 } a { text-decoration: none }"
        "@media (max-width: 600px) { p.note { font-size: 20px !important } }"
        "</style></head><body>"
        '<p class="note" style="margin: 0">note</p><p>plain</p>'
        '<a href="https://clinic.example.com/">link</a>'
        "</body></html>"
    )
    result = inline_css(document)

    found = elements(result)
    note = next(attrs for tag, attrs in found if tag == "p" and attrs.get("class") == "note")
    plain = next(attrs for tag, attrs in found if tag == "p" and "class" not in attrs)
    link = next(attrs for tag, attrs in found if tag == "a")
    assert "color: #c00000" in note["style"] and "margin: 0" in note["style"]
    assert "style" not in plain
    assert "text-decoration: none" in link["style"]
    assert "@media (max-width: 600px)" in result
    assert "font-size: 20px !important" in result
    # Inlined rules are not left behind in the head as well.
    head = result.split("<body", 1)[0]
    assert "#c00000" not in head and "text-decoration" not in head


def test_inline_css_of_the_builtin_template_keeps_its_media_queries():
    html = TemplateSet("digest").render(context()).html
    inlined = inline_css(html)
    assert "@media (max-width: 620px)" in inlined
    assert "@media (prefers-color-scheme: dark)" in inlined
    body = next(attrs for tag, attrs in elements(inlined) if tag == "body")
    assert "margin" in body["style"]


def raw_header(data: bytes, name: str) -> str:
    """A header as it travels on the wire, unfolded."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = head.replace("\r\n ", " ").replace("\r\n\t", "\t")
    prefix = name.lower() + ":"
    [line] = [line for line in unfolded.split("\r\n") if line.lower().startswith(prefix)]
    return line[len(prefix) :].strip()


def test_compose_parses_back():
    subject = "Grüße aus München 🎉 — Zoë’s pick of the week"
    rendered = Rendered(
        subject=subject,
        html=inline_css(TemplateSet("digest").render(context()).html),
        text=TemplateSet("digest").render(context()).text,
    )
    when = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
    msg_id = message_id(3, "41", "clinic.example.com")

    data = compose(
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        from_name="Riverside Physio — Ünïcode",
        from_address="news@clinic.example.com",
        to_address="zoe@example.org",
        to_name="Zoë Brennan",
        reply_to="desk@clinic.example.com",
        msg_id=msg_id,
        date=when,
        unsubscribe_url=UNSUBSCRIBE,
        unsubscribe_mailto="unsubscribe@clinic.example.com",
        list_id="Riverside Physio <newsletter.clinic.example.com>",
        feedback_id="c3:newsletter:clinic.example.com",
    )

    data.decode("ascii")
    assert b"\n" not in data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    # On the wire every line ends in CRLF; the parser hands the payload back as it came.
    assert parts[0].get_content().replace("\r\n", "\n") == rendered.text
    # HTML travels as 7-bit ASCII with character references for the rest: the same page.
    html_part = parts[1].get_content().replace("\r\n", "\n")
    assert html.unescape(html_part.rstrip("\n")) == html.unescape(rendered.html.rstrip("\n"))
    [sender] = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Riverside Physio — Ünïcode",
        "news@clinic.example.com",
    )
    [recipient] = msg["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("Zoë Brennan", "zoe@example.org")
    assert msg["Subject"] == subject
    assert msg["Reply-To"].addresses[0].addr_spec == "desk@clinic.example.com"
    assert msg["Date"].datetime == when
    assert msg["Message-ID"] == msg_id
    assert msg["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE}>, <mailto:unsubscribe@clinic.example.com?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "Riverside Physio <newsletter.clinic.example.com>"
    assert msg["Feedback-ID"] == "c3:newsletter:clinic.example.com"


def test_compose_without_unsubscribe_url_has_no_list_unsubscribe():
    data = compose(
        subject="Hi",
        html="<p>Hi</p>",
        text="Hi\n",
        from_name="Clinic",
        from_address="news@clinic.example.com",
        to_address="zoe@example.org",
        msg_id=message_id(1, "1", "clinic.example.com"),
        date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    assert msg["Reply-To"] is None and msg["List-Id"] is None
    assert msg["To"].addresses[0].display_name == ""


@pytest.mark.parametrize(
    "base_url",
    [
        "https://news.clinic.example.com",
        "https://newsletter.northside-physiotherapy-and-sports-clinic.example.com/mail",
    ],
)
@pytest.mark.parametrize("mailto", [None, "unsubscribe@clinic.example.com"])
def test_list_unsubscribe_travels_as_plain_urls(base_url, mailto):
    # Mailbox providers read these URLs straight off the wire; RFC 2047 encoding breaks them.
    token = Signer("a-test-signing-key").make("unsubscribe", 1234, 567890)
    url = f"{base_url}/u/{token}"
    data = compose(
        subject="Hi",
        html="<p>Hi</p>",
        text="Hi\n",
        from_name="Clinic",
        from_address="news@clinic.example.com",
        to_address="zoe@example.org",
        msg_id=message_id(1234, "567890", "clinic.example.com"),
        date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        unsubscribe_url=url,
        unsubscribe_mailto=mailto,
    )
    expected = f"<{url}>"
    if mailto:
        expected += f", <mailto:{mailto}?subject=unsubscribe>"
    assert raw_header(data, "List-Unsubscribe") == expected
    assert raw_header(data, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize(
    ("part", "text"),
    [
        ("body_txt", 'one\ntwo\n{% include "_partials/fotter.txt" %}\n'),
        ("body_html", '<p>one</p>\n<p>two</p>\n{% include "_partials/fotter.html" %}\n'),
        ("subject_txt", 'one\ntwo\n{% include "_partials/fotter.txt" %}'),
    ],
)
def test_a_missing_include_is_named_as_not_found(tmp_path, part, text):
    """A typo in an include: the name that is not found, with file and line, no search paths."""
    templates = custom_set(tmp_path, **{part: text})
    with pytest.raises(TemplateError) as excinfo:
        TemplateSet("custom", templates).render(context())
    message = str(excinfo.value)
    missing = "_partials/fotter.html" if part == "body_html" else "_partials/fotter.txt"
    assert message.startswith(f"template custom/{part.replace('_', '.')}:3: ")
    assert f"the included template {missing!r} is not found" in message
    assert str(tmp_path) not in message and "search path" not in message


def test_a_missing_include_in_the_subject_alone_is_named(tmp_path):
    templates = custom_set(tmp_path, subject_txt='{% include ["a.txt", "b.txt"] %}')
    with pytest.raises(TemplateError, match=r"none of the included templates 'a.txt', 'b.txt'"):
        TemplateSet("custom", templates).subject(context())
