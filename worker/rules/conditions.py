"""Evaluating a rule's compiled conditions against the template variables of one event.

Rules applied here:

* an expression holds when its value is truthy; one that fails to render does not hold, and its
  error is kept;
* ``any`` holds when a child holds, ``all`` when every child holds, ``not`` when no child holds;
* a block that does not hold carries the first error among its children;
* ``short`` evaluation (firing) stops a block at the first child that decides it; without it
  (``ppw rules test``/``explain``) every child is evaluated, so every value can be shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.rules.compiled import CompiledCondition
from worker.rules.results import ConditionResult
from worker.rules.templating import RenderError


def evaluate_condition(
    condition: CompiledCondition, variables: Mapping[str, Any], *, short: bool
) -> ConditionResult:
    """The value of ``condition`` (and of its children) for ``variables``."""
    if condition.kind == "expr":
        assert condition.template is not None
        try:
            value = condition.template(variables)
        except RenderError as exc:
            return ConditionResult("expr", condition.source, False, None, exc.message)
        return ConditionResult("expr", condition.source, bool(value), value)
    children: list[ConditionResult] = []
    for child in condition.children:
        result = evaluate_condition(child, variables, short=short)
        children.append(result)
        if short and (result.passed if condition.kind in ("any", "not") else not result.passed):
            break
    if condition.kind == "any":
        passed = any(c.passed for c in children)
    elif condition.kind == "all":
        passed = all(c.passed for c in children)
    else:
        passed = not any(c.passed for c in children)
    errors = [c.error for c in children if c.error]
    return ConditionResult(
        condition.kind, condition.kind, passed, None, errors[0] if errors and not passed else None, children
    )
