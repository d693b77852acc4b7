"""Sources, articles and their blog counters."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, cast

from newsletter.errors import NotFound
from newsletter.rows import Article
from newsletter.store.base import (
    StoreBase,
    _decode_article,
    _iso,
)

# Whether campaign ``c`` has used up the articles it carries: its sending started and
# it was not cancelled. A draft or a scheduled campaign only proposes them (another
# draft may take the same ones), and a cancelled one leaves them new even when it went
# to some people: the rest should still get them, and the ledger keeps who did, so an
# automatic campaign gives them only to the others (``store/automations.py``). A new
# subscriber's "latest articles" email is for one person and uses up nothing.
USED = "(c.started_at IS NOT NULL AND c.status != 'cancelled' AND c.kind != 'latest')"

# An article ``a`` is new until a campaign after its last announced change has used it.
IS_NEW = (
    "(a.new_after_campaign IS NOT NULL AND NOT EXISTS (SELECT 1 FROM campaign_articles "
    "ca JOIN campaigns c ON c.id = ca.campaign_id WHERE ca.article_id = a.id "
    f"AND ca.campaign_id > a.new_after_campaign AND {USED}))"
)

# Whether a new article ``a`` waits in an automatic campaign that has not started (a
# digest held as a draft for approval, an instant campaign due now): the next automatic
# campaign leaves it out, so the automation never proposes the same article twice.
# Drafts made by staff hold nothing back.
HELD_BY_AUTOMATION = (
    "EXISTS (SELECT 1 FROM campaign_articles ca JOIN campaigns c ON c.id = ca.campaign_id "
    "WHERE ca.article_id = a.id AND ca.campaign_id > a.new_after_campaign "
    "AND c.kind NOT IN ('manual', 'latest') AND c.started_at IS NULL "
    "AND c.status != 'cancelled')"
)


class ArticlesQueries(StoreBase):
    # -- sources and articles ---------------------------------------------

    def source_id(self, kind: str, location: str, now: datetime) -> int:
        """Return the id of a source, registering it on first sight."""
        self.conn.execute(
            "INSERT OR IGNORE INTO sources (kind, location, added_at) VALUES (?, ?, ?)",
            [kind, location, _iso(now)],
        )
        return self._value(
            "SELECT id FROM sources WHERE kind = ? AND location = ?", [kind, location]
        )

    def source(self, source_id: int) -> dict[str, Any]:
        """A source row with its state decoded."""
        row = self._row("SELECT * FROM sources WHERE id = ?", [source_id])
        if row is None:
            raise NotFound(f"source {source_id}: no such source")
        row["state"] = json.loads(row["state"] or "{}")
        row["articles"] = self._value(
            "SELECT COUNT(*) FROM articles WHERE source_id = ?", [source_id]
        )
        return row

    def save_source_state(self, source_id: int, state: dict[str, Any]) -> None:
        """Replace a source's state (validators, failures, next try) in one write."""
        with self.transaction():
            self.conn.execute(
                "UPDATE sources SET state = ? WHERE id = ?",
                [json.dumps(state, sort_keys=True), source_id],
            )

    def source_articles(self, source_id: int) -> list[dict[str, Any]]:
        """id, key, url and item hash of every article a source has given."""
        return self._rows(
            "SELECT id, key, url, item_hash FROM articles WHERE source_id = ? ORDER BY id",
            [source_id],
        )

    def _find_article(
        self, source_id: int, art: dict[str, Any], batch_keys: set[str], url_unique: bool
    ) -> dict[str, Any] | None:
        """The stored article this item is, by key; else by URL when its key changed.

        Guids and links both change in real feeds (a platform move, a
        re-generated guid). A URL match counts only when the URL is unique in
        the batch and the stored article's own key is not in the batch, so two
        live articles that share a link are never merged.
        """
        columns = "id, key, content_hash, updated, item_hash"
        row = self._row(
            f"SELECT {columns} FROM articles WHERE source_id = ? AND key = ?",
            [source_id, art["key"]],
        )
        if row is not None or not art.get("url") or not url_unique:
            return row
        candidates = [
            r
            for r in self._rows(
                f"SELECT {columns} FROM articles WHERE source_id = ? AND url = ?",
                [source_id, art["url"]],
            )
            if r["key"] not in batch_keys
        ]
        return candidates[0] if len(candidates) == 1 else None

    def _find_by_fragmentless_key(
        self, source_id: int, batch: list[dict[str, Any]], found: dict[str, Any]
    ) -> set[str]:
        """Match items keyed by ``link#fragment`` to an article stored under the bare link.

        Items without a guid were once keyed by their link without its
        fragment, so items that differ only by it were stored as one article
        (the first in the feed). That article is found again by the first
        such item (``found`` is filled in); the others were in the feed all
        along, so their keys are returned to be recorded without being
        announced, as old items.
        """
        batch_keys = {a["key"] for a in batch}
        claimed: set[str] = set()
        merged_before: set[str] = set()
        for art in batch:
            key = art["key"]
            if found[key] is not None or "#" not in key or not key.startswith("http"):
                continue
            bare = key.partition("#")[0]
            if bare in batch_keys:
                continue
            if bare in claimed:
                merged_before.add(key)
                continue
            row = self._row(
                "SELECT id, key, content_hash, updated, item_hash FROM articles "
                "WHERE source_id = ? AND key = ?",
                [source_id, bare],
            )
            if row is not None:
                claimed.add(bare)
                found[key] = row
        return merged_before

    def save_articles(
        self,
        source_id: int,
        articles: Iterable[dict[str, Any]],
        now: datetime,
        *,
        announce_updates: bool = False,
        archive: Callable[[list[dict[str, Any]]], set[str]] | None = None,
    ) -> dict[str, int]:
        """Insert new articles and update changed ones in one transaction; return counts.

        An article is changed when what readers see (its content hash) or its
        updated date differs; it is updated in place and stays announced unless
        ``announce_updates``. ``archive`` is given the articles seen for the first
        time and returns the keys of those to record without announcing them.
        Counter snapshots (views, comments, likes) are stored when they differ
        from the article's last one.
        """
        counts = {"new": 0, "updated": 0, "unchanged": 0, "archived": 0}
        batch = list(articles)
        batch_keys = {a["key"] for a in batch}
        urls = Counter(a.get("url") for a in batch if a.get("url"))
        with self.transaction():
            found = {
                a["key"]: self._find_article(source_id, a, batch_keys, urls[a.get("url")] == 1)
                for a in batch
            }
            merged_before = self._find_by_fragmentless_key(source_id, batch, found)
            unseen = [a for a in batch if found[a["key"]] is None]
            archived = archive(unseen) if archive and unseen else set()
            archived |= merged_before
            for art in batch:
                existing = found[art["key"]]
                fields = {
                    "url": art.get("url"),
                    "title": art["title"],
                    "author": art.get("author"),
                    "published": art.get("published"),
                    "updated": art.get("updated"),
                    "summary": art.get("summary", ""),
                    "body_html": art.get("body_html", ""),
                    "image": art.get("image"),
                    "image_alt": art.get("image_alt"),
                    "tags": json.dumps(art.get("tags", [])),
                    "content_hash": art["content_hash"],
                    "item_hash": art.get("item_hash"),
                }
                if existing is None:
                    is_archived = art["key"] in archived
                    fields.update(
                        source_id=source_id,
                        key=art["key"],
                        first_seen_at=_iso(now),
                        changed_at=_iso(now),
                        new_after_campaign=None if is_archived else 0,
                    )
                    names = ", ".join(fields)
                    marks = ", ".join("?" for _ in fields)
                    cursor = self.conn.execute(
                        f"INSERT INTO articles ({names}) VALUES ({marks})", list(fields.values())
                    )
                    assert cursor.lastrowid is not None  # an INSERT sets it
                    article_id = cursor.lastrowid
                    counts["archived" if is_archived else "new"] += 1
                elif existing["content_hash"] != art["content_hash"] or existing[
                    "updated"
                ] != art.get("updated"):
                    article_id = existing["id"]
                    fields["key"] = art["key"]
                    fields["changed_at"] = _iso(now)
                    assignments = ", ".join(f"{name} = ?" for name in fields)
                    self.conn.execute(
                        f"UPDATE articles SET {assignments} WHERE id = ?",
                        [*fields.values(), article_id],
                    )
                    if announce_updates:
                        # New again until a campaign after the last one that carried it.
                        # An archived article (NULL) stays archived: editing an old
                        # post does not announce it for the first time.
                        self.conn.execute(
                            "UPDATE articles SET new_after_campaign = COALESCE((SELECT "
                            "MAX(ca.campaign_id) FROM campaign_articles ca JOIN campaigns c "
                            f"ON c.id = ca.campaign_id WHERE ca.article_id = ? AND {USED}), 0) "
                            "WHERE id = ? AND new_after_campaign IS NOT NULL",
                            [article_id, article_id],
                        )
                    counts["updated"] += 1
                else:
                    article_id = existing["id"]
                    if existing["key"] != art["key"] or existing["item_hash"] != art.get(
                        "item_hash"
                    ):
                        self.conn.execute(
                            "UPDATE articles SET key = ?, item_hash = ? WHERE id = ?",
                            [art["key"], art.get("item_hash"), article_id],
                        )
                    counts["unchanged"] += 1
                self._snapshot(
                    article_id, now, art.get("views"), art.get("comments"), art.get("likes")
                )
        return counts

    def _snapshot(
        self,
        article_id: int,
        now: datetime,
        views: int | None,
        comments: int | None,
        likes: int | None,
    ) -> bool:
        """Store a counter snapshot if it says something the last one did not."""
        if views is None and comments is None and likes is None:
            return False
        last = self._row(
            "SELECT views, comments, likes FROM article_stats WHERE article_id = ? "
            "ORDER BY id DESC LIMIT 1",
            [article_id],
        )
        if last == {"views": views, "comments": comments, "likes": likes}:
            return False
        self.conn.execute(
            "INSERT INTO article_stats (article_id, observed_at, views, comments, likes) "
            "VALUES (?, ?, ?, ?, ?)",
            [article_id, _iso(now), views, comments, likes],
        )
        return True

    def record_stats(
        self, snapshots: Iterable[tuple[int, int | None, int | None, int | None]], now: datetime
    ) -> int:
        """Store (article id, views, comments, likes) snapshots; return how many were new."""
        stored = 0
        with self.transaction():
            for article_id, views, comments, likes in snapshots:
                stored += self._snapshot(article_id, now, views, comments, likes)
        return stored

    def article_stats(self, article_id: int) -> list[dict[str, Any]]:
        """Every counter snapshot of one article, oldest first."""
        return self._rows(
            "SELECT observed_at, views, comments, likes FROM article_stats "
            "WHERE article_id = ? ORDER BY id",
            [article_id],
        )

    def newest_article_ids(self, limit: int) -> list[int]:
        """The ids of the ``limit`` newest articles, in ``articles()``'s order: a sample."""
        rows = self.conn.execute(
            "SELECT a.id FROM articles a "
            "ORDER BY COALESCE(a.published, a.first_seen_at) DESC, a.id DESC LIMIT ?",
            [limit],
        ).fetchall()
        return [int(row[0]) for row in rows]

    def articles(self, only_new: bool = False) -> list[dict[str, Any]]:
        """List articles, newest first, with their latest blog view counts.

        An article is new until a campaign that carries it starts sending (after
        its last announced update; see ``USED``); an archived article is never
        new on its own. ``sent_at`` is when the first such campaign started.
        """
        is_new = IS_NEW
        where = f"WHERE {is_new}" if only_new else ""
        rows = self._rows(
            f"""
            SELECT a.*, s.kind AS source_kind, s.location AS source_location,
              {is_new} AS is_new,
              (SELECT views FROM article_stats st WHERE st.article_id = a.id
                 ORDER BY st.id DESC LIMIT 1) AS views,
              (SELECT comments FROM article_stats st WHERE st.article_id = a.id
                 ORDER BY st.id DESC LIMIT 1) AS comments,
              (SELECT MIN(c.started_at) FROM campaign_articles ca
                 JOIN campaigns c ON c.id = ca.campaign_id
                 WHERE ca.article_id = a.id AND {USED}) AS sent_at
            FROM articles a JOIN sources s ON s.id = a.source_id
            {where}
            ORDER BY COALESCE(a.published, a.first_seen_at) DESC, a.id DESC
            """
        )
        return [_decode_article(r) for r in rows]

    def campaign_article(self, article_id: int) -> Article | None:
        """An article that some campaign carries, for its public page; None for any other.

        Articles no campaign has taken (a draft in a folder) stay unpublished.
        """
        row = self._row(
            "SELECT * FROM articles a WHERE id = ? AND EXISTS "
            "(SELECT 1 FROM campaign_articles ca WHERE ca.article_id = a.id)",
            [article_id],
        )
        # SELECT * gives every column Article names (and more).
        return cast(Article, _decode_article(row)) if row else None

    def articles_by_id(self, ids: list[int]) -> list[Article]:
        """Return the articles with these ids, in the order given."""
        found: dict[int, Article] = {}
        for article_id in ids:
            row = self._row("SELECT * FROM articles WHERE id = ?", [article_id])
            if row is None:
                raise NotFound(
                    f"article {article_id}: no such article; see `newsletter articles list`"
                )
            found[article_id] = cast(Article, _decode_article(row))  # every column, as above
        return [found[i] for i in ids]
