"""What evaluating a rule against an event produces: plain data for dispatch, reports and JSON.

* :class:`Check` -- one part of a trigger (``enabled``, ``resource``, ``event type``, ``own change``,
  ``changed``, ``from``, ``to``, ``webhook``, ``schedule``), whether it held and why.
* :class:`ConditionResult` -- the value of one condition or ``any``/``all``/``not`` block.
* :class:`Match` -- a rule that fires, as :meth:`~worker.rules.engine.Engine.match` returns it.
* :class:`StepPreview` and :class:`Evaluation` -- the dry run ``ppw rules test``/``explain`` show.

Rules of presentation applied here:

* an evaluation's ``reason`` is ``fires``, else the first failed trigger check, else the first
  failed condition (its error, or its value shortened to 60 characters);
* values go to JSON as plain data: views unwrapped, dates and datetimes in ISO form, anything
  else that is not a JSON scalar as its ``str``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from worker.events import Event
from worker.rules.ruleset import LoadedRule
from worker.rules.views import unwrap


@dataclass(frozen=True)
class Check:
    """One trigger check: what was tested, whether it passed, and the values involved."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class ConditionResult:
    """The value of one condition (``kind`` expr) or block (any, all, not)."""

    kind: str
    source: str
    passed: bool
    value: Any = None
    error: str | None = None
    children: list[ConditionResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "source": self.source, "passed": self.passed}
        if self.kind == "expr":
            out["value"] = jsonable(self.value)
        if self.error:
            out["error"] = self.error
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


@dataclass
class Match:
    """A rule that fires for an event, with the condition values that made it fire."""

    rule: LoadedRule
    event: Event
    checks: list[Check] = field(default_factory=list)
    conditions: list[ConditionResult] = field(default_factory=list)

    @property
    def rule_id(self) -> str:
        return self.rule.id


@dataclass
class StepPreview:
    """What one step would do: whether its ``if:`` holds and the rendered parameters."""

    index: int
    id: str | None
    type: str
    action: str
    runs: bool
    condition: ConditionResult | None = None
    params: dict[str, Any] | None = None
    request: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "type": self.type,
            "action": self.action,
            "runs": self.runs,
            "if": self.condition.to_dict() if self.condition else None,
            "params": jsonable(self.params),
            "request": jsonable(self.request),
            "error": self.error,
        }


@dataclass
class Evaluation:
    """Everything ``ppw rules test`` shows for one rule and one event."""

    rule: LoadedRule
    event: Event
    matched: bool
    checks: list[Check] = field(default_factory=list)
    conditions: list[ConditionResult] = field(default_factory=list)
    steps: list[StepPreview] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """Why it does not fire (the first failed check or condition), or ``fires``."""
        if self.matched:
            return "fires"
        for check in self.checks:
            if not check.passed:
                return f"{check.name}: {check.detail}" if check.detail else check.name
        for condition in self.conditions:
            if not condition.passed:
                if condition.error:
                    return f"condition {condition.source!r} failed: {condition.error}"
                return f"condition {condition.source!r} is {short(condition.value)}"
        return "does not fire"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.id,
            "version": self.rule.version,
            "location": self.rule.location,
            "matched": self.matched,
            "reason": self.reason,
            "trigger": [{"check": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
            "conditions": [c.to_dict() for c in self.conditions],
            "steps": [s.to_dict() for s in self.steps],
        }


def short(value: Any) -> str:
    """A value's ``repr`` (views unwrapped) cut to 60 characters."""
    text = repr(unwrap(value))
    return text if len(text) <= 60 else text[:57] + "..."


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (see the module docstring)."""
    value = unwrap(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
