"""Attempts counted per network: the public form's sign-ups and its confirmation resends.

A network, not an address, is the key: one household or office shares a /24
(IPv4) or a /48 (IPv6), and someone trying many addresses rarely has more
than a few networks. The dashboard's failed sign-ins use the same key.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from collections.abc import Hashable

from newsletter import tracking


def network(ip: str | None) -> str:
    """The /24 or /48 an address belongs to: one key for one household or office."""
    return tracking.truncate_ip(ip) or "unknown"


class AttemptLimiter:
    """At most ``limit`` attempts per key in a sliding ``window``; memory stays bounded."""

    def __init__(self, limit: int, window: dt.timedelta, max_keys: int = 10_000):
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._seen: collections.OrderedDict[Hashable, collections.deque[dt.datetime]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def _times(self, key: Hashable, now: dt.datetime) -> collections.deque[dt.datetime]:
        """The key's attempts still in the window (the caller holds the lock)."""
        times = self._seen.pop(key, None) or collections.deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        self._seen[key] = times  # most recently used last
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        return times

    def allow(self, key: Hashable, now: dt.datetime) -> bool:
        """Count one attempt for ``key``; False if it is over the limit."""
        with self._lock:
            times = self._times(key, now)
            allowed = len(times) < self.limit
            if allowed:
                times.append(now)
            return allowed

    def full(self, key: Hashable, now: dt.datetime) -> bool:
        """Whether ``key`` has reached the limit, counting nothing."""
        with self._lock:
            return len(self._times(key, now)) >= self.limit

    def add(self, key: Hashable, now: dt.datetime) -> int:
        """Count one attempt whatever the limit; how many are in the window now."""
        with self._lock:
            times = self._times(key, now)
            times.append(now)
            return len(times)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._seen.pop(key, None)
