"""The firm calendar (worker/calendar.py): durations, business days over weekends, holidays and
closures, DST in America/New_York, the closures file, the settings, the template filters and
``ppw calendar``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from worker.calendar import (
    Calendar,
    CalendarError,
    Duration,
    load_closures_file,
    parse_closures,
    parse_duration,
    parse_time_of_day,
)
from worker.cli import app
from worker.errors import PpwError
from worker.rules.templating import RulesEnvironment, environment
from worker.settings import Settings, get_settings

NY = ZoneInfo("America/New_York")


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NY)


@pytest.fixture
def firm() -> Calendar:
    """New York firm, US holidays, closed over Christmas week 2026."""
    return Calendar("America/New_York", "US", parse_closures("2026-12-24..2026-12-31"))


# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "unit", "shown"),
    [
        ("2h", 2, "hours", "2h"),
        ("90m", 90, "minutes", "90m"),
        ("30s", 30, "seconds", "30s"),
        ("1.5 hours", 1.5, "hours", "1.5h"),
        ("3 days", 3, "days", "3 days"),
        ("1 day", 1, "days", "1 day"),
        ("2 weeks", 2, "weeks", "2 weeks"),
        ("3 business days", 3, "business_days", "3 business days"),
        ("1 business day", 1, "business_days", "1 business day"),
        ("-1 business day", -1, "business_days", "-1 business day"),
        ("-60 days", -60, "days", "-60 days"),
        ("+7 days", 7, "days", "7 days"),
        ("  3 Business Days ", 3, "business_days", "3 business days"),
        ("P3D", 3, "days", "3 days"),
        ("PT2H", 2, "hours", "2h"),
        ("P2W", 2, "weeks", "2 weeks"),
        ("PT1H30M", 90, "minutes", "90m"),
        ("-P1D", -1, "days", "-1 day"),
        ("90", 90, "seconds", "90s"),
        (90, 90, "seconds", "90s"),
        (1.5, 1.5, "seconds", "1.5s"),
    ],
)
def test_every_duration_form(text: str | int | float, amount: float, unit: str, shown: str) -> None:
    duration = parse_duration(text)
    assert (duration.amount, duration.unit) == (amount, unit)
    assert str(duration) == shown
    assert parse_duration(str(duration)) == duration


@pytest.mark.parametrize(
    "text",
    ["", "soon", "3 fortnights", "1.5 business days", "P1DT2H", "P1M", "2 h m", "--3 days", True, None],
)
def test_bad_durations_name_the_text_and_the_forms(text: object) -> None:
    with pytest.raises(CalendarError) as caught:
        parse_duration(text)  # type: ignore[arg-type]
    message = str(caught.value)
    assert isinstance(caught.value, PpwError) and isinstance(caught.value, ValueError)
    if isinstance(text, str) and text:
        assert repr(text) in message
    assert "business day" in message or "one unit" in message


def test_business_days_are_whole_numbers() -> None:
    with pytest.raises(CalendarError, match="whole numbers"):
        Duration(1.5, "business_days")
    with pytest.raises(CalendarError, match="unknown duration unit"):
        Duration(1, "months")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"), [("09:00", dt.time(9)), ("9:00", dt.time(9)), ("17:30", dt.time(17, 30))]
)
def test_time_of_day(text: str, expected: dt.time) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize("text", ["9", "24:00", "9:60", "9am", "", "09:00 PM"])
def test_bad_time_of_day(text: str) -> None:
    with pytest.raises(CalendarError, match="09:00"):
        parse_time_of_day(text)


def test_durations_apply_in_the_calendars_zone() -> None:
    cal = Calendar("America/New_York")
    friday = ny(2026, 4, 17, 9, 0)
    assert parse_duration("2h").apply(friday, cal) == ny(2026, 4, 17, 11, 0)
    assert parse_duration("3 days").apply(friday, cal) == ny(2026, 4, 20, 9, 0)
    assert parse_duration("2 weeks").apply(friday, cal) == ny(2026, 5, 1, 9, 0)
    assert parse_duration("1 business day").apply(friday, cal) == ny(2026, 4, 20, 9, 0)
    assert parse_duration("-1 business day").apply(friday, cal) == ny(2026, 4, 16, 9, 0)
    # a naive moment is UTC
    assert parse_duration("1h").apply(dt.datetime(2026, 4, 17, 13, 0), cal) == ny(2026, 4, 17, 10, 0)


# -- business days --------------------------------------------------------------------------------


def test_business_days_skip_the_weekend() -> None:
    cal = Calendar("America/New_York")
    assert cal.add_business_days(ny(2026, 4, 17, 9), 1) == ny(2026, 4, 20, 9)
    assert cal.add_business_days(ny(2026, 4, 17, 9), 5) == ny(2026, 4, 24, 9)
    assert cal.add_business_days(ny(2026, 4, 20, 9), -1) == ny(2026, 4, 17, 9)
    assert cal.add_business_days(ny(2026, 4, 17, 9), 0) == ny(2026, 4, 17, 9)
    assert not cal.is_business_day(dt.date(2026, 4, 18))
    assert cal.holiday_name(dt.date(2026, 4, 18)) is None  # a weekend day is no holiday


def test_from_a_weekend_one_business_day_is_the_next_or_the_previous() -> None:
    cal = Calendar("America/New_York")
    saturday = ny(2026, 4, 18, 10)
    assert cal.add_business_days(saturday, 1) == ny(2026, 4, 20, 10)
    assert cal.add_business_days(saturday, -1) == ny(2026, 4, 17, 10)


def test_independence_day_and_thanksgiving(firm: Calendar) -> None:
    # 2026-07-04 is a Saturday, observed on Friday 07-03
    assert firm.holiday_name(dt.date(2026, 7, 4)) == "Independence Day"
    assert firm.holiday_name(dt.date(2026, 7, 3)) == "Independence Day (observed)"
    assert firm.add_business_days(ny(2026, 7, 2, 9), 1) == ny(2026, 7, 6, 9)
    assert firm.add_business_days(ny(2026, 7, 6, 9), -1) == ny(2026, 7, 2, 9)
    # Thanksgiving 2026-11-26 (Thursday); the Friday after is a working day federally
    assert firm.holiday_name(dt.date(2026, 11, 26)) == "Thanksgiving Day"
    assert firm.add_business_days(ny(2026, 11, 25, 17), 1) == ny(2026, 11, 27, 17)
    # "3 business days before a task is due" on Monday 2026-11-30
    assert firm.add_business_days(ny(2026, 11, 30, 9), -3) == ny(2026, 11, 24, 9)
    # Independence Day 2027 is a Sunday, observed on Monday 07-05
    assert firm.add_business_days(ny(2027, 7, 2, 9), 1) == ny(2027, 7, 6, 9)


def test_a_subdivision_adds_its_own_holidays() -> None:
    florida = Calendar("America/New_York", "US-FL")
    assert florida.holiday_name(dt.date(2026, 11, 27)) == "Friday After Thanksgiving"
    assert not florida.is_business_day(dt.date(2026, 11, 27))
    england = Calendar("Europe/London", ["GB-ENG"])
    assert england.holiday_name(dt.date(2026, 12, 28)) == "Boxing Day (observed)"


def test_a_firm_closure_range(firm: Calendar) -> None:
    assert firm.holiday_name(dt.date(2026, 12, 24)) == "Firm closure"
    assert firm.holiday_name(dt.date(2026, 12, 25)) == "Christmas Day; Firm closure"
    assert not firm.is_business_day(dt.date(2026, 12, 30))
    # Wednesday 12-23 + 1: the office is closed through 12-31 and 01-01 is New Year's Day
    assert firm.add_business_days(ny(2026, 12, 23, 9), 1) == ny(2027, 1, 4, 9)
    assert firm.add_business_days(ny(2027, 1, 4, 9), -1) == ny(2026, 12, 23, 9)
    assert firm.business_days_between(dt.date(2026, 12, 23), dt.date(2027, 1, 4)) == 1


def test_business_days_between(firm: Calendar) -> None:
    assert firm.business_days_between(dt.date(2026, 4, 17), dt.date(2026, 4, 24)) == 5
    assert firm.business_days_between(dt.date(2026, 4, 24), dt.date(2026, 4, 17)) == -5
    assert firm.business_days_between(dt.date(2026, 4, 17), dt.date(2026, 4, 17)) == 0
    assert firm.business_days_between(dt.date(2026, 7, 1), dt.date(2026, 7, 8)) == 4
    start = ny(2026, 11, 20, 9)
    for n in (-12, -3, 1, 7, 30):
        landed = firm.add_business_days(start, n)
        assert firm.business_days_between(start.date(), landed.date()) == n


def test_upcoming_lists_holidays_and_closures(firm: Calendar) -> None:
    found = firm.upcoming(dt.date(2026, 11, 20), 45)
    assert found[0] == (dt.date(2026, 11, 26), "Thanksgiving Day")
    assert (dt.date(2026, 12, 24), "Firm closure") in found
    assert found[-1] == (dt.date(2027, 1, 1), "New Year's Day")
    assert firm.upcoming(dt.date(2026, 4, 1), 7) == []


def test_a_weekends_only_calendar_and_other_weekends() -> None:
    assert Calendar().upcoming(dt.date(2026, 1, 1), 366) == []
    gulf = Calendar("Asia/Dubai", weekend=(4, 5))
    assert not gulf.is_business_day(dt.date(2026, 4, 17))  # Friday
    assert gulf.is_business_day(dt.date(2026, 4, 19))  # Sunday
    with pytest.raises(CalendarError, match="0 \\(Monday\\) to 6"):
        Calendar(weekend=(7,))


def test_too_many_business_days_is_an_error() -> None:
    with pytest.raises(CalendarError, match="at most 3650"):
        Calendar().add_business_days(ny(2026, 1, 1), 5000)
    with pytest.raises(CalendarError, match="whole numbers"):
        Calendar().add_business_days(ny(2026, 1, 1), 1.5)  # type: ignore[arg-type]


def test_equal_calendars_are_equal_and_hash_alike() -> None:
    assert Calendar("UTC", "US") == Calendar("UTC", ["us"])
    assert hash(Calendar("UTC", "US")) == hash(Calendar("UTC", ["us"]))
    assert Calendar("UTC", "US") != Calendar("UTC", "US-FL")


# -- DST (America/New_York: 2026-03-08 springs forward, 2026-11-01 falls back) ---------------------


def test_one_day_keeps_nine_oclock_across_both_switches() -> None:
    cal = Calendar("America/New_York")
    day = parse_duration("1 day")
    spring = day.apply(ny(2026, 3, 7, 9), cal)
    assert spring == ny(2026, 3, 8, 9) and spring.utcoffset() == dt.timedelta(hours=-4)
    assert spring.astimezone(dt.UTC) - ny(2026, 3, 7, 9).astimezone(dt.UTC) == dt.timedelta(hours=23)
    fall = day.apply(ny(2026, 10, 31, 9), cal)
    assert fall == ny(2026, 11, 1, 9) and fall.utcoffset() == dt.timedelta(hours=-5)
    assert fall.astimezone(dt.UTC) - ny(2026, 10, 31, 9).astimezone(dt.UTC) == dt.timedelta(hours=25)
    # business days keep it too (Friday 03-06 -> Monday 03-09; Friday 10-30 -> Monday 11-02)
    assert cal.add_business_days(ny(2026, 3, 6, 9), 1).isoformat() == "2026-03-09T09:00:00-04:00"
    assert cal.add_business_days(ny(2026, 10, 30, 9), 1).isoformat() == "2026-11-02T09:00:00-05:00"
    # hours are elapsed time
    assert parse_duration("24h").apply(ny(2026, 3, 7, 9), cal).isoformat() == "2026-03-08T10:00:00-04:00"


def test_at_a_time_that_does_not_exist_or_happens_twice() -> None:
    cal = Calendar("America/New_York")
    moved = cal.at(ny(2026, 3, 8, 12), dt.time(2, 30))
    assert moved.isoformat() == "2026-03-08T03:30:00-04:00"
    first = cal.at(ny(2026, 11, 1, 12), dt.time(1, 30))
    assert first.isoformat() == "2026-11-01T01:30:00-04:00"
    # the local date counts: 03:00 UTC on 04-18 is still 04-17 in New York
    evening = cal.at(dt.datetime(2026, 4, 18, 3, 0, tzinfo=dt.UTC), dt.time(9))
    assert evening == ny(2026, 4, 17, 9)
    assert cal.at(ny(2026, 4, 17, 23), parse_time_of_day("17:30")) == ny(2026, 4, 17, 17, 30)


# -- closures file and settings -------------------------------------------------------------------


def test_closures_file(tmp_path: Path) -> None:
    path = tmp_path / "closures.yaml"
    path.write_text(
        "# firm closures\n"
        "- {date: 2026-12-24, name: Firm retreat}\n"
        "- from: 2026-12-28\n"
        "  to: 2026-12-30\n"
        "  name: Winter closure\n"
        "- date: '2027-01-02'\n",
        encoding="utf-8",
    )
    found = load_closures_file(path)
    assert found == {
        dt.date(2026, 12, 24): "Firm retreat",
        dt.date(2026, 12, 28): "Winter closure",
        dt.date(2026, 12, 29): "Winter closure",
        dt.date(2026, 12, 30): "Winter closure",
        dt.date(2027, 1, 2): "Firm closure",
    }
    cal = Calendar("UTC", (), found)
    assert cal.holiday_name(dt.date(2026, 12, 24)) == "Firm retreat"
    assert load_closures_file(_write(tmp_path, "")) == {}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("- {date: 2026-12-24}\n- {date: 2026-13-01, name: X}\n", ":2: date", "2026-12-24"),
        ("- {date: 2026-12-24}\n- name: X\n  from: 2026-12-28\n", ":2:", "to is missing"),
        ("- {date: 2026-12-24}\n-\n  from: 2026-12-31\n  to: 2026-12-24\n", ":4: to", "before it starts"),
        ("- {date: 2026-12-24}\n- {day: 2026-12-25}\n", ":2: day", "unknown field"),
        ("- {date: 2026-12-24}\n- {date: 2026-12-25, name: 3}\n", ":2: name", "expected text"),
        ("- {date: 2026-12-24}\n- 2026-12-25\n", ":2:", "expected a mapping"),
        ("date: 2026-12-24\n", ":1:", "expected a list"),
        ("- {date: 2026-12-24\n", ":", "not valid YAML"),
    ],
)
def test_closures_file_errors_name_file_line_and_field(
    tmp_path: Path, text: str, where: str, says: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CalendarError) as caught:
        load_closures_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{where}"), message
    assert says in message


def test_a_missing_closures_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="cannot read the closures file"):
        load_closures_file(tmp_path / "nope.yaml")


def test_settings_make_the_calendar(tmp_path: Path) -> None:
    path = tmp_path / "closures.yaml"
    path.write_text("- {date: 2026-12-24, name: Firm retreat}\n", encoding="utf-8")
    settings = Settings(
        _env_file=None,
        timezone="America/New_York",
        holidays="US-FL, GB-ENG",
        closures="2026-12-28..2026-12-29,2026-12-31",
        closures_file=path,
    )
    cal = Calendar.from_settings(settings)
    assert cal.zone == NY and cal.holiday_codes == ("US-FL", "GB-ENG")
    assert cal.holiday_name(dt.date(2026, 12, 24)) == "Firm retreat"
    assert cal.holiday_name(dt.date(2026, 12, 29)) == "Firm closure"
    assert cal.holiday_name(dt.date(2026, 8, 31)) == "Late Summer Bank Holiday"
    assert Calendar.from_settings(settings) is cal  # cached per values
    assert Calendar.from_settings(Settings(_env_file=None)) == Calendar("UTC")
    assert Settings(_env_file=None, closures_file="").closures_file is None


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"holidays": "XX"}, "PPW_HOLIDAYS 'XX': no country or market 'XX'"),
        ({"holidays": "US-ZZ"}, "US has no subdivision 'ZZ'; its subdivisions: AK"),
        ({"holidays": "US,US-FL-X"}, "PPW_HOLIDAYS 'US-FL-X'"),
        ({"closures": "2026-12-32"}, "PPW_CLOSURES: closure '2026-12-32': expected a date like 2026-12-24"),
        ({"closures": "2026-12-31..2026-12-24"}, "before it starts"),
        ({"timezone": "Mars/Olympus"}, "PPW_TIMEZONE: time zone 'Mars/Olympus'"),
    ],
)
def test_settings_errors_say_how_to_write_them(values: dict[str, str], says: str) -> None:
    with pytest.raises(CalendarError) as caught:
        Calendar.from_settings(Settings(_env_file=None, **values))  # type: ignore[arg-type]
    assert says in str(caught.value)
    if "holidays" in values:
        assert "US-FL" in str(caught.value)  # how to spell one


# -- templates ------------------------------------------------------------------------------------


def _render(env: RulesEnvironment, source: str, **variables: object) -> object:
    return env.template(source)(variables)


def test_the_filters_in_a_rendered_template(firm: Calendar) -> None:
    env = environment("America/New_York", firm)
    assert env.calendar is firm
    wednesday = ny(2026, 11, 25, 9)
    now = lambda: wednesday  # noqa: E731
    assert _render(env, "{{ now() | add_business_days(1) | date_only }}", now=now) == "2026-11-27"
    assert _render(env, "{{ now() | add_duration('3 business days') | isoformat }}", now=now) == (
        "2026-12-01T09:00:00-05:00"
    )
    assert _render(env, "{{ now() | add_duration('-1 day') | date_only }}", now=now) == "2026-11-24"
    assert _render(env, "{{ '2026-11-26' | is_business_day }}") is False
    assert _render(env, "{{ '2026-11-26' | next_business_day | date_only }}") == "2026-11-27"
    assert _render(env, "{{ '2026-11-27' | next_business_day(same_day=true) | date_only }}") == "2026-11-27"
    assert _render(env, "{{ '2026-11-27' | next_business_day | date_only }}") == "2026-11-30"
    assert _render(env, "{% if '2026-12-24' is business_day %}open{% else %}closed{% endif %}") == "closed"
    assert _render(env, "{{ business_days_between('2026-12-23', '2027-01-05') }}") == 2
    # a task due date as PracticePanther stores it (naive midnight) stays on its day
    due = "2026-11-30T00:00:00"
    assert _render(env, "{{ record.due | add_business_days(-3) | date_only }}", record={"due": due}) == (
        "2026-11-24"
    )


def test_without_a_calendar_business_days_are_weekdays() -> None:
    env = environment("America/New_York")
    assert env.calendar == Calendar("America/New_York")
    assert _render(env, "{{ '2026-07-03' | add_business_days(1) | date_only }}") == "2026-07-06"
    assert _render(env, "{{ '2026-07-03' | is_business_day }}") is True


def test_a_bad_duration_in_a_template_is_a_render_error() -> None:
    from worker.rules.templating import RenderError

    env = environment("America/New_York")
    with pytest.raises(RenderError, match="3 fortnights"):
        _render(env, "{{ now() | add_duration('3 fortnights') }}", now=lambda: ny(2026, 1, 5, 9))


def test_the_engine_uses_the_firm_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.rules.engine import Engine
    from worker.rules.ruleset import RuleSet

    settings = Settings(_env_file=None, timezone="America/New_York", holidays="US")
    engine = Engine(RuleSet(), settings=settings)
    assert engine.env.calendar == Calendar("America/New_York", "US")


# -- ppw calendar ---------------------------------------------------------------------------------


@pytest.fixture
def ppw(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for name, value in {
        "PPW_TIMEZONE": "America/New_York",
        "PPW_HOLIDAYS": "US",
        "PPW_CLOSURES": "2026-12-24..2026-12-31",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_ppw_calendar(ppw: CliRunner) -> None:
    result = ppw.invoke(app, ["calendar", "--from", "2026-11-20", "--days", "45"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "America/New_York: weekend Sat, Sun; holidays US; 8 closure day(s)"
    assert "2026-11-26  Thu  Thanksgiving Day" in lines
    assert "2026-12-25  Fri  Christmas Day; Firm closure" in lines
    assert lines[-1] == "2027-01-01  Fri  New Year's Day"


def test_ppw_calendar_json(ppw: CliRunner) -> None:
    result = ppw.invoke(app, ["calendar", "--from", "2026-07-01", "--days", "7", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["timezone"] == "America/New_York" and document["holidays"] == ["US"]
    assert document["non_business_days"] == [
        {"date": "2026-07-03", "weekday": "Fri", "name": "Independence Day (observed)"},
        {"date": "2026-07-04", "weekday": "Sat", "name": "Independence Day"},
    ]


def test_ppw_calendar_errors(ppw: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    result = ppw.invoke(app, ["calendar", "--from", "soon"])
    assert result.exit_code == 1 and "--from 'soon'" in result.output
    monkeypatch.setenv("PPW_HOLIDAYS", "US-XX")
    get_settings.cache_clear()
    result = ppw.invoke(app, ["calendar"])
    assert result.exit_code == 1 and "PPW_HOLIDAYS 'US-XX'" in result.output


@pytest.mark.parametrize(
    "command", [["run", "--no-http"], ["worker", "--no-http"], ["scheduler", "--no-http"]]
)
def test_a_bad_calendar_setting_stops_the_process_at_start(
    ppw: CliRunner, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("PPW_HOLIDAYS", "US-XX")
    get_settings.cache_clear()
    result = ppw.invoke(app, command)
    assert result.exit_code == 2, result.output
    assert "PPW_HOLIDAYS 'US-XX': US has no subdivision 'XX'" in result.output
