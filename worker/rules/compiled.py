"""Rules compiled once per version: every template parsed, every old value the rule reads listed.

Rules applied here:

* a condition that is a single ``{{ ... }}`` is compiled as the expression inside it; any other
  string is an expression as written; ``any``/``all``/``not`` blocks compile their children;
* a step's ``if:`` is an expression, its ``with:`` block a tree of templates (:func:`compile_value`);
* the ``rule`` and (empty) ``steps`` variables of a rule are built once, with the rule;
* the fields a rule *compares* (reads an old value of) are its ``changed:`` list plus every
  ``changes.X``, ``changes["X"]``, ``previous.X`` and ``previous["X"]`` in its conditions, ``if:``
  and ``with:`` templates; a template that does not parse is skipped (the checker reports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.rules import context as ctx
from worker.rules.model import AllOf, AnyOf, NotOf, Rule, StepBase
from worker.rules.ruleset import LoadedRule
from worker.rules.templating import Compiled, CompiledTemplate, RulesEnvironment, compile_value


@dataclass(frozen=True)
class CompiledCondition:
    kind: str
    source: str
    template: CompiledTemplate | None = None
    children: tuple[CompiledCondition, ...] = ()


@dataclass(frozen=True)
class CompiledStep:
    index: int
    step: StepBase
    condition: CompiledTemplate | None
    params: Compiled


@dataclass(frozen=True)
class CompiledRule:
    loaded: LoadedRule
    conditions: tuple[CompiledCondition, ...]
    steps: tuple[CompiledStep, ...]
    rule_vars: dict[str, Any] = field(default_factory=dict)

    @property
    def rule(self) -> Rule:
        return self.loaded.rule


def compile_condition(env: RulesEnvironment, condition: Any) -> CompiledCondition:
    """One condition or block of a rule, compiled."""
    if isinstance(condition, str):
        text = condition.strip()
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            text = text[2:-2]
        return CompiledCondition("expr", condition, env.expression(text))
    if isinstance(condition, AnyOf):
        return CompiledCondition("any", "any", None, tuple(compile_condition(env, c) for c in condition.any))
    if isinstance(condition, AllOf):
        return CompiledCondition("all", "all", None, tuple(compile_condition(env, c) for c in condition.all))
    if isinstance(condition, NotOf):
        return CompiledCondition("not", "not", None, tuple(compile_condition(env, c) for c in condition.not_))
    raise TypeError(f"not a condition: {condition!r}")


def compile_rule(env: RulesEnvironment, loaded: LoadedRule) -> CompiledRule:
    """Compile every template of a rule (done once per rule version)."""
    rule = loaded.rule
    conditions = tuple(compile_condition(env, c) for c in rule.conditions)
    steps = tuple(
        CompiledStep(
            index=index,
            step=step,
            condition=env.expression(step.if_) if step.if_ is not None else None,
            params=compile_value(env, step.raw_with()),
        )
        for index, step in enumerate(rule.steps)
    )
    rule_vars = {
        "rule": ctx.rule_view(loaded.id, rule.description, loaded.version),
        "steps": ctx.steps_view({}),
    }
    return CompiledRule(loaded, conditions, steps, rule_vars)
