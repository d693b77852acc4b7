"""The rows that cross from the store and the web edge into the pure core, as typed dicts.

They are plain dicts at run time (templates and SQL see no difference); the
types say which keys a function reads, so a renamed column or a missing key
shows up in ``make lint`` rather than in a subscriber's inbox. Only the keys
the core reads are named: a store row may carry more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from markupsafe import Markup


class Article(TypedDict):
    """An article as rendering reads it (``render.article_context``, its page's slug).

    A row of the articles table, tags decoded; only the id and title are
    always there, the rest render reads with a fallback.
    """

    id: int
    title: str
    url: NotRequired[str | None]
    summary: NotRequired[str]
    body_html: NotRequired[str]
    image: NotRequired[str | None]
    image_alt: NotRequired[str | None]
    author: NotRequired[str | None]
    published: NotRequired[str | None]  # ISO 8601 date or time
    tags: NotRequired[list[str]]


class ArticleContext(TypedDict):
    """One article as email templates see it: ``render.article_context`` builds it."""

    id: int
    title: str
    url: str  # its own URL, or its page on our web server, or "" without a base URL
    own_page: bool  # the URL is its page on our web server
    summary: str
    image: str | None
    image_alt: str | None
    author: str | None
    published: str
    published_display: str  # "1 March 2026"
    tags: list[str]
    body_html: Markup  # sanitized when the article was saved, CSS inlined
    body_text: str


class Subscriber(TypedDict):
    """A subscriber as rendering reads it (``render.subscriber_context``)."""

    email: str
    first_name: NotRequired[str | None]
    last_name: NotRequired[str | None]
    attributes: NotRequired[Mapping[str, Any] | None]  # the imported extra columns


class TrackingEvent(TypedDict):
    """An open, click, view or bad token, from the web edge to ``events.Recorder`` and the store.

    The web edge fills the request's part; the recorder classifies it (class
    and reason), truncates the address, drops the subscriber in anonymous
    mode, and the store gives it its id.
    """

    at: str  # ISO 8601, UTC, to the second
    kind: str  # open, click, view, bad_token
    campaign_id: int | None  # None for a bad token
    subscriber_id: int | None
    method: str
    user_agent: str | None
    ip: str | None  # the full client address until the recorder truncates it
    link_id: NotRequired[int | None]  # clicks
    article_id: NotRequired[int | None]  # clicks on an article's link, views
    detail: NotRequired[str]
    classification: NotRequired[str]  # classify.HUMAN, MACHINE or UNKNOWN
    reason: NotRequired[str]
    id: NotRequired[int]  # once stored
    # A click on an article's link also counts as a view: the view row made for it,
    # so a later reclassification of the click changes the view too.
    _view: NotRequired[TrackingEvent]
