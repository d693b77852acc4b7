"""Blog views, comments and likes from the Wix Blog API, for feeds of Wix blogs.

Wix's RSS feed carries no counters and its guid is not the API's post id, so
each article is matched by the slug in its URL (``/post/<slug>``) through
Get Post By Slug, once, and its counters are read with Get Post Metrics:

    GET {api}/v3/posts/slugs/{slug}   -> {"post": {"id": "…", "slug": "…", …}}
    GET {api}/v3/posts/{id}/metrics   -> {"metrics": {"comments": 0, "likes": 1, "views": 9}}

Both calls are authenticated with an API key (``Authorization``) and the
site's id (``wix-site-id``). The key comes only from the environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from newsletter.sources.http import Fetcher, FetchError

ACCEPT = "application/json"


@dataclass
class MetricsResult:
    # (article id, views, comments, likes)
    snapshots: list[tuple[int, int | None, int | None, int | None]] = field(default_factory=list)
    post_ids: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def post_slug(url: str | None) -> str | None:
    """The slug of a Wix post URL: ``https://site/post/my-slug`` → ``my-slug``."""
    if not url:
        return None
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) >= 2 and parts[-2] == "post":
        return parts[-1]
    return None


def post_id(payload: Any) -> str | None:
    """The post id in a Get Post By Slug answer."""
    post = payload.get("post") if isinstance(payload, dict) else None
    value = post.get("id") if isinstance(post, dict) else None
    return value if isinstance(value, str) and value else None


def metrics(payload: Any) -> tuple[int | None, int | None, int | None] | None:
    """(views, comments, likes) from a Get Post Metrics answer, or None if it has none."""
    found = payload.get("metrics") if isinstance(payload, dict) else None
    if not isinstance(found, dict):
        return None

    def number(name: str) -> int | None:
        value = found.get(name)
        # The API answers in protobuf JSON, which leaves out fields that are zero.
        if value is None:
            return 0
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return number("views"), number("comments"), number("likes")


def _json(fetcher: Fetcher, url: str, headers: dict[str, str]) -> Any:
    answer = fetcher.get(url, accept=ACCEPT, headers=headers)
    try:
        return json.loads(answer.body)
    except ValueError:
        raise FetchError(f"{url}: the answer is not JSON") from None


def fetch_metrics(
    fetcher: Fetcher,
    api_base: str,
    site_id: str,
    api_key: str,
    articles: list[dict[str, Any]],
    known_ids: dict[str, str],
) -> MetricsResult:
    """Counter snapshots for each article with a Wix post URL; a failing call stops the rest."""
    result = MetricsResult(post_ids=dict(known_ids))
    headers = {"Authorization": api_key, "wix-site-id": site_id}
    base = api_base.rstrip("/")
    for article in articles:
        slug = post_slug(article.get("url"))
        if slug is None:
            continue
        try:
            if slug not in result.post_ids:
                found = post_id(_json(fetcher, f"{base}/v3/posts/slugs/{quote(slug)}", headers))
                if found is None:
                    result.problems.append(f"Wix metrics: no post id for {slug!r}")
                    continue
                result.post_ids[slug] = found
            payload = _json(
                fetcher, f"{base}/v3/posts/{quote(result.post_ids[slug])}/metrics", headers
            )
        except FetchError as exc:
            if exc.status == 404:
                result.problems.append(f"Wix metrics: no post {slug!r} ({exc})")
                continue
            hint = (
                "; check NEWSLETTER_WIX_API_KEY and wix_site_id" if exc.status in (401, 403) else ""
            )
            result.problems.append(f"Wix metrics: {exc}{hint}")
            break
        counts = metrics(payload)
        if counts is None:
            result.problems.append(f"Wix metrics: the answer for {slug!r} has no metrics")
            continue
        result.snapshots.append((article["id"], *counts))
    return result
