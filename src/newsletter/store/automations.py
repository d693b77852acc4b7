"""Automatic campaigns, who was given which article, recurring runs, welcome steps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from newsletter.status import CampaignStatus, StepStatus
from newsletter.store.articles import HELD_BY_AUTOMATION, IS_NEW
from newsletter.store.base import StoreBase, _decode_article, _iso

# Whether an earlier delivery ``d2`` of campaign ``c2`` gave (or will give) its articles:
# sent, or on its way; not failed, skipped, or left pending in a cancelled campaign.
# (A delivery in doubt counts as given: better one article missed than one twice.)
_GIVEN = (
    "(d2.status IN ('sent', 'sending', 'in_doubt') OR (d2.status IN ('pending', 'deferred') "
    "AND c2.status != 'cancelled'))"
)


class AutomationQueries(StoreBase):
    if TYPE_CHECKING:
        # CampaignsQueries's, which Store joins to this class.
        def _set_articles(self, campaign_id: int, article_ids: list[int]) -> None: ...

    # -- automatic campaigns -------------------------------------------------------

    def create_auto_campaign(
        self,
        kind: str,
        now: datetime,
        make: Callable[[list[dict[str, Any]]], tuple[str, str]],
        *,
        tracking: bool,
        hold: bool = False,
        latest: int = 0,
        subscriber_id: int | None = None,
        settled_before: datetime | None = None,
        run: tuple[str, datetime] | None = None,
    ) -> tuple[str, int | None]:
        """Make a campaign of the new articles (or the ``latest`` few) in one transaction.

        Returns ("created", id), or (reason, None): "empty" (no articles),
        "waiting" (an article changed after ``settled_before``: the quiet
        period is not over) or "taken" (``run``, a job and its due time, was
        recorded by another scheduler already). Choosing the articles and
        making the campaign happen under one write lock, so two schedulers
        never put the same new articles in two campaigns. ``make`` turns the
        articles into (subject, template). The campaign is due at once, or a
        draft with ``hold``.
        """
        with self.transaction():
            if run is not None:
                cursor = self.conn.execute(
                    "INSERT OR IGNORE INTO job_runs (job, due_at, status, at) "
                    "VALUES (?, ?, 'running', ?)",
                    [run[0], _iso(run[1]), _iso(now)],
                )
                if cursor.rowcount == 0:
                    return "taken", None
            if latest:
                rows = self._rows(
                    "SELECT a.* FROM articles a "
                    "ORDER BY COALESCE(a.published, a.first_seen_at) DESC, a.id DESC LIMIT ?",
                    [latest],
                )
            else:
                # Newest first, as in a campaign made by hand.
                rows = self._rows(
                    f"SELECT a.* FROM articles a WHERE {IS_NEW} AND NOT {HELD_BY_AUTOMATION} "
                    "ORDER BY COALESCE(a.published, a.first_seen_at) DESC, a.id DESC"
                )
            if settled_before is not None and rows:
                if max(r["changed_at"] for r in rows) > _iso(settled_before):
                    return "waiting", None
            if not rows:
                if run is not None:
                    self._finish_run(run, StepStatus.EMPTY, None, "no new articles")
                return StepStatus.EMPTY, None
            subject, template = make([_decode_article(r) for r in rows])
            cursor = self.conn.execute(
                "INSERT INTO campaigns (subject, preheader, template, status, tracking, "
                "created_at, scheduled_at, kind, subscriber_id) "
                "VALUES (?, '', ?, ?, ?, ?, ?, ?, ?)",
                [
                    subject,
                    template,
                    CampaignStatus.DRAFT if hold else CampaignStatus.SCHEDULED,
                    int(tracking),
                    _iso(now),
                    None if hold else _iso(now),
                    kind,
                    subscriber_id,
                ],
            )
            campaign_id = cursor.lastrowid
            assert campaign_id is not None  # an INSERT sets it
            self._set_articles(campaign_id, [r["id"] for r in rows])
            if run is not None:
                self._finish_run(run, StepStatus.DONE, campaign_id, None)
        return "created", campaign_id

    def _plan_received(self, campaign_id: int, now: datetime) -> None:
        """Give each planned recipient of an automatic campaign only articles new to them.

        Runs inside the transaction that plans the deliveries (see
        ``start_campaign``). A recipient "had" an article when an earlier
        automatic campaign that carried it gave (or is giving) them that
        campaign, and it was among their articles there. Recipients who had
        none of this campaign's articles (nearly everyone) get them all and
        need no row; the others get ``personal_articles`` rows for the ones
        they did not have, or are skipped when they had them all. Set-based
        statements; sending then reads the exceptions once per campaign.
        """
        self.conn.execute("DROP TABLE IF EXISTS temp.had")
        self.conn.execute(
            "CREATE TEMP TABLE had AS SELECT d.subscriber_id, ca.article_id "
            "FROM deliveries d JOIN campaign_articles ca ON ca.campaign_id = d.campaign_id "
            "WHERE d.campaign_id = ? AND EXISTS (SELECT 1 FROM campaign_articles ca2 "
            "JOIN campaigns c2 ON c2.id = ca2.campaign_id "
            "JOIN deliveries d2 ON d2.campaign_id = ca2.campaign_id "
            "AND d2.subscriber_id = d.subscriber_id "
            "WHERE ca2.article_id = ca.article_id AND ca2.campaign_id != d.campaign_id "
            # A cancelled campaign made by hand counts too: its articles stay new for
            # the people it did not reach (store/articles.py, USED).
            f"AND (c2.kind != 'manual' OR c2.status = 'cancelled') AND {_GIVEN} "
            "AND (NOT EXISTS (SELECT 1 FROM personal_articles p WHERE p.campaign_id = c2.id "
            "AND p.subscriber_id = d.subscriber_id) OR EXISTS (SELECT 1 FROM personal_articles "
            "p WHERE p.campaign_id = c2.id AND p.subscriber_id = d.subscriber_id "
            "AND p.article_id = ca.article_id)))",
            [campaign_id],
        )
        self.conn.execute("CREATE INDEX temp.had_pair ON had(subscriber_id, article_id)")
        total = self._value(
            "SELECT COUNT(*) FROM campaign_articles WHERE campaign_id = ?", [campaign_id]
        )
        self.conn.execute(
            "INSERT INTO personal_articles (campaign_id, subscriber_id, article_id) "
            "SELECT d.campaign_id, d.subscriber_id, ca.article_id FROM deliveries d "
            "JOIN campaign_articles ca ON ca.campaign_id = d.campaign_id "
            "WHERE d.campaign_id = ? AND d.subscriber_id IN (SELECT subscriber_id FROM had) "
            "AND NOT EXISTS (SELECT 1 FROM had h WHERE h.subscriber_id = d.subscriber_id "
            "AND h.article_id = ca.article_id)",
            [campaign_id],
        )
        self.conn.execute(
            "UPDATE deliveries SET status = 'skipped', error = 'already received every article', "
            "done_at = ? WHERE campaign_id = ? AND status = 'pending' AND subscriber_id IN "
            "(SELECT subscriber_id FROM had GROUP BY subscriber_id HAVING COUNT(*) >= ?)",
            [_iso(now), campaign_id, total],
        )
        self.conn.execute("DROP TABLE temp.had")

    def personal_articles(self, campaign_id: int) -> dict[int, list[int]]:
        """The recipients of an automatic campaign who get only some of its articles.

        Everyone else gets them all, so only the exceptions are held in memory.
        """
        return {
            row["subscriber_id"]: [int(a) for a in row["ids"].split(",")]
            for row in self._rows(
                "SELECT subscriber_id, group_concat(article_id) AS ids FROM personal_articles "
                "WHERE campaign_id = ? GROUP BY subscriber_id",
                [campaign_id],
            )
        }

    # -- scheduled campaigns -----------------------------------------------------------

    def scheduled_campaigns(self) -> list[dict[str, Any]]:
        """Scheduled campaigns still waiting for their time (not missed), soonest first."""
        return self._rows(
            "SELECT id, subject, kind, scheduled_at FROM campaigns WHERE status = 'scheduled' "
            "AND missed_at IS NULL ORDER BY scheduled_at, id"
        )

    def overdue_campaigns(self, before: datetime) -> list[dict[str, Any]]:
        """Scheduled campaigns whose time is earlier than ``before`` and not yet reported."""
        return self._rows(
            "SELECT id, subject, scheduled_at FROM campaigns WHERE status = 'scheduled' "
            "AND missed_at IS NULL AND scheduled_at < ? ORDER BY id",
            [_iso(before)],
        )

    def mark_missed(self, campaign_id: int, now: datetime, note: str) -> bool:
        """Record that a campaign's time passed unsent; True for the one caller that did it."""
        with self.transaction():
            cursor = self.conn.execute(
                "UPDATE campaigns SET missed_at = ?, note = ? WHERE id = ? "
                "AND status = 'scheduled' AND missed_at IS NULL",
                [_iso(now), note, campaign_id],
            )
        return cursor.rowcount == 1

    def set_campaign_note(self, campaign_id: int, note: str) -> None:
        self.conn.execute("UPDATE campaigns SET note = ? WHERE id = ?", [note, campaign_id])

    # -- recurring runs ------------------------------------------------------------------

    def last_run(self, job: str, now: datetime) -> datetime:
        """The latest due time of a recurring job handled so far.

        The first call records ``now`` as the job's start: due times before a
        job existed are neither run nor reported as missed.
        """
        with self.transaction():
            self.conn.execute(
                "INSERT INTO job_runs (job, due_at, status, at) SELECT ?, ?, 'enabled', ? "
                "WHERE NOT EXISTS (SELECT 1 FROM job_runs WHERE job = ?)",
                [job, _iso(now), _iso(now), job],
            )
            last = self._value("SELECT MAX(due_at) FROM job_runs WHERE job = ?", [job])
        return datetime.fromisoformat(last)

    def first_run(self, job: str) -> datetime | None:
        first = self._value("SELECT MIN(due_at) FROM job_runs WHERE job = ?", [job])
        return datetime.fromisoformat(first) if first else None

    def record_run(
        self, job: str, due: datetime, status: str, now: datetime, detail: str | None = None
    ) -> bool:
        """Record a due time's outcome once; False when it was recorded already."""
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO job_runs (job, due_at, status, at, detail) "
            "VALUES (?, ?, ?, ?, ?)",
            [job, _iso(due), status, _iso(now), detail],
        )
        return cursor.rowcount == 1

    def _finish_run(
        self, run: tuple[str, datetime], status: str, campaign_id: int | None, detail: str | None
    ) -> None:
        self.conn.execute(
            "UPDATE job_runs SET status = ?, campaign_id = ?, detail = ? "
            "WHERE job = ? AND due_at = ?",
            [status, campaign_id, detail, run[0], _iso(run[1])],
        )

    def job_runs(self, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Recorded due times of recurring jobs and steps, newest first."""
        where = "WHERE status = ?" if status else "WHERE status != 'enabled'"
        params: list[Any] = [status] if status else []
        return self._rows(
            f"SELECT * FROM job_runs {where} ORDER BY due_at DESC LIMIT ?", [*params, limit]
        )

    def scheduler_jobs(self) -> list[dict[str, Any]]:
        """The jobs in APScheduler's table of this database: id and next run (epoch seconds)."""
        if not self._value(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'apscheduler_jobs'"
        ):
            return []
        return self._rows(
            "SELECT id, next_run_time FROM apscheduler_jobs ORDER BY next_run_time IS NULL, "
            "next_run_time, id"
        )

    # -- welcome steps ------------------------------------------------------------------

    def queue_steps(self, since: datetime, steps: list[tuple[str, float]]) -> int:
        """Plan (kind, delay seconds) steps for each opt-in confirmed since ``since``.

        Only a subscriber's own confirmation counts (not an import). A step is
        planned once per consent; return how many were added.
        """
        from datetime import timedelta

        added = 0
        with self.transaction():
            for consent in self._rows(
                "SELECT id, subscriber_id, confirmed_at FROM consents WHERE confirmed_at >= ? "
                "AND source != 'import' AND subscriber_id IS NOT NULL",
                [_iso(since)],
            ):
                confirmed = datetime.fromisoformat(consent["confirmed_at"])
                for kind, delay in steps:
                    cursor = self.conn.execute(
                        "INSERT OR IGNORE INTO automation_steps "
                        "(subscriber_id, consent_id, kind, due_at) VALUES (?, ?, ?, ?)",
                        [
                            consent["subscriber_id"],
                            consent["id"],
                            kind,
                            _iso(confirmed + timedelta(seconds=delay)),
                        ],
                    )
                    added += cursor.rowcount
        return added

    def pending_steps(self, until: datetime | None = None) -> list[dict[str, Any]]:
        """Welcome steps not done yet (due by ``until``, if given), soonest first."""
        due = "AND due_at <= ?" if until is not None else ""
        params = [_iso(until)] if until is not None else []
        return self._rows(
            f"SELECT * FROM automation_steps WHERE status = 'pending' {due} ORDER BY due_at, id",
            params,
        )

    def claim_step(self, step_id: int, now: datetime) -> bool:
        """Take a pending step for this process; False if another took it first."""
        cursor = self.conn.execute(
            "UPDATE automation_steps SET status = 'running', done_at = ? "
            "WHERE id = ? AND status = 'pending'",
            [_iso(now), step_id],
        )
        return cursor.rowcount == 1

    def finish_step(self, step_id: int, status: str, now: datetime, detail: str = "") -> None:
        self.conn.execute(
            "UPDATE automation_steps SET status = ?, done_at = ?, detail = ? WHERE id = ?",
            [status, _iso(now), detail or None, step_id],
        )

    def steps(self, status: str, limit: int = 20) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM automation_steps WHERE status = ? ORDER BY due_at DESC LIMIT ?",
            [status, limit],
        )
