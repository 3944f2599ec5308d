"""The firm calendar: business days, durations and wall-clock times in the firm's time zone.

Legal work runs on court days: "3 business days before a task is due" skips weekends, the public
holidays of the firm's jurisdiction (the `holidays <https://pypi.org/project/holidays/>`_ package,
by country and subdivision: ``PPW_HOLIDAYS=US-FL``) and the firm's own closures
(``PPW_CLOSURES``, ``PPW_CLOSURES_FILE``), all in the firm's zone (``PPW_TIMEZONE``). Every time
feature (template filters, waits, date-relative triggers, "for" durations) uses this one module.

Time rules, the same everywhere:

* seconds, minutes and hours are elapsed time (``2h`` after 01:30 on a spring-forward night is
  04:30 local);
* days and weeks keep the local wall-clock time across a DST change (``1 day`` after 09:00 is
  09:00 the next day, 23 or 25 hours later);
* business days move to the Nth business day and keep the local time; from a non-business day,
  ``+1`` is the next business day and ``-1`` the previous one;
* a local time that does not exist (02:30 on the spring-forward day) moves forward by the gap
  (03:30); an ambiguous one (01:30 on the fall-back day) takes the first (daylight) occurrence.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_data
from ruamel.yaml import YAML
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import YAMLError

from worker.errors import PpwError
from worker.settings import Settings

__all__ = [
    "Calendar",
    "CalendarError",
    "Duration",
    "load_closures_file",
    "parse_closures",
    "parse_duration",
    "parse_time_of_day",
]

UTC = dt.UTC
Unit = Literal["seconds", "minutes", "hours", "days", "weeks", "business_days"]
UNITS: tuple[Unit, ...] = ("seconds", "minutes", "hours", "days", "weeks", "business_days")

#: The most business days one move or count may span (ten years of court days, and then some).
MAX_BUSINESS_DAYS = 3650
#: The longest span of calendar days counted or listed at once (a hundred years).
MAX_SPAN_DAYS = 36_600
#: The name a closure has when its setting gives none.
FIRM_CLOSURE = "Firm closure"

DURATION_FORMS = (
    "2h, 90m, 30s, 1.5 hours, 3 days, 1 day, 2 weeks, 3 business days, -1 business day, +7 days, "
    "ISO 8601 P3D or PT2H, or a bare number of seconds"
)
HOLIDAY_FORMS = (
    "a country code (ISO 3166), optionally with a subdivision after a dash, comma separated: "
    "US, US-FL, GB-ENG, DE-BY, CA-ON (or a market: NYSE)"
)


class CalendarError(PpwError, ValueError):
    """A calendar setting, closure or duration that cannot be read; the message says what was
    expected, with an example."""


# -- durations ------------------------------------------------------------------------------------

_ALIASES: dict[str, Unit] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "seconds"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "minutes"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "hours"),
    **dict.fromkeys(("d", "day", "days"), "days"),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "weeks"),
    **dict.fromkeys(
        ("bd", "business day", "business days", "business_day", "business_days", "court day", "court days"),
        "business_days",
    ),
}
_SHORT = {"seconds": "s", "minutes": "m", "hours": "h"}
_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_TEXT_RE = re.compile(rf"^(?P<sign>[+-])?\s*(?P<number>{_NUMBER})\s*(?P<unit>[a-z_ ]*?)\s*$", re.IGNORECASE)
_ISO_RE = re.compile(
    rf"^(?P<sign>[+-])?P(?:(?P<weeks>{_NUMBER})W)?(?:(?P<days>{_NUMBER})D)?"
    rf"(?:T(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?$",
    re.IGNORECASE,
)


def _number_text(amount: float) -> str:
    return str(int(amount)) if float(amount).is_integer() else f"{amount:g}"


@dataclass(frozen=True)
class Duration:
    """An amount of one unit: ``Duration(3, "business_days")``; see the module docstring for how
    each unit moves a moment."""

    amount: float
    unit: Unit

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise CalendarError(f"unknown duration unit {self.unit!r}; one of: {', '.join(UNITS)}")
        if self.unit == "business_days" and not float(self.amount).is_integer():
            raise CalendarError(
                f"business days are whole numbers, not {self.amount:g} (e.g. 3 business days)"
            )

    def apply(self, moment: dt.datetime, calendar: Calendar) -> dt.datetime:
        """``moment`` moved by this duration, as an aware datetime in the calendar's zone (a naive
        ``moment`` is read as UTC)."""
        moment = _aware(moment)
        try:
            if self.unit == "business_days":
                return calendar.add_business_days(moment, int(self.amount))
            if self.unit in _SECONDS:
                delta = dt.timedelta(seconds=self.amount * _SECONDS[self.unit])
                return (moment.astimezone(UTC) + delta).astimezone(calendar.zone)
            days = self.amount * (7 if self.unit == "weeks" else 1)
            wall = moment.astimezone(calendar.zone).replace(tzinfo=None) + dt.timedelta(days=days)
            return _localize(wall, calendar.zone)
        except OverflowError:
            raise CalendarError(f"{self} from {moment.isoformat()} is out of the range of dates") from None

    def __str__(self) -> str:
        number = _number_text(self.amount)
        if self.unit in _SHORT:
            return f"{number}{_SHORT[self.unit]}"
        singular = abs(self.amount) == 1
        name = {"days": "day", "weeks": "week", "business_days": "business day"}[self.unit]
        return f"{number} {name}" if singular else f"{number} {name}s"


def parse_duration(text: str | int | float) -> Duration:
    """A :class:`Duration` from ``2h``, ``90m``, ``1.5 hours``, ``3 days``, ``2 weeks``,
    ``3 business days``, ``-1 business day``, ``+7 days``, ISO 8601 ``P3D``/``PT2H``, or a bare
    number of seconds."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise CalendarError(
            f"a duration is text or a number, not {type(text).__name__}; e.g. {DURATION_FORMS}"
        )
    if not isinstance(text, str):
        if text != text or text in (float("inf"), float("-inf")):
            raise CalendarError(f"{text!r} is not a duration; expected {DURATION_FORMS}")
        return Duration(float(text) if isinstance(text, float) else text, "seconds")
    source = text.strip()
    match = _TEXT_RE.match(source)
    if match:
        unit_text = " ".join(match["unit"].lower().split())
        unit = _ALIASES.get(unit_text) if unit_text else "seconds"
        if unit is not None:
            return _duration(text, match["sign"], match["number"], unit)
    iso = _ISO_RE.match(source)
    if iso and any(iso[name] for name in ("weeks", "days", "hours", "minutes", "seconds")):
        return _iso_duration(text, iso)
    raise CalendarError(f"{text!r} is not a duration; expected {DURATION_FORMS}")


