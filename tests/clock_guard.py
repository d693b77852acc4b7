"""A guard against tests that hold only until their day comes.

A test that builds its data around a fixed date (`NOW = dt.datetime(2026, 11, 27, ...)`)
while the code under test reads the real clock passes until the real date moves past
some threshold, then fails for everyone. This plugin fails such a test at once, whatever
today's date, with a message that says which fixed time met which real clock read.

- A test "uses a fixed time" when its body, a fixture or a helper of the suite's own (of
  its module, or of a helper module beside this one such as clocks.py or workspaces.py;
  followed through calls, nested functions and lambdas) names a module-level datetime.
- A fixed time is a module-level name assigned a datetime built from constants, or one
  imported by name from a helper module beside this one that assigns it so (`from clocks
  import NOW`); one ahead of today is the same trap as one behind it, with a later day.
- "The code read the real clock" when `newsletter.clock.WallClock` was called during the
  test's setup or call: in this process (the web server, jobs and core functions on their
  default clock), or in a Python process the test started (the CLI, `newsletter run`),
  which reports its reads through `clock_probe/sitecustomize.py`.

A test whose fixed time and real clock can never meet (say, the fixed time only names a
feed item's date that is printed back) says so with `@pytest.mark.real_clock("why")`.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import inspect
import os
import sys
import tempfile
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from newsletter import clock

_reads: list[str] | None = None
_lock = threading.Lock()
_real_call = clock.WallClock.__call__
_PROBE = Path(__file__).with_name("clock_probe")
_HERE = Path(__file__).resolve().parent
_LOG_VAR = "CLOCK_GUARD_LOG"


def note_real_clock(where: str) -> None:
    """Record that the code under test read the real clock, and where."""
    with _lock:
        if _reads is not None and where not in _reads:
            _reads.append(where)


def _spy(self: clock.WallClock) -> dt.datetime:
    caller = inspect.stack(context=0)[1]
    note_real_clock(f"{caller.function}() in {os.path.basename(caller.filename)}")
    return _real_call(self)


def _child_reads() -> list[str]:
    """What the processes started during this test reported, one line a read."""
    log = os.environ.get(_LOG_VAR)
    if not log or not os.path.exists(log):
        return []
    return list(dict.fromkeys(Path(log).read_text(encoding="utf-8").splitlines()))


def _beside_the_guard(module: types.ModuleType) -> bool:
    """A module of the suite's own folder: conftest and the shared helpers (clocks, ...)."""
    path = getattr(module, "__file__", None)
    return path is not None and Path(path).resolve().parent == _HERE


