"""The audit log: which staff member did what, when, from which address."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from newsletter.store.base import StoreBase, _iso


class AuditQueries(StoreBase):
    def audit(
        self,
        now: datetime,
        actor: str,
        action: str,
        target: str = "",
        detail: str = "",
        ip: str | None = None,
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO audit_log (at, actor, action, target, detail, ip) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [_iso(now), actor, action, target, detail, ip],
            )

    def audit_entries(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """The newest entries first."""
        return self._rows(
            "SELECT at, actor, action, target, detail, ip FROM audit_log "
            "ORDER BY id DESC LIMIT ? OFFSET ?",
            [-1 if limit is None else limit, offset],
        )

    def audit_count(self) -> int:
        return self._value("SELECT COUNT(*) FROM audit_log")

    def audit_since(self, action: str, target: str, since: str | None) -> list[dict[str, Any]]:
        """Entries of one action about one target after ``since`` (an ISO time; None: all)."""
        return self._rows(
            "SELECT at, detail, ip FROM audit_log WHERE action = ? AND target = ? AND at > ? "
            "ORDER BY id",
            [action, target, since or ""],
        )
