"""Time rules of the scheduler: local times, cron rules in a zone, due or missed.

Pure functions: the current time is always an argument.

Rules, the same for every kind of due time (a scheduled campaign, a digest,
a welcome step):

- A due time is run once when it comes, or late by at most the grace window
  (``[schedule] misfire_grace_time``).
- A due time missed by more than the grace window is never run: it is
  reported (logged, and shown by ``campaign list`` and ``schedule list``) and
  left for a person, so a restored backup or a long outage never sends stale
  mail.
- Local wall times follow RFC 5545: a time that a daylight-saving change
  skips (02:30 on a spring-forward night) is read with the offset from before
  the change, which lands the same distance after it (03:30); a time that
  occurs twice (02:30 on a fall-back night) is the first of the two.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import InputError

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

RUN, WAIT, MISSED = "run", "wait", "missed"
# Weekday numbers as in crontab (0 and 7 are Sunday); APScheduler 3 counts from Monday,
# so numbers are turned into names before it sees them.
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        ) from None


def local_to_utc(naive: dt.datetime, tz: ZoneInfo) -> tuple[dt.datetime, str]:
    """A wall time in ``tz`` as UTC, with a note when the wall time is skipped or doubled."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    when = first.astimezone(dt.UTC)
    back = when.astimezone(tz).replace(tzinfo=None)
    if back != naive:
        note = (
            f"{naive:%H:%M} does not exist in {tz.key} on {naive:%Y-%m-%d} (clocks go forward); "
            f"taken as {back:%H:%M}"
        )
    elif first.utcoffset() != second.utcoffset():
        note = (
            f"{naive:%H:%M} occurs twice in {tz.key} on {naive:%Y-%m-%d} (clocks go back); "
            f"taken as the first, {first:%H:%M %Z}"
        )
    else:
        note = ""
    return when, note


def cron_trigger(expr: str, zone_name: str) -> CronTrigger:
    """A crontab rule "minute hour day month weekday" that fires in the given zone.

    Weekdays may be names (mon, mon-fri) or crontab numbers (0 or 7 is
    Sunday). When both day and weekday are restricted, both must match.
    """
    fields = expr.split()
    if len(fields) != 5:
        raise InputError(
            f"{expr!r} is not a cron rule of five fields "
            f'"minute hour day month weekday", such as "0 9 * * mon"'
        )
    # Here, not at the top: APScheduler (and the asyncio it loads) is for cron rules only,
    # and this module is on every command's and every sending process's way in.
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, weekday = fields
    weekday = re.sub(
        r"\d+", lambda m: _WEEKDAYS[int(m[0])] if int(m[0]) <= 7 else m[0], weekday.lower()
    )
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekday,
            timezone=zone(zone_name),
        )
    except ValueError as exc:
        raise InputError(f"{expr!r} is not a valid cron rule ({exc})") from None


def cron_problem(expr: str) -> str | None:
    try:
        cron_trigger(expr, "UTC")
    except InputError as exc:
        return str(exc)
    return None


def next_fire(trigger: CronTrigger, now: dt.datetime) -> dt.datetime | None:
    fire = trigger.get_next_fire_time(None, now)
    return fire.astimezone(dt.UTC) if fire else None


def last_fire(trigger: CronTrigger, after: dt.datetime, until: dt.datetime) -> dt.datetime | None:
    """The latest fire time in (after, until], in UTC; earlier ones are folded into it."""
    last = None
    fire = trigger.get_next_fire_time(after, until)
    while fire is not None and fire <= until:
        last = fire
        fire = trigger.get_next_fire_time(fire, until)
    return last.astimezone(dt.UTC) if last else None


def verdict(due: dt.datetime, now: dt.datetime, grace: dt.timedelta) -> str:
    """Whether a due time should wait, run now, or is missed and left for a person."""
    if due > now:
        return WAIT
    return RUN if now - due <= grace else MISSED


def late(due: dt.datetime, now: dt.datetime) -> str:
    """How late, for people: "3 h 20 min", "2 days 4 h"."""
    minutes = int((now - due).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    return f"{hours} h {mins} min" if hours else f"{mins} min"