@functools.cache
def _literal_times(module: types.ModuleType) -> frozenset[str]:
    """Module-level names assigned a datetime built from constants: the fixed times.

    `NOW = dt.datetime(2026, 11, 27, ...)` is fixed; `NOW = dt.datetime.now(dt.UTC)` is
    dated from the real clock, and so is not. `from clocks import NOW as T0` makes T0 a
    fixed time where clocks assigns NOW so.
    """
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return frozenset()
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            source = sys.modules.get(node.module)
            if source is not None and source is not module and _beside_the_guard(source):
                fixed = _literal_times(source)
                names.update(a.asname or a.name for a in node.names if a.name in fixed)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
            call = node.value
            args = [*call.args, *(k.value for k in call.keywords if k.arg != "tzinfo")]
            # dt.datetime(2026, 11, 27) is fixed; dt.datetime.now().replace(microsecond=0),
            # a call on a call, is dated from the clock.
            made_from_a_call = any(isinstance(n, ast.Call) for n in ast.walk(call.func))
            if args and not made_from_a_call and all(isinstance(a, ast.Constant) for a in args):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def _fixed_times(item: pytest.Function) -> dict[str, dt.datetime]:
    """The module-level datetimes that the test, its fixtures and its helpers name."""
    module = item.module
    found: dict[str, dt.datetime] = {}
    seen: set[types.CodeType] = set()

    def ours(value: Any) -> types.ModuleType | None:
        """The module of a function or class of the suite's own, else None."""
        if value.__module__ == module.__name__:
            return module
        owner = sys.modules.get(value.__module__)
        return owner if owner is not None and _beside_the_guard(owner) else None

    def visit(code: types.CodeType, where: types.ModuleType) -> None:
        if code in seen:
            return
        seen.add(code)
        fixed_names = _literal_times(where)
        for name in code.co_names:
            value: Any = where.__dict__.get(name)
            if isinstance(value, dt.datetime):
                if name in fixed_names:
                    found[name] = value
            elif inspect.isfunction(value) and (owner := ours(value)):
                visit_function(value, owner)
            elif inspect.isclass(value) and (owner := ours(value)):
                for member in vars(value).values():
                    if inspect.isfunction(member):
                        visit_function(member, owner)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                visit(const, where)

    def visit_function(func: types.FunctionType, where: types.ModuleType) -> None:
        # A default argument is evaluated once, so it names no global at call time.
        fixed_names = _literal_times(where)
        defaults = [*(func.__defaults__ or ()), *(func.__kwdefaults__ or {}).values()]
        for value in defaults:
            if isinstance(value, dt.datetime):
                for name, candidate in where.__dict__.items():
                    if candidate is value and name in fixed_names:
                        found[name] = value
        visit(func.__code__, where)

    visit_function(item.function, module)
    for name in item.fixturenames:
        for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
            func = inspect.unwrap(fixturedef.func)
            if inspect.isfunction(func) and (owner := ours(func)):
                visit_function(func, owner)
    return found


def _distance(when: dt.datetime, now: dt.datetime) -> str:
    days = abs((now - when).days)
    return f"{days} days ago" if when <= now else f"in {days} days"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_clock(reason): the test's fixed times and the real clock never meet; say why",
    )
    clock.WallClock.__call__ = _spy  # type: ignore[method-assign]
    # Every Python process a test starts loads the probe, which reports to the test's log.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PROBE), os.environ.get("PYTHONPATH", "")) if p
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    clock.WallClock.__call__ = _real_call  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    global _reads
    with _lock:
        _reads = []
    handle, log = tempfile.mkstemp(prefix="clock-guard-", suffix=".log")
    os.close(handle)
    os.environ[_LOG_VAR] = log
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    failure: BaseException | None = None
    try:
        result = yield
    except pytest.skip.Exception:
        raise
    except BaseException as exc:  # the guard's word explains a failure on the date too
        failure = exc
    message = _mixed_clocks(item)
    if message:
        if failure is not None:
            message += f"\n(The test itself failed too: {str(failure).splitlines()[0]})"
        pytest.fail(message, pytrace=False)
    if failure is not None:
        raise failure
    return result


def _mixed_clocks(item: pytest.Item) -> str | None:
    """Say why the test is a date bomb, or None when it is not one."""
    with _lock:
        reads = list(_reads or ())
    reads += [read for read in _child_reads() if read not in reads]
    if not reads or not isinstance(item, pytest.Function):
        return None
    if item.get_closest_marker("real_clock"):
        return None
    # A fixed time ahead of the real clock is the same trap, only with a later day.
    fixed = _fixed_times(item)
    if not fixed:
        return None
    now = dt.datetime.now(dt.UTC)
    names = ", ".join(
        f"{name} = {_aware(when):%Y-%m-%d %H:%M} UTC ({_distance(_aware(when), now)})"
        for name, when in fixed.items()
    )
    return (
        f"{item.name} builds on the fixed time {names}, while the code under test read "
        f"the real clock ({'; '.join(reads)}). Such a test passes only until its day "
        "comes. Pass the fixed time in as the clock (`clock=lambda: NOW` or `now=NOW`), "
        "or date the test's data from the real now (`newsletter.clock.utcnow()`); if "
        'the two can never meet, mark the test `@pytest.mark.real_clock("why")`.'
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    global _reads
    try:
        return (yield)
    finally:
        with _lock:
            _reads = None
        log = os.environ.pop(_LOG_VAR, None)
        if log:
            Path(log).unlink(missing_ok=True)
