"""Database work of the web server off its event loop, each thread on its own connection.

The event loop serves every request; a handler that waits there for SQLite's
write lock (a campaign's transaction can hold it for a while) or parses a
large CSV file stalls the pixel, the click redirects and the one-click
unsubscribes of everyone. So writes and heavy work run in worker threads,
and a worker thread never shares a connection: SQLite transactions belong to
a connection, and two threads interleaving statements on one would mix them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from newsletter.store import Store

T = TypeVar("T")


class ThreadStores:
    """One ``Store`` per thread on one database, used as if it were a single store.

    ``stores.subscriber(1)`` runs on the calling thread's own connection,
    opened the first time that thread asks.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._local = threading.local()
        self._opened: list[Store] = []
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the web server's database connections are closed")
                store = Store(self.path)
                self._opened.append(store)
            self._local.store = store
        return store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, []
        for store in opened:
            store.close()


async def off_loop(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work in a worker thread and wait for it without blocking the loop."""
    return await run_in_threadpool(work, *args, **kwargs)
