"""The wall clock, read in one place.

Code that needs "now" takes a clock (a callable returning an aware UTC datetime) or a
`now` argument; only the edges (the CLI, the web server, the scheduler) hand it the real
one, `utcnow`. Keeping the real clock behind one class lets the test suite see when the
code under test reads it, and refuse a test that mixes that with a fixed date of its own:
such a test passes only until its day comes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


class WallClock:
    """The real time, in UTC."""

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


utcnow: Clock = WallClock()
