"""A small, exact matcher for the 5-field cron schedules of Argo CD sync windows.

Argo CD reads ``syncWindows[].schedule`` with the standard cron parser: ``minute hour
day-of-month month day-of-week``, each field ``*``, ``?`` (as ``*``), a number, a range
``a-b``, a step ``*/n`` / ``a-b/n`` / ``a/n`` (``a`` to the field's maximum), or a comma
list of those; months and weekdays also by name (``JAN``, ``MON``), Sunday as 0 or 7; and
the descriptors ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``
and ``@hourly``. When both day fields are restricted, a day matches either (cron's rule);
when one is ``*``, the other decides.

A window is *active* at ``now`` when the schedule fired at some minute ``t`` with
``now - duration < t <= now`` (the window opens at ``t`` and stays open ``duration``).
``last_fire`` finds the latest such ``t`` by walking back day by day, then only the
matching hours and minutes of a matching day: a month-long window costs ~31 day checks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["CronError", "CronSchedule", "parse_cron"]

_MONTHS = {
    n: i
    for i, n in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
        start=1,
    )
}
_DAYS = {n: i for i, n in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_SCHEDULE = 200  # characters: a schedule is a tenant's string


class CronError(ValueError):
    """A schedule that is not a valid 5-field cron expression."""


def _number(text: str, names: dict[str, int], lo: int, hi: int, what: str) -> int:
    value = names.get(text.upper())
    if value is None:
        if not text.isdigit() or len(text) > 4:
            raise CronError(f"{what}: {text!r} is not a number")
        value = int(text)
    if not lo <= value <= hi:
        raise CronError(f"{what}: {value} is outside {lo}-{hi}")
    return value


def _field(text: str, lo: int, hi: int, what: str, names: dict[str, int]) -> tuple[set[int], bool]:
    """The values a field allows, and whether it is unrestricted (``*``/``?``)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise CronError(f"{what}: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or not 0 < int(step_text) <= hi:
                raise CronError(f"{what}: bad step {step_text!r}")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = lo, hi
            star = star or not slash
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _number(a, names, lo, hi, what), _number(b, names, lo, hi, what)
            if start > end:
                raise CronError(f"{what}: range {base!r} is backwards")
        else:
            start = _number(base, names, lo, hi, what)
            end = hi if slash else start
        values.update(range(start, end + 1, step))
    return values, star


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_star: bool
    weekdays_star: bool

    def day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def matches(self, at: dt.datetime) -> bool:
        return at.minute in self.minutes and at.hour in self.hours and self.day_matches(at.date())

    def last_fire(self, now: dt.datetime, within: dt.timedelta) -> dt.datetime | None:
        """The latest minute ``t`` the schedule fired with ``now - within < t <= now``
        (wall-clock time of ``now``'s zone), or None."""
        earliest = now - within
        day = now.date()
        while dt.datetime.combine(day, dt.time(23, 59), now.tzinfo) > earliest:
            if self.day_matches(day):
                for hour in sorted(self.hours, reverse=True):
                    for minute in sorted(self.minutes, reverse=True):
                        at = dt.datetime.combine(day, dt.time(hour, minute), now.tzinfo)
                        if earliest < at <= now:
                            return at
            day -= dt.timedelta(days=1)
        return None


def parse_cron(text: str) -> CronSchedule:
    """Parse a 5-field schedule (or a descriptor); CronError when it is not one."""
    if len(text) > MAX_SCHEDULE:
        raise CronError(f"schedule longer than {MAX_SCHEDULE} characters")
    text = _DESCRIPTORS.get(text.strip().lower(), text)
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"schedule {text!r} must have 5 fields, has {len(fields)}")
    minutes, _ = _field(fields[0], 0, 59, "minute", {})
    hours, _ = _field(fields[1], 0, 23, "hour", {})
    days, days_star = _field(fields[2], 1, 31, "day of month", {})
    months, _ = _field(fields[3], 1, 12, "month", _MONTHS)
    weekdays, weekdays_star = _field(fields[4], 0, 7, "day of week", _DAYS)
    if 7 in weekdays:
        weekdays = (weekdays - {7}) | {0}
    return CronSchedule(
        frozenset(minutes),
        frozenset(hours),
        frozenset(days),
        frozenset(months),
        frozenset(weekdays),
        days_star,
        weekdays_star,
    )
