"""The audit log: which staff member did what, when, from which address."""

from __future__ import annotations

import json
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
        data: dict[str, Any] | None = None,
    ) -> None:
        """``data``: what programs read back (see ``importer_of``), kept as JSON; its
        times are stored as the store's other times are, so they compare equal."""
        kept = None if data is None else json.dumps(data, default=_json_time)
        with self.transaction():
            self.conn.execute(
                "INSERT INTO audit_log (at, actor, action, target, detail, ip, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_iso(now), actor, action, target, detail, ip, kept],
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


def _json_time(value: object) -> str:
    if isinstance(value, datetime):
        return _iso(value)
    raise TypeError(f"not JSON: {value!r}")
