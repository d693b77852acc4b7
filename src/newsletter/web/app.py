"""The Starlette application: open pixel, click redirects, view in browser, unsubscribe,
subscriber pages, provider webhooks and the staff dashboard under /admin."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter import clock, render, tracking, uploads
from newsletter.errors import NewsletterError
from newsletter.events import EventWriter, Privacy
from newsletter.mail import design, load_mail
from newsletter.rows import TrackingEvent
from newsletter.web.dashboard import Dashboard
from newsletter.web.guard import BodyLimits, Guard
from newsletter.web.images import UploadedImages
from newsletter.web.pages import ARTICLE_HEADERS, NO_STORE, VIEW_HEADERS, public_page
from newsletter.web.subscribers import SubscriberPages
from newsletter.web.threads import ThreadStores, off_loop
from newsletter.web.webhooks import Webhooks
from newsletter.workspace import Workspace

log = logging.getLogger(__name__)

_utc_now = clock.utcnow


class _App(Starlette):
    """Starlette with the guard and the proxy rule outside everything, error pages included."""

    def __init__(self, *, limits: BodyLimits, trusted_proxies: list[str], **options: Any):
        super().__init__(**options)
        self.limits, self.trusted_proxies = limits, trusted_proxies

    def build_middleware_stack(self) -> Any:
        app: Any = Guard(super().build_middleware_stack(), self.limits)
        if self.trusted_proxies:
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            # X-Forwarded-For is believed only when the connection comes from a listed proxy.
            app = ProxyHeadersMiddleware(app, trusted_hosts=self.trusted_proxies)
        return app


class ReaderPages:
    """What a reader's email links to: pixel, click redirects, unsubscribe, view, articles.

    The articles are those without a web address of their own; /healthz is here too.
    """

    def __init__(
        self, ws: Workspace, store: Any, writer: EventWriter, clock: Callable[[], dt.datetime]
    ):
        self.ws, self.store, self.writer, self.clock = ws, store, writer, clock
        self.signer = ws.signer
        settings = ws.settings.tracking
        # Tracking off: the pixel, links and pages still work, and nothing is recorded.
        self.record = writer.put if settings.enabled else (lambda event: None)
        self.truncate = settings.truncate_ip
        self.sender_name = ws.settings.sender.from_name
        self.link_cache: dict[tuple[int, int], dict[str, Any] | None] = {}
        self.routes = [
            Route("/healthz", self.healthz),
            Route("/o/{token}.gif", self.pixel),
            Route("/c/{token}", self.click, methods=["GET", "HEAD"]),
            Route("/u/{token}", self.unsubscribe, methods=["GET", "POST"]),
            Route("/v/{token}", self.view),
            Route("/articles/{slug}", self.article_page),
        ]

    # -- helpers --------------------------------------------------------------

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return public_page(name, self.sender_name, status, NO_STORE, **context)

    def event(
        self,
        request: Request,
        kind: str,
        data: tracking.TokenData | None,
        *,
        detail: str | None = None,
        link_id: int | None = None,
        article_id: int | None = None,
    ) -> TrackingEvent:
        # The full address: the writer classifies by it, then truncates it.
        event = TrackingEvent(
            at=self.clock().isoformat(timespec="seconds"),
            kind=kind,
            campaign_id=data.campaign_id if data else None,
            subscriber_id=data.subscriber_id if data else None,
            method=request.method,
            user_agent=request.headers.get("user-agent", "")[:500],
            ip=request.client.host if request.client else None,
        )
        # Only what the event has: a key left out is stored as NULL, an empty one as "".
        if detail is not None:
            event["detail"] = detail
        if link_id is not None or article_id is not None:
            event["link_id"], event["article_id"] = link_id, article_id
        return event

    def _subscriber_for(self, data: tracking.TokenData | None) -> dict[str, Any] | None:
        return self.store.subscriber(data.subscriber_id) if data else None

    # -- the routes -------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def pixel(self, request: Request) -> Response:
        # Always the pixel: a bad token or a failed record must never break the email.
        try:
            data = self.signer.read(request.path_params["token"], "open")
            if data is None:
                self.record(self.event(request, "bad_token", None, detail="open"))
            else:
                self.record(self.event(request, "open", data))
        except Exception:  # noqa: BLE001
            log.exception("open pixel: cannot record")
        return Response(tracking.PIXEL_GIF, media_type="image/gif", headers=NO_STORE)

    async def click(self, request: Request) -> Response:
        data = self.signer.read(request.path_params["token"], "click")
        if data is None:
            self.record(self.event(request, "bad_token", None, detail="click"))
            return self.page("notfound.html", 404)
        key = (data.campaign_id, data.link_id)
        if key not in self.link_cache:
            # Even a read can wait for SQLite's locks (a writer resetting the WAL, busy
            # read marks): in a worker thread, so the loop keeps serving everyone.
            self.link_cache[key] = await off_loop(self.store.link, data.link_id, data.campaign_id)
        link = self.link_cache[key]
        if link is None:
            self.record(self.event(request, "bad_token", None, detail="click: unknown link"))
            return self.page("notfound.html", 404)
        # The writer adds the view of the article behind the link.
        self.record(
            self.event(request, "click", data, link_id=link["id"], article_id=link["article_id"])
        )
        return RedirectResponse(link["url"], status_code=302, headers=NO_STORE)

    async def unsubscribe(self, request: Request) -> Response:
        data = self.signer.read(request.path_params["token"], "unsubscribe")
        if data is None:
            self.writer.put(self.event(request, "bad_token", None, detail="unsubscribe"))
            return self.page("notfound.html", 404)
        subscriber = await off_loop(self._subscriber_for, data)
        if request.method != "POST":
            # GET and HEAD never unsubscribe: mail scanners fetch every link they see.
            return self.page(
                "unsubscribe.html", subscriber=subscriber, action=str(request.url.path)
            )
        # POST: RFC 8058 one-click (body List-Unsubscribe=One-Click) or the page's button.
        # The signed token is the authority: no cookie, no CSRF token, no redirect.
        if subscriber is not None:
            form = await request.form(max_files=0, max_fields=20)  # no upload, ever
            how = "one-click" if form.get("List-Unsubscribe") == "One-Click" else "page"
            ip = request.client.host if request.client else None
            # A write may wait for the database's lock: in a worker thread, not the loop.
            await off_loop(
                self.store.unsubscribe,
                subscriber["id"],
                data.campaign_id or None,
                self.clock(),
                how,
                tracking.truncate_ip(ip) if self.truncate else ip,
                request.headers.get("user-agent", "")[:500],
            )
        return self.page("unsubscribed.html", subscriber=subscriber)

    async def view(self, request: Request) -> Response:
        data = self.signer.read(request.path_params["token"], "view")
        subscriber = await off_loop(self._subscriber_for, data)
        if data is None or subscriber is None:
            return self.page("notfound.html", 404)
        ws, store, signer = self.ws, self.store, self.signer

        def render_page() -> str:
            campaign = store.campaign(data.campaign_id)
            templates = ws.templates(design(campaign))
            mail = load_mail(store, data.campaign_id, templates, ws.settings, signer)
            # No pixel: the page itself is counted as a view, not as an open.
            return mail.render(subscriber, pixel=False).html

        try:
            html = await off_loop(render_page)  # templates and CSS inlining: CPU work
        except NewsletterError as exc:
            log.error("view in browser: %s", exc)
            return self.page("notfound.html", 404)
        self.record(self.event(request, "view", data, detail="browser"))
        return HTMLResponse(html, headers=VIEW_HEADERS)

    async def article_page(self, request: Request) -> Response:
        # The page of an article with no URL of its own, linked from the emails: the
        # same for every reader, with nothing about who follows the link.
        slug = request.path_params["slug"]
        head = slug.partition("-")[0]
        # ASCII digits only ("²".isdigit() is true) and no more than an SQLite
        # integer holds: anything else names no article.
        is_id = head.isascii() and head.isdigit() and len(head) <= 18
        article = await off_loop(self.store.campaign_article, int(head)) if is_id else None
        if article is None:
            return self.page("notfound.html", 404)
        if article.get("url"):
            return RedirectResponse(article["url"], status_code=301)
        canonical = render.article_slug(article)
        if slug != canonical:
            return RedirectResponse(f"/articles/{canonical}", status_code=301)
        return public_page(
            "article.html",
            self.sender_name,
            headers=ARTICLE_HEADERS,
            article={**article, "body_html": Markup(article.get("body_html") or "")},
            byline=" · ".join(
                p
                for p in (article.get("author"), render.display_date(article.get("published")))
                if p
            ),
        )


def create_app(
    ws: Workspace, clock: Any = _utc_now, sns_fetch: Callable[[str], bytes] | None = None
) -> Starlette:
    """Build the web application for a workspace.

    ``sns_fetch`` fetches SNS signing certificates for /webhooks/ses (tests serve their own).
    """
    db_path = ws.path(ws.settings.database.path)
    ws.open_store().close()  # migrates before the writer thread opens its own connection
    # Each thread its own connection: handlers hand their writes to worker threads.
    store: Any = ThreadStores(db_path)
    settings = ws.settings.tracking
    writer = EventWriter(
        db_path,
        signals=ws.signals,
        privacy=Privacy(truncate_ip=settings.truncate_ip, anonymous=settings.anonymous),
    )
    reader_pages = ReaderPages(ws, store, writer, clock)
    subscriber_pages = SubscriberPages(ws, store, clock)
    webhooks = Webhooks(ws.settings, ws.secrets, store, clock, sns_fetch)
    dashboard = Dashboard(ws, clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer.start()
        subscriber_pages.start()
        try:
            yield
        finally:
            dashboard.close()
            subscriber_pages.close()
            writer.close()
            store.close()

    web = ws.settings.web
    app = _App(
        routes=[
            *reader_pages.routes,
            *subscriber_pages.routes,
            *webhooks.routes,
            *dashboard.routes,
            *UploadedImages(ws.root / uploads.FOLDER).routes,
        ],
        lifespan=lifespan,
        limits=BodyLimits(webhook=web.max_webhook_bytes, upload=web.max_upload_bytes),
        trusted_proxies=[p.strip() for p in web.trusted_proxies],
    )
    app.state.writer = writer
    app.state.subscriber_pages = subscriber_pages
    app.state.dashboard = dashboard
    return app
