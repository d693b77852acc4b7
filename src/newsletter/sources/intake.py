"""Run one article source: fetch, parse, save, and keep its state.

A source's state (the ``sources.state`` JSON) holds its HTTP validators
(ETag, Last-Modified) for conditional GET, a hash of the last body read, its
consecutive failures and when to try it again, the Wix post ids found so far,
and the article links of a blog index page still to be read. A failure
changes only that state: articles already stored stay as they are, and the
next poll tries again after a backoff that doubles with each failure.

The validators are kept only when everything the body led to was read: if a
full-text page failed, they are forgotten, so the next poll reads the feed
again and retries the page instead of being told "not modified".
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newsletter.config import Sources, SourceSpec
from newsletter.errors import SourceError
from newsletter.sources import (
    archived_keys,
    content_hash,
    feed,
    folder,
    iso_utc,
    listed_after_known,
    page,
    published_after,
    wix,
)
from newsletter.sources.http import FEED_ACCEPT, PAGE_ACCEPT, Fetcher
from newsletter.sources.images import is_tracking_image
from newsletter.sources.policy import FetchPolicy, parse_networks
from newsletter.store import Store

BACKOFF_FIRST = dt.timedelta(minutes=1)
BACKOFF_MAX = dt.timedelta(hours=6)
# Counters change slowly; asking the Wix API once an hour is plenty.
METRICS_EVERY = dt.timedelta(hours=1)
# A blog index page is read a few articles at a time, the rest on later polls.
INDEX_PAGES_PER_POLL = 30
# Returned by a step in place of validators: drop the stored ones, so the next
# poll reads the whole body again.
FORGET_VALIDATORS: dict[str, Any] = {"etag": None, "last_modified": None, "body_sha256": None}
# What a blog index page source keeps between polls (see _page).
INDEX_STATE = ("index_pending", "index_first_fetch", "index_backfill_left")


@dataclass
class SourceResult:
    """What one source gave on one poll, ready to print or log."""

    source: str
    kind: str = "folder"
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("new", "updated", "unchanged", "archived"), 0)
    )
    # One line each. An error means the source (or one of its files) failed;
    # a warning means something was skipped or kept as it was.
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_modified: bool = False
    skipped: str | None = None
    metrics: int = 0

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors) or None

    def summary(self) -> str:
        """``3 new, 1 updated, 5 unchanged`` and whatever else happened."""
        if self.skipped:
            return f"skipped: {self.skipped}"
        c = self.counts
        text = f"{c['new']} new, {c['updated']} updated, {c['unchanged']} unchanged"
        if c["archived"]:
            text += (
                f", {c['archived']} archived (published before the source was added; "
                f"not announced, see backfill)"
            )
        if self.not_modified:
            text += " (not modified since the last fetch)"
        if self.metrics:
            text += f"; blog counters updated for {self.metrics} articles"
        return text


def make_fetcher(sources: Sources) -> Fetcher:
    """The one HTTP client of a poll, with the limits from ``[sources]``."""
    return Fetcher(
        FetchPolicy(
            timeout=sources.timeout,
            max_bytes=sources.max_bytes,
            max_redirects=sources.max_redirects,
            allow_private=sources.allow_private_addresses,
            allowed_networks=parse_networks(sources.allowed_networks),
        )
    )


def source_backoff(failures: int) -> dt.timedelta:
    """How long a source rests after ``failures`` failures in a row: 1, 2, 4 … min, at most 6 h."""
    return min(BACKOFF_FIRST * 2 ** max(failures - 1, 0), BACKOFF_MAX)


def _time(value: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclass
class _SourceRun:
    """Everything one source run needs, so the steps below take one argument."""

    spec: SourceSpec
    store: Store
    fetcher: Fetcher
    now: dt.datetime
    root: Path
    source_id: int
    state: dict[str, Any]
    first_fetch: bool
    added_at: dt.datetime
    result: SourceResult
    max_items: int = feed.DEFAULT_MAX_ITEMS

    def archive(self, unseen: list[dict[str, Any]]) -> set[str]:
        return archived_keys(
            unseen,
            first_fetch=self.first_fetch,
            added_at=self.added_at,
            backfill=self.spec.backfill,
            hold_older=self.spec.is_remote,
        )

    def save(
        self, articles: list[dict[str, Any]], archive: Callable[[list[dict[str, Any]]], set[str]]
    ) -> None:
        counts = self.store.save_articles(
            self.source_id,
            articles,
            self.now,
            announce_updates=self.spec.announce_updates,
            archive=archive,
        )
        for name, value in counts.items():
            self.result.counts[name] += value


def run_source(
    spec: SourceSpec,
    store: Store,
    fetcher: Fetcher,
    now: dt.datetime,
    *,
    root: Path,
    force: bool = False,
    wix_api_key: str = "",
    max_items: int = feed.DEFAULT_MAX_ITEMS,
) -> SourceResult:
    """Fetch one source and save what it gives; a SourceError becomes the result's error.

    A feed or page that failed recently is skipped until its backoff has
    passed, unless ``force`` (a fetch asked for by hand).
    """
    source_id = store.source_id(spec.kind, spec.location, now)
    row = store.source(source_id)
    state = dict(row["state"])
    result = SourceResult(spec.location, spec.kind)
    next_try = state.get("next_try_at")
    if spec.is_remote and next_try and not force and now < _time(next_try):
        result.skipped = (
            f"failed {state.get('failures', 1)} time(s) in a row (last: "
            f"{state.get('last_error', 'unknown')}); next try after {next_try}"
        )
        return result
    run = _SourceRun(
        spec=spec,
        store=store,
        fetcher=fetcher,
        now=now,
        root=root,
        source_id=source_id,
        state=state,
        first_fetch=not state.get("fetched_at") and row["articles"] == 0,
        added_at=_time(row["added_at"]),
        result=result,
        max_items=max_items,
    )
    step = {"folder": _folder, "feed": _feed, "page": _page}[spec.kind]
    try:
        validators = step(run)
    except SourceError as exc:
        _record_failure(store, source_id, now, str(exc))
        result.errors.append(str(exc))
        return result
    for name in ("failures", "last_error", "failed_at", "next_try_at"):
        state.pop(name, None)
    for name, value in validators.items():
        if value is None:
            state.pop(name, None)
        else:
            state[name] = value
    state["fetched_at"] = iso_utc(now)
    if spec.wix_site_id:
        _wix_metrics(run, wix_api_key, force)
    store.save_source_state(source_id, state)
    return result


def record_failure(spec: SourceSpec, store: Store, now: dt.datetime, message: str) -> SourceResult:
    """Count a failure the source's own code did not expect, with the usual backoff."""
    _record_failure(store, store.source_id(spec.kind, spec.location, now), now, message)
    result = SourceResult(spec.location, spec.kind)
    result.errors.append(message)
    return result


