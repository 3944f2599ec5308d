"""When schedules are due: cron in the rule's time zone (daylight saving included), intervals
aligned to the epoch."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from worker.rules.model import ScheduleTrigger
from worker.triggers.slots import describe, latest_slot, next_slot, slots_between

NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def _trigger(**data: object) -> ScheduleTrigger:
    return ScheduleTrigger.model_validate(data)


def test_cron_is_read_in_the_rule_time_zone_and_a_slot_at_now_counts() -> None:
    weekday_8 = _trigger(schedule="0 8 * * MON-FRI", timezone="America/New_York")
    wednesday_noon = dt.datetime(2026, 4, 15, 16, 0, tzinfo=UTC)
    assert latest_slot(weekday_8, wednesday_noon, NY) == dt.datetime(2026, 4, 15, 12, 0, tzinfo=UTC)
    exactly = dt.datetime(2026, 4, 15, 12, 0, tzinfo=UTC)
    assert latest_slot(weekday_8, exactly, NY) == exactly
    just_before = exactly - dt.timedelta(seconds=1)
    assert latest_slot(weekday_8, just_before, NY) == dt.datetime(2026, 4, 14, 12, 0, tzinfo=UTC)
    friday = dt.datetime(2026, 4, 17, 12, 0, tzinfo=UTC)
    assert next_slot(weekday_8, friday, NY) == dt.datetime(2026, 4, 20, 12, 0, tzinfo=UTC)  # Monday


def test_local_time_survives_daylight_saving() -> None:
    daily_8 = _trigger(schedule="0 8 * * *", timezone="America/New_York")
    before = dt.datetime(2026, 3, 7, 14, 0, tzinfo=UTC)  # EST (-5)
    after = next_slot(daily_8, next_slot(daily_8, before, NY), NY)  # March 9, EDT (-4)
    assert next_slot(daily_8, before, NY) == dt.datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert after == dt.datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    assert after.astimezone(NY).hour == 8


def test_intervals_are_aligned_so_every_replica_agrees() -> None:
    quarter = _trigger(every="15m")
    now = dt.datetime(2026, 4, 15, 10, 7, 30, tzinfo=UTC)
    assert latest_slot(quarter, now, NY) == dt.datetime(2026, 4, 15, 10, 0, tzinfo=UTC)
    assert next_slot(quarter, now, NY) == dt.datetime(2026, 4, 15, 10, 15, tzinfo=UTC)
    start = dt.datetime(2026, 4, 15, 9, 0, tzinfo=UTC)
    assert len(list(slots_between(quarter, start, now, NY))) == 4  # 9:15, 9:30, 9:45, 10:00
    assert describe(quarter, "UTC") == "every 15m"
    assert describe(_trigger(schedule="0 8 * * *"), "Europe/Paris") == "0 8 * * * (Europe/Paris)"
