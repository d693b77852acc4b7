"""The times the tests run at, and a clock a test sets by hand.

The rule (docs/development.md, "Tests and the calendar"): a test either passes its clock
in or dates its data from the real now. The fixed times below are for the first kind:
hand them to the code as `now=` or `clock=`. Import them by name (`from clocks import
NOW`, or `... as T0`): the guard (clock_guard.py) counts a name imported from here as the
fixed time it is. `REAL_NOW` is for the second kind.
"""

from __future__ import annotations

import datetime as dt

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
"""The fixed now of most tests: a Friday morning, a campaign goes out."""

FETCH_NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
"""When the article-source tests fetch: an hour after NOW, after their feeds' own dates."""

IMPORT_NOW = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
"""When the subscriber and folder tests take their files in: early in NOW's month."""

REAL_NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
"""The real clock when the tests were collected, to the second, for data the code under
test checks against its own clock (the web server, the CLI, `newsletter run`)."""


def clock() -> dt.datetime:
    """The fixed clock: it always reads NOW."""
    return NOW


class Clock:
    """A clock the test sets by hand (`clock.now = ...`), to give to the code under test."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now