def _record_failure(store: Store, source_id: int, now: dt.datetime, message: str) -> None:
    # From the stored state: whatever the failed run changed in its copy is dropped.
    state = dict(store.source(source_id)["state"])
    failures = int(state.get("failures", 0)) + 1
    state.update(
        failures=failures,
        last_error=message,
        failed_at=iso_utc(now),
        next_try_at=iso_utc(now + source_backoff(failures)),
    )
    store.save_source_state(source_id, state)


# -- the three kinds ------------------------------------------------------------------


def _folder(run: _SourceRun) -> dict[str, Any]:
    location = run.spec.location.rstrip("/")
    path = Path(run.spec.location)
    files, problems = folder.fetch(path if path.is_absolute() else run.root / path)
    # One bad file is reported with its name (and line); the others are still read.
    run.result.errors.extend(f"{location}/{problem}" for problem in problems)
    articles = []
    for file in files:
        try:
            articles.append(folder.parse(file.name, file.text, file.modified))
        except SourceError as exc:
            run.result.errors.append(f"{location}/{exc}")
    run.save(articles, run.archive)
    return {}


def _validators(answer: Any, body_hash: str) -> dict[str, Any]:
    found: dict[str, Any] = {"body_sha256": body_hash}
    for header, name in (("etag", "etag"), ("last-modified", "last_modified")):
        if answer.headers.get(header):
            found[name] = answer.headers[header]
    return found


