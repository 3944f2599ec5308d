"""When a schedule trigger is due: its slots, as aware datetimes.

A cron ``schedule`` is read in the trigger's time zone (default ``PPW_TIMEZONE``), so ``0 8 * * *``
stays at 8 o'clock local time across daylight-saving changes. An interval (``every: 15m``) is
aligned to whole multiples of the interval since the Unix epoch (``:00, :15, :30, :45``), so every
replica computes the same slots without sharing any state.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from croniter import croniter

from worker.rules.model import ScheduleTrigger

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def zone_of(trigger: ScheduleTrigger, default: str) -> ZoneInfo:
    return ZoneInfo(trigger.timezone or default)


def latest_slot(trigger: ScheduleTrigger, now: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The last slot at or before ``now`` (UTC)."""
    if trigger.every is not None:
        seconds = (now - _EPOCH).total_seconds()
        return _EPOCH + dt.timedelta(seconds=math.floor(seconds / trigger.every) * trigger.every)
    assert trigger.schedule is not None
    # croniter's get_prev is strictly before its start: start a second later so a slot at
    # exactly ``now`` counts
    start = now.astimezone(zone).replace(microsecond=0) + dt.timedelta(seconds=1)
    previous: dt.datetime = croniter(trigger.schedule, start).get_prev(dt.datetime)
    return previous.astimezone(dt.UTC)


def next_slot(trigger: ScheduleTrigger, after: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The first slot strictly after ``after`` (UTC)."""
    if trigger.every is not None:
        seconds = (after - _EPOCH).total_seconds()
        return _EPOCH + dt.timedelta(seconds=(math.floor(seconds / trigger.every) + 1) * trigger.every)
    assert trigger.schedule is not None
    following: dt.datetime = croniter(trigger.schedule, after.astimezone(zone)).get_next(dt.datetime)
    return following.astimezone(dt.UTC)


def slots_between(
    trigger: ScheduleTrigger, after: dt.datetime, until: dt.datetime, zone: ZoneInfo, *, cap: int = 1000
) -> Iterator[dt.datetime]:
    """Slots in ``(after, until]``, at most ``cap`` of them."""
    current = after
    for _ in range(cap):
        current = next_slot(trigger, current, zone)
        if current > until:
            return
        yield current


def describe(trigger: ScheduleTrigger, default_zone: str) -> str:
    """``0 8 * * MON-FRI (America/New_York)`` or ``every 15m``, for logs and reports."""
    if trigger.every is not None:
        return f"every {_duration(trigger.every)}"
    return f"{trigger.schedule} ({trigger.timezone or default_zone})"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
