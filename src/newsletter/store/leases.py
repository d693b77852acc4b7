"""The send lease: which process may send a campaign (table ``send_leases``).

One row per campaign being sent: the owner (host, pid, incarnation, a random
tag), and until when it holds (wall-clock seconds, comparable between
processes). The rules of who may take it over are in ``lease_held``;
delivery's ``Lease`` takes, renews and releases it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from newsletter.store.base import StoreBase


def lease_held(
    holder: dict[str, Any], host: str, now: float, alive: Callable[[str, int, str], bool]
) -> bool:
    """Whether a lease row still binds the others, seen from ``host`` at wall time ``now``.

    A live process on this host keeps its lease even past expiry (it may be
    stalled on a slow server); a remote holder is trusted until it expires; a
    holder on this host whose process is gone holds nothing.
    """
    if not alive(holder["host"], holder["pid"], holder["owner"]):
        return False
    return holder["host"] == host or holder["expires_at"] > now


class LeasesQueries(StoreBase):
    def take_lease(
        self,
        campaign_id: int,
        owner: str,
        host: str,
        pid: int,
        now: float,
        seconds: float,
        alive: Callable[[str, int, str], bool],
    ) -> dict[str, Any] | None:
        """Become the one sender of a campaign; return the holder's row if someone else is.

        A lease is free when it has expired or when its holder is a process on
        this host that no longer runs (a SIGKILLed sender frees it at once).
        Times are wall-clock seconds, comparable between processes.
        """
        with self.transaction():
            holder = self._row("SELECT * FROM send_leases WHERE campaign_id = ?", [campaign_id])
            if holder is not None and holder["owner"] != owner:
                if lease_held(holder, host, now, alive):
                    return holder
            self.conn.execute(
                "INSERT OR REPLACE INTO send_leases VALUES (?, ?, ?, ?, ?)",
                [campaign_id, owner, host, pid, now + seconds],
            )
        return None

    def send_lease(self, campaign_id: int) -> dict[str, Any] | None:
        """The send lease row of a campaign, expired or not (judge it with ``lease_held``)."""
        return self._row("SELECT * FROM send_leases WHERE campaign_id = ?", [campaign_id])

    def renew_lease(self, campaign_id: int, owner: str, now: float, seconds: float) -> bool:
        cursor = self.conn.execute(
            "UPDATE send_leases SET expires_at = ? WHERE campaign_id = ? AND owner = ?",
            [now + seconds, campaign_id, owner],
        )
        return cursor.rowcount == 1

    def release_lease(self, campaign_id: int, owner: str) -> None:
        self.conn.execute(
            "DELETE FROM send_leases WHERE campaign_id = ? AND owner = ?", [campaign_id, owner]
        )
