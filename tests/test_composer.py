"""Staff write campaigns of their own words: an intro above the articles, a one-off message
without articles, images by address or uploaded, from the command line and the dashboard.

The email is read as the reader gets it (the outbox's .eml files, the SMTP sink's
messages); uploads go through the live server, checked by their bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import re
import struct
import zlib
from pathlib import Path

import pytest
import requests

from conftest import Cli, database_before, dump, one_line_error, signed_in
from newsletter import campaigns, jobs, uploads
from newsletter.errors import InputError
from newsletter.workspace import Workspace

CLOSED = (
    "# Closed over the holidays\n\n"
    "The clinic is **closed** from 24 December to 2 January.\n\n"
    "- Emergencies: call 555-0100\n"
    "- Book online any time: [our booking page](https://clinic.example.com/book)\n"
)
HOSTILE = (
    "Hello <script>alert('x')</script> there.\n\n"
    "[a trap](javascript:alert(1)) and "
    '<a href="javascript:alert(2)">another</a> and '
    '<a href=" JaVa\tScRiPt:alert(3)">a third</a>.\n\n'
    '<img src="https://clinic.example.com/a.png" onerror="alert(4)" alt="a">\n\n'
    '<p onclick="alert(5)" style="position:fixed">Styled</p>\n\n'
    "<iframe src='https://evil.example.com/'></iframe><form action='https://evil.example.com/'>"
    "<input name=q></form>{{ subscriber.email }}"
)


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG image: grey pixels, every chunk with its CRC."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg(*segments: bytes) -> bytes:
    """A JPEG as its segments build it: SOI, JFIF, the given ones, a scan, EOI."""

    def segment(marker: int, data: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data

    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
        + b"".join(segments)
        + segment(0xDB, b"\0" + bytes(range(64)))
        + segment(0xDA, b"\x01\x01\0\0\x3f\0")
        + b"\x12\x34\xff\x00\x56"  # the scan's data, with a stuffed 0xFF
        + b"\xff\xd9"
    )


def exif_gps() -> bytes:
    """An APP1 Exif segment holding a GPS position, as a phone's camera writes one."""
    payload = b"Exif\0\0MM\0*\0\0\0\x08GPSLatitude=52.5200N;GPSLongitude=13.4050E"
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


# The smallest real GIF: 1x1, a two-colour global table, one image, the trailer.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
# A 1x1 lossless WebP as encoders write it: RIFF, WEBP, one VP8L chunk (padded to even).
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    b'22-rdf-syntax-ns#"><rdf:Description exif:GPSLatitude="52,31.2N"/></rdf:RDF>'
    b'</x:xmpmeta><?xpacket end="w"?>'
)


def gif_blocks(data: bytes) -> bytes:
    """``data`` as GIF sub-blocks (at most 255 bytes each) and their terminator."""
    return (
        b"".join(
            bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255)
        )
        + b"\0"
    )


def webp_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)


def webp_extended(flags: int, *extra: bytes) -> bytes:
    """The 1x1 WebP in the extended format: VP8X (with ``flags``), its image, ``extra``."""
    vp8x = webp_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + b"\0\0\0" + b"\0\0\0")
    body = b"WEBP" + vp8x + WEBP[12:] + b"".join(extra)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def outbox_messages(ws_dir: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted((ws_dir / "outbox").glob("*.eml"))
    ]


def parts(message: email.message.EmailMessage) -> tuple[str, str]:
    """(HTML, text) of a message as its reader's mail program shows them."""
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


def _ready(cli: Cli) -> None:
    cli("fetch")
    cli("subscribers", "import", "subscribers/example.csv")


# -- the command line ----------------------------------------------------------------------


def test_a_one_off_campaign_without_articles_is_written_and_sent_from_the_cli(
    cli: Cli, ws_dir: Path
) -> None:
    _ready(cli)
    (ws_dir / "closed.md").write_text(CLOSED, encoding="utf-8")
    campaign_id = cli(
        "campaign", "create", "--subject", "Closed over the holidays", "--body-file", "closed.md"
    ).stdout.strip()
    assert campaign_id.isdigit()
    cli("campaign", "send", campaign_id)

    sent = outbox_messages(ws_dir)
    assert sent
    html, text = parts(sent[0])
    assert "<strong>closed</strong> from 24 December to 2 January" in html
    assert "Emergencies: call 555-0100" in html
    assert "closed from 24 December to 2 January" in text
    assert "Emergencies: call 555-0100" in text
    # The link is kept (tracked, as every link of a tracked campaign) and no article came with it.
    assert "our booking page" in html
    assert "Read more" not in html and "Read it" not in text
    # The inbox preview is the message's opening words.
    assert "Closed over the holidays The clinic is closed" in html
    # A campaign without articles uses none up: all three stay new.
    ws = Workspace.open(ws_dir, env={})
    try:
        assert len(ws.store.articles(only_new=True)) == len(ws.store.articles()) == 3
    finally:
        ws.close()


