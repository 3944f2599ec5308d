"""Template filters for what law-firm rules do all day: dates in the firm's time zone, money, hours.

Dates: PracticePanther sends timestamps as ISO strings, mostly without an offset, and documents
them as UTC. Every date filter accepts a ``datetime``, a ``date`` or such a string, reads a naive
value as UTC, and ``local`` converts to the firm's time zone (``PPW_TIMEZONE``). ``now()`` already
is in the firm's time zone, so ``now() | add_business_days(5)`` counts the firm's working days:
weekends, public holidays (``PPW_HOLIDAYS``) and closures of the firm calendar
(:mod:`worker.calendar`, given to the environment with the zone) are skipped.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import pass_environment
from jinja2.environment import Environment
from jinja2.runtime import Undefined

from worker.calendar import Calendar, Duration, calendar_date, parse_duration, to_datetime
from worker.practicepanther import odata

UTC = dt.UTC


def _firm_zone(env: Environment) -> dt.tzinfo:
    zone: dt.tzinfo = getattr(env, "firm_zone", UTC)
    return zone


@pass_environment
def local(env: Environment, value: Any, zone: str | None = None) -> dt.datetime:
    """The moment in the firm's time zone (or ``zone``).

    A calendar date (a bare date, or a naive midnight as PracticePanther stores ``open_date`` or a
    time entry's ``date``) stays on its day: midnight of that day in the firm's zone, rather than
    the evening before, as converting "midnight UTC" would give west of Greenwich.
    """
    target = ZoneInfo(zone) if zone else _firm_zone(env)
    day = calendar_date(value)
    if day is not None:
        return dt.datetime(day.year, day.month, day.day, tzinfo=target)
    return to_datetime(value).astimezone(target)


def utc(value: Any) -> dt.datetime:
    return to_datetime(value).astimezone(UTC)


def add_days(value: Any, days: float) -> dt.datetime:
    return to_datetime(value) + dt.timedelta(days=days)


def add_hours(value: Any, hours: float) -> dt.datetime:
    return to_datetime(value) + dt.timedelta(hours=hours)


def _calendar(env: Environment) -> Calendar:
    """The firm calendar the environment was built with (weekends only when none was given)."""
    calendar = getattr(env, "calendar", None)
    return calendar if isinstance(calendar, Calendar) else Calendar(_zone_key(env))


def _zone_key(env: Environment) -> str:
    return getattr(_firm_zone(env), "key", "UTC")


@pass_environment
def add_business_days(env: Environment, value: Any, days: int) -> dt.datetime:
    """Move by ``days`` business days of the firm calendar (weekends, ``PPW_HOLIDAYS`` and the
    firm's closures skipped), keeping the local time, in the firm's zone."""
    return _calendar(env).add_business_days(local(env, value), days)


@pass_environment
def next_business_day(env: Environment, value: Any, same_day: bool = False) -> dt.datetime:
    """The first business day after ``value`` (at its local time); ``same_day=true`` keeps a
    ``value`` that already is on a business day (a deadline on a holiday moves to the next one)."""
    moment = local(env, value)
    calendar = _calendar(env)
    if same_day and calendar.is_business_day(moment.date()):
        return moment
    return calendar.add_business_days(moment, 1)


@pass_environment
def is_business_day(env: Environment, value: Any) -> bool:
    """Whether ``value``'s local date is a business day of the firm calendar."""
    return _calendar(env).is_business_day(local(env, value).date())


@pass_environment
def add_duration(env: Environment, value: Any, duration: Any) -> dt.datetime:
    """Move by a duration in words: ``'3 business days'``, ``'2 weeks'``, ``'-1 day'``, ``'2h'``."""
    parsed = duration if isinstance(duration, Duration) else parse_duration(duration)
    return parsed.apply(local(env, value), _calendar(env))


@pass_environment
def business_days_between(env: Environment, start: Any, end: Any) -> int:
    """Business days after ``start`` up to and including ``end`` (negative when ``end`` is earlier)."""
    return _calendar(env).business_days_between(local(env, start).date(), local(env, end).date())


def isoformat(value: Any, timespec: str = "seconds") -> str:
    """``2026-04-13T09:30:00-04:00``; a date stays a date (``2026-04-13``)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return to_datetime(value).isoformat(timespec=timespec)


def strftime(value: Any, pattern: str = "%Y-%m-%d") -> str:
    """Format a date, e.g. ``record.due_date | local | strftime('%b %d, %Y')``."""
    return to_datetime(value).strftime(pattern)


def date_only(value: Any) -> str:
    """The calendar date part: ``2026-04-13``."""
    return to_datetime(value).date().isoformat()


def money(value: Any, symbol: str = "$", places: int = 2) -> str:
    """``1234.5`` -> ``$1,234.50``; ``-20`` -> ``-$20.00``; none -> empty text."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"money: {value!r} is not a number") from None
    quantum = Decimal(1).scaleb(-int(places))
    amount = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.{int(places)}f}"


def hours(value: Any) -> str:
    """Decimal hours as people say them: ``1.5`` -> ``1h 30m``, ``0.25`` -> ``15m``, ``8`` -> ``8h``."""
    if value is None or value == "":
        return ""
    total = round(float(value) * 60)
    sign = "-" if total < 0 else ""
    whole, minutes = divmod(abs(total), 60)
    parts = [f"{whole}h"] if whole else []
    if minutes or not parts:
        parts.append(f"{minutes}m")
    return sign + " ".join(parts)


def slug(value: Any, separator: str = "-") -> str:
    """``Smith v. Jones (2026)`` -> ``smith-v-jones-2026``."""
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", separator, text.lower()).strip(separator)


def default(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    """Like Jinja's ``default``, but a ``none`` value (a field PracticePanther left empty) counts as
    missing too; ``boolean=true`` also replaces empty text, ``0`` and ``false``."""
    if isinstance(value, Undefined) or value is None or (boolean and not value):
        return fallback
    return value


def odata_literal(value: Any) -> str:
    """A value as an OData literal for a ``filter:``: text quoted (``O'Neil`` -> ``'O''Neil'``),
    numbers and ``true``/``false`` bare, datetimes in UTC with ``Z``, none as ``null``. Use it on
    anything a webhook sent, so the value cannot change what the filter means."""
    if isinstance(value, Undefined):
        str(value)  # a missing name or field is an error (strict), never a silent null
    if isinstance(value, str) and type(value) is not str:
        value = str(value)  # a tag or another str subclass
    try:
        return odata.literal(value)
    except TypeError:
        return odata.literal(str(value))


FILTERS: dict[str, Callable[..., Any]] = {
    "odata": odata_literal,
    "local": local,
    "in_timezone": local,
    "utc": utc,
    "to_datetime": to_datetime,
    "add_days": add_days,
    "add_hours": add_hours,
    "add_business_days": add_business_days,
    "next_business_day": next_business_day,
    "is_business_day": is_business_day,
    "add_duration": add_duration,
    "isoformat": isoformat,
    "strftime": strftime,
    "date_only": date_only,
    "money": money,
    "hours": hours,
    "slug": slug,
    "default": default,
    "d": default,
}

#: Jinja tests: ``{% if record.due_date is business_day %}``.
TESTS: dict[str, Callable[..., Any]] = {"business_day": is_business_day}

#: Functions templates call by name.
GLOBALS: dict[str, Callable[..., Any]] = {"business_days_between": business_days_between}
