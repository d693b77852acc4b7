"""What every page of the web server shares: how templates are loaded, and the headers.

Each set of response headers is written once here and imported: the reader's
pages (unsubscribe, subscribe, view in browser, article), the dashboard's pages,
its email preview and its CSV downloads. The guard adds its default security
headers to any response that sets no policy of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

# Nothing the server answers from a token or a session may be kept by a browser or a proxy.
NO_STORE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
# Not framed by anyone, and the token in the address sent to no other site.
NOT_FRAMED = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# An article's public page: its body was sanitized when it was fetched; images may
# come from anywhere, nothing else may, and the page cannot be framed.
ARTICLE_HEADERS = {
    "Cache-Control": "public, max-age=300",
    "Content-Security-Policy": (
        "default-src 'none'; img-src https: http:; style-src 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    **NOT_FRAMED,
}
# The email as a web page: its remote images and inline styles, no script, no form.
VIEW_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": (
        "default-src 'none'; img-src http: https: data:; style-src 'unsafe-inline'; "
        "font-src http: https: data:; form-action 'none'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    **NOT_FRAMED,
}
# The subscriber pages need no script, no remote style and no frame. Their forms post
# to this site, which checks the Origin header: under "no-referrer" Chromium sends
# "Origin: null" even to the page's own site, so the address (and its token) is shown
# to this site only, never to another.
SUBSCRIBER_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    **NOT_FRAMED,
    "Referrer-Policy": "same-origin",
}
# Dashboard pages: scripts only from the package; styles may be set inline by the
# chart library; frames only our own preview route.
DASHBOARD_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
# The previewed email may show remote images but runs nothing and reaches
# nothing else: no script, no form, no navigation of the dashboard.
PREVIEW_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src http: https: data:; "
        "style-src 'unsafe-inline'; font-src http: https: data:; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def download_headers(name: str) -> dict[str, str]:
    """The headers of a CSV file the dashboard hands over: saved as ``name``, never cached."""
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        **NO_STORE,
        "X-Content-Type-Options": "nosniff",
    }


TEMPLATES = Path(__file__).parent / "templates"


def environment(folder: Path, **options: Any) -> jinja2.Environment:
    """The templates of one folder, autoescaped: every page shows text that others wrote.

    What every page's head holds (the charset, the viewport, no indexing by search
    engines) is ``shared/``, found from any folder.
    """
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader(str(folder)),
            jinja2.PrefixLoader({"shared": jinja2.FileSystemLoader(str(TEMPLATES / "shared"))}),
        ]
    )
    return jinja2.Environment(loader=loader, autoescape=True, **options)


# The reader's pages: unsubscribe, subscribe, confirm, preferences, view, article.
PUBLIC = environment(TEMPLATES)


def public_page(
    template: str,
    sender_name: str,
    /,
    status: int = 200,
    headers: dict[str, str] = NO_STORE,
    **context: Any,
) -> HTMLResponse:
    """One of the reader's pages, signed with the sender's name."""
    # Positional-only: a page's context may hold a "name" (the subscribe form's).
    body = PUBLIC.get_template(template).render(sender_name=sender_name, **context)
    return HTMLResponse(body, status_code=status, headers=headers)