def test_an_intro_file_stands_above_the_articles_in_html_and_text(cli: Cli, ws_dir: Path) -> None:
    _ready(cli)
    (ws_dir / "intro.md").write_text(
        "A word from the team: **winter hours** start Monday.", encoding="utf-8"
    )
    campaign_id = cli("campaign", "create", "--subject", "News").stdout.strip()
    cli("campaign", "edit", campaign_id, "--intro-file", "intro.md")
    cli("campaign", "send", campaign_id)

    html, text = parts(outbox_messages(ws_dir)[0])
    ws = Workspace.open(ws_dir, env={})
    try:
        first = ws.store.articles_by_id(ws.store.campaign(int(campaign_id))["article_ids"])[0]
    finally:
        ws.close()
    assert "<strong>winter hours</strong>" in html
    # Below the hidden preview text (which lists the titles): the email as it is seen.
    seen = html[html.index("View in browser") :]
    assert seen.index("winter hours") < seen.index(first["title"])
    assert text.index("A word from the team: winter hours start Monday.") < text.index(
        first["title"]
    )


def test_a_file_that_cannot_be_read_is_named_and_nothing_is_stored(cli: Cli, ws_dir: Path) -> None:
    _ready(cli)
    db = ws_dir / "newsletter.db"
    before = dump(db)
    (ws_dir / "latin1.md").write_bytes("Caf\xe9 closed".encode("latin-1"))
    (ws_dir / "folder.md").mkdir()

    missing = cli("campaign", "create", "--subject", "X", "--body-file", "nope.md", check=False)
    one_line_error(missing, "--body-file", "nope.md", exit_code=1)
    not_utf8 = cli("campaign", "create", "--subject", "X", "--intro-file", "latin1.md", check=False)
    one_line_error(not_utf8, "--intro-file", "latin1.md", "UTF-8", exit_code=1)
    a_folder = cli("campaign", "create", "--subject", "X", "--body-file", "folder.md", check=False)
    one_line_error(a_folder, "--body-file", "folder.md", exit_code=1)
    assert dump(db) == before

    campaign_id = cli("campaign", "create", "--subject", "Kept").stdout.strip()
    kept = dump(db)
    edit = cli("campaign", "edit", campaign_id, "--intro-file", "latin1.md", check=False)
    one_line_error(edit, "--intro-file", "latin1.md", exit_code=1)
    assert dump(db) == kept


def test_a_campaign_needs_articles_or_a_body_and_a_body_goes_without_articles(
    cli: Cli, ws_dir: Path
) -> None:
    _ready(cli)
    db = ws_dir / "newsletter.db"
    before = dump(db)
    nothing = cli("campaign", "create", "--subject", "X", "--articles", "none", check=False)
    one_line_error(nothing, "names no article", "--body-file", exit_code=1)
    (ws_dir / "closed.md").write_text(CLOSED, encoding="utf-8")
    both = cli(
        "campaign",
        "create",
        "--subject",
        "X",
        "--articles",
        "new",
        "--body-file",
        "closed.md",
        check=False,
    )
    one_line_error(both, "--body-file", "without articles", "--intro-file", exit_code=1)
    assert dump(db) == before


# -- what the email shows, and what it never does -------------------------------------------


def test_hostile_markdown_is_sanitised_like_an_article(ws_dir: Path) -> None:
    ws = Workspace.open(ws_dir, env={})
    now = dt.datetime.now(dt.UTC)
    try:
        jobs.fetch_sources(ws, ws.store, now)
        new = campaigns.NewCampaign(subject="Hostile", articles="none", body=HOSTILE)
        created = campaigns.create_draft(ws.store, ws.settings, ws.templates, new, now)
        mail = jobs.campaign_mail(ws, ws.store, created.campaign_id)
        rendered = mail.render(campaigns.sample_subscriber(ws.store), tracked=False)
    finally:
        ws.close()
    html = rendered.html.lower()
    body = html[html.index("view in browser") :]
    for forbidden in ("<script", "onerror", "onclick", "<iframe", "<form", "<input"):
        assert forbidden not in body, forbidden
    # No link or image leads to script; Markdown's own refusal leaves its words as text.
    assert not re.search(r"(href|src)\s*=\s*[\"']?\s*java", body)
    assert "[a trap](javascript:alert(1))" in body
    # A link whose only address was script goes; its words stay as text.
    assert re.search(r"and another and", body) and ">another</a>" not in body
    assert "position:fixed" not in body.replace(" ", "")
    assert "hello" in body and "there." in body and "styled" in body
    assert '<img src="https://clinic.example.com/a.png"' in body
    # The text is data, never template code: the braces are shown, not run.
    assert "{{ subscriber.email }}" in rendered.html
    assert "{{ subscriber.email }}" in rendered.text
    assert "alert(" not in rendered.text.replace("[a trap](javascript:alert(1))", "")
    assert "another" in rendered.text


# -- the dashboard: writing, previewing and uploading -----------------------------------------


def _served(dashboard) -> tuple[requests.Session, str]:
    jobs.fetch_sources(dashboard.ws, dashboard.ws.store, dt.datetime.now(dt.UTC))
    jobs.import_subscriber_folder(dashboard.ws, dashboard.ws.store, dt.datetime.now(dt.UTC))
    return signed_in(dashboard.url)


def _without_comments_and_token(page: str, csrf: str) -> str:
    """A page without its HTML comments and its form token: what is left to look through
    for command-line words (a random token holds "--" now and then)."""
    return re.sub(r"<!--.*?-->", "", page, flags=re.S).replace(csrf, "")


