"""Campaign pages: list, create, edit and delete a draft, progress, test, schedule, send now,
pause, resume, unschedule, cancel, retry.

The preview of a campaign is served by ``preview_view``; the composer's live preview and
image uploads by ``composer_views``.
"""

from __future__ import annotations

import functools
import json
import zoneinfo
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import campaigns, jobs, reports, timerules
from newsletter.errors import InputError, NewsletterError, StateError
from newsletter.render import DEFAULTS_DIR
from newsletter.status import EDITABLE, CampaignStatus, DeliveryStatus
from newsletter.web.dashboard.auth import redirect
from newsletter.web.wording import for_people, words

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

# Template sets that are not campaign designs.
NOT_CAMPAIGN_TEMPLATES = {"confirm", "welcome"}
# The buttons that change a campaign's state: the core function, what the page
# then says, and the word in the audit log.
STATE_CHANGES = {
    "pause": (campaigns.pause, "Paused.", "paused"),
    "resume": (campaigns.resume, "Resumed: now {status}.", "resumed"),
    "cancel": (campaigns.cancel, "Cancelled.", "cancelled"),
    "unschedule": (campaigns.unschedule, "Unscheduled: back to a draft.", "unscheduled"),
}

# The engagement choice of the segment builder: its rule, what the form says; the days offered.
ENGAGEMENT_CHOICES = {
    "engaged": "opened or clicked",
    "!engaged": "did not open or click",
    "clicked": "clicked a link",
    "!clicked": "did not click a link",
}
ENGAGEMENT_DAYS = (30, 60, 90, 180)

# Every IANA zone, for the schedule form's searchable list (typing "Berlin" finds it).
ZONES = sorted(zoneinfo.available_timezones() - {"localtime"})
# Failed and in-doubt deliveries listed with their reason on a campaign's page.
FAILURES_SHOWN = 50


def template_names(d: Dashboard) -> list[str]:
    """ "auto" and every campaign design, built in or in the workspace's templates folder."""
    names: set[str] = set()
    for folder in (DEFAULTS_DIR / "templates", d.ws.root / "templates"):
        if folder.is_dir():
            names.update(
                p.name
                for p in folder.iterdir()
                if (p / "body.html").is_file() and not p.name.startswith("_")
            )
    consent_mail = {
        d.ws.settings.subscribers.confirm_template,
        d.ws.settings.subscribers.welcome_template,
    }
    return ["auto", *sorted(names - NOT_CAMPAIGN_TEMPLATES - consent_mail)]


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{value!r} is not a number") from None


def _ids(values: list[Any]) -> list[int]:
    """The article ids of a form, in its order; anything else is left out."""
    return [int(v) for v in values if str(v).isdigit()]


def typed_campaign(form: Any) -> dict[str, Any]:
    """The campaign form as it was sent, with an up or down press applied to its order."""
    order = _ids(form.getlist("order"))
    chosen = _ids(form.getlist("article"))
    move = str(form.get("move", ""))
    direction, _, moved = move.partition(":")
    if moved.isdigit() and int(moved) in order:
        # Without the page's script, the up and down buttons come here.
        at = order.index(int(moved))
        to = at - 1 if direction == "up" else at + 1
        if 0 <= to < len(order):
            order[at], order[to] = order[to], order[at]
    return {
        "subject": str(form.get("subject", "")),
        "preheader": str(form.get("preheader", "")),
        # The campaign's own text: its intro with articles ticked, the whole message without.
        "content": str(form.get("content", "")),
        "chosen": chosen,
        "order": order,
        "move": move,
        # "new" (every new article, newest first) for a form posted by a script; the
        # page itself always sends its ticked articles.
        "articles_mode": str(form.get("articles_mode", "chosen")),
        "template": str(form.get("template", "auto")),
        "list_name": str(form.get("list", "")),
        "seg_tag": str(form.get("seg_tag", "")).strip(),
        "seg_not_tag": str(form.get("seg_not_tag", "")).strip(),
        "seg_attr_key": str(form.get("seg_attr_key", "")).strip(),
        "seg_attr_value": str(form.get("seg_attr_value", "")).strip(),
        "seg_engaged": str(form.get("seg_engaged", "")).strip(),
        "seg_engaged_days": str(form.get("seg_engaged_days", "")).strip(),
        "segment": str(form.get("segment", "")),
        "tracking": form.get("tracking") == "on",
    }


def segment_rules(values: dict[str, Any]) -> list[str]:
    """The segment as rules: the choices made in the form, then the typed lines."""
    rules = []
    if values["seg_tag"]:
        rules.append(f"tag:{values['seg_tag']}")
    if values["seg_not_tag"]:
        rules.append(f"!tag:{values['seg_not_tag']}")
    if values["seg_attr_key"]:
        wanted = values["seg_attr_value"]
        rules.append(f"attribute:{values['seg_attr_key']}" + (f"={wanted}" if wanted else ""))
    if values.get("seg_engaged") in ENGAGEMENT_CHOICES:
        # A days value not offered still reaches the core, which says what is wrong with it.
        rules.append(f"{values['seg_engaged']}:{values.get('seg_engaged_days') or 90}")
    typed = [line.strip() for line in values["segment"].splitlines() if line.strip()]
    return rules + typed


def as_new_campaign(values: dict[str, Any]) -> campaigns.NewCampaign:
    """The form as the core reads it: the same call as the command line makes."""
    order = values["order"] or values["chosen"]
    chosen = set(values["chosen"])
    articles = ",".join(str(i) for i in order if i in chosen)
    if values.get("articles_mode") == "new" and not chosen:
        articles = "new"
    # One text field, its role following the ticks: above the articles, or in their place.
    content = values.get("content", "")
    with_articles = bool(articles) or not content.strip()
    if not with_articles:
        articles = "none"
    return campaigns.NewCampaign(
        subject=values["subject"],
        # The ticked articles in the order shown; none ticked names none (never "all new").
        articles=articles,
        template=values["template"] or None,
        list_name=values["list_name"] or None,
        segment=segment_rules(values),
        preheader=values["preheader"],
        tracking=values["tracking"],
        intro=content if with_articles else "",
        body="" if with_articles else content,
    )


def form_values(new: campaigns.NewCampaign) -> dict[str, Any]:
    """A stored campaign (``campaigns.as_typed``) as the form shows it.

    The first rule of each kind the choices can say goes to its choice; any
    other rule stays typed.
    """
    values: dict[str, Any] = {
        "subject": new.subject,
        "preheader": new.preheader,
        "content": _one_text(new),
        "chosen": _ids(new.articles.split(",")),
        "order": _ids(new.articles.split(",")),
        "template": new.template or "auto",
        "list_name": new.list_name or "",
        "seg_tag": "",
        "seg_not_tag": "",
        "seg_attr_key": "",
        "seg_attr_value": "",
        "seg_engaged": "",
        "seg_engaged_days": "90",
        "tracking": new.tracking,
    }
    typed = []
    for rule in new.segment:
        if rule.startswith("tag:") and not values["seg_tag"]:
            values["seg_tag"] = rule[4:]
        elif rule.startswith("!tag:") and not values["seg_not_tag"]:
            values["seg_not_tag"] = rule[5:]
        elif rule.startswith("attribute:") and not values["seg_attr_key"]:
            key, _, wanted = rule[10:].partition("=")
            values["seg_attr_key"], values["seg_attr_value"] = key, wanted
        elif (engagement := _engagement_choice(rule)) and not values["seg_engaged"]:
            values["seg_engaged"], values["seg_engaged_days"] = engagement
        else:
            typed.append(rule)
    values["segment"] = "\n".join(typed)
    return values


def _one_text(new: campaigns.NewCampaign) -> str:
    """The one text field of a stored campaign, as ``typed_campaign`` reads it back.

    With articles, the intro (a body is not shown beside articles). Without, the
    body; a stored intro too (kept from before a campaign without articles had one
    text), which the designs show above it, goes first, so saving loses nothing the
    email shows.
    """
    if new.articles != "none":
        return new.intro
    return "\n\n".join(text for text in (new.intro.strip(), new.body.strip()) if text)


