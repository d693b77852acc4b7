"""The Starlette application: open pixel, click redirects, view in browser, unsubscribe,
subscriber pages, provider webhooks and the staff dashboard under /admin."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter import clock, render, tracking
from newsletter.errors import NewsletterError
from newsletter.events import EventWriter, Privacy
from newsletter.mail import design, load_mail
from newsletter.web.dashboard import Dashboard
from newsletter.web.guard import BodyLimits, Guard
from newsletter.web.subscribers import SubscriberPages
from newsletter.web.threads import ThreadStores, off_loop
from newsletter.web.webhooks import webhook_routes
from newsletter.workspace import Workspace

log = logging.getLogger(__name__)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
# An article's public page: its body was sanitized when it was fetched; images may
# come from anywhere, nothing else may, and the page cannot be framed.
ARTICLE_HEADERS = {
    "Cache-Control": "public, max-age=300",
    "Content-Security-Policy": (
        "default-src 'none'; img-src https: http:; style-src 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# The email as a web page: its remote images and inline styles, no script, no form,
# not framed by anyone, and the token in the address sent to no other site.
VIEW_HEADERS = {
    **NO_CACHE,
    "Content-Security-Policy": (
        "default-src 'none'; img-src http: https: data:; style-src 'unsafe-inline'; "
        "font-src http: https: data:; form-action 'none'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_pages = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True,
)


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


def create_app(
    ws: Workspace, clock: Any = _utc_now, sns_fetch: Callable[[str], bytes] | None = None
) -> Starlette:
    """Build the web application for a workspace.

    ``sns_fetch`` fetches SNS signing certificates for /webhooks/ses (tests serve their own).
    """
    db_path = ws.path(ws.settings.database.path)
    signer = ws.signer
    ws.open_store().close()  # migrates before the writer thread opens its own connection
    # Each thread its own connection: handlers hand their writes to worker threads.
    store: Any = ThreadStores(db_path)
    settings = ws.settings.tracking
    writer = EventWriter(
        db_path,
        signals=ws.signals,
        privacy=Privacy(truncate_ip=settings.truncate_ip, anonymous=settings.anonymous),
    )
    # Tracking off: the pixel, links and pages still work, and nothing is recorded.
    record = writer.put if settings.enabled else (lambda event: None)
    subscriber_pages = SubscriberPages(ws, store, clock)
    dashboard = Dashboard(ws, clock)
    link_cache: dict[tuple[int, int], dict[str, Any] | None] = {}
    truncate = ws.settings.tracking.truncate_ip
    sender_name = ws.settings.sender.from_name

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = _pages.get_template(name).render(sender_name=sender_name, **context)
        return HTMLResponse(body, status_code=status, headers=NO_CACHE)

    def event(
        request: Request, kind: str, data: tracking.TokenData | None, **extra: Any
    ) -> dict[str, Any]:
        # The full address: the writer classifies by it, then truncates it.
        return {
            "at": clock().isoformat(timespec="seconds"),
            "kind": kind,
            "campaign_id": data.campaign_id if data else None,
            "subscriber_id": data.subscriber_id if data else None,
            "method": request.method,
            "user_agent": request.headers.get("user-agent", "")[:500],
            "ip": request.client.host if request.client else None,
            **extra,
        }

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def pixel(request: Request) -> Response:
        # Always the pixel: a bad token or a failed record must never break the email.
        try:
            data = signer.read(request.path_params["token"], "open")
            if data is None:
                record(event(request, "bad_token", None, detail="open"))
            else:
                record(event(request, "open", data))
        except Exception:  # noqa: BLE001
            log.exception("open pixel: cannot record")
        return Response(tracking.PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)

    async def click(request: Request) -> Response:
        data = signer.read(request.path_params["token"], "click")
        if data is None:
            record(event(request, "bad_token", None, detail="click"))
            return page("notfound.html", 404)
        key = (data.campaign_id, data.link_id)
        if key not in link_cache:
            link_cache[key] = store.link(data.link_id, data.campaign_id)
        link = link_cache[key]
        if link is None:
            record(event(request, "bad_token", None, detail="click: unknown link"))
            return page("notfound.html", 404)
        # The writer adds the view of the article behind the link.
        record(event(request, "click", data, link_id=link["id"], article_id=link["article_id"]))
        return RedirectResponse(link["url"], status_code=302, headers=NO_CACHE)

    def _subscriber_for(data: tracking.TokenData | None) -> dict[str, Any] | None:
        return store.subscriber(data.subscriber_id) if data else None

    async def unsubscribe(request: Request) -> Response:
        data = signer.read(request.path_params["token"], "unsubscribe")
        if data is None:
            writer.put(event(request, "bad_token", None, detail="unsubscribe"))
            return page("notfound.html", 404)
        subscriber = _subscriber_for(data)
        if request.method != "POST":
            # GET and HEAD never unsubscribe: mail scanners fetch every link they see.
            # A GET never unsubscribes: mail scanners fetch every link they see.
            return page("unsubscribe.html", subscriber=subscriber, action=str(request.url.path))
        # POST: RFC 8058 one-click (body List-Unsubscribe=One-Click) or the page's button.
        # The signed token is the authority: no cookie, no CSRF token, no redirect.
        if subscriber is not None:
            form = await request.form(max_files=0, max_fields=20)  # no upload, ever
            how = "one-click" if form.get("List-Unsubscribe") == "One-Click" else "page"
            ip = request.client.host if request.client else None
            # A write may wait for the database's lock: in a worker thread, not the loop.
            await off_loop(
                store.unsubscribe,
                subscriber["id"],
                data.campaign_id or None,
                clock(),
                how,
                tracking.truncate_ip(ip) if truncate else ip,
                request.headers.get("user-agent", "")[:500],
            )
        return page("unsubscribed.html", subscriber=subscriber)

    async def view(request: Request) -> Response:
        data = signer.read(request.path_params["token"], "view")
        subscriber = _subscriber_for(data)
        if data is None or subscriber is None:
            return page("notfound.html", 404)

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
            return page("notfound.html", 404)
        record(event(request, "view", data, detail="browser"))
        return HTMLResponse(html, headers=VIEW_HEADERS)

    async def article_page(request: Request) -> Response:
        # The page of an article with no URL of its own, linked from the emails: the
        # same for every reader, with nothing about who follows the link.
        slug = request.path_params["slug"]
        head = slug.partition("-")[0]
        # ASCII digits only ("²".isdigit() is true) and no more than an SQLite
        # integer holds: anything else names no article.
        is_id = head.isascii() and head.isdigit() and len(head) <= 18
        article = store.campaign_article(int(head)) if is_id else None
        if article is None:
            return page("notfound.html", 404)
        if article.get("url"):
            return RedirectResponse(article["url"], status_code=301)
        canonical = render.article_slug(article)
        if slug != canonical:
            return RedirectResponse(f"/articles/{canonical}", status_code=301)
        body = _pages.get_template("article.html").render(
            sender_name=sender_name,
            article={**article, "body_html": Markup(article.get("body_html") or "")},
            byline=" · ".join(
                p
                for p in (article.get("author"), render.display_date(article.get("published")))
                if p
            ),
        )
        return HTMLResponse(body, headers=ARTICLE_HEADERS)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        writer.start()
        subscriber_pages.start()
        try:
            yield
        finally:
            dashboard.close()
            subscriber_pages.close()
            writer.close()
            store.close()

    routes = [
        Route("/healthz", healthz),
        Route("/o/{token}.gif", pixel),
        Route("/c/{token}", click, methods=["GET", "HEAD"]),
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/v/{token}", view),
        Route("/articles/{slug}", article_page),
        *subscriber_pages.routes,
        *webhook_routes(ws.settings, ws.secrets, store, clock, sns_fetch),
        *dashboard.routes,
    ]
    web = ws.settings.web
    app = _App(
        routes=routes,
        lifespan=lifespan,
        limits=BodyLimits(webhook=web.max_webhook_bytes, upload=web.max_upload_bytes),
        trusted_proxies=[p.strip() for p in web.trusted_proxies],
    )
    app.state.writer = writer
    app.state.subscriber_pages = subscriber_pages
    app.state.dashboard = dashboard
    return app
