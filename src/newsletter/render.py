"""Render a campaign for one subscriber: Jinja2 templates to (subject, html, text) to MIME.

Templates are staff-authored, so they run in Jinja's immutable sandbox with
autoescape on for HTML and receive only plain data (dicts, lists, strings).
Apart from loading template files when a ``TemplateSet`` is made, nothing here
does I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, EmailPolicy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import css_inline
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from newsletter.errors import TemplateError

PARTS = ("subject.txt", "body.html", "body.txt")
DEFAULTS_DIR = Path(__file__).parent / "defaults"
_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


class _MailPolicy(EmailPolicy):
    """SMTP policy, except that List-Unsubscribe is never RFC 2047-encoded.

    The standard folder encodes a header whose single token is longer than a
    line; mailbox providers then see no URL at all and drop one-click
    unsubscribe. Header lines may run to 998 characters (RFC 5322).
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() == "list-unsubscribe":
            return _WIDE.fold_binary(name, value)
        return super().fold_binary(name, value)


_WIDE = SMTP.clone(max_line_length=998)
MAIL_POLICY = _MailPolicy(linesep="\r\n")


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


class TemplateSet:
    """One template set (subject, HTML body, text body), workspace files first."""

    def __init__(self, name: str, workspace_templates: Path | None = None):
        search = [str(DEFAULTS_DIR / "templates")]
        if workspace_templates is not None:
            search.insert(0, str(workspace_templates))
        self.name = name
        self.env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(search),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), default_for_string=False
            ),
            keep_trailing_newline=False,
        )
        self.templates = {}
        for part in PARTS:
            path = f"{name}/{part}"
            try:
                self.templates[part] = self.env.get_template(path)
            except jinja2.TemplateNotFound:
                raise TemplateError(
                    f"template {name!r}: {path} not found in the workspace's templates/ "
                    f"or the built-in templates"
                ) from None
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(
                    f"template {exc.name or path}:{exc.lineno}: {exc.message}"
                ) from None

    def subject(self, context: Mapping[str, Any]) -> str:
        """Render only the subject line, e.g. to name an automatic campaign."""
        try:
            return " ".join(self.templates["subject.txt"].render(context).split())
        except Exception as exc:  # noqa: BLE001 - any failure of a staff template is theirs to fix
            raise TemplateError(f"template {self.name}/subject.txt: {exc}") from None

    def render(self, context: Mapping[str, Any]) -> Rendered:
        """Render all three parts; a failure names the template file and line."""
        out = {}
        for part, template in self.templates.items():
            try:
                out[part] = template.render(context)
            except Exception as exc:  # noqa: BLE001 - 1/0 in a staff template is a template error
                raise TemplateError(
                    f"template {self.name}/{part}:{_error_line(exc, template)}: {exc}"
                ) from None
        subject = " ".join(out["subject.txt"].split())
        return Rendered(subject=subject, html=out["body.html"], text=out["body.txt"].strip() + "\n")


def _error_line(exc: Exception, template: jinja2.Template) -> int | str:
    """Find the template line of a runtime error from its traceback.

    Jinja rewrites the traceback so that template frames already carry
    template line numbers.
    """
    tb = exc.__traceback__
    line: int | str = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == template.filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def inline_css(document: str) -> str:
    """Inline the <style> rules into style attributes; media queries stay in the head."""
    return _inliner.inline(document)


def display_date(value: str | None) -> str:
    if not value:
        return ""
    day = dt.date.fromisoformat(value[:10])
    return f"{day.day} {day.strftime('%B %Y')}"


def article_context(article: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": article["id"],
        "title": article["title"],
        "url": article.get("url") or "",
        "summary": article.get("summary") or "",
        "image": article.get("image"),
        "image_alt": article.get("image_alt"),
        "author": article.get("author"),
        "published": article.get("published") or "",
        "published_display": display_date(article.get("published")),
        "tags": list(article.get("tags") or []),
    }


def subscriber_context(subscriber: Mapping[str, Any]) -> dict[str, Any]:
    first, last = subscriber.get("first_name"), subscriber.get("last_name")
    context = dict(subscriber.get("attributes") or {})
    context.update(
        email=subscriber["email"],
        first_name=first,
        last_name=last,
        name=" ".join(p for p in (first, last) if p),
        attributes=dict(subscriber.get("attributes") or {}),
    )
    return context


def message_id(campaign_id: int, delivery_key: str, domain: str) -> str:
    """A Message-ID that is the same every time the same delivery is rendered.

    Determinism lets a resumed sender, or a provider's log, tell whether an
    in-flight message was the one already handed over.
    """
    digest = hashlib.sha256(f"{campaign_id}:{delivery_key}".encode()).hexdigest()[:16]
    return f"<c{campaign_id}.{delivery_key}.{digest}@{domain}>"


def compose(
    rendered: Rendered,
    *,
    from_name: str,
    from_address: str,
    to_address: str,
    to_name: str = "",
    reply_to: str = "",
    msg_id: str,
    date: dt.datetime,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    list_id: str | None = None,
    feedback_id: str | None = None,
) -> bytes:
    """Build the multipart/alternative message (text first, then HTML) as wire bytes."""
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["From"] = Address(display_name=from_name, addr_spec=from_address)
    msg["To"] = Address(display_name=to_name, addr_spec=to_address)
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = msg_id
    if reply_to:
        msg["Reply-To"] = reply_to
    if unsubscribe_url:
        targets = [f"<{unsubscribe_url}>"]
        if unsubscribe_mailto:
            targets.append(f"<mailto:{unsubscribe_mailto}?subject=unsubscribe>")
        msg["List-Unsubscribe"] = ", ".join(targets)
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if list_id:
        msg["List-Id"] = list_id
    if feedback_id:
        msg["Feedback-ID"] = feedback_id
    msg.set_content(rendered.text, subtype="plain", charset="utf-8")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return msg.as_bytes()
