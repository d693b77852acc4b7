"""Report the real clock reads of the processes a test starts (see tests/clock_guard.py).

The suite puts this folder first on PYTHONPATH, so every Python process a test starts
(the CLI, `newsletter run`, sending processes) imports it at start-up. It does nothing
unless CLOCK_GUARD_LOG names the current test's log: then each read of the real clock
appends where it happened.
"""

import os

if os.environ.get("CLOCK_GUARD_LOG"):
    import sys

    from newsletter import clock

    _real_call = clock.WallClock.__call__

    def _spy(self):
        caller = sys._getframe(1)
        where = f"{caller.f_code.co_name}() in {os.path.basename(caller.f_code.co_filename)}"
        args = sys.orig_argv[1:]
        program = " ".join(args[1:2] if args[:1] == ["-m"] else args[:1]) or "python"
        with open(os.environ["CLOCK_GUARD_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{where}, in a `{program}` process\n")
        return _real_call(self)

    clock.WallClock.__call__ = _spy
