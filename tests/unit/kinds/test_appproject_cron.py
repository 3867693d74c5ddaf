"""The 5-field cron matcher of sync windows: fields, steps, names, day rules, descriptors."""

from __future__ import annotations

import datetime as dt

import pytest

from gitsail.kinds.argo_appproject_cron import CronError, parse_cron


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_fields_ranges_steps_and_lists() -> None:
    s = parse_cron("*/15 9-17 * * MON-FRI")
    assert s.matches(t("2026-12-02T09:45"))  # a Wednesday
    assert not s.matches(t("2026-12-02T09:46"))
    assert not s.matches(t("2026-12-02T18:00"))
    assert not s.matches(t("2026-12-06T10:00"))  # Sunday
    assert parse_cron("5,10 0 1 JAN,jul *").matches(t("2026-07-01T00:10"))
    assert parse_cron("10/20 * * * *").minutes == frozenset({10, 30, 50})
    assert parse_cron("0 0 * * 7").matches(t("2026-12-06T00:00"))  # 7 is Sunday too


def test_restricted_day_of_month_and_week_match_either() -> None:
    s = parse_cron("0 0 13 * FRI")
    assert s.matches(t("2026-12-13T00:00"))  # the 13th (a Sunday)
    assert s.matches(t("2026-12-04T00:00"))  # a Friday
    assert not s.matches(t("2026-12-05T00:00"))
    assert not parse_cron("0 0 13 * *").matches(t("2026-12-04T00:00"))


def test_descriptors() -> None:
    assert parse_cron("@daily").matches(t("2026-12-02T00:00"))
    assert parse_cron("@hourly").matches(t("2026-12-02T05:00"))
    assert not parse_cron("@weekly").matches(t("2026-12-02T00:00"))


def test_last_fire_looks_back_within_the_duration_only() -> None:
    s = parse_cron("0 22 * * *")
    assert s.last_fire(t("2026-12-03T21:00"), dt.timedelta(days=2)) == t("2026-12-02T22:00")
    assert s.last_fire(t("2026-12-03T21:00"), dt.timedelta(hours=2)) is None
    monthly = parse_cron("0 0 1 * *")
    assert monthly.last_fire(t("2026-12-20T00:00"), dt.timedelta(days=31)) == t("2026-12-01T00:00")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "5-1 * * * *",
        "*/0 * * * *",
        "a * * * *",
        "1,,2 * * * *",
        "* * * * * *",
        "x" * 300,
    ],
)
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(CronError):
        parse_cron(text)