def test_a_one_off_campaign_is_written_in_the_dashboard_and_mailed(dashboard) -> None:
    session, csrf = _served(dashboard)
    store = dashboard.ws.store
    # No article ticked and no text: the page asks for one or the other, by the articles.
    empty = session.post(
        dashboard.url + "/campaigns/new",
        data={"csrf": csrf, "subject": "Closed", "template": "auto", "content": ""},
        timeout=30,
    )
    assert empty.status_code == 400 and store.campaigns() == []
    assert "or write your text below to send it without articles" in empty.text
    assert "--" not in _without_comments_and_token(empty.text, csrf)

    made = session.post(
        dashboard.url + "/campaigns/new",
        data={"csrf": csrf, "subject": "Closed", "template": "auto", "content": CLOSED},
        timeout=30,
    )
    assert made.status_code == 200 and "created as a draft" in made.text
    (row,) = store.campaigns()
    campaign = store.campaign(row["id"])
    assert campaign["article_ids"] == [] and campaign["body"] == CLOSED.strip()
    assert campaign["intro"] == ""
    assert len(store.articles(only_new=True)) == 3

    progress = jobs.send_campaign(dashboard.ws, store, row["id"], lambda: dt.datetime.now(dt.UTC))
    assert progress.finished
    assert dashboard.sink.messages
    message = email.message_from_bytes(dashboard.sink.messages[0].data, policy=email.policy.default)
    html, text = parts(message)
    assert "<strong>closed</strong> from 24 December" in html
    assert "closed from 24 December" in text
    # Sending it used up no article either.
    assert len(store.articles(only_new=True)) == 3
    # Its page and its results read as those of any campaign.
    page = session.get(dashboard.url + f"/campaigns/{row['id']}", timeout=30)
    assert page.status_code == 200 and "the email is the campaign's own text" in page.text
    results = session.get(dashboard.url + f"/campaigns/{row['id']}/results", timeout=30)
    assert results.status_code == 200


def test_the_text_with_articles_ticked_is_the_intro_and_the_edit_form_shows_it(
    dashboard,
) -> None:
    session, csrf = _served(dashboard)
    store = dashboard.ws.store
    ids = [a["id"] for a in store.articles()]
    made = session.post(
        dashboard.url + "/campaigns/new",
        data={
            "csrf": csrf,
            "subject": "News",
            "template": "auto",
            "order": ids,
            "article": ids[:1],
            "content": "Welcome to *winter*.",
            "tracking": "on",
        },
        timeout=30,
    )
    assert made.status_code == 200
    (row,) = store.campaigns()
    campaign = store.campaign(row["id"])
    assert (campaign["intro"], campaign["body"], campaign["article_ids"]) == (
        "Welcome to *winter*.",
        "",
        ids[:1],
    )
    form = session.get(dashboard.url + f"/campaigns/{row['id']}/edit", timeout=30).text
    assert "Welcome to *winter*.</textarea>" in form


def test_the_preview_renders_the_typed_text_in_the_chosen_design(dashboard) -> None:
    session, csrf = _served(dashboard)
    answer = session.post(
        dashboard.url + "/campaigns/compose/preview",
        data={"csrf": csrf, "subject": "", "template": "announcement", "content": HOSTILE},
        timeout=30,
    )
    assert answer.status_code == 200
    assert "sandbox" in answer.headers["content-security-policy"]
    assert "allow-scripts" not in answer.headers["content-security-policy"]
    assert "<script" not in answer.text.lower() and "onerror" not in answer.text.lower()
    assert "Hello" in answer.text and "Styled" in answer.text
    # The announcement's own look: a campaign without articles is headed "From <sender>";
    # the digest heads it with the sender's name alone.
    heading = f">From {dashboard.ws.settings.sender.from_name}</p>"
    assert heading in answer.text
    digest = session.post(
        dashboard.url + "/campaigns/compose/preview",
        data={"csrf": csrf, "subject": "", "template": "digest", "content": HOSTILE},
        timeout=30,
    )
    assert digest.status_code == 200 and "Styled" in digest.text
    assert heading not in digest.text
    # Nothing is stored by a preview.
    assert dashboard.ws.store.campaigns() == []
    # Without the form's token, no preview.
    refused = session.post(
        dashboard.url + "/campaigns/compose/preview", data={"content": "x"}, timeout=30
    )
    assert refused.status_code == 403


def test_a_design_that_fails_is_said_in_the_preview_in_web_words(dashboard) -> None:
    broken = dashboard.ws.root / "templates" / "broken"
    broken.mkdir(parents=True)
    (broken / "subject.txt").write_text("x", encoding="utf-8")
    (broken / "body.txt").write_text("{{ 1 / 0 }}", encoding="utf-8")
    (broken / "body.html").write_text("<p>{{ campaign.body_html }}</p>", encoding="utf-8")
    session, csrf = _served(dashboard)
    answer = session.post(
        dashboard.url + "/campaigns/compose/preview",
        data={"csrf": csrf, "subject": "S", "template": "broken", "content": "Hello"},
        timeout=30,
    )
    assert answer.status_code == 400
    said = re.search(r'<meta name="composer-error" content="([^"]+)"', answer.text)
    assert said is not None and "division by zero" in said.group(1)
    assert "--" not in said.group(1) and "newsletter " not in said.group(1)