def _duration(text: str, sign: str | None, number: str, unit: Unit) -> Duration:
    value = float(number)
    if sign == "-":
        value = -value
    if unit == "business_days" and not value.is_integer():
        raise CalendarError(f"{text!r}: business days are whole numbers (e.g. 3 business days)")
    return Duration(int(value) if value.is_integer() else value, unit)


def _iso_duration(text: str, match: re.Match[str]) -> Duration:
    parts: dict[Unit, str] = {
        name: match[name] for name in ("weeks", "days", "hours", "minutes", "seconds") if match[name]
    }
    if len(parts) == 1:
        ((unit, number),) = parts.items()
        return _duration(text, match["sign"], number, unit)
    if "weeks" in parts or "days" in parts:
        if set(parts) <= {"weeks", "days"}:
            days = float(parts.get("weeks", 0)) * 7 + float(parts.get("days", 0))
            return _duration(text, match["sign"], repr(days), "days")
        raise CalendarError(
            f"{text!r} mixes days and hours; a duration has one unit: write it in hours (PT26H) or days (P1D)"
        )
    seconds = sum(float(number) * _SECONDS[unit] for unit, number in parts.items())
    for unit in ("hours", "minutes", "seconds"):
        if (seconds / _SECONDS[unit]).is_integer() or unit == "seconds":
            return _duration(text, match["sign"], repr(seconds / _SECONDS[unit]), unit)
    raise AssertionError("unreachable")


_TIME_RE = re.compile(r"^(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?$")


