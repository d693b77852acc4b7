"""What every request and response passes through: body limits and security headers.

A request body is counted while it streams in, so a chunked upload of any
size costs the server at most its route's limit before it is answered 413
and the connection closed; a declared ``Content-Length`` over the limit is
refused before a byte of the body is read. Only the dashboard's CSV import
and its image upload take a file, and only they and the one-click unsubscribe
(RFC 8058) take a multipart body: one anywhere else is refused at once (415), so nothing is
ever spooled to disk for a route that takes no upload.

Every response gets the security headers (CSP with ``frame-ancestors``,
X-Frame-Options, Referrer-Policy, nosniff) unless its handler set its own
stricter or looser ones (the dashboard, the subscriber pages, the view in
browser): 404s, redirects and error pages too.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages, plain answers and redirects need no script, no frame and no remote
# resource; a token in the URL must not leak through the Referer header.
DEFAULT_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
_DEFAULT_RAW = [(k.encode(), v.encode()) for k, v in DEFAULT_HEADERS.items()]
_CSP = b"content-security-policy"
_XFO = b"x-frame-options"

# Forms of the public pages (subscribe, confirm, preferences, one-click
# unsubscribe, sign-in) are a few hundred bytes; the dashboard's forms a few KB.
PUBLIC_FORM_LIMIT = 16 * 1024
DASHBOARD_FORM_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class BodyLimits:
    """The largest body each kind of route accepts, in bytes."""

    webhook: int = 10_000_000
    upload: int = 50_000_000
    upload_path: str = "/admin/subscribers/import"
    dashboard_prefix: str = "/admin"
    # An image for a campaign (uploads.MAX_IMAGE_BYTES) and its form around it.
    image: int = 5 * 1024 * 1024 + 64 * 1024
    image_path: str = "/admin/uploads"

    def for_path(self, path: str) -> tuple[int, bool]:
        """The limit of the route at ``path`` and whether it takes a multipart upload."""
        if path.startswith("/webhooks/"):
            return self.webhook, False
        if path == self.upload_path:
            return self.upload, True
        if path == self.image_path:
            return self.image, True
        if path.startswith("/u/"):
            # RFC 8058: one-click unsubscribes SHOULD come as multipart/form-data (no file).
            return PUBLIC_FORM_LIMIT, True
        if path.startswith(self.dashboard_prefix + "/") and path != (
            self.dashboard_prefix + "/sign-in"
        ):
            return DASHBOARD_FORM_LIMIT, False
        return PUBLIC_FORM_LIMIT, False


def too_large(limit: int) -> HTTPException:
    # Closing the connection stops a client that would stream the rest anyway.
    return HTTPException(
        413,
        f"The request is too large: at most {_size(limit)} here.",
        headers={"Connection": "close"},
    )


def _size(limit: int) -> str:
    if limit >= 1_000_000:
        return f"{limit / 1_000_000:g} MB"
    return f"{limit / 1024:g} KB"


class Guard:
    """ASGI middleware: the body limits of ``BodyLimits`` and the default security headers."""

    def __init__(self, app: ASGIApp, limits: BodyLimits):
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                # A response with a policy of its own (the preview a dashboard page
                # frames) keeps its frame-ancestors; X-Frame-Options would override it.
                skip = names | ({_XFO} if _CSP in names else set())
                headers.extend((name, value) for name, value in _DEFAULT_RAW if name not in skip)
                message = {**message, "headers": headers}
            await send(message)

        limit, multipart_ok = self.limits.for_path(scope["path"])
        length, multipart = None, False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                multipart = multipart or value.lower().lstrip().startswith(b"multipart/")
        refusal = None
        if multipart and not multipart_ok:
            refusal = (415, "This address takes no file uploads.")
        elif length is not None and (not length.isdigit() or int(length) > limit):
            refusal = (413, too_large(limit).detail)
        if refusal is not None:
            await _answer(send_with_headers, *refusal)
            return

        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Starlette's exception middleware answers it before the handler goes on.
                    raise too_large(limit)
            return message

        await self.app(scope, receive_with_limit, send_with_headers)


async def _answer(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