def _engagement_choice(rule: str) -> tuple[str, str] | None:
    """(choice, days) when the builder can show this rule (engaged:90), else None."""
    chosen, _, days = rule.partition(":")
    if chosen in ENGAGEMENT_CHOICES and days in {str(n) for n in ENGAGEMENT_DAYS}:
        return chosen, days
    return None


class CampaignViews:
    """The campaign pages of one dashboard."""

    def __init__(self, d: Dashboard):
        self.d, self.store = d, d.store

    @property
    def routes(self) -> list[Route]:
        d = self.d
        return [
            d.route("/campaigns", self.campaign_list),
            d.route("/campaigns/new", self.campaign_new, methods=["GET", "POST"]),
            d.route("/campaigns/{id:int}", self.campaign_page),
            d.route("/campaigns/{id:int}/edit", self.campaign_edit, methods=["GET", "POST"]),
            d.route("/campaigns/{id:int}/delete", self.delete, methods=["POST"]),
            d.route("/campaigns/{id:int}/progress", self.progress),
            d.route("/campaigns/{id:int}/test", self.send_test, methods=["POST"]),
            d.route("/campaigns/{id:int}/schedule", self.schedule, methods=["POST"]),
            d.route("/campaigns/{id:int}/send", self.send_now, methods=["POST"]),
            *(
                d.route(
                    f"/campaigns/{{id:int}}/{change}",
                    functools.partial(self.change_state, change),
                    methods=["POST"],
                )
                for change in STATE_CHANGES
            ),
            d.route("/campaigns/{id:int}/retry", self.retry, methods=["POST"]),
        ]

    # -- helpers --------------------------------------------------------------------------

    def campaign_id(self, request: Request) -> int:
        return _int(request.path_params["id"])

    def back(self, campaign: int, message: str, request: Request) -> Response:
        self.d.flash(request, message)
        return redirect(f"{self.d.prefix}/campaigns/{campaign}")

    def new_form(
        self, request: Request, status: int = 200, editing: int | None = None, **values: Any
    ) -> Response:
        """The form of a new campaign, or of a draft being changed (``editing``: its id)."""
        articles = self.store.articles()
        by_id = {a["id"]: a for a in articles}
        # The order staff chose, then every other article, newest first.
        order = [i for i in values.get("order", []) if i in by_id]
        order += [a["id"] for a in articles if a["id"] not in order]
        ticked = set(values.get("chosen", []))
        action = f"/campaigns/{editing}/edit" if editing else "/campaigns/new"
        choices = self.store.segment_choices()
        # What the campaign has chosen stays a choice, even when nobody has it now.
        for name, field in (
            ("tags", "seg_tag"),
            ("tags", "seg_not_tag"),
            ("attributes", "seg_attr_key"),
        ):
            if values.get(field) and values[field] not in choices[name]:
                choices[name] = sorted([*choices[name], values[field]])
        return self.d.render(
            request,
            "campaign_new.html",
            status,
            active="campaigns",
            article_rows=[(by_id[i], i in ticked) for i in order],
            templates=template_names(self.d),
            lists=self.store.lists(),
            choices=choices,
            engagement=ENGAGEMENT_CHOICES,
            engagement_days=ENGAGEMENT_DAYS,
            editing=editing,
            action=self.d.prefix + action,
            values=values,
        )

    def campaign_view(
        self, request: Request, cid: int, status: int = 200, **typed: Any
    ) -> Response:
        """The campaign's page; after a refused form, with its error and what was typed."""
        store = self.store
        campaign = store.campaign(cid)
        articles = store.articles_by_id(campaign["article_ids"])
        sample = campaigns.sample_subscriber(store)
        return self.d.render(
            request,
            "campaign.html",
            status,
            active="campaigns",
            typed=typed,
            articles=articles,
            sample=sample,
            preview_for=request.query_params.get("subscriber", ""),
            failures=store.failed_deliveries(cid, FAILURES_SHOWN),
            failure_limit=FAILURES_SHOWN,
            timezone=self.d.ws.settings.schedule.timezone,
            zones=ZONES,
            scheduled=campaigns.scheduled_local(campaign, self.d.ws.settings.schedule.timezone),
            **self.progress_context(cid),
        )

    def refused(
        self, request: Request, cid: int, form_name: str, exc: NewsletterError, **typed: Any
    ) -> Response:
        # Shown by the field it is about, the form filled in as it was sent.
        said = for_people(exc)
        status = 409 if isinstance(exc, StateError) else 400
        return self.campaign_view(
            request,
            cid,
            status,
            form=form_name,
            error=said.text,
            error_field=said.field or "",
            **typed,
        )

    def progress_context(self, cid: int) -> dict[str, Any]:
        sender = self.d.sender
        campaign = self.store.campaign(cid)
        counts = self.store.delivery_counts(cid)
        total = sum(counts.values())
        done = (
            total
            - counts[DeliveryStatus.PENDING]
            - counts[DeliveryStatus.DEFERRED]
            - counts.get(DeliveryStatus.SENDING, 0)
        )
        matching = None
        if campaign["status"] in EDITABLE:
            # Whom Send now would reach at this moment: the number its confirmation names.
            segment = json.loads(campaign["segment"]) if campaign["segment"] else []
            matching = self.store.count_recipients(campaign["list_id"], segment, self.d.clock())
        local = campaigns.scheduled_local(campaign, self.d.ws.settings.schedule.timezone)
        return {
            "campaign": campaign,
            # "Monday 7 December 2026, 09:30 CET (Europe/Berlin)": the weekday and the zone
            # it was chosen in, so nobody misreads the day.
            "scheduled_local": (
                f"{local:%A} {local.day} {local:%B %Y, %H:%M %Z} ({local.tzinfo})" if local else ""
            ),
            "matching": matching,
            "counts": counts,
            "total": total,
            "done": done,
            "running": sender.running(cid),
            "error": words(sender.error(cid)) if sender.error(cid) else None,
            "live": campaign["status"] == CampaignStatus.SENDING or sender.running(cid),
        }

    # -- the pages --------------------------------------------------------------------------

    def campaign_list(self, request: Request) -> Response:
        rows = reports.summaries(self.store, self.d.report_cache)[::-1]
        return self.d.render(request, "campaigns.html", active="campaigns", rows=rows)

    def campaign_new(self, request: Request) -> Response:
        d, store, new_form = self.d, self.store, self.new_form
        if request.method == "GET":
            new = [a["id"] for a in store.articles(only_new=True)]
            return new_form(request, chosen=new, order=new, template="auto", tracking=True)
        values = typed_campaign(request.state.form)
        if values["move"]:
            return new_form(request, **values)
        try:
            created = campaigns.create_draft(
                store, d.ws.settings, d.ws.templates, as_new_campaign(values), d.clock()
            )
        except NewsletterError as exc:
            said = for_people(exc)
            return new_form(request, 400, error=said.text, error_field=said.field, **values)
        new_id = created.campaign_id
        d.audit(request, "created a campaign", f"campaign {new_id}", values["subject"])
        return self.back(new_id, self.created_message(created, "created as a draft"), request)

    def campaign_edit(self, request: Request) -> Response:
        d, store, cid = self.d, self.store, self.campaign_id(request)
        campaign = store.campaign(cid)
        if campaign["status"] not in EDITABLE or campaign["started_at"]:
            return self.back(
                cid,
                f"Campaign {cid} is {campaign['status']}: it can no longer be changed.",
                request,
            )
        if request.method == "GET":
            return self.new_form(
                request, editing=cid, **form_values(campaigns.as_typed(store, cid))
            )
        values = typed_campaign(request.state.form)
        if values["move"]:
            return self.new_form(request, editing=cid, **values)
        try:
            changed = campaigns.update_draft(
                store, d.ws.settings, d.ws.templates, cid, as_new_campaign(values), d.clock()
            )
        except NewsletterError as exc:
            said = for_people(exc)
            return self.new_form(
                request, 400, editing=cid, error=said.text, error_field=said.field, **values
            )
        d.audit(request, "changed a campaign", f"campaign {cid}", values["subject"])
        return self.back(cid, self.created_message(changed, "saved"), request)

    def delete(self, request: Request) -> Response:
        cid = self.campaign_id(request)
        try:
            subject = campaigns.delete_draft(self.store, cid)
        except StateError as exc:
            return self.refused(request, cid, "delete", exc)
        self.d.audit(request, "deleted a draft", f"campaign {cid}", subject)
        self.d.flash(request, f"Draft {cid} “{subject}” deleted; its articles stay new.")
        return redirect(f"{self.d.prefix}/campaigns")

    @staticmethod
    def created_message(created: campaigns.Created, done: str) -> str:
        message = f"Campaign {created.campaign_id} {done}."
        if created.announcement_became:
            # As the command line says it: the announcement design shows one article.
            message += (
                f" The announcement design shows one article, so these "
                f"{created.article_count} articles go out together as a "
                f"{created.announcement_became}."
            )
        if created.article_pages:
            titles = ", ".join(f"“{title}”" for title, _ in created.article_pages)
            message += (
                f" Without a web address of their own, these articles link to their page "
                f"on this server: {titles}."
            )
        return message

    def campaign_page(self, request: Request) -> Response:
        return self.campaign_view(request, self.campaign_id(request))

    def progress(self, request: Request) -> Response:
        return self.d.render(
            request, "_progress.html", **self.progress_context(self.campaign_id(request))
        )

    def send_test(self, request: Request) -> Response:
        cid = self.campaign_id(request)
        to = str(request.state.form.get("to", ""))

        # The transport talks to the network; this runs in a worker thread already.
        try:
            address = jobs.send_test(self.d.ws, self.store, cid, to, self.d.clock())
        except InputError as exc:
            return self.refused(request, cid, "test", exc, to=to)
        self.d.audit(request, "sent a test", f"campaign {cid}", f"to {address}")
        return self.back(cid, f"Test message sent to {address}.", request)

    def schedule(self, request: Request) -> Response:
        cid = self.campaign_id(request)
        form = request.state.form
        typed = {key: str(form.get(key, "")) for key in ("date", "time", "tz")}
        zone = typed["tz"].strip() or self.d.ws.settings.schedule.timezone
        at = f"{typed['date']} {typed['time']}"
        try:
            when, note = campaigns.parse_local_time(at, zone)
            campaigns.schedule(self.store, cid, when, self.d.clock(), zone=zone)
        except (InputError, StateError) as exc:
            return self.refused(request, cid, "schedule", exc, **typed)
        local = when.astimezone(timerules.zone(zone))
        said = f"Scheduled for {local:%A} {at} {zone} ({when:%Y-%m-%d %H:%M} UTC)."
        self.d.audit(request, "scheduled", f"campaign {cid}", said)
        return self.back(cid, f"{said} {note}" if note else said, request)

    def send_now(self, request: Request) -> Response:
        cid = self.campaign_id(request)
        campaign = self.store.campaign(cid)
        if campaign["status"] not in (*EDITABLE, CampaignStatus.SENDING):
            raise InputError(f"campaign {cid}: cannot send a campaign that is {campaign['status']}")
        # Recorded before the send starts: a person's history credits a delivery to the
        # account whose "sent" entry comes before it, and a fast send finishes at once.
        sending = self.d.sender.running(cid)
        self.d.audit(request, "sent", f"campaign {cid}", "already sending" if sending else "")
        started = self.d.sender.start(cid)
        return self.back(cid, "Sending started." if started else "Already sending.", request)

    def change_state(self, change: str, request: Request) -> Response:
        """Pause, resume, cancel or unschedule: one of ``STATE_CHANGES``."""
        action, done, audited = STATE_CHANGES[change]
        cid = self.campaign_id(request)
        action(self.store, cid, self.d.clock())
        self.d.audit(request, audited, f"campaign {cid}")
        if self.store.campaign_status(cid) == CampaignStatus.SENDING:
            self.d.sender.start(cid)  # a resumed send continues now, not at the next poll
        return self.back(cid, done.format(status=self.store.campaign_status(cid)), request)

    def retry(self, request: Request) -> Response:
        cid = self.campaign_id(request)
        in_doubt = request.state.form.get("in_doubt") == "on"
        count = campaigns.retry(self.store, cid, in_doubt, self.d.clock())
        self.d.audit(
            request,
            "retried",
            f"campaign {cid}",
            f"{count} deliveries" + (" in doubt" if in_doubt else ""),
        )
        if count:
            self.d.sender.start(cid)
        return self.back(cid, f"{count} deliveries queued again.", request)