def parse_time_of_day(text: str) -> dt.time:
    """``09:00``, ``9:00``, ``17:30`` (or ``17:30:15``) as a :class:`datetime.time`."""
    match = _TIME_RE.match(text.strip()) if isinstance(text, str) else None
    if match:
        hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"] or 0)
        if hour < 24 and minute < 60 and second < 60:
            return dt.time(hour, minute, second)
    raise CalendarError(f"{text!r} is not a time of day; expected 24-hour HH:MM, e.g. 09:00, 9:00 or 17:30")


# -- closures -------------------------------------------------------------------------------------


def _date(text: Any, where: str) -> dt.date:
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise CalendarError(f"{where}: expected a date like 2026-12-24, got {str(text)!r}") from None


def _span(start: dt.date, end: dt.date, where: str) -> list[dt.date]:
    if end < start:
        raise CalendarError(
            f"{where}: the range ends ({end}) before it starts ({start}); e.g. 2026-12-24..2026-12-31"
        )
    days = (end - start).days + 1
    if days > MAX_SPAN_DAYS:
        raise CalendarError(f"{where}: a closure of {days:,} days is longer than {MAX_SPAN_DAYS:,}")
    return [start + dt.timedelta(days=offset) for offset in range(days)]


def parse_closures(entries: str | Iterable[str], name: str = FIRM_CLOSURE) -> dict[dt.date, str]:
    """Dates ``2026-12-24`` and inclusive ranges ``2026-12-24..2026-12-31`` (a comma list, or a
    list of them), each day named ``name``."""
    items = entries.split(",") if isinstance(entries, str) else list(entries)
    found: dict[dt.date, str] = {}
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        where = f"closure {item!r}"
        if ".." in item:
            first, _, last = item.partition("..")
            days = _span(_date(first, where), _date(last, where), where)
        else:
            days = [_date(item, where)]
        found.update(dict.fromkeys(days, name))
    return found


_FILE_KEYS = ("date", "from", "to", "name")


class _TextDates(RoundTripConstructor):
    """Dates stay text until read here, so a bad one is reported with its line and field."""


_TextDates.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)


