"""The headers of every dashboard page.

A module of its own so that the view modules, which the dashboard package
imports, need not import the package back.
"""

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    # Scripts only from the package; styles may be set inline by the chart
    # library; frames only our own preview route.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-src 'self'; frame-ancestors 'self'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
