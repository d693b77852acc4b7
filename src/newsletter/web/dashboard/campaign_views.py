"""Campaign pages: list, create, preview, test, schedule, send now, pause, resume, cancel, retry."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter import campaigns, jobs, reports
from newsletter.errors import InputError, NewsletterError, StateError
from newsletter.render import DEFAULTS_DIR
from newsletter.status import EDITABLE, CampaignStatus, DeliveryStatus
from newsletter.web.dashboard.auth import redirect
from newsletter.web.pages import PREVIEW_HEADERS
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
            d.route("/campaigns/{id:int}/progress", self.progress),
            d.route("/campaigns/{id:int}/preview", self.preview),
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

    def new_form(self, request: Request, status: int = 200, **values: Any) -> Response:
        return self.d.render(
            request,
            "campaign_new.html",
            status,
            active="campaigns",
            articles=self.store.articles(),
            templates=template_names(self.d),
            lists=self.store.lists(),
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
        matching = None
        if campaign["status"] in EDITABLE:
            segment = json.loads(campaign["segment"]) if campaign["segment"] else []
            matching = store.count_recipients(campaign["list_id"], segment)
        return self.d.render(
            request,
            "campaign.html",
            status,
            active="campaigns",
            typed=typed,
            articles=articles,
            sample=sample,
            preview_for=request.query_params.get("subscriber", ""),
            matching=matching,
            failures=store.failed_deliveries(cid, FAILURES_SHOWN),
            failure_limit=FAILURES_SHOWN,
            timezone=self.d.ws.settings.schedule.timezone,
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
        return {
            "campaign": campaign,
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
            return new_form(request, articles_mode="new", template="auto", tracking=True)
        form = request.state.form
        values = {
            "subject": str(form.get("subject", "")),
            "preheader": str(form.get("preheader", "")),
            "articles_mode": str(form.get("articles_mode", "new")),
            "chosen": [str(v) for v in form.getlist("article")],
            "template": str(form.get("template", "auto")),
            "list_name": str(form.get("list", "")),
            "segment": str(form.get("segment", "")),
            "tracking": form.get("tracking") == "on",
        }
        # The same call as `newsletter campaign create`: one rule a line, the ticked ids.
        new = campaigns.NewCampaign(
            subject=values["subject"],
            articles="new" if values["articles_mode"] == "new" else ",".join(values["chosen"]),
            template=values["template"] or None,
            list_name=values["list_name"] or None,
            segment=[line.strip() for line in values["segment"].splitlines() if line.strip()],
            preheader=values["preheader"],
            tracking=values["tracking"],
        )
        try:
            created = campaigns.create_draft(store, d.ws.settings, d.ws.templates, new, d.clock())
        except NewsletterError as exc:
            said = for_people(exc)
            return new_form(request, 400, error=said.text, error_field=said.field, **values)
        new_id = created.campaign_id
        d.audit(request, "created a campaign", f"campaign {new_id}", values["subject"])
        message = f"Campaign {new_id} created as a draft."
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
        return self.back(new_id, message, request)

    def campaign_page(self, request: Request) -> Response:
        return self.campaign_view(request, self.campaign_id(request))

    def progress(self, request: Request) -> Response:
        return self.d.render(
            request, "_progress.html", **self.progress_context(self.campaign_id(request))
        )

    def preview(self, request: Request) -> Response:
        cid = self.campaign_id(request)
        mail = jobs.campaign_mail(self.d.ws, self.store, cid)
        who = request.query_params.get("subscriber") or None
        rendered = mail.render(campaigns.sample_subscriber(self.store, who), tracked=False)
        return HTMLResponse(rendered.html, headers=PREVIEW_HEADERS)

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
            campaigns.schedule(self.store, cid, when, self.d.clock())
        except (InputError, StateError) as exc:
            return self.refused(request, cid, "schedule", exc, **typed)
        said = f"Scheduled for {at} {zone} ({when:%Y-%m-%d %H:%M} UTC)."
        self.d.audit(request, "scheduled", f"campaign {cid}", said)
        return self.back(cid, f"{said} {note}" if note else said, request)

    def send_now(self, request: Request) -> Response:
        cid = self.campaign_id(request)
        campaign = self.store.campaign(cid)
        if campaign["status"] not in (*EDITABLE, CampaignStatus.SENDING):
            raise InputError(f"campaign {cid}: cannot send a campaign that is {campaign['status']}")
        started = self.d.sender.start(cid)
        self.d.audit(request, "sent", f"campaign {cid}", "" if started else "already sending")
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