def _conditional_get(run: _SourceRun, accept: str) -> tuple[Any, str | None]:
    """GET with the stored validators; None as the hash when nothing changed."""
    answer = run.fetcher.get(
        run.spec.location,
        accept=accept,
        etag=run.state.get("etag"),
        last_modified=run.state.get("last_modified"),
    )
    if answer.not_modified:
        run.result.not_modified = True
        return answer, None
    # A server without validators still sends the same bytes for the same
    # feed; the options are part of the hash so a changed option re-reads it.
    options = repr(sorted(vars(run.spec).items())).encode()
    digest = hashlib.sha256(answer.body + options).hexdigest()
    if digest == run.state.get("body_sha256"):
        run.result.not_modified = True
        return answer, None
    return answer, digest


def _feed(run: _SourceRun) -> dict[str, Any]:
    answer, digest = _conditional_get(run, FEED_ACCEPT)
    if digest is None:
        return _validators(answer, run.state.get("body_sha256", ""))
    parsed = feed.parse(answer.body, answer.url, answer.content_type, run.max_items)
    run.result.warnings.extend(parsed.problems)
    known = {r["key"]: r["item_hash"] for r in run.store.source_articles(run.source_id)}
    to_archive = run.archive([a for a in parsed.articles if a["key"] not in known])
    # An undated item below known ones is an old one that a deletion brought
    # back into the feed's window, not a new post.
    to_archive |= listed_after_known(parsed.articles, known)
    articles, pages_failed = parsed.articles, False
    if run.spec.full_text:
        articles, pages_failed = _with_full_text(run, articles, known, to_archive)
    run.save(articles, lambda unseen: to_archive & {a["key"] for a in unseen})
    return FORGET_VALIDATORS if pages_failed else _validators(answer, digest)


def _read_page(run: _SourceRun, url: str) -> dict[str, Any]:
    """The article of the page at ``url``; any failure is that page's, as a SourceError."""
    answer = run.fetcher.get(url, accept=PAGE_ACCEPT)
    text = page.decode(answer.body, answer.content_type, answer.url)
    try:
        return page.parse_article(page.load(text, answer.url), answer.url, html=text)
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd page must not fail its whole source
        raise SourceError(
            f"{answer.url}: the page could not be read ({type(exc).__name__}: {exc})"
        ) from exc


def _with_full_text(
    run: _SourceRun, items: list[dict[str, Any]], known: dict[str, str | None], to_archive: set[str]
) -> tuple[list[dict[str, Any]], bool]:
    """Fetch the article page of each new or changed item for its full body.

    Feeds such as Wix's carry only a short excerpt. An item whose feed entry is
    the same as last time is left out (its page was read then); an item being
    archived keeps its excerpt. A page that cannot be read is reported: a new
    item is stored with the excerpt and no item hash, a known one is left as
    stored (its full body is not replaced by the excerpt). Either way the page
    is tried again on the next poll; the second value says that one failed.
    """
    out = []
    failed = False
    for item in items:
        item_hash = item["content_hash"]
        if item["key"] in known and known[item["key"]] == item_hash:
            run.result.counts["unchanged"] += 1
            continue
        item = dict(item, item_hash=item_hash)
        if item["key"] not in to_archive and item.get("url"):
            try:
                article = _read_page(run, item["url"])
            except SourceError as exc:
                failed = True
                if item["key"] in known:
                    run.result.warnings.append(
                        f"{exc}; kept the article as stored, the next poll tries the page again"
                    )
                    continue
                run.result.warnings.append(
                    f"{exc}; kept the feed's excerpt, the next poll tries the page again"
                )
                item["item_hash"] = None
            else:
                item = _merge(item, article)
        out.append(item)
    return out, failed


def _merge(item: dict[str, Any], article: dict[str, Any]) -> dict[str, Any]:
    """The feed's item with the page's body and counters; the feed's own fields win."""
    merged = dict(item)
    merged["body_html"] = article["body_html"] or item["body_html"]
    page_image = article.get("image")
    if item.get("image_in_body") and page_image and not is_tracking_image(page_image):
        # The page's chosen picture (og:image, JSON-LD) over the first image of
        # the feed's text; an enclosure or Media RSS image still wins.
        merged["image"], merged["image_alt"] = article["image"], article.get("image_alt")
    for name in ("author", "image", "image_alt", "published", "updated"):
        if not merged.get(name) and article.get(name):
            merged[name] = article[name]
    merged["tags"] = item.get("tags") or article.get("tags") or []
    for name in ("views", "comments", "likes"):
        if article.get(name) is not None:
            merged[name] = article[name]
    merged["content_hash"] = content_hash(merged)
    return merged


