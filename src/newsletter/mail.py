"""A campaign's mail: everything needed to render it for any subscriber, built in one place.

``load_mail`` is the only way to make a ``CampaignMail``: it reads the campaign,
its articles, the links registered for it and (automatic campaigns) who gets
which articles, so the mail is complete when built and never changed after.
Anything that changes one of those (starting the campaign, registering its
links) loads the mail again. The lifecycle (create, schedule, pause ...) is
``campaigns.py``'s.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

from newsletter import composer, tracking
from newsletter.compiled_html import CompiledHtml, NotCompilable, compile_html
from newsletter.compiled_text import CompiledText, compile_text
from newsletter.config import Settings
from newsletter.mime import MessageFactory, html_body, list_unsubscribe, quoted_printable
from newsletter.render import (
    Rendered,
    SplicedHtml,
    TemplateSet,
    article_context,
    choose_template,
    default_preheader,
    message_id,
    plain_text,
    sender_context,
    site_context,
    styled_block,
    subscriber_context,
)
from newsletter.rows import Article, ArticleContext, Subscriber
from newsletter.store import Store
from newsletter.textify import wrap_lines
from newsletter.transports import FIELDS, MIME, Content, Envelope

# The reader a preview, a test or the search for trackable links is rendered for
# when no subscriber is named.
SAMPLE_SUBSCRIBER = {
    "email": "reader@example.com",
    "first_name": "Sample",
    "last_name": "Reader",
    "attributes": {},
    "id": 0,
}


def design(campaign: Mapping[str, Any]) -> str:
    """The template set a campaign renders with: its own, by the one rule for articles.

    A campaign stored as an announcement of several articles (made before the
    rule) renders as a digest, so every article it counts as sent is shown.
    """
    return choose_template(campaign["template"], len(campaign["article_ids"]))


@dataclass
class Urls:
    """The public URLs of the web server, all built on ``[site] base_url``."""

    base_url: str
    signer: tracking.Signer

    def _url(self, prefix: str, token: str, suffix: str = "") -> str:
        return f"{self.base_url.rstrip('/')}/{prefix}/{token}{suffix}"

    def open(self, campaign_id: int, subscriber_id: int) -> str:
        return self._url("o", self.signer.make("open", campaign_id, subscriber_id), ".gif")

    def click(self, campaign_id: int, subscriber_id: int, link_id: int) -> str:
        return self._url("c", self.signer.make("click", campaign_id, subscriber_id, link_id))

    def unsubscribe(self, campaign_id: int, subscriber_id: int) -> str:
        return self._url("u", self.signer.make("unsubscribe", campaign_id, subscriber_id))

    def preferences(self, campaign_id: int, subscriber_id: int) -> str:
        return self._url("p", self.signer.make("preferences", campaign_id, subscriber_id))

    def view(self, campaign_id: int, subscriber_id: int) -> str:
        return self._url("v", self.signer.make("view", campaign_id, subscriber_id))


F = TypeVar("F")


class _PlanForms(Generic[F]):
    """One part's compiled forms: one per campaign plan (by the identity of its spliced
    pieces) and tracking, or the reason it cannot be; and which of them the first
    message proved equal to the full path."""

    def __init__(self) -> None:
        self.forms: dict[tuple[int, bool], tuple[list[Any], F | str]] = {}
        self.proven: set[tuple[int, bool]] = set()

    def get(self, pieces: list[Any], tracked: bool, build: Callable[[], F]) -> F | str:
        """The compiled form of these pieces, built once; or why it is not."""
        key = (id(pieces), tracked)
        found = self.forms.get(key)
        if found is None:
            compiled: F | str
            try:
                compiled = build()
            except NotCompilable as exc:
                compiled = str(exc)  # this plan's messages keep the full path
            if len(self.forms) >= 128:  # many article subsets: start over
                self.forms.clear()
                self.proven.clear()
            # The pieces are kept with their compiled form, so their id is not reused.
            found = self.forms[key] = (pieces, compiled)
        return found[1]

    def is_proven(self, pieces: list[Any], tracked: bool) -> bool:
        return (id(pieces), tracked) in self.proven

    def prove(self, pieces: list[Any], tracked: bool) -> None:
        self.proven.add((id(pieces), tracked))


# One subscriber's articles, the message factory of their subject, and the campaign's
# template data for those articles (its preheader follows them).
_Parts = tuple[list[ArticleContext], MessageFactory, dict[str, Any]]


class CampaignMail:
    """Everything needed to render one campaign for any subscriber.

    Made by ``load_mail`` only, complete: the articles' context, the compiled
    templates, the registered link ids and who gets only some of the articles.
    Per subscriber only the personal parts change; what is cached on the way
    (personal subjects) follows from what it was built with.
    """

    def __init__(
        self,
        *,
        campaign: Mapping[str, Any],
        articles: list[Article],
        templates: TemplateSet,
        settings: Settings,
        urls: Urls,
        link_ids: Mapping[str, int],
        personal: Mapping[int, list[int]],
    ):
        self.campaign = campaign
        self.templates = templates
        self.settings = settings
        self.urls = urls
        self._rewriter = tracking.LinkRewriter(link_ids)
        # Automatic campaigns: the recipients who get only some of the articles (the
        # rest they had before), by subscriber id; everyone else gets them all.
        self._personal = {sid: tuple(ids) for sid, ids in personal.items()}
        self._personal_parts: dict[tuple[int, ...], _Parts] = {}  # by article subset
        css = templates.stylesheet
        self.articles = [article_context(a, css, settings.site.base_url) for a in articles]
        # The campaign's own words: the same for every subscriber, rendered once here.
        base_url = settings.site.base_url
        self.intro = composer.content(
            campaign.get("intro") or "", base_url, lambda html: styled_block(html, css)
        )
        self.body = composer.content(
            campaign.get("body") or "", base_url, lambda html: styled_block(html, css)
        )
        self._article_by_url = {a["url"]: a["id"] for a in self.articles if a["url"]}
        sender = settings.sender
        self.sender = sender_context(
            sender.from_name, sender.from_address, sender.postal_address, sender.reply_to
        )
        self.domain = sender.from_address.rpartition("@")[2] or "localhost"
        self.campaign_context = self._campaign_context(self.articles)
        self.site = site_context(settings.site.base_url, settings.templates.language)
        # The subject is the campaign's, or the template's rendered without any
        # subscriber: one subject per campaign, encoded once.
        self.subject = campaign["subject"] or templates.subject(
            {"campaign": self.campaign_context, "articles": self.articles, "sender": self.sender}
        )
        self.factory = self._factory(self.subject)
        # The HTML part compiled per campaign plan (compile_html), by the id of its
        # spliced pieces and whether it is tracked; those proven by a full build.
        self._compiling = False
        self.compile_reason = "not asked for (one-off renders)"
        self._html: _PlanForms[CompiledHtml] = _PlanForms()
        # The text part likewise (compiled_text.py), asked for with the HTML part.
        self._text_compiling = False
        self.text_reason = "not asked for (one-off renders)"
        self._text: _PlanForms[CompiledText] = _PlanForms()

    def _campaign_context(self, articles: Sequence[ArticleContext]) -> dict[str, Any]:
        """The campaign's template data; its preheader follows the articles when it set none."""
        return {
            "id": self.campaign["id"],
            "subject": self.campaign["subject"],
            "preheader": self.campaign.get("preheader")
            or default_preheader(articles, self.settings.templates.preheader, self.body.summary),
            # Markdown made clean HTML (marked safe) and its text part; empty when unset.
            "intro_html": self.intro.html,
            "intro_text": self.intro.text,
            "body_html": self.body.html,
            "body_text": self.body.text,
        }

    def _factory(self, subject: str) -> MessageFactory:
        return MessageFactory(
            from_name=self.settings.sender.from_name,
            from_address=self.settings.sender.from_address,
            subject=subject,
            reply_to=self.settings.sender.reply_to,
            list_id=f"{self.sender['name']} <newsletter.{self.domain}>",
            feedback_id=f"c{self.campaign['id']}:newsletter:{self.domain}",
        )

    @property
    def link_ids(self) -> Mapping[str, int]:
        """The campaign's tracked links by URL, as registered when it was loaded."""
        return MappingProxyType(self._rewriter.link_ids)

    @property
    def tracked(self) -> bool:
        return bool(self.campaign["tracking"]) and self.settings.tracking.enabled

    def _parts(self, subscriber_id: int) -> _Parts:
        """The articles, message factory (subject) and campaign data for one subscriber:
        made once per article subset, in one cache."""
        ids = self._personal.get(subscriber_id)
        if ids is None:
            return self.articles, self.factory, self.campaign_context
        parts = self._personal_parts.get(ids)
        if parts is None:
            articles = [a for a in self.articles if a["id"] in ids]
            factory = self.factory
            # An automatic campaign's subject is its template's, so it follows the articles.
            if self.campaign.get("kind", "manual") != "manual":
                factory = self._factory(
                    self.templates.subject(
                        {
                            "campaign": self.campaign_context,
                            "articles": articles,
                            "sender": self.sender,
                        }
                    )
                )
            campaign = self._campaign_context(articles)
            parts = self._personal_parts[ids] = (articles, factory, campaign)
        return parts

    def context(self, subscriber: Mapping[str, Any]) -> dict[str, Any]:
        """The template data for one subscriber: plain dicts, lists and strings."""
        cid, sid = self.campaign["id"], subscriber["id"]
        articles, _, campaign = self._parts(sid)
        return {
            "campaign": campaign,
            "articles": articles,
            "subscriber": subscriber_context(cast(Subscriber, subscriber)),
            "sender": self.sender,
            "site": self.site,
            "links": {
                "unsubscribe": self.urls.unsubscribe(cid, sid),
                "preferences": self.urls.preferences(cid, sid),
                "view_in_browser": self.urls.view(cid, sid),
            },
        }

    def _render(
        self, subscriber: Mapping[str, Any], context: Mapping[str, Any] | None = None
    ) -> Rendered:
        rendered = self.templates.render(context or self.context(subscriber))
        return Rendered(self.subject, rendered.html, rendered.text)

    def trackable_links(self) -> list[tuple[str, int | None]]:
        """The links of the campaign that click tracking may redirect to, with their article.

        Links to our own web server (unsubscribe, preferences, view) are
        personal and never tracked; the public page of an article without a
        URL of its own is the article's link, and tracked like any other.
        """
        rendered = self._render(SAMPLE_SUBSCRIBER)
        own = self.settings.site.base_url.rstrip("/") + "/"
        return [
            (url, self._article_by_url.get(url))
            for url in tracking.html_links(rendered.html)
            if not url.startswith(own) or url in self._article_by_url
        ]

    def render(
        self,
        subscriber: Mapping[str, Any],
        tracked: bool | None = None,
        pixel: bool = True,
        context: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """Render for one subscriber, with click links and the open pixel when tracking is on."""
        rendered = self._render(subscriber, context)
        if not (self.tracked if tracked is None else tracked):
            return rendered
        click = self._click(subscriber["id"])
        html = self._tracked_html(rendered.html, subscriber["id"], click, pixel)
        return Rendered(rendered.subject, html, self._tracked_text(rendered.text, click))

    def _click(self, subscriber_id: int) -> Callable[[int], str]:
        """One subscriber's click-tracking URL of a link, by link id."""
        cid = self.campaign["id"]

        @functools.cache  # a link in both parts is signed once
        def click(link_id: int) -> str:
            return self.urls.click(cid, subscriber_id, link_id)

        return click

    def _tracked_html(
        self, html: str, subscriber_id: int, click: Callable[[int], str], pixel: bool
    ) -> str:
        html = self._rewriter.rewrite_html(html, click)
        if pixel:
            html = tracking.add_pixel(html, self.urls.open(self.campaign["id"], subscriber_id))
        return html

    def _tracked_text(self, text: str, click: Callable[[int], str]) -> str:
        # A tracked link is longer than the one it replaces: wrap again.
        return wrap_lines(self._rewriter.rewrite_text(text, click))

    def compile_html(self, needs: str = MIME) -> bool:
        """Build each message's HTML part from bytes compiled once per campaign plan
        from now on, where the templates splice and the part allows it (see
        ``compiled_html.py``): for a send whose transport ``needs`` MIME bytes. Says
        whether it does; ``compile_reason`` says why not. The first message of each
        compiled plan is also built in full and compared: one difference, and the
        full path builds every message.

        The text part is compiled the same way, on its own (``compiled_text.py``):
        ``text_reason`` says why not."""
        if needs == FIELDS:
            self.compile_reason = "the transport takes the message as fields"
            self.text_reason = self.compile_reason
            return False
        sample = self.context(SAMPLE_SUBSCRIBER)
        self._compile_text(sample)
        pieces = self.templates.html_pieces(sample)
        if pieces is None:
            self.compile_reason = "the templates are not spliced"
            return False
        compiled = self._compiled_html(pieces, self.tracked)
        self._compiling = isinstance(compiled, CompiledHtml)
        self.compile_reason = "" if isinstance(compiled, CompiledHtml) else compiled
        return self._compiling

    def _compiled_html(self, pieces: list[Any], tracked: bool) -> CompiledHtml | str:
        """The HTML part of a campaign plan compiled, once; or why it is not."""
        return self._html.get(
            pieces,
            tracked,
            lambda: compile_html(
                pieces, self._rewriter.html_spellings if tracked else {}, pixel=tracked
            ),
        )

    def _compile_text(self, context: Mapping[str, Any]) -> None:
        """Build each message's text part from bytes compiled once per plan from now on,
        where the templates splice and the part allows it; else say why not."""
        pieces = self.templates.text_pieces(context)
        if pieces is None:
            self._text_compiling = False
            self.text_reason = "the templates are not spliced"
            return
        compiled = self._compiled_text_for(pieces, self.tracked)
        self._text_compiling = isinstance(compiled, CompiledText)
        self.text_reason = "" if isinstance(compiled, CompiledText) else compiled

    def _compiled_text_for(self, pieces: list[Any], tracked: bool) -> CompiledText | str:
        """The text part of a campaign plan compiled, once; or why it is not."""
        return self._text.get(
            pieces, tracked, lambda: compile_text(pieces, self._rewriter if tracked else None)
        )

    def _text_part(
        self,
        rendered: Rendered,
        spliced: SplicedHtml | None,
        tracked: bool,
        click: Callable[[int], str],
    ) -> str | bytes:
        """One message's text part: as text, or as its quoted-printable bytes where it
        is compiled (``compile_html``)."""
        if rendered.text or spliced is None:  # rendered in full (never empty then)
            return self._tracked_text(rendered.text, click) if tracked else rendered.text
        compiled = self._compiled_text_for(spliced.text_pieces, tracked)
        body = compiled.body(spliced.values, click) if isinstance(compiled, CompiledText) else None
        if body is not None and self._text.is_proven(spliced.text_pieces, tracked):
            return body
        text = plain_text(spliced.spliced_text)
        if tracked:
            text = self._tracked_text(text, click)
        if body is None:
            return text  # this message needs the full path (a line break in a value)
        if quoted_printable(text) != body:
            # The proof, on the first message of each compiled plan: a compiled part
            # that ever differs from the full path's is never used again.
            self._text_compiling = False
            self.text_reason = "a compiled text part differed from the full path's"
            return text
        self._text.prove(spliced.text_pieces, tracked)
        return body

    def _mime_parts(
        self, subscriber: Mapping[str, Any], tracked: bool | None, context: Mapping[str, Any]
    ) -> tuple[str | bytes, str | bytes]:
        """The text part and the HTML part of one message: each as text, or as its
        encoded bytes where it is compiled (``compile_html``)."""
        tracked = self.tracked if tracked is None else tracked
        rendered, spliced = self.templates.render_spliced(context, text=not self._text_compiling)
        compiled = (
            self._compiled_html(spliced.pieces, tracked)
            if spliced is not None and self._compiling
            else None
        )
        sid = subscriber["id"]
        click = self._click(sid)
        text = self._text_part(rendered, spliced, tracked, click)
        if not isinstance(compiled, CompiledHtml) or spliced is None:
            html = self._tracked_html(rendered.html, sid, click, True) if tracked else rendered.html
            return text, html
        pixel_url = self.urls.open(self.campaign["id"], sid) if tracked else ""
        body = compiled.body(spliced.values, click, pixel_url)
        if body is not None and self._html.is_proven(spliced.pieces, tracked):
            return text, body
        html = self._tracked_html(rendered.html, sid, click, True) if tracked else rendered.html
        if body is None:
            return text, html  # this message needs the full path (a long line, a CR)
        if html_body(html) != (b"7bit", body):
            # The proof, on the first message of each compiled plan: a compiled part
            # that ever differs from the full path's is never used again.
            self._compiling = False
            self.compile_reason = "a compiled HTML part differed from the full path's"
            return text, html
        self._html.prove(spliced.pieces, tracked)
        return text, body

    def message(
        self,
        subscriber: Mapping[str, Any],
        key: str,
        now: dt.datetime,
        tracked: bool | None = None,
        to_address: str | None = None,
        factory: MessageFactory | None = None,
    ) -> tuple[str, bytes]:
        """Return (Message-ID, wire bytes) of the campaign for one subscriber."""
        msg_id, envelope = self.envelope(
            subscriber,
            key,
            now,
            self.settings.sender.from_address,
            tracked,
            to_address,
            factory,
            needs=MIME,
        )
        return msg_id, envelope.data

    def envelope(
        self,
        subscriber: Mapping[str, Any],
        key: str,
        now: dt.datetime,
        sender: str,
        tracked: bool | None = None,
        to_address: str | None = None,
        factory: MessageFactory | None = None,
        needs: str = MIME,
    ) -> tuple[str, Envelope]:
        """The message for one subscriber in the form the transport reads (``needs``):
        wire bytes (MIME), or fields for email APIs (FIELDS), whose bytes stay empty.

        The headers' values are checked either way (a line break in a name fails
        this message alone), so a message fails the same whichever form goes.
        """
        factory = factory or self._parts(subscriber["id"])[1]
        context = self.context(subscriber)
        msg_id = message_id(self.campaign["id"], key, self.domain)
        unsubscribe = context["links"]["unsubscribe"]
        mailto = self.settings.sender.unsubscribe_mailto or None
        recipient = to_address or subscriber["email"]
        to_name = "" if to_address else context["subscriber"]["name"]
        if needs != FIELDS:
            text, html = self._mime_parts(subscriber, tracked, context)
            data = factory.build(
                to_address=recipient,
                to_name=to_name,
                msg_id=msg_id,
                date=now,
                text=text,
                html=html,
                unsubscribe_url=unsubscribe,
                unsubscribe_mailto=mailto,
            )
            return msg_id, Envelope(sender, recipient, data, key, crlf=True)
        rendered = self.render(subscriber, tracked, context=context)
        factory.check_personal(to_address=recipient, to_name=to_name, msg_id=msg_id)
        headers = {
            "Message-ID": msg_id,
            "List-Unsubscribe": list_unsubscribe(unsubscribe, mailto),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": factory.list_id or "",
            "Feedback-ID": factory.feedback_id or "",
        }
        if self.settings.sender.reply_to:
            headers["Reply-To"] = self.settings.sender.reply_to
        content = Content(
            subject=factory.subject,
            from_name=self.settings.sender.from_name,
            from_address=self.settings.sender.from_address,
            to_name=to_name,
            to_address=recipient,
            html=rendered.html,
            text=rendered.text,
            headers=headers,
        )
        return msg_id, Envelope(sender, recipient, b"", key, content)

    def test_message(
        self, sample: Mapping[str, Any], to_address: str, key: str, now: dt.datetime
    ) -> bytes:
        """A one-off copy for staff: [TEST] in the subject, no tracking, not counted."""
        factory = self._factory("[TEST] " + self.subject)
        return self.message(sample, key, now, False, to_address, factory)[1]


def load_mail(
    store: Store,
    campaign_id: int,
    templates: TemplateSet,
    settings: Settings,
    signer: tracking.Signer,
    draft: Mapping[str, Any] | None = None,
) -> CampaignMail:
    """Build the campaign's mail, the only way to: with everything stored for it now.

    That is its articles, the links registered for it so far and, for an
    automatic campaign, who gets only some of the articles (settled when its
    deliveries are planned). Load it again after either changes.

    ``draft``: a campaign as it is being written (``campaigns.as_draft``), for
    its live preview: not stored, so it has no links registered and is shown
    untracked (``campaign_id`` is not read).
    """
    campaign = draft if draft is not None else store.campaign(campaign_id)
    manual = campaign["kind"] == "manual"
    return CampaignMail(
        campaign=campaign,
        articles=store.articles_by_id(campaign["article_ids"]),
        templates=templates,
        settings=settings,
        urls=Urls(settings.site.base_url, signer),
        link_ids=store.links(campaign_id) if draft is None else {},
        personal=store.personal_articles(campaign_id) if draft is None and not manual else {},
    )