def test_an_uploaded_image_is_checked_by_its_bytes_kept_served_and_mailed(dashboard) -> None:
    session, csrf = _served(dashboard)
    upload_url = dashboard.url + "/uploads"

    def upload(name: str, data: bytes, kind: str = "image/png", **extra) -> requests.Response:
        return session.post(
            upload_url,
            data={"csrf": csrf, **extra},
            files={"image": (name, data, kind)},
            timeout=30,
        )

    folder = dashboard.ws.root / uploads.FOLDER
    page = b"<html><script>alert(1)</script></html>"
    renamed = upload("photo.png", page)
    assert renamed.status_code == 400
    assert "photo.png: not a PNG, JPEG, GIF or WebP image" in renamed.json()["error"]
    svg = upload("logo.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>')
    assert svg.status_code == 400
    oversized = upload("big.png", png() + b"\0" * uploads.MAX_IMAGE_BYTES)
    assert oversized.status_code == 400 and "too large" in oversized.json()["error"]
    # Far past the cap, the server stops reading at its limit.
    huge = upload("huge.png", png() + b"\0" * (8 * 1024 * 1024))
    assert huge.status_code == 413
    assert not folder.exists() or list(folder.iterdir()) == []
    # Only signed-in staff with the form's token may upload.
    no_token = session.post(upload_url, files={"image": ("a.png", png(), "image/png")}, timeout=30)
    assert no_token.status_code == 403
    stranger = requests.post(
        upload_url,
        data={"csrf": csrf},
        files={"image": ("a.png", png(), "image/png")},
        allow_redirects=False,
        timeout=30,
    )
    assert stranger.status_code == 303 and "/sign-in" in stranger.headers["location"]
    assert not folder.exists() or list(folder.iterdir()) == []

    image = png()
    kept = upload("../../evil name.png", image, kind="text/html")
    assert kept.status_code == 200, kept.text
    url = kept.json()["url"]
    assert re.fullmatch(
        re.escape(dashboard.ws.settings.site.base_url) + r"/uploads/[0-9a-f]{64}\.png", url
    )
    assert [p.name for p in folder.iterdir()] == [url.rsplit("/", 1)[1]]

    served = requests.get(url, timeout=10)
    assert served.status_code == 200 and served.content == image
    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    # Opened on its own, nothing in it may run: a sandbox with no exception, no source allowed.
    policy = [part.strip() for part in served.headers["content-security-policy"].split(";")]
    assert "sandbox" in policy and "default-src 'none'" in policy
    for wrong in ("../newsletter.toml", "..%2Fnewsletter.toml", url.rsplit("/", 1)[1][:-3] + "svg"):
        assert (
            requests.get(f"{dashboard.server.url}/uploads/{wrong}", timeout=10).status_code == 404
        )

    store = dashboard.ws.store
    made = session.post(
        dashboard.url + "/campaigns/new",
        data={
            "csrf": csrf,
            "subject": "Our new room",
            "template": "auto",
            "content": f"Look:\n\n![The new treatment room]({url})",
        },
        timeout=30,
    )
    assert made.status_code == 200
    (row,) = store.campaigns()
    jobs.send_campaign(dashboard.ws, store, row["id"], lambda: dt.datetime.now(dt.UTC))
    message = email.message_from_bytes(dashboard.sink.messages[0].data, policy=email.policy.default)
    html, _ = parts(message)
    assert f'<img src="{url}" alt="The new treatment room"' in html


@pytest.mark.parametrize("kind", ["jpg", "gif", "webp"])
def test_jpeg_gif_and_webp_are_named_by_their_bytes(kind: str) -> None:
    images = {
        "jpg": jpeg(),
        "gif": GIF,
        "webp": WEBP,
    }
    data = images[kind]
    name = uploads.stored_name(data)
    assert name.endswith("." + kind) and uploads.content_type(name) == (
        "image/jpeg" if kind == "jpg" else f"image/{kind}"
    )


def test_each_design_has_a_thumbnail_with_sample_content(dashboard) -> None:
    session, _ = signed_in(dashboard.url)
    thumb = dashboard.url + "/campaigns/designs/preview?design="
    # Before any article, a design shows a sample text.
    before = session.get(thumb + "digest", timeout=30)
    assert before.status_code == 200 and "Closed over the holidays" in before.text
    _served(dashboard)
    every = dashboard.ws.store.articles()
    newest = every[0]["title"]
    # The sample is the newest articles, read with a limit rather than all of them.
    assert dashboard.ws.store.newest_article_ids(2) == [a["id"] for a in every[:2]]
    for design in ("announcement", "digest"):
        answer = session.get(thumb + design, timeout=30)
        assert answer.status_code == 200
        assert newest in answer.text
        # One article for the announcement, three for the digest.
        assert (every[1]["title"] in answer.text) == (design == "digest")
        assert answer.headers["content-security-policy"].startswith("sandbox")
    for wrong in ("auto", "confirm", "../announcement", "nope"):
        assert session.get(thumb + wrong, timeout=30).status_code == 404
    form = session.get(dashboard.url + "/campaigns/new", timeout=30).text
    assert 'title="The digest design with sample content"' in form


def test_campaigns_made_before_the_composer_keep_rendering_as_they_did(ws_dir: Path) -> None:
    store = database_before(ws_dir / "newsletter.db", "m016")
    try:
        with store.transaction():
            for design in ("digest", "announcement"):
                store.conn.execute(
                    "INSERT INTO campaigns (subject, preheader, template, status, tracking, "
                    "created_at) VALUES ('Old', '', ?, 'draft', 0, '2026-01-01T00:00:00+00:00')",
                    [design],
                )
    finally:
        store.close()
    ws = Workspace.open(ws_dir, env={})  # migrates the database
    try:
        jobs.fetch_sources(ws, ws.store, dt.datetime.now(dt.UTC))
        ids = [a["id"] for a in ws.store.articles()]
        old = ws.store.campaigns()
        assert len(old) == 2
        for row in old:
            campaign = ws.store.campaign(row["id"])
            assert (campaign["subject"], campaign["intro"], campaign["body"]) == ("Old", "", "")
            # Its articles as an old campaign had them (the table is older than m016).
            with ws.store.transaction():
                ws.store._set_articles(
                    row["id"], ids[:1] if campaign["template"] == "announcement" else ids
                )
            mail = jobs.campaign_mail(ws, ws.store, row["id"])
            reader = campaigns.sample_subscriber(ws.store)
            rendered = mail.render(reader, tracked=False)
            # The template data as before the composer: no intro and no body at all.
            context = mail.context(reader)
            context["campaign"] = {
                key: value
                for key, value in context["campaign"].items()
                if key not in ("intro_html", "intro_text", "body_html", "body_text")
            }
            before = mail.templates.render(context)
            assert (rendered.html, rendered.text) == (before.html, before.text)
            assert all(
                a["title"] in rendered.text
                for a in ws.store.articles_by_id(campaign["article_ids"])
            )
    finally:
        ws.close()


# -- workspace copies of the designs made before the composer ----------------------------------

# A copy of each design as a workspace kept it before campaigns had words of their own:
# it names no intro and no body, and the announcement reads the first article.
OLD_DIGEST_HTML = (
    "<p>Hi {{ subscriber.first_name | default('there', true) }},</p>"
    "{% for article in articles %}<h2>{{ article.title }}</h2>{% endfor %}"
    '<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>'
)
OLD_DIGEST_TEXT = (
    "Hi {{ subscriber.first_name | default('there', true) }},\n"
    "{% for article in articles %}{{ article.title }}\n{% endfor %}"
    "Unsubscribe: {{ links.unsubscribe }}\n"
)
OLD_ANNOUNCEMENT_HTML = '<h1>{{ articles[0].title }}</h1><a href="{{ links.unsubscribe }}">x</a>'
OLD_ANNOUNCEMENT_TEXT = "{{ articles[0].title }}\n{{ links.unsubscribe }}\n"


def _old_copies(ws_dir: Path) -> None:
    for name, html, text in (
        ("digest", OLD_DIGEST_HTML, OLD_DIGEST_TEXT),
        ("announcement", OLD_ANNOUNCEMENT_HTML, OLD_ANNOUNCEMENT_TEXT),
    ):
        folder = ws_dir / "templates" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "body.html").write_text(html, encoding="utf-8")
        (folder / "body.txt").write_text(text, encoding="utf-8")


def test_an_old_copy_of_a_design_that_would_drop_the_text_is_refused(
    cli: Cli, ws_dir: Path
) -> None:
    _ready(cli)
    _old_copies(ws_dir)
    (ws_dir / "closed.md").write_text(CLOSED, encoding="utf-8")
    (ws_dir / "intro.md").write_text("Winter hours start Monday.", encoding="utf-8")
    db = ws_dir / "newsletter.db"
    before = dump(db)
    # Without articles the old digest would send "Hi X," and a footer; the old
    # announcement would fail at send on articles[0].
    for design in ("digest", "announcement", "auto"):
        body_only = cli(
            "campaign", "create", "--subject", "Closed", "--body-file", "closed.md",
            "--template", design, check=False,
        )  # fmt: skip
        shown = "digest" if design == "auto" else design
        one_line_error(body_only, f"templates/{shown}/body.html", "docs/templates.md", exit_code=1)
    intro = cli(
        "campaign", "create", "--subject", "News", "--intro-file", "intro.md",
        "--template", "digest", check=False,
    )  # fmt: skip
    one_line_error(intro, "templates/digest/body.html", "campaign.intro_html", exit_code=1)
    assert dump(db) == before
    # A copy that shows the text in its HTML but not in its text part is refused by that part.
    (ws_dir / "templates" / "digest" / "body.html").write_text(
        OLD_DIGEST_HTML + "{{ campaign.body_html }}", encoding="utf-8"
    )
    text_part = cli(
        "campaign", "create", "--subject", "Closed", "--body-file", "closed.md",
        "--template", "digest", check=False,
    )  # fmt: skip
    one_line_error(text_part, "templates/digest/body.txt", "campaign.body_text", exit_code=1)
    # Campaigns of articles alone go on with the old copies as before.
    made = cli("campaign", "create", "--subject", "Articles", "--template", "digest")
    assert made.stdout.strip().isdigit()


def test_the_dashboard_says_an_old_design_copy_would_not_show_the_text(dashboard) -> None:
    _old_copies(dashboard.ws.root)
    session, csrf = _served(dashboard)
    refused = session.post(
        dashboard.url + "/campaigns/new",
        data={"csrf": csrf, "subject": "Closed", "template": "digest", "content": CLOSED},
        timeout=30,
    )
    assert refused.status_code == 400 and dashboard.ws.store.campaigns() == []
    page = _without_comments_and_token(refused.text, csrf)
    assert "The design digest is a copy kept in this workspace" in page
    assert "docs/templates.md" not in page and "--" not in page


# -- one text per campaign without articles ---------------------------------------------------


def test_the_edit_form_shows_the_text_the_email_shows_even_when_both_are_stored() -> None:
    from newsletter.web.dashboard.campaign_views import form_values

    def shown(articles: str, intro: str, body: str) -> str:
        new = campaigns.NewCampaign(subject="S", articles=articles, intro=intro, body=body)
        return form_values(new)["content"]

    # With articles the email shows the intro (the designs show a body only without
    # articles): the field is the intro, never the body moved into its place.
    assert shown("3,1", "Above the articles", "Old body") == "Above the articles"
    assert shown("3,1", "", "Old body") == ""
    # Without articles, the body; an intro kept from before shows above it in the
    # email, so it heads the field rather than being dropped on saving.
    assert shown("none", "", "The whole message") == "The whole message"
    assert shown("none", "Old intro", "The whole message") == "Old intro\n\nThe whole message"


def test_an_intro_without_articles_is_refused_so_no_text_is_lost(cli: Cli, ws_dir: Path) -> None:
    _ready(cli)
    (ws_dir / "a.md").write_text("Above.", encoding="utf-8")
    (ws_dir / "b.md").write_text(CLOSED, encoding="utf-8")
    db = ws_dir / "newsletter.db"
    before = dump(db)
    both = cli(
        "campaign", "create", "--subject", "X", "--articles", "none",
        "--intro-file", "a.md", "--body-file", "b.md", check=False,
    )  # fmt: skip
    one_line_error(
        both, "--intro-file: shown above articles; this campaign has none", "--body-file",
        exit_code=1,
    )  # fmt: skip
    alone = cli(
        "campaign", "create", "--subject", "X", "--articles", "none", "--intro-file", "a.md",
        check=False,
    )  # fmt: skip
    one_line_error(alone, "--intro-file", exit_code=1)
    assert dump(db) == before
    # Taking the articles away from a campaign with an intro is refused the same way.
    campaign_id = cli("campaign", "create", "--subject", "N", "--intro-file", "a.md").stdout.strip()
    kept = dump(db)
    emptied = cli(
        "campaign", "edit", campaign_id, "--articles", "none", "--body-file", "b.md", check=False
    )
    one_line_error(emptied, "--intro-file", exit_code=1)
    assert dump(db) == kept


def _edit_form_fields(html: str) -> dict[str, object]:
    """What the edit form sends back unchanged: its fields as the page fills them."""
    from html.parser import HTMLParser

    fields: dict[str, object] = {"article": [], "order": []}

    class Form(HTMLParser):
        textarea: str | None = None
        select: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            name = a.get("name")
            if tag == "input" and name:
                kind = a.get("type", "text")
                if kind in ("checkbox", "radio") and "checked" not in a:
                    return
                if kind in ("submit", "button", "file"):
                    return
                value = a.get("value") or ("on" if kind == "checkbox" else "")
                if name in ("article", "order"):
                    fields[name].append(value)  # type: ignore[union-attr]
                else:
                    fields[name] = value
            elif tag == "textarea" and name:
                self.textarea, fields[name] = name, ""
            elif tag == "select" and name:
                self.select = name
            elif tag == "option" and self.select and "selected" in a:
                fields[self.select] = a.get("value") or ""

        def handle_endtag(self, tag: str) -> None:
            if tag == "textarea":
                self.textarea = None
            elif tag == "select":
                self.select = None

        def handle_data(self, data: str) -> None:
            if self.textarea:
                fields[self.textarea] = str(fields[self.textarea]) + data

    Form(convert_charrefs=True).feed(html)
    fields.pop("move", None)
    return fields


def test_a_campaign_saved_unchanged_in_the_dashboard_is_stored_unchanged(dashboard) -> None:
    session, _ = _served(dashboard)
    ws, store = dashboard.ws, dashboard.ws.store
    now = dt.datetime.now(dt.UTC)
    ids = [a["id"] for a in store.articles()]
    made = [
        campaigns.create_draft(
            store, ws.settings, ws.templates,
            campaigns.NewCampaign(subject="News", articles=str(ids[0]), intro="Winter *hours*."),
            now,
        ).campaign_id,
        campaigns.create_draft(
            store, ws.settings, ws.templates,
            campaigns.NewCampaign(subject="Closed", articles="none", body=CLOSED),
            now,
        ).campaign_id,
    ]  # fmt: skip
    for campaign_id in made:
        before = store.campaign(campaign_id)
        page = session.get(dashboard.url + f"/campaigns/{campaign_id}/edit", timeout=30)
        fields = _edit_form_fields(page.text)
        # The ticked articles in the page's order, as the browser sends them.
        saved = session.post(
            dashboard.url + f"/campaigns/{campaign_id}/edit", data=fields, timeout=30
        )
        assert saved.status_code == 200, saved.text
        after = store.campaign(campaign_id)
        for key in ("subject", "intro", "body", "article_ids", "template", "tracking"):
            assert after[key] == before[key], key


# -- Markdown that would show nothing, or show it wrong -----------------------------------------


def test_links_without_words_or_address_and_images_without_one_are_dropped() -> None:
    from newsletter import composer

    base = "https://clinic.example.com"
    empty_words = composer.content("Book [](https://clinic.example.com/book) now.", base)
    assert "<a" not in empty_words.html and "[1]" not in empty_words.text
    assert "Book" in empty_words.text and "now." in empty_words.text
    no_address = composer.content("Read [the notes]() here.", base)
    assert "<a" not in no_address.html and "the notes" in no_address.html
    assert "clinic.example.com" not in no_address.html + no_address.text
    inline_image = composer.content("A ![chart](data:image/png;base64,iVBORw0KGgo=) here.", base)
    assert "<img" not in inline_image.html and "A" in inline_image.text
    # What has an address and something to show stays, made absolute on the site.
    kept = composer.content("[the page](page.html) ![room](/room.png)", base)
    assert '<a href="https://clinic.example.com/page.html"' in kept.html
    assert '<img src="https://clinic.example.com/room.png" alt="room">' in kept.html
    linked_image = composer.markdown_html(
        "[![logo](https://a.example/l.png)](https://a.example)", base
    )
    assert "<a href" in linked_image and "<img src" in linked_image


def test_a_text_that_cleans_to_nothing_is_refused(cli: Cli, ws_dir: Path) -> None:
    _ready(cli)
    db = ws_dir / "newsletter.db"
    before = dump(db)
    for name, text in (
        ("script.md", "<script>alert(1)</script>"),
        ("link.md", "[](https://a.example/)"),
    ):
        (ws_dir / name).write_text(text, encoding="utf-8")
        refused = cli("campaign", "create", "--subject", "X", "--body-file", name, check=False)
        one_line_error(refused, "--body-file", "nothing to show once cleaned", exit_code=1)
    intro = cli("campaign", "create", "--subject", "X", "--intro-file", "script.md", check=False)
    one_line_error(intro, "--intro-file", "nothing to show once cleaned", exit_code=1)
    assert dump(db) == before


def test_the_lead_image_below_an_intro_has_square_corners(ws_dir: Path) -> None:
    ws = Workspace.open(ws_dir, env={})
    now = dt.datetime.now(dt.UTC)
    try:
        jobs.fetch_sources(ws, ws.store, now)
        pictured = next(a for a in ws.store.articles() if a.get("image"))
        looks = {}
        for intro in ("", "Winter hours start Monday."):
            new = campaigns.NewCampaign(
                subject="News", articles=str(pictured["id"]), template="announcement", intro=intro
            )
            created = campaigns.create_draft(ws.store, ws.settings, ws.templates, new, now)
            mail = jobs.campaign_mail(ws, ws.store, created.campaign_id)
            html = mail.render(campaigns.sample_subscriber(ws.store), tracked=False).html
            image = re.search(r"Lead image -->\s*<tr>\s*<td[^>]*>\s*<a[^>]*>\s*<img[^>]*>", html)
            assert image is not None
            looks[intro] = re.findall(r"border-radius:\s*([^;\"]+)", image.group(0))
    finally:
        ws.close()
    # Without an intro the image is the card's top; below one it sits mid-card.
    assert looks[""] == ["8px 8px 0 0", "8px 8px 0 0"]
    assert looks["Winter hours start Monday."] == ["0", "0"]


def test_an_empty_body_file_is_named(cli: Cli, ws_dir: Path) -> None:
    _ready(cli)
    (ws_dir / "empty.md").write_text("\n  \n", encoding="utf-8")
    db = ws_dir / "newsletter.db"
    before = dump(db)
    empty = cli("campaign", "create", "--subject", "X", "--body-file", "empty.md", check=False)
    line = one_line_error(
        empty, "--body-file empty.md: the file is empty; write the message in it", exit_code=1
    )
    assert "--articles" not in line
    assert dump(db) == before


# -- what an upload keeps, and what it refuses -------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def test_a_photo_is_kept_without_its_exif_position_or_text_chunks(dashboard) -> None:
    session, csrf = _served(dashboard)

    def upload(name: str, data: bytes) -> requests.Response:
        return session.post(
            dashboard.url + "/uploads",
            data={"csrf": csrf},
            files={"image": (name, data, "image/jpeg")},
            timeout=30,
        )

    photo = jpeg(exif_gps())
    answer = upload("holiday.jpg", photo)
    assert answer.status_code == 200, answer.text
    served = requests.get(answer.json()["url"], timeout=10).content
    assert b"Exif" not in served and b"GPSLatitude" not in served
    # The picture is all there: what the camera added is all that went.
    assert served == jpeg() and served != photo
    assert answer.json()["name"] == uploads.stored_name(jpeg())

    image = png()
    tagged = image[:33] + _png_chunk(b"tEXt", b"Location\0Berlin") + _png_chunk(
        b"eXIf", b"MM\0*GPS"
    ) + _png_chunk(b"iTXt", b"Author\0\0\0\0\0Dana") + _png_chunk(
        b"zTXt", b"Comment\0\0" + zlib.compress(b"x")
    ) + image[33:]  # fmt: skip
    kept = upload("room.png", tagged)
    assert kept.status_code == 200, kept.text
    served = requests.get(kept.json()["url"], timeout=10).content
    assert served == image
    assert all(kind not in served for kind in (b"tEXt", b"eXIf", b"iTXt", b"zTXt", b"Berlin"))


def test_gif_comments_and_xmp_and_webp_exif_and_xmp_are_not_kept() -> None:
    # XMP in a GIF: an application extension whose raw packet ends in the "magic trailer"
    # (0x01, 0xFF down to 0x00) so that readers walking sub-blocks land on its end.
    xmp_app = b"\x21\xff\x0bXMP DataXMP" + XMP + b"\x01" + bytes(range(255, -1, -1)) + b"\0"
    loop = b"\x21\xff" + gif_blocks(b"NETSCAPE2.0")[:-1] + b"\x03\x01\x00\x00\x00"
    comment = b"\x21\xfe" + gif_blocks(b"Taken at 52.52N 13.40E by Dana's phone")
    head, image = GIF[:19], GIF[19:]  # header, screen and colour table; then the image
    tagged = head + loop + comment + xmp_app + image + b"<html>after the trailer</html>"
    name, kept = uploads.taken(tagged)
    assert kept == head + loop + image and name.endswith(".gif")
    assert b"Dana" not in kept and b"xmpmeta" not in kept and b"NETSCAPE2.0" in kept

    exif = b"MM\0*\0\0\0\x08GPSLatitude=52.5200N"  # odd length: padded in the file
    photo = webp_extended(0x08 | 0x04, webp_chunk(b"EXIF", exif), webp_chunk(b"XMP ", XMP))
    name, kept = uploads.taken(photo + b"trailing")
    assert kept == webp_extended(0) and name.endswith(".webp")
    assert b"GPSLatitude" not in kept and b"xmpmeta" not in kept
    # A WebP with nothing to take out is kept byte for byte.
    assert uploads.taken(WEBP)[1] == WEBP
    # Cut short or with a chunk running past the file: refused, not guessed at.
    vp8l_size = 12 + 18 + 4  # past RIFF, WEBP and the VP8X chunk: the image chunk's size
    too_long = photo[:vp8l_size] + b"\xff\xff\xff\x00" + photo[vp8l_size + 4 :]
    for broken in (tagged[:30], photo[:-9], too_long):
        with pytest.raises(InputError, match="not a PNG, JPEG, GIF or WebP image"):
            uploads.stored_name(broken)


def test_an_image_is_checked_past_its_first_bytes() -> None:
    page = b"<html><script>alert(1)</script></html>"
    forged = {
        "png": b"\x89PNG\r\n\x1a\n" + page,
        "png without IHDR first": b"\x89PNG\r\n\x1a\n" + _png_chunk(b"tEXt", page),
        "png cut short": png()[:40],
        "jpg": b"\xff\xd8\xff" + page,
        "jpg that never reaches its picture": jpeg()[:20],
        "gif": b"GIF89a\0\0\0\0" + page,
        "webp": b"RIFF\x24\0\0\0WEBP" + page,
    }
    for what, data in forged.items():
        with pytest.raises(InputError, match="not a PNG, JPEG, GIF or WebP image"):
            uploads.stored_name(data, what)
    # A page after a whole PNG is not kept with it.
    name, kept = uploads.taken(png() + page)
    assert kept == png() and name == uploads.stored_name(png())


def test_the_uploads_folder_has_a_limit_and_a_failed_write_names_no_path(dashboard) -> None:
    session, csrf = _served(dashboard)
    folder = dashboard.ws.root / uploads.FOLDER

    def upload(data: bytes) -> requests.Response:
        return session.post(
            dashboard.url + "/uploads",
            data={"csrf": csrf},
            files={"image": ("a.png", data, "image/png")},
            timeout=30,
        )

    # A write that fails says so in the page's words; the reason, with its path, is logged.
    folder.write_bytes(b"a file where the folder should be")
    failed = upload(png())
    assert failed.status_code == 500
    said = failed.json()["error"]
    assert "could not be kept" in said and str(dashboard.ws.root) not in said
    assert "uploads" not in said and "Errno" not in said
    folder.unlink()

    # A full folder (its size, not its disk use: a sparse file) takes no new image.
    folder.mkdir()
    with open(folder / ("0" * 64 + ".png"), "wb") as full:
        full.truncate(uploads.MAX_FOLDER_BYTES - 10)
    refused = upload(png(3, 3))
    assert refused.status_code == 400
    assert "The uploads folder holds" in refused.json()["error"]
    assert "at most 500 MB" in refused.json()["error"]
    assert len(list(folder.iterdir())) == 1
    with pytest.raises(InputError, match="at most 500 MB"):
        uploads.check_room(uploads.MAX_FOLDER_BYTES, 1)
    uploads.check_room(uploads.MAX_FOLDER_BYTES - 1, 1)
