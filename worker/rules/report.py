"""Plain-text reports of evaluations and explanations, for the terminal (the CLI prints these)."""

from __future__ import annotations

import json
from typing import Any

from worker.rules.explain import Explanation
from worker.rules.results import ConditionResult, Evaluation, StepPreview
from worker.rules.views import unwrap

YES = "✔"
NO = "✘"
SKIP = "-"


def _mark(passed: bool) -> str:
    return YES if passed else NO


def _value(value: Any) -> str:
    value = unwrap(value)
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in text.splitlines()]


def evaluation(result: Evaluation, *, steps: bool = True) -> str:
    """One rule's verdict with every check, condition value and (when it fires) step payload."""
    verdict = "fires" if result.matched else f"does not fire: {result.reason}"
    lines = [
        f"{_mark(result.matched)} {result.rule.id}  {verdict}",
        f"  ({result.rule.location}, version {result.rule.version})",
        "  trigger",
    ]
    for check in result.checks:
        lines.append(f"    {_mark(check.passed)} {check.name}: {check.detail}".rstrip(": "))
    if result.conditions:
        lines.append("  conditions")
        for condition in result.conditions:
            lines.extend(_condition(condition, "    "))
    if steps and result.matched and result.steps:
        lines.append("  steps")
        for step in result.steps:
            lines.extend(_step(step))
    return "\n".join(lines)


def _condition(condition: ConditionResult, prefix: str) -> list[str]:
    if condition.kind == "expr":
        outcome = f"error: {condition.error}" if condition.error else f"-> {_value(condition.value)}"
        return [f"{prefix}{_mark(condition.passed)} {condition.source}  {outcome}"]
    lines = [f"{prefix}{_mark(condition.passed)} {condition.kind}:"]
    for child in condition.children:
        lines.extend(_condition(child, prefix + "    "))
    return lines


def _step(step: StepPreview) -> list[str]:
    name = f"{step.id}: " if step.id else ""
    head = f"    {step.index + 1}. {name}{step.type}"
    if step.type != step.action:
        head += f" ({step.action})"
    lines = [head]
    if step.condition is not None:
        lines.extend(_condition(step.condition, "       if "))
    if not step.runs:
        lines.append("       skipped: its if: does not hold")
        return lines
    if step.error:
        lines.append(f"       {NO} error: {step.error}")
        return lines
    request = dict(step.request or {})
    method, url = request.pop("method", None), request.pop("url", None)
    if method or url:
        lines.append(f"       {method or ''} {url or ''}".rstrip())
    for key, value in request.items():
        if isinstance(value, dict | list):
            lines.append(f"       {key}:")
            lines.extend(_indent(json.dumps(value, indent=2, default=str, ensure_ascii=False), "         "))
        else:
            lines.append(f"       {key}: {value}")
    return lines


def explanation(result: Explanation, *, verbose: bool = False) -> str:
    """``ppw rules explain``: the event the next poll would see, then each rule's verdict."""
    lines = [f"{result.resource} {result.record_id}: next poll sees {result.event.type!r}"]
    lines.extend(f"  note: {note}" for note in result.notes)
    if result.event.changes:
        lines.append("  changes:")
        for name, change in sorted(result.event.changes.items()):
            lines.append(f"    {name}: {_value(change.old)} -> {_value(change.new)}")
    lines.append("")
    relevant = [e for e in result.evaluations if e.rule.rule.resource == result.resource]
    others = [e for e in result.evaluations if e.rule.rule.resource != result.resource]
    for item in relevant:
        lines.append(evaluation(item, steps=verbose) if verbose or item.matched else _one_line(item))
    if others:
        lines.append(
            f"{SKIP} {len(others)} rule(s) watch other resources: {', '.join(e.rule.id for e in others)}"
        )
    if not result.pending:
        lines.append("")
        lines.append("nothing fires now: the record has not changed since the last poll")
    else:
        firing = result.firing
        lines.append("")
        lines.append(f"would fire: {', '.join(firing)}" if firing else "no rule would fire")
    return "\n".join(lines)


def _one_line(item: Evaluation) -> str:
    verdict = "fires" if item.matched else f"does not fire: {item.reason}"
    return f"{_mark(item.matched)} {item.rule.id}  {verdict}"
