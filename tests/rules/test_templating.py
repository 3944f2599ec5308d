"""The template language as rules use it: native values, filters, strictness, the sandbox, limits."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from worker.rules.templating import CompileError, Limits, RenderError, RulesEnvironment, environment
from worker.rules.views import ChangesView, RecordView, Tag

MATTER = {
    "id": "m-1",
    "display_name": "1042 - Whitman v. Garner",
    "status": "Closed",
    "number": 1042,
    "tags": ["Pro Bono", {"name": "VIP"}],
    "account_ref": {"id": "a-1", "display_name": "Whitman Holdings"},
    "assigned_to_users": [{"id": "u-1", "display_name": "Dana Reyes", "email_address": "d@x.com"}],
    "open_date": "2026-04-13T00:00:00",
    "updated_at": "2026-04-14T21:30:00",
}


@pytest.fixture
def env() -> RulesEnvironment:
    return environment("America/New_York")


def render(env: RulesEnvironment, source: str, **variables: Any) -> Any:
    context: dict[str, Any] = {"record": RecordView.of(MATTER, "matters"), **variables}
    return env.template(source)(context)


def fails(env: RulesEnvironment, source: str, **variables: Any) -> RenderError:
    with pytest.raises(RenderError) as caught:
        render(env, source, **variables)
    return caught.value


# -- native values ------------------------------------------------------------------------------


def test_a_single_expression_keeps_its_type(env: RulesEnvironment) -> None:
    assert render(env, "{{ record.number }}") == 1042
    assert render(env, "{{ record.number / 4 }}") == 260.5
    assert render(env, "{{ record.account_ref }}") == {"id": "a-1", "display_name": "Whitman Holdings"}
    assert render(env, "{{ record.close_date }}") is None
    assert render(env, "{{ [1, 2] + [3] }}") == [1, 2, 3]
    assert render(env, "{{ record.status == 'Closed' }}") is True


def test_anything_else_renders_text(env: RulesEnvironment) -> None:
    assert render(env, "n={{ record.number }}") == "n=1042"
    assert render(env, " {{ record.number }}") == " 1042"
    assert render(env, "{{ record.number }}{{ record.number }}") == "10421042"
    assert render(env, "notes: {{ record.notes }}.") == "notes: ."  # an empty field prints nothing


def test_conditions_are_bare_expressions(env: RulesEnvironment) -> None:
    expression = env.expression("record.account_ref is not none and record.number > 1000")
    assert expression({"record": RecordView.of(MATTER, "matters")}) is True


# -- records as templates see them ----------------------------------------------------------------


def test_tags_are_strings_with_a_name(env: RulesEnvironment) -> None:
    tags = render(env, "{{ record.tags }}")
    assert tags == ["Pro Bono", "VIP"] and all(isinstance(t, str) for t in tags)
    assert render(env, "{{ record.tags | map(attribute='name') | map('lower') | list }}") == [
        "pro bono",
        "vip",
    ]
    assert render(env, "{{ 'VIP' in record.tags }}") is True
    assert Tag("x").name == "x"


def test_references_are_checked_against_their_definition(env: RulesEnvironment) -> None:
    assert render(env, "{{ record.account_ref.display_name }}") == "Whitman Holdings"
    assert render(env, "{{ record.assigned_to_users[0].email_address }}") == "d@x.com"
    error = fails(env, "{{ record.account_ref.nmae }}")
    assert error.kind == "undefined" and "unknown field 'nmae' on account_ref" in error.message


def test_a_misspelt_field_is_an_error_with_a_hint_not_an_empty_string(env: RulesEnvironment) -> None:
    error = fails(env, "Hello {{ record.stauts }}")
    assert error.message == "unknown field 'stauts' on matters (did you mean 'status'?)"
    assert fails(env, "{{ recrod.id }}").kind == "undefined"


def test_a_known_field_missing_from_the_record_is_none(env: RulesEnvironment) -> None:
    assert render(env, "{{ record.close_date is none }}") is True
    assert render(env, "{{ record['notes'] is none }}") is True


def test_changes_show_old_and_new(env: RulesEnvironment) -> None:
    changes = ChangesView.of({"status": {"old": "Open", "new": "Closed"}}, "matters")
    assert (
        render(env, "{{ changes.status.old }}->{{ changes.status.new }}", changes=changes) == "Open->Closed"
    )
    assert render(env, "{{ changes.notes is none and 'status' in changes }}", changes=changes) is True
    assert "unknown field 'colour'" in fails(env, "{{ changes.colour }}", changes=changes).message


def test_errors_report_the_line_inside_the_template(env: RulesEnvironment) -> None:
    error = fails(env, "first {{ record.id }}\nsecond\nthird {{ record.nope }}\n")
    assert error.line == 3


def test_syntax_errors_are_compile_errors_with_a_line(env: RulesEnvironment) -> None:
    with pytest.raises(CompileError) as caught:
        env.template("ok\n{{ record.id }\n")
    assert caught.value.line == 2
    with pytest.raises(CompileError):
        env.expression("record.id ==")


# -- filters --------------------------------------------------------------------------------------


def test_money_and_hours(env: RulesEnvironment) -> None:
    assert render(env, "{{ 1234.5 | money }}") == "$1,234.50"
    assert render(env, "{{ -20 | money('€') }}") == "-€20.00"
    assert render(env, "{{ none | money }}") == ""
    assert (
        render(env, "{{ 1.5 | hours }}|{{ 0.25 | hours }}|{{ 8 | hours }}|{{ 0 | hours }}")
        == "1h 30m|15m|8h|0m"
    )


def test_slug_join_default(env: RulesEnvironment) -> None:
    assert render(env, "{{ 'Smith v. Jones (2026) — Über' | slug }}") == "smith-v-jones-2026-uber"
    assert render(env, "{{ record.tags | join(', ') }}") == "Pro Bono, VIP"
    assert render(env, "{{ record.close_date | default('open') }}") == "open"
    assert render(env, "{{ '' | default('empty') }}") == ""
    assert render(env, "{{ '' | default('empty', true) }}") == "empty"
    assert render(env, "{{ missing_name | default('x') }}") == "x"


def test_dates_in_the_firms_time_zone(env: RulesEnvironment) -> None:
    # updated_at is a naive UTC timestamp: 21:30 UTC is 17:30 in New York (EDT).
    assert render(env, "{{ record.updated_at | local | isoformat }}") == "2026-04-14T17:30:00-04:00"
    assert (
        render(env, "{{ record.updated_at | in_timezone('Europe/London') | strftime('%H:%M') }}") == "22:30"
    )
    # open_date is a calendar date stored as midnight: it stays on its day.
    assert render(env, "{{ record.open_date | local | strftime('%Y-%m-%d') }}") == "2026-04-13"
    assert (
        render(env, "{{ '2026-04-14T10:00:00.1234567Z' | utc | isoformat }}") == "2026-04-14T10:00:00+00:00"
    )


def test_business_days_skip_weekends(env: RulesEnvironment) -> None:
    friday = dt.datetime(2026, 4, 17, 9, 0, tzinfo=dt.UTC)
    assert render(env, "{{ now() | add_business_days(1) | date_only }}", now=lambda: friday) == "2026-04-20"
    assert render(env, "{{ now() | add_business_days(5) | date_only }}", now=lambda: friday) == "2026-04-24"
    assert render(env, "{{ now() | add_business_days(-1) | date_only }}", now=lambda: friday) == "2026-04-16"
    assert (
        render(env, "{{ now() | add_days(2) | isoformat }}", now=lambda: friday)
        == "2026-04-19T09:00:00+00:00"
    )


# -- the sandbox ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ record.__dict__ }}",
        "{{ record.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ namespace.__init__ }}",
        "{{ record['__class__'] }}",
        "{{ (1).__class__.__base__ }}",
        "{{ now.__globals__ }}",
        "{{ {}.update(a=1) }}",
        "{{ [].append(1) }}",
        "{{ '{0.__class__}'.format(record) }}",
    ],
)
def test_python_internals_are_unreachable(env: RulesEnvironment, source: str) -> None:
    error = fails(env, source, now=lambda: dt.datetime.now(dt.UTC))
    assert error.kind in ("security", "undefined")


def test_secrets_are_not_in_the_template_world(env: RulesEnvironment) -> None:
    assert fails(env, "{{ settings }}").kind == "undefined"
    assert fails(env, "{{ lipsum(3) }}").kind == "undefined"


# -- limits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ [0] * 10**9 }}",
        "{{ 2 ** 100000 }}",
        "{{ range(10**9) | list }}",
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}",
        "{{ 'x' | center(10**9) }}",
        "{{ 'x' | indent(10**9, true) }}",
        "{{ '%999999999s' | format('x') }}",
        "{{ '%999999999s' % 'x' }}",
        "{{ '{:>999999999}'.format('x') }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ ('x' * 1000) | replace('x', 'y' * 1000) }}",
        "{{ ('x' * 1000).replace('x', 'y' * 1000) }}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    ],
)
def test_output_and_loop_bombs_are_stopped(env: RulesEnvironment, source: str) -> None:
    assert fails(env, source).kind == "limit"


def test_nested_loops_over_long_text_are_stopped(env: RulesEnvironment) -> None:
    error = fails(env, "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}")
    assert error.kind == "limit" and "iterations" in error.message


def test_render_time_is_bounded() -> None:
    slow = RulesEnvironment("UTC", Limits(seconds=0.2, range_items=10**9, loop_iterations=10**12))
    with pytest.raises(RenderError) as caught:
        slow.template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")({})
    assert caught.value.kind == "limit" and "longer than 0.2s" in caught.value.message
