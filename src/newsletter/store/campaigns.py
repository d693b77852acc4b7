"""Campaigns and their state."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from newsletter.errors import NotFound
from newsletter.status import FINISHED
from newsletter.store.base import (
    StoreBase,
    _iso,
)


class CampaignsQueries(StoreBase):
    # -- campaigns -----------------------------------------------------------

    def create_campaign(
        self,
        subject: str,
        preheader: str,
        template: str,
        article_ids: list[int],
        list_id: int | None,
        tracking: bool,
        now: datetime,
        segment: list[dict[str, Any]] | None = None,
        intro: str = "",
        body: str = "",
    ) -> int:
        """A draft campaign; ``segment`` (rules from ``subscribers.parse_segment``) narrows it.

        ``intro`` and ``body``: the campaign's own Markdown, above its articles or
        (with none) in their place.
        """
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT INTO campaigns (subject, preheader, template, list_id, status, tracking, "
                "created_at, segment, intro, body) VALUES (?, ?, ?, ?, 'draft', ?, ?, ?, ?, ?)",
                [
                    subject,
                    preheader,
                    template,
                    list_id,
                    int(tracking),
                    _iso(now),
                    json.dumps(segment) if segment else None,
                    intro,
                    body,
                ],
            )
            campaign_id = cursor.lastrowid
            assert campaign_id is not None  # an INSERT sets it
            self._set_articles(campaign_id, article_ids)
        return campaign_id

    def _set_articles(self, campaign_id: int, article_ids: list[int]) -> None:
        """A campaign's articles, in the email's order (inside the caller's transaction)."""
        self.conn.execute("DELETE FROM campaign_articles WHERE campaign_id = ?", [campaign_id])
        self.conn.executemany(
            "INSERT INTO campaign_articles VALUES (?, ?, ?)",
            [(campaign_id, article_id, pos) for pos, article_id in enumerate(article_ids)],
        )

    def update_draft(
        self,
        campaign_id: int,
        subject: str,
        preheader: str,
        template: str,
        article_ids: list[int],
        list_id: int | None,
        tracking: bool,
        segment: list[dict[str, Any]] | None = None,
        intro: str = "",
        body: str = "",
    ) -> bool:
        """Replace a campaign's content and audience while it has not started; False if it has.

        The status is checked in the same transaction as the writes, so a send
        that starts at this instant either sees the change whole or refuses it.
        """
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE campaigns SET subject = ?, preheader = ?, template = ?, list_id = ?, "
                "tracking = ?, segment = ?, intro = ?, body = ? "
                "WHERE id = ? AND status IN ('draft', 'scheduled') AND started_at IS NULL",
                [
                    subject,
                    preheader,
                    template,
                    list_id,
                    int(tracking),
                    json.dumps(segment) if segment else None,
                    intro,
                    body,
                    campaign_id,
                ],
            )
            if cursor.rowcount != 1:
                return False
            self._set_articles(campaign_id, article_ids)
        return True

    def delete_draft(self, campaign_id: int) -> bool:
        """Delete a draft that never started, with its article list; False for any other."""
        with self.transaction():
            cursor = self.conn.execute(
                "DELETE FROM campaigns WHERE id = ? AND status = 'draft' AND started_at IS NULL",
                [campaign_id],
            )
        return cursor.rowcount == 1

    def segment_choices(self) -> dict[str, list[str]]:
        """The tags and attribute names subscribers have, for a segment built from choices."""
        return {
            "tags": [
                r["value"]
                for r in self._rows(
                    "SELECT DISTINCT j.value FROM subscribers s, json_each(s.tags) j "
                    "WHERE s.status = 'confirmed' ORDER BY j.value"
                )
            ],
            "attributes": [
                r["key"]
                for r in self._rows(
                    "SELECT DISTINCT j.key FROM subscribers s, json_each(s.attributes) j "
                    "WHERE s.status = 'confirmed' ORDER BY j.key"
                )
            ],
        }

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        row = self._row("SELECT * FROM campaigns WHERE id = ?", [campaign_id])
        if row is None:
            raise NotFound(
                f"campaign {campaign_id}: no such campaign; see `newsletter campaign list`"
            )
        row["tracking"] = bool(row["tracking"])
        row["article_ids"] = [
            r["article_id"]
            for r in self._rows(
                "SELECT article_id FROM campaign_articles WHERE campaign_id = ? ORDER BY position",
                [campaign_id],
            )
        ]
        return row

    def campaigns(self) -> list[dict[str, Any]]:
        return self._rows(
            """
            SELECT c.*,
              (SELECT COUNT(*) FROM deliveries d WHERE d.campaign_id = c.id) AS recipients,
              (SELECT COUNT(*) FROM deliveries d WHERE d.campaign_id = c.id
                 AND d.status = 'sent') AS sent,
              (SELECT COUNT(*) FROM deliveries d WHERE d.campaign_id = c.id
                 AND d.status = 'failed') AS failed,
              (SELECT COUNT(*) FROM deliveries d WHERE d.campaign_id = c.id
                 AND d.status = 'in_doubt') AS in_doubt
            FROM campaigns c ORDER BY c.id
            """
        )

    def set_campaign_status(
        self,
        campaign_id: int,
        status: str,
        allowed_from: Iterable[str],
        now: datetime,
        **extra: Any,
    ) -> bool:
        """Move a campaign to a status if it is in one of ``allowed_from``; return success."""
        allowed = list(allowed_from)
        assignments = ", ".join(["status = ?"] + [f"{k} = ?" for k in extra])
        values = [status, *extra.values()]
        if status in FINISHED:
            assignments += ", finished_at = ?"
            values.append(_iso(now))
        marks = ", ".join("?" for _ in allowed)
        with self.transaction():
            cursor = self.conn.execute(
                f"UPDATE campaigns SET {assignments} WHERE id = ? AND status IN ({marks})",
                [*values, campaign_id, *allowed],
            )
        return cursor.rowcount == 1

    def campaign_status(self, campaign_id: int) -> str:
        return self._value("SELECT status FROM campaigns WHERE id = ?", [campaign_id])

    def due_campaigns(self, now: datetime, not_before: datetime | None = None) -> list[int]:
        """Scheduled campaigns whose time has come, and campaigns left sending by a stop.

        ``not_before``: leave out scheduled campaigns due earlier than this
        (missed: reported, never sent without a person), and missed ones.
        """
        since = _iso(not_before) if not_before is not None else ""
        return [
            r["id"]
            for r in self._rows(
                "SELECT id FROM campaigns WHERE (status = 'scheduled' AND scheduled_at <= ? "
                "AND scheduled_at >= ? AND missed_at IS NULL) OR status = 'sending' ORDER BY id",
                [_iso(now), since],
            )
        ]

    def register_links(
        self, campaign_id: int, links: list[tuple[str, int | None]]
    ) -> dict[str, int]:
        """Store the campaign's links (url, article id) and return their ids by url."""
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO links (campaign_id, url, article_id) VALUES (?, ?, ?)",
                [(campaign_id, url, article_id) for url, article_id in links],
            )
        return self.links(campaign_id)

    def links(self, campaign_id: int) -> dict[str, int]:
        return {
            r["url"]: r["id"]
            for r in self._rows("SELECT id, url FROM links WHERE campaign_id = ?", [campaign_id])
        }

    def link(self, link_id: int, campaign_id: int) -> dict[str, Any] | None:
        """The link registered under this id for this campaign, or None."""
        return self._row(
            "SELECT id, url, article_id FROM links WHERE id = ? AND campaign_id = ?",
            [link_id, campaign_id],
        )
