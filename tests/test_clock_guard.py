"""The guard against tests that pass only until their day comes (tests/clock_guard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent

MIXED = '''
import datetime as dt
import subprocess
import sys

import pytest

from newsletter import clock

NOW = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
LATER = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)


def older_than_a_day(when):
    """Code under test on its default, real clock."""
    return clock.utcnow() - when > dt.timedelta(days=1)


def older_than_a_day_at(when, now):
    """The same, with the clock passed in."""
    return now - when > dt.timedelta(days=1)


def two_days_before(now):
    return now - dt.timedelta(days=2)


def test_mixed_in_process():
    assert older_than_a_day(two_days_before(NOW))


def test_mixed_in_a_child_process():
    code = "from newsletter import clock; clock.utcnow()"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert two_days_before(NOW) < NOW


def test_mixed_with_a_time_ahead():
    assert not older_than_a_day(LATER)


def test_injected():
    assert older_than_a_day_at(two_days_before(NOW), NOW)


def test_from_the_real_now():
    assert older_than_a_day(two_days_before(clock.utcnow()))


@pytest.mark.real_clock("the fixed time is only printed back, never compared with now")
def test_declared():
    assert older_than_a_day(two_days_before(NOW))
'''


@pytest.fixture
def run_inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run a test file in a fresh pytest process with the guard as its plugin."""
    monkeypatch.delenv("CLOCK_GUARD_LOG", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(TESTS))

    def run(source: str) -> pytest.RunResult:
        pytester.makepyfile(test_inner=source)
        return pytester.runpytest_subprocess("-p", "clock_guard", "-p", "no:cacheprovider")

    return run


def test_a_fixed_date_beside_the_real_clock_fails_at_once_with_the_reason(run_inner) -> None:
    result = run_inner(MIXED)
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_mixed_in_process builds on the fixed time NOW = 2020-01-01 00:00 UTC "
            "(* days ago), while the code under test read the real clock "
            "(older_than_a_day() in test_inner.py)*",
            "*test_mixed_in_a_child_process builds on the fixed time NOW = 2020-01-01 00:00 UTC*"
            "<module>() in <string>, in a `-c` process*",
            "*test_mixed_with_a_time_ahead builds on the fixed time LATER = 2999-01-01 00:00 UTC "
            "(in * days)*",
        ]
    )
    for fine in ("test_injected", "test_from_the_real_now", "test_declared"):
        assert f"FAILED test_inner.py::{fine}" not in result.stdout.str()


def test_a_time_computed_from_the_real_clock_is_not_a_fixed_time(run_inner) -> None:
    result = run_inner(
        "import datetime as dt\n"
        "from newsletter import clock\n"
        "STARTED = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)\n"
        "TODAY = dt.datetime.now(dt.UTC).replace(microsecond=0)\n"
        "def test_dated_from_now():\n"
        "    assert clock.utcnow() - STARTED > dt.timedelta(days=2)\n"
        "def test_today():\n"
        "    assert clock.utcnow() >= TODAY\n"
    )
    result.assert_outcomes(passed=2)


def test_a_fixed_time_from_the_shared_clocks_counts_as_fixed(run_inner) -> None:
    """`from clocks import NOW` (or an alias, or clocks.clock()) is the fixed time it names."""
    result = run_inner(
        "import datetime as dt\n"
        "from clocks import NOW, REAL_NOW, FETCH_NOW as T0, clock as fixed_clock\n"
        "from newsletter import clock\n"
        "def older(when):\n"
        "    return clock.utcnow() - when > dt.timedelta(days=1)\n"
        "def test_imported():\n"
        "    assert older(NOW - dt.timedelta(days=2))\n"
        "def test_imported_under_another_name():\n"
        "    assert older(T0 - dt.timedelta(days=2))\n"
        "def test_through_the_shared_clock():\n"
        "    assert older(fixed_clock() - dt.timedelta(days=2))\n"
        "def test_dated_from_the_real_now():\n"
        "    assert older(REAL_NOW - dt.timedelta(days=2))\n"
        "def test_injected():\n"
        "    assert NOW - (NOW - dt.timedelta(days=2)) > dt.timedelta(days=1)\n"
    )
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_imported builds on the fixed time NOW = 2026-11-27 09:00 UTC*",
            "*test_imported_under_another_name builds on the fixed time T0 = *",
            "*test_through_the_shared_clock builds on the fixed time NOW = *",
        ]
    )
