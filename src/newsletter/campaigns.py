"""Campaigns: create, schedule and change state; render one campaign for each subscriber."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from newsletter import timerules, tracking
from newsletter.config import Settings
from newsletter.errors import InputError, NotFound, StateError
from newsletter.mime import MessageFactory, header_value, list_unsubscribe
from newsletter.render import (
    Rendered,
    TemplateSet,
    article_context,
    article_page_url,
    choose_template,
    default_preheader,
    message_id,
    site_context,
    subscriber_context,
)
from newsletter.store import Store
from newsletter.subscriber_csv import normalize_email
from newsletter.textify import wrap_lines
from newsletter.transports import Content, Envelope

SAMPLE_SUBSCRIBER = {
    "email": "reader@example.com",
    "first_name": "Sample",
    "last_name": "Reader",
    "attributes": {},
    "id": 0,
}


def parse_local_time(text: str, zone: str) -> tuple[dt.datetime, str]:
    """Read "YYYY-MM-DD HH:MM" in an IANA zone; return it in UTC and a note on DST.

    The rule (RFC 5545, as zoneinfo's fold=0): a wall time that a
    daylight-saving change skips (02:30 on a spring-forward night) is read
    with the offset from before the change, so it lands as far after the
    change (03:30); a wall time that occurs twice is the first of the two.
    The note says so whenever it applies.
    """
    try:
        tz = timerules.zone(zone)
    except InputError as exc:
        raise InputError(f"--tz: {exc}") from None
    try:
        naive = dt.datetime.strptime(text.strip(), "%Y-%m-%d %H:%M")
    except ValueError:
        raise InputError(
            f'--at: {text!r} is not a date and time in the form "YYYY-MM-DD HH:MM"'
        ) from None
    return timerules.local_to_utc(naive, tz)


def create(
    store: Store,
    settings: Settings,
    subject: str,
    articles: str,
    template: str | None,
    list_name: str | None,
    now: dt.datetime,
    preheader: str = "",
    tracking_on: bool = True,
    segment: list[dict[str, Any]] | None = None,
) -> int:
    """Create a draft campaign from new articles or the given ids; return its id.

    ``segment``: rules from ``subscribers.parse_segment`` that every recipient must match.
    """
    if not subject.strip():
        raise InputError("--subject: the subject must not be empty")
    # Refused here, once, rather than failing every message of the campaign later.
    header_value(subject.strip(), "subject")
    if articles == "new":
        # Newest first, as a blog lists them: the latest article leads the email.
        article_ids = [a["id"] for a in store.articles(only_new=True)]
        if not article_ids:
            raise InputError(
                "--articles new: there are no new articles; run `newsletter fetch` "
                "or name articles with --articles ID,ID"
            )
    else:
        try:
            article_ids = [int(part) for part in articles.split(",") if part.strip()]
        except ValueError:
            raise InputError(
                f"--articles: {articles!r} is not 'new' or a list of ids such as 3,4"
            ) from None
        store.articles_by_id(article_ids)  # raises NotFound naming the bad id
    list_id = store.list_id(list_name) if list_name else None
    return store.create_campaign(
        subject.strip(),
        preheader,
        choose_template(template or settings.templates.default, len(article_ids)),
        article_ids,
        list_id,
        tracking_on and settings.tracking.enabled,
        now,
        segment=segment,
    )


def article_pages(store: Store, settings: Settings, campaign_id: int) -> list[tuple[str, str]]:
    """(title, page URL) of each article of a campaign that has no URL of its own.

    Such an article (a folder file, a saved page) links to its public page on
    the web server; staff are told, so they know the server must be reachable.
    """
    campaign = store.campaign(campaign_id)
    return [
        (a["title"], article_page_url(settings.site.base_url, a))
        for a in store.articles_by_id(campaign["article_ids"])
        if not a.get("url")
    ]


def design(campaign: Mapping[str, Any]) -> str:
    """The template set a campaign renders with: its own, by the one rule for articles.

    A campaign stored as an announcement of several articles (made before the
    rule) renders as a digest, so every article it counts as sent is shown.
    """
    return choose_template(campaign["template"], len(campaign["article_ids"]))


def schedule(
    store: Store,
    campaign_id: int,
    when_utc: dt.datetime,
    now: dt.datetime,
    allowed_from: tuple[str, ...] = ("draft", "scheduled", "paused"),
) -> None:
    """Schedule (or reschedule) a campaign for a time in UTC; a missed one gets a new time."""
    campaign = store.campaign(campaign_id)
    if campaign["status"] == "paused" and campaign.get("started_at"):
        # Its deliveries are planned already; starting it again would plan them twice.
        raise StateError(
            f"campaign {campaign_id}: paused part-way through its send; resume it "
            f"(`newsletter campaign resume {campaign_id}`) instead of scheduling it"
        )
    if when_utc <= now:
        raise InputError(
            f"--at: {when_utc:%Y-%m-%d %H:%M} UTC is in the past; "
            f"use `newsletter campaign send {campaign_id}` to send now"
        )
    if not store.set_campaign_status(
        campaign_id,
        "scheduled",
        allowed_from,
        now,
        scheduled_at=when_utc.isoformat(timespec="seconds"),
        missed_at=None,
        note=None,
    ):
        _refuse(store, campaign_id, "schedule")


def reschedule(store: Store, campaign_id: int, when_utc: dt.datetime, now: dt.datetime) -> None:
    schedule(store, campaign_id, when_utc, now, allowed_from=("scheduled",))


def unschedule(store: Store, campaign_id: int, now: dt.datetime) -> None:
    """Take a scheduled (or missed) campaign back to draft; nothing of it is sent."""
    if not store.set_campaign_status(
        campaign_id, "draft", ("scheduled",), now, scheduled_at=None, missed_at=None, note=None
    ):
        _refuse(store, campaign_id, "unschedule")


def start(store: Store, campaign_id: int, now: dt.datetime) -> int:
    """Move a campaign to sending and plan its deliveries; return the number of recipients."""
    campaign = store.campaign(campaign_id)
    if campaign["status"] == "sending":
        return campaign_recipients(store, campaign_id)
    if campaign["status"] not in ("draft", "scheduled"):
        _refuse(store, campaign_id, "send")
    if not store.start_campaign(campaign_id, campaign["list_id"], now):
        _refuse(store, campaign_id, "send")
    return campaign_recipients(store, campaign_id)


def campaign_recipients(store: Store, campaign_id: int) -> int:
    return sum(store.delivery_counts(campaign_id).values())


def pause(store: Store, campaign_id: int, now: dt.datetime) -> None:
    if not store.set_campaign_status(campaign_id, "paused", ("sending", "scheduled"), now):
        _refuse(store, campaign_id, "pause")


def resume(store: Store, campaign_id: int, now: dt.datetime) -> str:
    """Continue a paused campaign where it stopped; return the status it resumes to."""
    campaign = store.campaign(campaign_id)
    target = "sending" if campaign["started_at"] else "scheduled"
    if target == "scheduled" and not campaign["scheduled_at"]:
        target = "draft"
    if not store.set_campaign_status(campaign_id, target, ("paused",), now):
        _refuse(store, campaign_id, "resume")
    return target


def cancel(store: Store, campaign_id: int, now: dt.datetime) -> None:
    if not store.set_campaign_status(
        campaign_id, "cancelled", ("draft", "scheduled", "sending", "paused"), now
    ):
        _refuse(store, campaign_id, "cancel")


def retry(store: Store, campaign_id: int, in_doubt: bool, now: dt.datetime) -> int:
    """Queue failed (or, with ``in_doubt``, in-doubt) deliveries again; return how many.

    A finished or paused campaign with rows queued again goes back to sending,
    so the next send run picks them up.
    """
    store.campaign(campaign_id)
    count = store.retry_in_doubt(campaign_id) if in_doubt else store.retry_failed(campaign_id)
    if count:
        store.set_campaign_status(campaign_id, "sending", ("sent", "paused"), now)
    return count


def sample_subscriber(store: Store, email: str | None = None) -> dict[str, Any]:
    """The subscriber a preview or test is rendered for: the one named, else the first
    confirmed one, else a made-up reader."""
    if email:
        try:
            address = normalize_email(email)
        except Exception:  # noqa: BLE001 - any invalid input means "not ours"
            address = email.strip()
        found = store.subscriber_by_email(address)
        if found is None:
            raise NotFound(f"{email}: no such subscriber; see `newsletter subscribers list`")
        return found
    confirmed = store.subscribers("confirmed")
    return confirmed[0] if confirmed else dict(SAMPLE_SUBSCRIBER)


def _refuse(store: Store, campaign_id: int, action: str) -> None:
    status = store.campaign(campaign_id)["status"]
    raise StateError(f"campaign {campaign_id}: cannot {action} a campaign that is {status}")


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


class CampaignMail:
    """Everything needed to render one campaign for any subscriber.

    Built once per campaign: the articles' context, the compiled templates and
    the registered link ids; per subscriber only the personal parts change.
    """

    def __init__(
        self,
        campaign: Mapping[str, Any],
        articles: list[dict[str, Any]],
        templates: TemplateSet,
        settings: Settings,
        urls: Urls,
        link_ids: Mapping[str, int] | None = None,
        personal: Mapping[int, list[int]] | None = None,
    ):
        self.campaign = campaign
        self.templates = templates
        self.settings = settings
        self.urls = urls
        self.link_ids = link_ids or {}
        css = templates.stylesheet
        self.articles = [article_context(a, css, settings.site.base_url) for a in articles]
        self._article_by_url = {a["url"]: a["id"] for a in self.articles if a["url"]}
        sender = settings.sender
        self.sender = {
            "name": sender.from_name,
            "address": sender.from_address,
            "postal_address": sender.postal_address,
            "reply_to": sender.reply_to or None,
        }
        self.domain = sender.from_address.rpartition("@")[2] or "localhost"
        self.campaign_context = self._campaign_context(self.articles)
        self._personal_campaign: dict[tuple[int, ...], dict[str, Any]] = {}
        self.site = site_context(settings.site.base_url, settings.templates.language)
        # The subject is the campaign's, or the template's rendered without any
        # subscriber: one subject per campaign, encoded once.
        self.subject = campaign["subject"] or templates.subject(
            {"campaign": self.campaign_context, "articles": self.articles, "sender": self.sender}
        )
        self.factory = self._factory(self.subject)
        self.set_personal(personal or {})

    def _campaign_context(self, articles: list[dict[str, Any]]) -> dict[str, Any]:
        """The campaign's template data; its preheader follows the articles when it set none."""
        return {
            "id": self.campaign["id"],
            "subject": self.campaign["subject"],
            "preheader": self.campaign.get("preheader")
            or default_preheader(articles, self.settings.templates.preheader),
        }

    def set_personal(self, personal: Mapping[int, list[int]]) -> None:
        """Automatic campaigns: the recipients who get only some of the articles (the
        rest they had before), by subscriber id; everyone else gets them all."""
        self.personal = {sid: tuple(ids) for sid, ids in personal.items()}
        self._personal_parts: dict[tuple[int, ...], tuple[list[dict], MessageFactory]] = {}

    def _factory(self, subject: str) -> MessageFactory:
        return MessageFactory(
            from_name=self.sender["name"],
            from_address=self.sender["address"],
            subject=subject,
            reply_to=self.settings.sender.reply_to,
            list_id=f"{self.sender['name']} <newsletter.{self.domain}>",
            feedback_id=f"c{self.campaign['id']}:newsletter:{self.domain}",
        )

    @property
    def link_ids(self) -> dict[str, int]:
        return self._rewriter.link_ids

    @link_ids.setter
    def link_ids(self, link_ids: Mapping[str, int]) -> None:
        self._rewriter = tracking.LinkRewriter(link_ids)

    @property
    def tracked(self) -> bool:
        return bool(self.campaign["tracking"]) and self.settings.tracking.enabled

    def _parts(self, subscriber_id: int) -> tuple[list[dict[str, Any]], MessageFactory]:
        """The articles and message factory (subject) for one subscriber."""
        ids = self.personal.get(subscriber_id)
        if ids is None:
            return self.articles, self.factory
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
            parts = self._personal_parts[ids] = (articles, factory)
        return parts

    def context(self, subscriber: Mapping[str, Any]) -> dict[str, Any]:
        """The template data for one subscriber: plain dicts, lists and strings."""
        cid, sid = self.campaign["id"], subscriber["id"]
        articles = self._parts(sid)[0]
        campaign = self.campaign_context
        if articles is not self.articles:
            key = tuple(a["id"] for a in articles)
            if key not in self._personal_campaign:
                self._personal_campaign[key] = self._campaign_context(articles)
            campaign = self._personal_campaign[key]
        return {
            "campaign": campaign,
            "articles": articles,
            "subscriber": subscriber_context(subscriber),
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
        cid, sid = self.campaign["id"], subscriber["id"]

        def click(link_id: int) -> str:
            return self.urls.click(cid, sid, link_id)

        html = self._rewriter.rewrite_html(rendered.html, click)
        if pixel:
            html = tracking.add_pixel(html, self.urls.open(cid, sid))
        # A tracked link is longer than the one it replaces: wrap again.
        text = wrap_lines(self._rewriter.rewrite_text(rendered.text, click))
        return Rendered(rendered.subject, html, text)

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
            self.sender["address"],
            tracked,
            to_address,
            factory,
            fields=False,
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
        fields: bool = True,
    ) -> tuple[str, Envelope]:
        """The message for one subscriber as wire bytes and, with ``fields``, as fields
        for email APIs."""
        factory = factory or self._parts(subscriber["id"])[1]
        context = self.context(subscriber)
        rendered = self.render(subscriber, tracked, context=context)
        msg_id = message_id(self.campaign["id"], key, self.domain)
        unsubscribe = context["links"]["unsubscribe"]
        mailto = self.settings.sender.unsubscribe_mailto or None
        recipient = to_address or subscriber["email"]
        to_name = "" if to_address else context["subscriber"]["name"]
        data = factory.build(
            to_address=recipient,
            to_name=to_name,
            msg_id=msg_id,
            date=now,
            text=rendered.text,
            html=rendered.html,
            unsubscribe_url=unsubscribe,
            unsubscribe_mailto=mailto,
        )
        if not fields:
            return msg_id, Envelope(sender, recipient, data, key)
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
            from_name=self.sender["name"],
            from_address=self.sender["address"],
            to_name=to_name,
            to_address=recipient,
            html=rendered.html,
            text=rendered.text,
            headers=headers,
        )
        return msg_id, Envelope(sender, recipient, data, key, content)

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
) -> CampaignMail:
    """Build the campaign's renderer with the links registered for it so far."""
    campaign = store.campaign(campaign_id)
    articles = store.articles_by_id(campaign["article_ids"])
    return CampaignMail(
        campaign,
        articles,
        templates,
        settings,
        Urls(settings.site.base_url, signer),
        store.links(campaign_id),
        store.personal_articles(campaign_id) if campaign["kind"] != "manual" else None,
    )
