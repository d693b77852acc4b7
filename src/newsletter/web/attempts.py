"""Attempts counted per network: the public form's sign-ups and its confirmation resends.

A network, not an address, is the key: one household or office shares a /24
(IPv4) or a /48 (IPv6), and someone trying many addresses rarely has more
than a few networks. The dashboard's failed sign-ins use the same key.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading

from newsletter import tracking


def network(ip: str | None) -> str:
    """The /24 or /48 an address belongs to: one key for one household or office."""
    return tracking.truncate_ip(ip) or "unknown"


class AttemptLimiter:
    """At most ``limit`` attempts per key in a sliding ``window``; memory stays bounded."""

    def __init__(self, limit: int, window: dt.timedelta, max_keys: int = 10_000):
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._seen: collections.OrderedDict[str, collections.deque[dt.datetime]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def allow(self, key: str, now: dt.datetime) -> bool:
        """Count one attempt for ``key``; False if it is over the limit."""
        with self._lock:
            times = self._seen.pop(key, None) or collections.deque()
            while times and now - times[0] >= self.window:
                times.popleft()
            allowed = len(times) < self.limit
            if allowed:
                times.append(now)
            self._seen[key] = times  # most recently used last
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return allowed
