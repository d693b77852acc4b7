"""Campaigns: create, schedule and change state; the lifecycle of a campaign.

Its mail (rendering it for each subscriber) is ``mail.py``'s.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from newsletter import composer, subscribers, timerules
from newsletter.config import Settings
from newsletter.errors import InputError, NotFound, StateError
from newsletter.mail import SAMPLE_SUBSCRIBER
from newsletter.mime import header_value
from newsletter.render import TemplateSet, article_page_url, choose_template
from newsletter.status import EDITABLE, CampaignStatus, SubscriberStatus
from newsletter.store import Store
from newsletter.subscriber_csv import normalize_email


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


@dataclass(frozen=True)
class NewCampaign:
    """A campaign as a person asks for it, as typed: on the command line or in the form.

    ``articles`` is "new", ids such as "3,4", or "none" (a campaign of its own
    words only); ``template`` None or "auto" for ``[templates] default``'s rule;
    ``segment`` one rule a string, such as ``tag:back-pain``
    (``subscribers.parse_segment``). ``intro`` (Markdown) is shown above the
    articles; ``body`` (Markdown) is the message of a campaign without articles.
    """

    subject: str
    articles: str = "new"
    template: str | None = None
    list_name: str | None = None
    segment: Sequence[str] = ()
    preheader: str = ""
    tracking: bool = True
    intro: str = ""
    body: str = ""


@dataclass(frozen=True)
class Created:
    """What creating a campaign did, for the CLI and the dashboard to tell."""

    campaign_id: int
    design: str  # the template set it renders with
    article_count: int
    # Subscribers who match the segment now (None: no segment, everyone on the list).
    matching: int | None
    # Asked for the announcement design but given several articles: the design used instead.
    announcement_became: str | None
    # (title, page URL) of each article with no URL of its own: it links to its page here.
    article_pages: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Checked:
    """A campaign as typed, read and checked: what the store is given."""

    subject: str
    preheader: str
    template: str
    article_ids: list[int]
    list_id: int | None
    tracking: bool
    rules: list[dict[str, Any]]
    intro: str = ""
    body: str = ""


def _check(
    store: Store,
    settings: Settings,
    templates: Callable[[str], TemplateSet] | None,
    new: NewCampaign,
) -> _Checked:
    """Every check a campaign as typed must pass before anything of it is stored.

    The segment rules are read and the template set loaded (``templates``, the
    workspace's loader; None skips loading) so a bad rule or a missing or broken
    template fails here, not at send time; then the subject, the articles and the
    list are checked.
    """
    rules = [subscribers.parse_segment(text) for text in new.segment]
    if templates is not None and new.template and new.template != "auto":
        templates(new.template)
    subject = new.subject.strip()
    if not subject:
        raise InputError("--subject: the subject must not be empty")
    # Refused here, once, rather than failing every message of the campaign later.
    header_value(subject, "subject")
    intro, body = _text(new.intro), _text(new.body)
    for option, text in (("--intro-file", intro), ("--body-file", body)):
        # Judged on what the email would show: a text of script alone cleans to nothing.
        if text and not composer.markdown_html(text, settings.site.base_url):
            raise InputError(
                f"{option}: the text has nothing to show once cleaned (script, an empty "
                f"link or an image without an address is left out); write the message in it"
            )
    article_ids = _article_ids(store, new.articles, has_body=bool(body or intro))
    if body and article_ids:
        raise InputError(
            "--body-file: a body is the message of a campaign without articles, and this "
            "one has articles; give --articles none, or put the text in --intro-file (and "
            "give an empty --body-file) to show it above the articles"
        )
    if intro and not article_ids:
        # One text per campaign without articles: the form has one field for it, so a
        # campaign holding both would lose one when edited there.
        raise InputError(
            "--intro-file: shown above articles; this campaign has none; put the text "
            "in --body-file"
        )
    template = choose_template(new.template or settings.templates.default, len(article_ids))
    if templates is not None and (intro or body):
        _check_design(templates(template), intro=bool(intro))
    list_id = store.list_id(new.list_name) if new.list_name else None
    return _Checked(
        subject=subject,
        preheader=new.preheader,
        template=template,
        article_ids=article_ids,
        list_id=list_id,
        tracking=new.tracking and settings.tracking.enabled,
        rules=rules,
        intro=intro,
        body=body,
    )


def _check_design(design: TemplateSet, intro: bool) -> None:
    """Refuse a design that would not show the campaign's own text.

    A workspace's copy of a design made before campaigns had their own words
    names none of them: the text would silently be left out (or, without
    articles, the message be empty or fail at send).
    """
    if intro:
        wanted = {"body.html": "intro_html", "body.txt": "intro_text"}
        what = "the intro above the articles"
    else:
        wanted = {"body.html": "body_html", "body.txt": "body_text"}
        what = "the message of a campaign without articles"
    for part, field_name in wanted.items():
        if field_name not in design.campaign_fields(part):
            raise InputError(
                f"template {design.name!r}: templates/{design.name}/{part} does not show "
                f"{what} (campaign.{field_name}); add it as docs/templates.md shows, or "
                f"choose another design with --template"
            )


def check_draft_design(design: TemplateSet, draft: dict[str, Any]) -> None:
    """Refuse, as saving does, a design that would not show a draft's own text
    (``as_draft``), so that the composer's preview says so while the text is typed."""
    if draft["intro"] or draft["body"]:
        _check_design(design, intro=bool(draft["intro"]))


def _text(markdown: str) -> str:
    """A campaign's own Markdown as stored: line ends made one kind, no blank edges."""
    return markdown.replace("\r\n", "\n").replace("\r", "\n").strip()


def _insert(store: Store, checked: _Checked, now: dt.datetime) -> int:
    """Store a checked campaign as a draft; its id."""
    return store.create_campaign(
        checked.subject,
        checked.preheader,
        checked.template,
        checked.article_ids,
        checked.list_id,
        checked.tracking,
        now,
        segment=checked.rules,
        intro=checked.intro,
        body=checked.body,
    )


def _article_ids(store: Store, articles: str, has_body: bool = False) -> list[int]:
    """The ids "new" or "3,4" stands for, in the email's order; each one must exist.

    "none" (or nothing) is a campaign without articles: allowed only with a body
    (``has_body``), the message it sends instead.
    """
    if articles.strip() in ("", "none"):
        if has_body:
            return []
        raise InputError(
            f"--articles: {articles!r} names no article; give ids such as 3,4 or 'new', "
            f"or write the message of a campaign without articles with --body-file"
        )
    if articles == "new":
        # Newest first, as a blog lists them: the latest article leads the email.
        article_ids = [a["id"] for a in store.articles(only_new=True)]
        if not article_ids:
            raise InputError(
                "--articles new: there are no new articles; run `newsletter fetch` "
                "or name articles with --articles ID,ID"
            )
        return article_ids
    try:
        article_ids = [int(part) for part in articles.split(",") if part.strip()]
    except ValueError:
        raise InputError(
            f"--articles: {articles!r} is not 'new' or a list of ids such as 3,4"
        ) from None
    if not article_ids:
        raise InputError(
            f"--articles: {articles!r} names no article; give ids such as 3,4 or 'new', "
            f"or write the message of a campaign without articles with --body-file"
        )
    # One article once: the email shows each article once, in the first place it is named.
    article_ids = list(dict.fromkeys(article_ids))
    store.articles_by_id(article_ids)  # raises NotFound naming the bad id
    return article_ids


def _told(
    store: Store,
    settings: Settings,
    campaign_id: int,
    asked: str,
    rules: list[dict[str, Any]],
    now: dt.datetime | None = None,
) -> Created:
    campaign = store.campaign(campaign_id)
    return Created(
        campaign_id=campaign_id,
        design=campaign["template"],
        article_count=len(campaign["article_ids"]),
        matching=store.count_recipients(campaign["list_id"], rules, now) if rules else None,
        announcement_became=(
            campaign["template"]
            if asked == "announcement" and campaign["template"] != "announcement"
            else None
        ),
        article_pages=article_pages(store, settings, campaign_id),
    )


def create_draft(
    store: Store,
    settings: Settings,
    templates: Callable[[str], TemplateSet],
    new: NewCampaign,
    now: dt.datetime,
) -> Created:
    """Check a campaign as a person asked for it and create it as a draft.

    The one way the CLI and the dashboard create a campaign (``_check`` says
    what is checked). Nothing is stored unless every check passes. A draft
    uses up no article: they stay new until a campaign starts sending them.
    A campaign needs articles, or a body to send without them.
    """
    checked = _check(store, settings, templates, new)
    campaign_id = _insert(store, checked, now)
    return _told(
        store, settings, campaign_id, new.template or settings.templates.default, checked.rules, now
    )


def update_draft(
    store: Store,
    settings: Settings,
    templates: Callable[[str], TemplateSet],
    campaign_id: int,
    new: NewCampaign,
    now: dt.datetime | None = None,
) -> Created:
    """Replace what a campaign that has not started sending says and whom it is for.

    The same checks as ``create_draft``; subject, preheader, articles (and their
    order), intro, body, design, list, segment and tracking all take the values in ``new``.
    A scheduled campaign keeps its time. Refused once sending has started.
    ``now``: when the segment's matching count is taken (an engagement rule needs it).
    """
    checked = _check(store, settings, templates, new)
    if not store.update_draft(
        campaign_id,
        checked.subject,
        checked.preheader,
        checked.template,
        checked.article_ids,
        checked.list_id,
        checked.tracking,
        segment=checked.rules,
        intro=checked.intro,
        body=checked.body,
    ):
        _refuse(store, campaign_id, "change")
    return _told(
        store, settings, campaign_id, new.template or settings.templates.default, checked.rules, now
    )


def delete_draft(store: Store, campaign_id: int) -> str:
    """Delete a draft (never a campaign that was scheduled or sent); return its subject."""
    subject = store.campaign(campaign_id)["subject"]
    if not store.delete_draft(campaign_id):
        _refuse(store, campaign_id, "delete")
    return str(subject)


def segment_text(rule: dict[str, Any]) -> str:
    """A stored segment rule as it is typed (``subscribers.parse_segment`` reads it back)."""
    bang = "!" if rule.get("negate") else ""
    if rule["kind"] == "tag":
        return f"{bang}tag:{rule['value']}"
    if rule["kind"] in subscribers.ENGAGEMENT_KINDS:
        return f"{bang}{rule['kind']}:{rule['days']}"
    value = "" if rule.get("value") is None else f"={rule['value']}"
    return f"{bang}attribute:{rule['key']}{value}"


def as_typed(store: Store, campaign_id: int) -> NewCampaign:
    """A stored campaign as a person would type it, to change some of it and save it back."""
    campaign = store.campaign(campaign_id)
    lists = {row["id"]: row["name"] for row in store.lists()}
    rules = json.loads(campaign["segment"]) if campaign["segment"] else []
    return NewCampaign(
        subject=campaign["subject"],
        articles=",".join(str(i) for i in campaign["article_ids"]) or "none",
        template=campaign["template"],
        list_name=lists.get(campaign["list_id"]) if campaign["list_id"] else None,
        segment=[segment_text(rule) for rule in rules],
        preheader=campaign["preheader"] or "",
        tracking=bool(campaign["tracking"]),
        intro=campaign.get("intro") or "",
        body=campaign.get("body") or "",
    )


def as_draft(store: Store, settings: Settings, new: NewCampaign) -> dict[str, Any]:
    """A campaign as it is being typed, as its preview renders it: not checked, not stored.

    What cannot be read yet is left out rather than refused (an article that is
    gone, no articles at all), so the preview follows the typing; saving checks
    it all (``create_draft``).
    """
    try:
        article_ids = _article_ids(store, new.articles, has_body=True)
    except (InputError, NotFound):
        article_ids = []
    intro, body = _text(new.intro), _text(new.body)
    return {
        "id": 0,
        "kind": "manual",
        "subject": new.subject.strip(),
        "preheader": new.preheader,
        "template": choose_template(new.template or settings.templates.default, len(article_ids)),
        "article_ids": article_ids,
        "tracking": False,
        "intro": intro,
        "body": "" if article_ids else body,
    }


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

    ``segment``: rules from ``subscribers.parse_segment`` that every recipient
    must match. What people type comes through ``create_draft``, which reads
    the rules and checks the template first.
    """
    new = NewCampaign(
        subject=subject,
        articles=articles,
        template=template,
        list_name=list_name,
        preheader=preheader,
        tracking=tracking_on,
    )
    checked = replace(_check(store, settings, None, new), rules=segment or [])
    return _insert(store, checked, now)


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


def schedule(
    store: Store,
    campaign_id: int,
    when_utc: dt.datetime,
    now: dt.datetime,
    allowed_from: tuple[str, ...] = (*EDITABLE, CampaignStatus.PAUSED),
    zone: str | None = None,
) -> None:
    """Schedule (or reschedule) a campaign for a time in UTC; a missed one gets a new time.

    ``zone``: the IANA zone the time was chosen in, kept to show it that way.
    """
    campaign = store.campaign(campaign_id)
    if campaign["status"] == CampaignStatus.PAUSED and campaign.get("started_at"):
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
        CampaignStatus.SCHEDULED,
        allowed_from,
        now,
        scheduled_at=when_utc.isoformat(timespec="seconds"),
        scheduled_tz=zone,
        missed_at=None,
        note=None,
    ):
        _refuse(store, campaign_id, "schedule")


def reschedule(
    store: Store,
    campaign_id: int,
    when_utc: dt.datetime,
    now: dt.datetime,
    zone: str | None = None,
) -> None:
    schedule(store, campaign_id, when_utc, now, allowed_from=(CampaignStatus.SCHEDULED,), zone=zone)


def scheduled_local(campaign: dict[str, Any], default_zone: str) -> dt.datetime | None:
    """A campaign's scheduled time in the zone it was scheduled in (else ``default_zone``)."""
    if not campaign.get("scheduled_at"):
        return None
    when = dt.datetime.fromisoformat(campaign["scheduled_at"])
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(timerules.zone(campaign.get("scheduled_tz") or default_zone))


def unschedule(store: Store, campaign_id: int, now: dt.datetime) -> None:
    """Take a scheduled (or missed) campaign back to draft; nothing of it is sent."""
    if not store.set_campaign_status(
        campaign_id,
        CampaignStatus.DRAFT,
        (CampaignStatus.SCHEDULED,),
        now,
        scheduled_at=None,
        scheduled_tz=None,
        missed_at=None,
        note=None,
    ):
        _refuse(store, campaign_id, "unschedule")


def start(store: Store, campaign_id: int, now: dt.datetime) -> int:
    """Move a campaign to sending and plan its deliveries; return the number of recipients."""
    campaign = store.campaign(campaign_id)
    if campaign["status"] == CampaignStatus.SENDING:
        return campaign_recipients(store, campaign_id)
    if campaign["status"] not in EDITABLE:
        _refuse(store, campaign_id, "send")
    if not store.start_campaign(campaign_id, campaign["list_id"], now):
        _refuse(store, campaign_id, "send")
    return campaign_recipients(store, campaign_id)


def campaign_recipients(store: Store, campaign_id: int) -> int:
    return sum(store.delivery_counts(campaign_id).values())


def pause(store: Store, campaign_id: int, now: dt.datetime) -> None:
    if not store.set_campaign_status(
        campaign_id,
        CampaignStatus.PAUSED,
        (CampaignStatus.SENDING, CampaignStatus.SCHEDULED),
        now,
    ):
        _refuse(store, campaign_id, "pause")


def resume(store: Store, campaign_id: int, now: dt.datetime) -> CampaignStatus:
    """Continue a paused campaign where it stopped; return the status it resumes to."""
    campaign = store.campaign(campaign_id)
    if campaign["started_at"]:
        target = CampaignStatus.SENDING
    elif campaign["scheduled_at"]:
        target = CampaignStatus.SCHEDULED
    else:
        target = CampaignStatus.DRAFT
    if not store.set_campaign_status(campaign_id, target, (CampaignStatus.PAUSED,), now):
        _refuse(store, campaign_id, "resume")
    return target


def cancel(store: Store, campaign_id: int, now: dt.datetime) -> None:
    if not store.set_campaign_status(
        campaign_id,
        CampaignStatus.CANCELLED,
        (*EDITABLE, CampaignStatus.SENDING, CampaignStatus.PAUSED),
        now,
    ):
        _refuse(store, campaign_id, "cancel")


# The states whose failed rows a send run will still pick up once queued again.
RETRYABLE = (CampaignStatus.SENT, CampaignStatus.PAUSED, CampaignStatus.SENDING)


def retry(store: Store, campaign_id: int, in_doubt: bool, now: dt.datetime) -> int:
    """Queue failed (or, with ``in_doubt``, in-doubt) deliveries again; return how many.

    A finished or paused campaign with rows queued again goes back to sending,
    so the next send run picks them up. Any other campaign is refused: a cancelled
    one would hold the rows queued with nothing ever sending them, and a draft or a
    scheduled one has nothing that failed.
    """
    if store.campaign(campaign_id)["status"] not in RETRYABLE:
        _refuse(store, campaign_id, "retry")
    # The store queues rows again only while the campaign is still in one of these
    # states, so a cancel that lands between the check and the queue leaves them be.
    queue = store.retry_in_doubt if in_doubt else store.retry_failed
    count = queue(campaign_id, RETRYABLE)
    if count:
        store.set_campaign_status(
            campaign_id,
            CampaignStatus.SENDING,
            (CampaignStatus.SENT, CampaignStatus.PAUSED),
            now,
        )
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
    first = store.first_subscriber(SubscriberStatus.CONFIRMED)
    return first if first is not None else dict(SAMPLE_SUBSCRIBER)


def _refuse(store: Store, campaign_id: int, action: str) -> None:
    status = store.campaign(campaign_id)["status"]
    raise StateError(f"campaign {campaign_id}: cannot {action} a campaign that is {status}")