def _page(run: _SourceRun) -> dict[str, Any]:
    """An article page, or a blog index page whose linked articles are read a batch a poll.

    Links not yet read are kept in the state (``index_pending``), so they are
    read on the next polls even when the index answers "not modified". Those
    found on the source's first fetch keep the first fetch's rules wherever
    they are read (``index_first_fetch``, ``index_backfill_left``).
    """
    answer, digest = _conditional_get(run, PAGE_ACCEPT)
    state = run.state
    pending: list[str] = list(state.get("index_pending", []))
    if digest is None and not pending:
        return _validators(answer, state.get("body_sha256", ""))
    known = {r["url"] for r in run.store.source_articles(run.source_id)}
    first_fetch_links = set(state.get("index_first_fetch", []))
    after_known: set[str] = set()
    if digest is not None:
        text = page.decode(answer.body, answer.content_type, answer.url)
        tree = page.load(text, answer.url)
        if page.is_article_page(tree, answer.url):
            run.save([page.parse_article(tree, answer.url, html=text)], run.archive)
            for name in INDEX_STATE:
                state.pop(name, None)
            return _validators(answer, digest)
        links = page.article_links(tree, answer.url)
        fresh = [link for link in links if link not in known]
        if run.first_fetch:
            first_fetch_links.update(fresh)
        # Only its place on the page dates an undated article (see listed_after_known).
        after_known = listed_after_known([{"key": link} for link in links], known)
        pending = fresh + [link for link in pending if link not in fresh]
    pending = [link for link in pending if link not in known]
    batch, rest = pending[:INDEX_PAGES_PER_POLL], pending[INDEX_PAGES_PER_POLL:]
    from_first_fetch, later = [], []
    held: set[str] = set()
    for link in batch:
        try:
            article = _read_page(run, link)
        except SourceError as exc:
            run.result.warnings.append(f"{exc}; the next poll tries it again")
            rest.append(link)
            continue
        if link in first_fetch_links:
            from_first_fetch.append(article)
        else:
            if link in after_known and not article.get("published"):
                held.add(article["key"])
            later.append(article)
    if rest:
        run.result.warnings.append(
            f"{run.spec.location}: {len(rest)} more linked articles are read on the next polls"
        )
        state["index_pending"] = rest
        state["index_first_fetch"] = [link for link in rest if link in first_fetch_links]
    else:
        for name in INDEX_STATE:
            state.pop(name, None)
    if from_first_fetch:
        run.save(from_first_fetch, lambda unseen: _first_fetch_archive(run, unseen))
    if later:
        run.save(later, lambda unseen: run.archive(unseen) | (held & {a["key"] for a in unseen}))
    return _validators(answer, state.get("body_sha256", "") if digest is None else digest)


def _first_fetch_archive(run: _SourceRun, unseen: list[dict[str, Any]]) -> set[str]:
    """Which articles of a first fetch, read over several polls, are recorded without announcing.

    ``backfill`` counts over the whole first fetch: what the batches before
    used of it is kept in the state.
    """
    left = run.state.get("index_backfill_left", run.spec.backfill)
    archived = archived_keys(
        unseen, first_fetch=True, added_at=run.added_at, backfill=left, hold_older=True
    )
    if left is not None:
        used = sum(
            1 for a in unseen if a["key"] not in archived and not published_after(a, run.added_at)
        )
        run.state["index_backfill_left"] = max(left - used, 0)
    return archived


def _wix_metrics(run: _SourceRun, api_key: str, force: bool) -> None:
    last = run.state.get("wix_metrics_at")
    if last and not force and run.now - _time(last) < METRICS_EVERY:
        return
    if not api_key:
        run.result.warnings.append(
            f"{run.spec.location}: wix_site_id is set but NEWSLETTER_WIX_API_KEY is not; "
            f"no Wix metrics"
        )
        return
    found = wix.fetch_metrics(
        run.fetcher,
        run.spec.wix_api_base,
        run.spec.wix_site_id,
        api_key,
        run.store.source_articles(run.source_id),
        run.state.get("wix_post_ids", {}),
    )
    run.store.record_stats(found.snapshots, run.now)
    run.result.metrics = len(found.snapshots)
    run.result.warnings.extend(found.problems)
    run.state["wix_post_ids"] = found.post_ids
    if not found.problems:
        run.state["wix_metrics_at"] = iso_utc(run.now)
