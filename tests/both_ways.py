"""For tests that build a campaign's messages two ways (compiled and in full) and compare
the bytes: the names a list may hold, a campaign ready to send, a changed design."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clocks import NOW
from newsletter import campaigns, jobs
from newsletter.mail import CampaignMail
from newsletter.render import DEFAULTS_DIR
from newsletter.workspace import Workspace
from workspaces import workspace_with_articles_and_subscribers

DESIGNS = ("announcement", "digest", "confirm", "welcome")
ARTICLE_URL = "https://clinic.example.com/post/back-pain?a=1&b=2"

# Quotes, markup and entities: what HTML escaping must turn into text.
MARKUP = [
    ("quotes@example.org", 'O\'Brien "Jr"', "d'Arcy"),
    ("lt@example.org", "<b>Bold</b> & <i>co</i>", ">"),
    ("amp@example.org", "&amp; &lt; &#34;", "&"),
]
# Accents, right to left (and an override), emoji with joiners and flags.
SCRIPTS = [
    ("accents@example.org", "Zoë Ångström", "Ñúñez"),
    ("rtl@example.org", "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627", "\u202eevil"),
    ("emoji@example.org", "\U0001f600\u0301 \U0001f1ef\U0001f1f5", "\u200d"),
]
# Empty names, an internationalised mailbox, and the splice's own private-use marks.
EDGES = [
    ("empty@example.org", "", ""),
    ("我@例え.jp", "名前", ""),
    ("pua@example.org", "\ue000deadbeef:0\ue001", "\ue001\ue000"),
]


def subscriber_row(n: int, email: str, first: str, last: str, **attributes: str) -> dict[str, Any]:
    """A subscriber as the send loop hands it to the mail: id, address, names, attributes."""
    return {
        "id": n,
        "email": email,
        "first_name": first,
        "last_name": last,
        "attributes": attributes,
    }


def prepared_campaign(
    ws_dir: Path, template: str | None = None, tracking_on: bool = True
) -> tuple[Workspace, int, CampaignMail]:
    """A workspace with the sample articles and subscribers, and a campaign started for
    sending: its mail as a send loads it."""
    ws = Workspace.open(ws_dir, env={"NEWSLETTER_SECRET_KEY": "compile-key"})
    workspace_with_articles_and_subscribers(ws, NOW)
    campaign_id = campaigns.create(
        ws.store, ws.settings, "Fresh", "new", template, None, NOW, tracking_on=tracking_on
    )
    mail, transport = jobs.prepare_send(ws, ws.store, campaign_id, NOW)
    transport.close()
    return ws, campaign_id, mail


def messages(mail: CampaignMail, people: list[dict[str, Any]], **options: Any) -> list[bytes]:
    """Each person's message as wire bytes, by whichever path the mail takes now."""
    sender = "bounces@example.org"
    return [mail.envelope(p, f"k{p['id']}", NOW, sender, **options)[1].data for p in people]


def custom_design(
    ws_dir: Path, change: Callable[[str], str], file: str = "custom/body.html"
) -> None:
    """A copy of the digest as "custom", with one of its files changed."""
    templates = ws_dir / "templates"
    shutil.copytree(DEFAULTS_DIR / "templates" / "digest", templates / "custom")
    if not (templates / file).exists():
        (templates / file).parent.mkdir(exist_ok=True)
        shutil.copy(DEFAULTS_DIR / "templates" / file, templates / file)
    source = (templates / file).read_text(encoding="utf-8")
    (templates / file).write_text(change(source), encoding="utf-8")
