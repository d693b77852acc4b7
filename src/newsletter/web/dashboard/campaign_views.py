"""Campaign pages: list, create, preview, test, schedule, send now, pause, resume, cancel, retry."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter import campaigns, jobs, reports
from newsletter.errors import InputError, NewsletterError, StateError
from newsletter.render import DEFAULTS_DIR
from newsletter.web.dashboard.auth import redirect
from newsletter.web.wording import for_people, words

if TYPE_CHECKING:
    from newsletter.web.dashboard import Dashboard

# The previewed email may show remote images but runs nothing and reaches
# nothing else: no script, no form, no navigation of the dashboard.
PREVIEW_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src http: https: data:; "
        "style-src 'unsafe-inline'; font-src http: https: data:; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Template sets that are not campaign designs.
NOT_CAMPAIGN_TEMPLATES = {"confirm", "welcome"}


# Failed and in-doubt deliveries listed with their reason on a campaign's page.
FAILURES_SHOWN = 50


def template_names(d: Dashboard) -> list[str]:
    """ "auto" and every campaign design, built in or in the workspace's templates folder."""
    names = set()
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


def routes(d: Dashboard) -> list[Route]:
    store = d.store

    def campaign_id(request: Request) -> int:
        return _int(request.path_params["id"])

    def back(campaign: int, message: str, request: Request) -> Response:
        d.flash(request, message)
        return redirect(f"{d.prefix}/campaigns/{campaign}")

    @d.page()
    def campaign_list(request: Request) -> Response:
        rows = [
            {"campaign": c, "report": reports.campaign_report(store, c["id"])}
            for c in reversed(store.campaigns())
        ]
        return d.render(request, "campaigns.html", active="campaigns", rows=rows)

    def new_form(request: Request, status: int = 200, **values: Any) -> Response:
        return d.render(
            request,
            "campaign_new.html",
            status,
            active="campaigns",
            articles=store.articles(),
            templates=template_names(d),
            lists=store.lists(),
            values=values,
        )

    @d.page()
    def campaign_new(request: Request) -> Response:
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
        return back(new_id, message, request)

    def campaign_view(request: Request, cid: int, status: int = 200, **typed: Any) -> Response:
        """The campaign's page; after a refused form, with its error and what was typed."""
        campaign = store.campaign(cid)
        articles = store.articles_by_id(campaign["article_ids"])
        sample = campaigns.sample_subscriber(store)
        matching = None
        if campaign["status"] in ("draft", "scheduled"):
            segment = json.loads(campaign["segment"]) if campaign["segment"] else []
            matching = store.count_recipients(campaign["list_id"], segment)
        return d.render(
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
            timezone=d.ws.settings.schedule.timezone,
            **progress_context(cid),
        )

    @d.page()
    def campaign_page(request: Request) -> Response:
        return campaign_view(request, campaign_id(request))

    def refused(request: Request, cid: int, form_name: str, exc: NewsletterError, **typed: Any):
        # Shown by the field it is about, the form filled in as it was sent.
        said = for_people(exc)
        status = 409 if isinstance(exc, StateError) else 400
        return campaign_view(
            request,
            cid,
            status,
            form=form_name,
            error=said.text,
            error_field=said.field or "",
            **typed,
        )

    def progress_context(cid: int) -> dict[str, Any]:
        campaign = store.campaign(cid)
        counts = store.delivery_counts(cid)
        total = sum(counts.values())
        done = total - counts["pending"] - counts["deferred"] - counts.get("sending", 0)
        return {
            "campaign": campaign,
            "counts": counts,
            "total": total,
            "done": done,
            "running": d.sender.running(cid),
            "error": words(d.sender.error(cid)) if d.sender.error(cid) else None,
            "live": campaign["status"] == "sending" or d.sender.running(cid),
        }

    @d.page()
    def progress(request: Request) -> Response:
        return d.render(request, "_progress.html", **progress_context(campaign_id(request)))

    @d.page()
    def preview(request: Request) -> Response:
        cid = campaign_id(request)
        mail = jobs.campaign_mail(d.ws, store, cid)
        who = request.query_params.get("subscriber") or None
        rendered = mail.render(campaigns.sample_subscriber(store, who), tracked=False)
        return HTMLResponse(rendered.html, headers=PREVIEW_HEADERS)

    @d.page()
    def send_test(request: Request) -> Response:
        cid = campaign_id(request)
        to = str(request.state.form.get("to", ""))

        # The transport talks to the network; this runs in a worker thread already.
        try:
            address = jobs.send_test(d.ws, store, cid, to, d.clock())
        except InputError as exc:
            return refused(request, cid, "test", exc, to=to)
        d.audit(request, "sent a test", f"campaign {cid}", f"to {address}")
        return back(cid, f"Test message sent to {address}.", request)

    @d.page()
    def schedule(request: Request) -> Response:
        cid = campaign_id(request)
        form = request.state.form
        typed = {key: str(form.get(key, "")) for key in ("date", "time", "tz")}
        zone = typed["tz"].strip() or d.ws.settings.schedule.timezone
        at = f"{typed['date']} {typed['time']}"
        try:
            when, note = campaigns.parse_local_time(at, zone)
            campaigns.schedule(store, cid, when, d.clock())
        except (InputError, StateError) as exc:
            return refused(request, cid, "schedule", exc, **typed)
        said = f"Scheduled for {at} {zone} ({when:%Y-%m-%d %H:%M} UTC)."
        d.audit(request, "scheduled", f"campaign {cid}", said)
        return back(cid, f"{said} {note}" if note else said, request)

    @d.page()
    def send_now(request: Request) -> Response:
        cid = campaign_id(request)
        campaign = store.campaign(cid)
        if campaign["status"] not in ("draft", "scheduled", "sending"):
            raise InputError(f"campaign {cid}: cannot send a campaign that is {campaign['status']}")
        started = d.sender.start(cid)
        d.audit(request, "sent", f"campaign {cid}", "" if started else "already sending")
        return back(cid, "Sending started." if started else "Already sending.", request)

    def state_action(action: Any, done: str, audited: str) -> Any:
        @d.page()
        def handler(request: Request) -> Response:
            cid = campaign_id(request)
            action(store, cid, d.clock())
            d.audit(request, audited, f"campaign {cid}")
            if store.campaign_status(cid) == "sending":
                d.sender.start(cid)  # a resumed send continues now, not at the next poll
            return back(cid, done.format(status=store.campaign_status(cid)), request)

        return handler

    @d.page()
    def retry(request: Request) -> Response:
        cid = campaign_id(request)
        in_doubt = request.state.form.get("in_doubt") == "on"
        count = campaigns.retry(store, cid, in_doubt, d.clock())
        d.audit(
            request,
            "retried",
            f"campaign {cid}",
            f"{count} deliveries" + (" in doubt" if in_doubt else ""),
        )
        if count:
            d.sender.start(cid)
        return back(cid, f"{count} deliveries queued again.", request)

    return [
        Route("/campaigns", campaign_list),
        Route("/campaigns/new", campaign_new, methods=["GET", "POST"]),
        Route("/campaigns/{id:int}", campaign_page),
        Route("/campaigns/{id:int}/progress", progress),
        Route("/campaigns/{id:int}/preview", preview),
        Route("/campaigns/{id:int}/test", send_test, methods=["POST"]),
        Route("/campaigns/{id:int}/schedule", schedule, methods=["POST"]),
        Route("/campaigns/{id:int}/send", send_now, methods=["POST"]),
        Route(
            "/campaigns/{id:int}/pause",
            state_action(campaigns.pause, "Paused.", "paused"),
            methods=["POST"],
        ),
        Route(
            "/campaigns/{id:int}/resume",
            state_action(campaigns.resume, "Resumed: now {status}.", "resumed"),
            methods=["POST"],
        ),
        Route(
            "/campaigns/{id:int}/cancel",
            state_action(campaigns.cancel, "Cancelled.", "cancelled"),
            methods=["POST"],
        ),
        Route(
            "/campaigns/{id:int}/unschedule",
            state_action(campaigns.unschedule, "Unscheduled: back to a draft.", "unscheduled"),
            methods=["POST"],
        ),
        Route("/campaigns/{id:int}/retry", retry, methods=["POST"]),
    ]
