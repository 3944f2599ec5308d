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

from jinja2 import nodes

from worker.practicepanther import customfields
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
    compared: frozenset[str] = frozenset()

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
    return CompiledRule(loaded, conditions, steps, rule_vars, compared_fields(env, rule))


def compared_fields(env: RulesEnvironment, rule: Rule) -> frozenset[str]:
    """Fields the rule reads an old value of: its ``changed:`` list and every ``changes.X`` or
    ``previous.X`` in its conditions and templates."""
    names: set[str] = set(rule.record_trigger.changed) if rule.record_trigger else set()
    sources = [c for c in _condition_sources(rule.conditions)]
    for step in rule.steps:
        if step.if_:
            sources.append(step.if_)
        sources.extend(_strings(step.raw_with()))
    for source in sources:
        if "changes" not in source and "previous" not in source:
            continue
        try:
            tree = env.parse("{{ " + source + " }}") if "{" not in source else env.parse(source)
        except Exception:  # already reported by the checker
            continue
        for node in tree.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name in ("changes", "previous"):
                names.add(node.attr)
        for item in tree.find_all(nodes.Getitem):
            key = item.arg
            rooted = isinstance(item.node, nodes.Name) and item.node.name in ("changes", "previous")
            if rooted and isinstance(key, nodes.Const) and isinstance(key.value, str):
                names.add(key.value)
    return frozenset(_with_custom_list(rule, names))


def _with_custom_list(rule: Rule, names: set[str]) -> set[str]:
    """A custom field (``custom.<label>``, ``previous.custom``) is compared through the record's
    list of values: the snapshot must keep that list for its old values to be known."""
    resource = rule.record_trigger.resource if rule.record_trigger else None
    values_field = customfields.VALUES_FIELDS.get(resource or "")
    if values_field and any(n == "custom" or customfields.custom_label(n) is not None for n in names):
        names.add(values_field)
    return names


def _condition_sources(conditions: Any) -> list[str]:
    out: list[str] = []
    for condition in conditions:
        if isinstance(condition, str):
            out.append(condition)
        elif isinstance(condition, AnyOf):
            out.extend(_condition_sources(condition.any))
        elif isinstance(condition, AllOf):
            out.extend(_condition_sources(condition.all))
        elif isinstance(condition, NotOf):
            out.extend(_condition_sources(condition.not_))
    return out


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []
