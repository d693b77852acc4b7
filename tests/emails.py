"""Every kind of email the project sends, made by the real code paths, for whole-message tests.

A workspace on the built-in defaults with its sample articles, a blog post
saved as text (headings, a numbered list, no URL) and an article shaped like
a clinic blog page; each email goes through the outbox transport and is read
back from its .eml file, exactly as a mail program would get it.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from newsletter import campaigns, consent, jobs
from newsletter.workspace import Workspace
from workspaces import workspace_with_articles_and_subscribers

DATA = Path(__file__).parent / "data"
# An article in the shape of a clinic blog page: headings, a list, a quote, links.
BLOG_SHAPED = {
    "key": "blog-shaped",
    "url": "https://clinic.example.com/post/sciatica-and-pt",
    "title": "Can physical therapy help sciatica?",
    "author": "Dana Whitfield, PT, DPT",
    "published": "2026-02-04",
    "summary": "How manual therapy, modalities and exercise ease nerve pain.",
    "body_html": (
        "<p>Sciatica is pain that follows the sciatic nerve from the lower back down the leg.</p>"
        "<h2>Understanding sciatica</h2><p>It usually comes from a nerve that is pressed or "
        'irritated. <a href="https://clinic.example.com/conditions/sciatica">More on causes</a>.'
        "</p><h3>Who gets it</h3><p>Mostly adults between thirty and fifty.</p>"
        "<h2>Modalities and dry needling</h2><ol><li>Electrotherapy: stimulation, ultrasound "
        "or laser to calm pain.</li><li>Dry needling: thin needles into tight muscles.</li></ol>"
        "<blockquote><p>I could sit through a film again after four weeks.</p></blockquote>"
        '<p>Questions? <a href="mailto:frontdesk@clinic.example.com">Write to us</a>.</p>'
    ),
    "image": None,
    "content_hash": "x",
}


def _read(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def _new_files(outbox: Path, before: set[Path]) -> list[Path]:
    return sorted(set(outbox.glob("*.eml")) - before)


def every_email_of(
    folder: Path, now: dt.datetime, preheader: str | None = "", env: dict[str, str] | None = None
) -> dict[str, EmailMessage]:
    """`every_email` of the workspace in ``folder``, opened on ``env`` and closed again."""
    ws = Workspace.open(folder, env=env or {})
    try:
        return every_email(ws, now, preheader)
    finally:
        ws.close()


def every_email(
    ws: Workspace, now: dt.datetime, preheader: str | None = ""
) -> dict[str, EmailMessage]:
    """name -> message: each design with one and several articles, confirm and welcome.

    ``preheader``: "" leaves the campaigns' default, None asks for none, a text sets it.
    """
    store = ws.store
    (ws.root / "articles" / "long-drives.txt").write_text((DATA / "long-drives.txt").read_text())
    workspace_with_articles_and_subscribers(ws, now)
    source = store.source_id("folder", "blog", now)
    store.save_articles(source, [BLOG_SHAPED], now)
    ids = {a["key"]: a["id"] for a in store.articles()}
    saved = next(a["id"] for a in store.articles() if not a["url"])
    outbox = ws.path(ws.settings.delivery.outbox_dir)
    outbox.mkdir(exist_ok=True)
    reader = store.subscribers("confirmed")[0]
    found: dict[str, EmailMessage] = {}
    plans = {
        "announcement": (str(ids["blog-shaped"]), "announcement"),
        "announcement-saved-page": (str(saved), "announcement"),
        "digest": (",".join(str(i) for i in list(ids.values())[:4]), "digest"),
    }
    for name, (articles, design) in plans.items():
        campaign_id = campaigns.create(
            store,
            ws.settings,
            "Fresh from the clinic",
            articles,
            design,
            None,
            now,
            **({"preheader": preheader} if preheader is not None else {}),
        )
        mail, transport = jobs.prepare_send(ws, store, campaign_id, now)
        try:
            before = set(outbox.glob("*.eml"))
            envelope = mail.envelope(reader, f"c{campaign_id}-{name}", now, mail.sender["address"])[
                1
            ]
            transport.send_batch([envelope])
            [path] = _new_files(outbox, before)
        finally:
            transport.close()
        found[name] = _read(path)
    transport = ws.transport()
    try:
        consent_id = consent.request(
            store, ws.settings, "new.reader@example.net", source="form", now=now
        )
        before = set(outbox.glob("*.eml"))
        consent.send_confirmation(
            store, transport, ws.settings, ws.signer, ws.templates("confirm"), consent_id, now
        )
        [path] = _new_files(outbox, before)
        found["confirm"] = _read(path)
        subscriber = store.subscriber_by_email("new.reader@example.net")
        store.confirm_opt_in(consent_id, subscriber["id"], now, None)
        before = set(outbox.glob("*.eml"))
        consent.send_welcome(
            store, transport, ws.settings, ws.signer, ws.templates("welcome"), subscriber["id"], now
        )
        [path] = _new_files(outbox, before)
        found["welcome"] = _read(path)
    finally:
        transport.close()
    return found
