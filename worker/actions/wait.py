"""``wait``: the run continues later, after a duration or at a moment, surviving anything.

``with: {for: "3 business days"}``, ``{for: "2h", at: "09:00"}``, or
``{until: "{{ record.due_date }}", offset: "-1 business day", at: "09:00"}``. Durations, business
days and times of day use the firm calendar (:mod:`worker.calendar`: ``PPW_TIMEZONE``,
``PPW_HOLIDAYS``, closures). The moment is computed once, when the step first runs; the step then
raises :class:`~worker.actions.errors.WaitUntil` and the runner stores the run as waiting
(:mod:`worker.delivery.timers`). Woken, the step is given that moment back (``ctx.resumed_due``)
and, with ``recheck`` (the default), reads the record again, so the steps after it see what
PracticePanther holds now; ``unless:`` (true: the run ends as ``cancelled``) and ``while:`` (false:
cancelled) are expressions like ``if:``, evaluated on that fresh record. A record deleted while the
run waited cancels it too. A moment already past does not wait.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

from pydantic import Field, field_validator, model_validator

from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.errors import CancelRun, PermanentStepError, WaitUntil
from worker.actions.params import Params
from worker.calendar import Calendar, CalendarError, parse_duration, parse_time_of_day
from worker.practicepanther import resources
from worker.practicepanther.errors import NotFound
from worker.settings import Settings

#: Slack for a wake a little early (clocks of two hosts): within this, the wait is over.
EARLY = 0.5


class WaitParams(Params):
    """``wait``: either ``for`` or ``until`` (with ``offset``), then ``at``; checked when the
    rule loads where the values are literal, again when rendered."""

    for_: str | None = Field(None, alias="for", description='How long: "2h", "7 days", "3 business days"')
    until: str | None = Field(None, description="A moment or date (a template such as {{ record.due_date }})")

    @field_validator("until", mode="before")
    @classmethod
    def _moment_text(cls, value: Any) -> Any:
        """A template that is the whole value renders the value itself: a custom date field is an
        aware datetime (``record.custom['Statute of Limitations']``), a date a date."""
        return value.isoformat() if isinstance(value, date) else value

    offset: str | None = Field(None, description='Added to until: "-1 business day", "-60 days"')
    at: str | None = Field(None, description='Time of day in the firm zone: "09:00"')
    recheck: bool = Field(True, description="Read the record again when the wait is over")
    unless: str | None = Field(None, description="Expression: when true after the wait, the run is cancelled")
    while_: str | None = Field(
        None, alias="while", description="Expression: unless true after the wait, the run is cancelled"
    )

    @field_validator("for_", "offset", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and "{{" in value):
            return value
        parse_duration(value)  # CalendarError (a ValueError) names the accepted forms
        return str(value)

    @field_validator("at")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and "{{" not in value:
            parse_time_of_day(value)
        return value

    @model_validator(mode="after")
    def _one_moment(self) -> WaitParams:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("give either for: (a duration) or until: (a moment), not both or neither")
        if self.offset is not None and self.until is None:
            raise ValueError("offset: shifts until:; with for:, put the whole duration in for:")
        return self


class WaitStep(StepType):
    name = "wait"
    params = WaitParams
    writes = False
    refreshes_record = True
    result_keys = frozenset({"due", "woke_at", "record", "rechecked"})
    with_doc = "`for` or `until` (+ `offset`), `at`, `recheck`, `unless`, `while`"

    def run(self, params: WaitParams, ctx: StepContext) -> StepResult:
        calendar = Calendar.from_settings(ctx.services.settings)
        due = ctx.resumed_due if ctx.resumed_due is not None else self.due(params, calendar, time.time())
        now = time.time()
        if due > now + EARLY:
            limit = ctx.services.settings.wait_max
            if due - now > limit:
                raise PermanentStepError(
                    f"wait: {_iso(due)} is more than PPW_WAIT_MAX ({limit / 86400:g} days) away"
                )
            raise WaitUntil(due, f"until {_iso(due)}")
        output: dict[str, Any] = {"due": _iso(due), "woke_at": _iso(now), "rechecked": False}
        if params.recheck and self._has_record(ctx):
            record = self._read_again(ctx)
            output.update(record=record, rechecked=True)
            if params.unless and ctx.holds is not None and ctx.holds(params.unless, record):
                raise CancelRun(f"unless: {params.unless} held after the wait")
            if params.while_ and ctx.holds is not None and not ctx.holds(params.while_, record):
                raise CancelRun(f"while: {params.while_} no longer held after the wait")
        return StepResult(output=output, response={"due": output["due"], "rechecked": output["rechecked"]})

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """The moment the wait would end if the run reached it now (``ppw rules test``, ``explain``)."""
        try:
            model = WaitParams.model_validate(params)
            due = self.due(model, Calendar.from_settings(settings), time.time())
        except (ValueError, PermanentStepError) as exc:
            return {"params": params, "wakes": f"cannot tell: {exc}"}
        zone = Calendar.from_settings(settings).zone
        return {"params": params, "wakes": datetime.fromtimestamp(due, zone).isoformat(timespec="minutes")}

    @staticmethod
    def due(params: WaitParams, calendar: Calendar, now: float) -> float:
        """The Unix time the wait ends, from the rendered parameters."""
        try:
            if params.for_ is not None:
                moment = parse_duration(params.for_).apply(
                    datetime.fromtimestamp(now, calendar.zone), calendar
                )
            else:
                moment = _until(params.until, calendar)
                if params.offset:
                    moment = parse_duration(params.offset).apply(moment, calendar)
            if params.at:
                moment = calendar.at(moment, parse_time_of_day(params.at))
        except CalendarError as exc:
            raise PermanentStepError(f"wait: {exc}") from None
        return float(moment.timestamp())

    @staticmethod
    def _has_record(ctx: StepContext) -> bool:
        name = resources.resolve_name(ctx.event.resource)
        return ctx.event.type in ("created", "updated") and name is not None and bool(ctx.event.record_id)

    @staticmethod
    def _read_again(ctx: StepContext) -> dict[str, Any]:
        try:
            return dict(ctx.services.pp(ctx.connection).get(ctx.event.resource, ctx.event.record_id))
        except NotFound:
            raise CancelRun("the record was deleted while the run waited") from None


def _until(text: str | None, calendar: Calendar) -> datetime:
    """``until:`` as an aware moment (a date is that day in the firm's zone)."""
    if not (text or "").strip():
        raise CalendarError("until: is empty (the template rendered nothing: is the date set?)")
    try:
        return calendar.moment(text)
    except ValueError:
        example = "2026-07-01, 2026-07-01T09:00Z"
        raise CalendarError(f"until: {text!r} is not a date or a moment ({example})") from None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()