def load_closures_file(path: str | Path) -> dict[dt.date, str]:
    """The closures of a YAML file: a list of ``{date: 2026-12-24, name: Firm retreat}`` or
    ``{from: 2026-12-24, to: 2026-12-31, name: Winter closure}``; errors name file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarError(f"{path}: cannot read the closures file ({exc.strerror or exc})") from None
    try:
        yaml = YAML(typ="rt")
        yaml.Constructor = _TextDates
        document = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise CalendarError(f"{path}{at}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if document is None:
        return {}
    example = "e.g. - {date: 2026-12-24, name: Firm retreat} or - {from: 2026-12-24, to: 2026-12-31}"
    if not isinstance(document, list):
        raise CalendarError(f"{path}:1: expected a list of closures; {example}")
    found: dict[dt.date, str] = {}
    for index, entry in enumerate(document):
        line = _line(document, index)
        if not isinstance(entry, Mapping):
            raise CalendarError(f"{path}:{line}: closure {index + 1}: expected a mapping; {example}")

        def where(key: str, entry: Any = entry, line: int = line) -> str:
            return f"{path}:{_key_line(entry, key, line)}: {key}"

        for key in entry:
            if key not in _FILE_KEYS:
                raise CalendarError(f"{where(str(key))}: unknown field; expected {', '.join(_FILE_KEYS)}")
        name = entry.get("name", FIRM_CLOSURE)
        if not isinstance(name, str) or not name.strip():
            raise CalendarError(f"{where('name')}: expected text, e.g. name: Firm retreat")
        if "date" in entry:
            if "from" in entry or "to" in entry:
                raise CalendarError(f"{where('date')}: give either date or from and to, not both; {example}")
            days = [_date(entry["date"], where("date"))]
        elif "from" in entry and "to" in entry:
            first, last = _date(entry["from"], where("from")), _date(entry["to"], where("to"))
            days = _span(first, last, where("to"))
        else:
            missing = "to" if "from" in entry else "from" if "to" in entry else "date"
            raise CalendarError(f"{path}:{line}: closure {index + 1}: {missing} is missing; {example}")
        found.update(dict.fromkeys(days, name.strip()))
    return found


def _line(sequence: Any, index: int) -> int:
    try:
        return int(sequence.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return 1


def _key_line(mapping: Any, key: str, default: int) -> int:
    try:
        return int(mapping.lc.value(key)[0]) + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return default


# -- holidays -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HolidaySource:
    code: str
    country: str | None
    subdiv: str | None
    market: str | None

    def year(self, year: int) -> dict[dt.date, str]:
        if self.market is not None:
            found = holiday_data.financial_holidays(self.market, years=year)
        else:
            assert self.country is not None
            found = holiday_data.country_holidays(
                self.country, subdiv=self.subdiv, years=year, language=_english(self.country)
            )
        return {day: str(name) for day, name in found.items()}


@lru_cache(maxsize=64)
def _english(country: str) -> str | None:
    languages = getattr(holiday_data.country_holidays(country), "supported_languages", ()) or ()
    return next((lang for lang in ("en_US", "en_GB", "en") if lang in languages), None)


def _holiday_source(code: str) -> _HolidaySource:
    countries: dict[str, list[str]] = holiday_data.list_supported_countries()
    markets: dict[str, list[str]] = holiday_data.list_supported_financial()
    text = code.strip()
    country, _, subdiv = text.partition("-")
    country = country.upper()
    if not subdiv and country in markets and country not in countries:
        return _HolidaySource(text, None, None, country)
    if country not in countries:
        near = difflib.get_close_matches(country, [*countries, *markets], n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise CalendarError(
            f"holidays {text!r}: no country or market {country!r}{hint}; expected {HOLIDAY_FORMS}"
        )
    if not subdiv:
        return _HolidaySource(text, country, None, None)
    known = {str(s).upper(): str(s) for s in countries[country]}
    if subdiv.upper() not in known:
        listed = ", ".join(sorted(known.values())) or "none"
        raise CalendarError(
            f"holidays {text!r}: {country} has no subdivision {subdiv!r}; its subdivisions: {listed} "
            f"(write COUNTRY-SUBDIVISION, e.g. US-FL, GB-ENG)"
        )
    return _HolidaySource(text, country, known[subdiv.upper()], None)


# -- the calendar ---------------------------------------------------------------------------------


def to_datetime(value: Any) -> dt.datetime:
    """A timezone-aware datetime from a datetime, date or ISO 8601 string (naive means UTC, as
    PracticePanther's timestamps are; up to 7 fractional digits, as its messages carry)."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # PracticePanther sends 7 fractional digits
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date or time") from None
    else:
        raise TypeError(f"expected a date, got {type(value).__name__}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def calendar_date(value: Any) -> dt.date | None:
    """The date when ``value`` is a calendar date: a bare date, or a midnight with no zone or in
    UTC. That is how PracticePanther stores them (a task's ``due_date``, a matter's
    ``open_date``, a time entry's ``date``: naive midnight, which ppw's client writes as UTC,
    ``...T00:00:00Z``); read as an instant, west of Greenwich it would be the evening before."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if "T" in text and not re.search(r"T00:00:00(\.0+)?(Z|[+-]00:00)?$", text):
            return None
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    midnight = isinstance(value, dt.datetime) and value.time() == dt.time(0)
    if midnight and (value.tzinfo is None or value.utcoffset() == dt.timedelta(0)):
        return value.date()  # type: ignore[no-any-return]  # a datetime, tested just above
    return None


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _localize(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The wall time ``wall`` in ``zone``: a time in a spring-forward gap moves forward by the gap,
    an ambiguous one takes the first occurrence (PEP 495's ``fold=0``)."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)


def _zone(zone: str | ZoneInfo) -> ZoneInfo:
    if isinstance(zone, ZoneInfo):
        return zone
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(
            f"time zone {zone!r} is not an IANA zone name; e.g. America/New_York, Europe/London, UTC"
        ) from None


class Calendar:
    """Business days of one firm: weekends, public holidays (``holidays``: codes such as ``US``,
    ``US-FL``, ``GB-ENG``) and closures, in the firm's zone. Equal calendars compare and hash equal."""

    zone: ZoneInfo

    def __init__(
        self,
        zone: str | ZoneInfo = "UTC",
        holidays: str | Sequence[str] = (),
        closures: Iterable[dt.date] = (),
        weekend: Iterable[int] = (5, 6),
    ) -> None:
        self.zone = _zone(zone)
        codes = holidays.split(",") if isinstance(holidays, str) else list(holidays)
        self._sources = tuple(_holiday_source(code) for code in codes if code.strip())
        if isinstance(closures, Mapping):
            named = cast(Mapping[dt.date, str], closures)
            self._closures = {_date(day, "closure"): str(name) for day, name in named.items()}
        else:
            self._closures = dict.fromkeys((_date(day, "closure") for day in closures), FIRM_CLOSURE)
        self._weekend = frozenset(int(day) for day in weekend)
        if not self._weekend <= set(range(7)):
            raise CalendarError(
                f"weekend days are 0 (Monday) to 6 (Sunday), e.g. (5, 6); got {sorted(self._weekend)}"
            )
        if len(self._weekend) == 7 and not self._closures and not self._sources:
            raise CalendarError("a calendar needs at least one working weekday; e.g. weekend=(5, 6)")
        self._years: dict[int, dict[dt.date, str]] = {}
        self._lock = threading.Lock()
        self._key = (
            self.zone.key,
            tuple(source.code.upper() for source in self._sources),
            frozenset(self._closures.items()),
            self._weekend,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Calendar:
        """The firm calendar of ``settings`` (``PPW_TIMEZONE``, ``PPW_HOLIDAYS``, ``PPW_CLOSURES``,
        ``PPW_CLOSURES_FILE``); the same settings give the same (cached) calendar."""
        file = settings.closures_file
        stamp: tuple[int, int] | None = None
        if file is not None:
            try:
                stat = Path(file).stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
            except OSError:
                stamp = None  # the loader reports it
        return _calendar_of(
            settings.timezone,
            tuple(settings.holidays),
            tuple(settings.closures),
            str(file) if file is not None else None,
            stamp,
        )

    @property
    def holiday_codes(self) -> tuple[str, ...]:
        """The holiday calendars, as configured (``("US-FL",)``)."""
        return tuple(source.code for source in self._sources)

    @property
    def weekend(self) -> frozenset[int]:
        """The weekdays that are never business days (0 is Monday)."""
        return self._weekend

    def describe(self) -> str:
        """One line: the zone, weekend, holiday calendars and closure days."""
        weekend = ", ".join(dt.date(2024, 1, 1 + day).strftime("%a") for day in sorted(self._weekend))
        codes = ", ".join(self.holiday_codes) or "none (PPW_HOLIDAYS)"
        return (
            f"{self.zone.key}: weekend {weekend or 'none'}; holidays {codes}; "
            f"{len(self._closures)} closure day(s)"
        )

    # -- questions about days ---------------------------------------------------------------------
    def _day(self, day: dt.date) -> dt.date:
        if isinstance(day, dt.datetime):
            return _aware(day).astimezone(self.zone).date() if day.tzinfo is not None else day.date()
        return day

    def _holidays(self, year: int) -> dict[dt.date, str]:
        found = self._years.get(year)
        if found is None:
            with self._lock:
                found = self._years.get(year)
                if found is None:
                    found = {}
                    for source in self._sources:
                        for day, name in source.year(year).items():
                            if name not in found.get(day, "").split("; "):
                                found[day] = f"{found[day]}; {name}" if day in found else name
                    self._years[year] = found
        return found

    def is_business_day(self, day: dt.date) -> bool:
        """Not a weekend day, a public holiday or a closure (a datetime counts by its local date)."""
        day = self._day(day)
        return (
            day.weekday() not in self._weekend
            and day not in self._closures
            and day not in self._holidays(day.year)
        )

    def holiday_name(self, day: dt.date) -> str | None:
        """``"Independence Day"``, ``"Firm closure"`` (or the closure's own name); None on a working
        day or a plain weekend day."""
        day = self._day(day)
        names = [name for name in (self._holidays(day.year).get(day), self._closures.get(day)) if name]
        return "; ".join(names) if names else None

    def add_business_days(self, moment: dt.datetime, days: int) -> dt.datetime:
        """The ``days``-th business day after (before, when negative) ``moment``'s local date, at
        the same local time, in the calendar's zone; 0 leaves it where it is."""
        if isinstance(days, bool) or not float(days).is_integer():
            raise CalendarError(f"business days are whole numbers, not {days!r} (e.g. 3)")
        days = int(days)
        if abs(days) > MAX_BUSINESS_DAYS:
            raise CalendarError(f"at most {MAX_BUSINESS_DAYS} business days at once, not {days}")
        local = _aware(moment).astimezone(self.zone)
        day, step, remaining = local.date(), (1 if days >= 0 else -1), abs(days)
        try:
            while remaining:
                day += dt.timedelta(days=step)
                if self.is_business_day(day):
                    remaining -= 1
        except OverflowError:
            raise CalendarError(
                f"{days} business days from {local.date()}: out of the range of dates"
            ) from None
        return _localize(dt.datetime.combine(day, local.time()), self.zone) if days else local

    def moment(self, value: Any) -> dt.datetime:
        """``value`` as PracticePanther writes it, as an aware moment: a calendar date (a bare
        date, or a naive midnight such as a task's ``due_date``) is the start of that day in the
        firm's zone, not the evening before; any other naive time is UTC."""
        day = calendar_date(value)
        if day is not None:
            return dt.datetime(day.year, day.month, day.day, tzinfo=self.zone)
        return to_datetime(value)

    def at(self, moment: dt.datetime, time_of_day: dt.time) -> dt.datetime:
        """``moment``'s local date in the calendar's zone at ``time_of_day`` (a time that does not
        exist moves forward by the DST gap; an ambiguous one takes the first)."""
        local = _aware(moment).astimezone(self.zone) if isinstance(moment, dt.datetime) else None
        day = local.date() if local is not None else moment
        return _localize(dt.datetime.combine(day, time_of_day.replace(tzinfo=None)), self.zone)

    def business_days_between(self, start: dt.date, end: dt.date) -> int:
        """Business days after ``start`` up to and including ``end`` (negative when ``end`` is
        earlier): ``add_business_days(start, n)`` lands on ``end`` when it is a business day."""
        first, last = self._day(start), self._day(end)
        sign = 1 if last >= first else -1
        low, high = (first, last) if sign > 0 else (last, first)
        if (high - low).days > MAX_SPAN_DAYS:
            raise CalendarError(f"business_days_between: at most {MAX_SPAN_DAYS:,} days apart")
        # after start up to end going forward; from end up to (not including) start going back
        days = (low + dt.timedelta(days=offset) for offset in range(1, (high - low).days + 1))
        if sign < 0:
            days = (low + dt.timedelta(days=offset) for offset in range((high - low).days))
        return sign * sum(1 for day in days if self.is_business_day(day))

    def upcoming(self, start: dt.date, days: int) -> list[tuple[dt.date, str]]:
        """The holidays and closures of the ``days`` days from ``start`` (included), in order."""
        first = self._day(start)
        if not 0 <= days <= MAX_SPAN_DAYS:
            raise CalendarError(f"upcoming: between 0 and {MAX_SPAN_DAYS:,} days, not {days}")
        found = []
        for offset in range(days):
            day = first + dt.timedelta(days=offset)
            name = self.holiday_name(day)
            if name is not None:
                found.append((day, name))
        return found

    # -- identity ---------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Calendar) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        codes = ",".join(source.code for source in self._sources) or "weekends only"
        return f"Calendar({self.zone.key!r}, {codes}, {len(self._closures)} closure day(s))"


@lru_cache(maxsize=32)
def _calendar_of(
    timezone: str,
    holidays: tuple[str, ...],
    closures: tuple[str, ...],
    closures_file: str | None,
    stamp: tuple[int, int] | None,
) -> Calendar:
    try:
        zone = _zone(timezone)
    except CalendarError as exc:
        raise CalendarError(f"PPW_TIMEZONE: {exc}") from None
    try:
        sources = [code for code in holidays if code.strip()]
        calendar_closures = {}
        try:
            calendar_closures.update(parse_closures(closures))
        except CalendarError as exc:
            raise CalendarError(
                f"PPW_CLOSURES: {exc}; write dates or ranges, e.g. 2026-12-24,2026-12-28..2026-12-31"
            ) from None
        if closures_file:
            calendar_closures.update(load_closures_file(closures_file))
        return Calendar(zone, sources, calendar_closures)
    except CalendarError as exc:
        message = str(exc)
        if message.startswith("holidays "):
            message = "PPW_HOLIDAYS " + message.removeprefix("holidays ")
        raise CalendarError(message) from None
