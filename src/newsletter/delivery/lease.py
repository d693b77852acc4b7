"""The send lease: one process at a time sends a campaign, and a heartbeat keeps it.

Invariants:
- Without the lease, a second sender (the scheduler and a `campaign send` at
  once) could take another's in-flight rows for crash leftovers and send them
  again; so a sender takes the lease before it settles or claims anything.
- A lease left by a killed process on this host is no one's, though it has
  not expired: the next sender takes it over at once. A holder on another
  host is trusted until its lease expires.
- If the heartbeat ever finds the lease gone, ``lost`` is set and the run
  halts before claiming another row.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newsletter.errors import StateError
from newsletter.store import Store
from newsletter.store.leases import lease_held

log = logging.getLogger(__name__)

# Tells this process apart from an earlier one that had the same pid on this
# host: in a container restarted after a kill, `newsletter run` is PID 1 again,
# and the dead run's lease must not look like its own live one.
_INCARNATION = uuid.uuid4().hex[:12]


def process_alive(host: str, pid: int, owner: str = "") -> bool:
    """Whether a lease holder still runs; a holder on another host is taken to be alive."""
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return owner.startswith(f"{host}:{pid}:{_INCARNATION}:")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def active_sender(
    store: Store, campaign_id: int, wall: Callable[[], float] = time.time
) -> dict[str, Any] | None:
    """The sender holding a campaign's lease that still runs, if any (a look, not a claim).

    A lease left by a killed process on this host is no one's, though it has
    not expired: the next sender takes it over at once.
    """
    holder = store.send_lease(campaign_id)
    if holder is None or not lease_held(holder, socket.gethostname(), wall(), process_alive):
        return None
    return holder


class Lease:
    """The right to send one campaign, held by one process at a time.

    Without it, a second sender (the scheduler and a `campaign send` at once)
    could take another's in-flight rows for crash leftovers and send them
    again. A heartbeat thread renews it; if it is ever lost, the run halts
    before claiming another row.
    """

    SECONDS = 60.0

    def __init__(self, db_path: Path, campaign_id: int, wall: Callable[[], float] = time.time):
        self.db_path, self.campaign_id, self.wall = db_path, campaign_id, wall
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{_INCARNATION}:{uuid.uuid4().hex[:8]}"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, store: Store) -> None:
        holder = store.take_lease(
            self.campaign_id,
            self.owner,
            socket.gethostname(),
            os.getpid(),
            self.wall(),
            self.SECONDS,
            process_alive,
        )
        if holder is not None:
            raise StateError(
                f"campaign {self.campaign_id}: another sender is sending it (pid "
                f"{holder['pid']} on {holder['host']}); wait for it to finish or stop it"
            )
        self._thread = threading.Thread(target=self._heartbeat, name="lease", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        store = Store(self.db_path)
        try:
            while not self._stop.wait(self.SECONDS / 6):
                try:
                    renewed = store.renew_lease(
                        self.campaign_id, self.owner, self.wall(), self.SECONDS
                    )
                except sqlite3.Error as exc:
                    # Busy for a moment: the lease lasts six beats, so try on the next.
                    log.warning("campaign %s: lease not renewed (%s)", self.campaign_id, exc)
                    continue
                if not renewed:
                    self.lost.set()
                    return
        finally:
            store.close()

    def release(self, store: Store) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        store.release_lease(self.campaign_id, self.owner)
