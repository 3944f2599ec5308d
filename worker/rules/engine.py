"""The rules engine: which rules an event fires, and what each step would send.

Rules are indexed by (resource, event type) and their templates compiled once, so matching an
event costs a dictionary lookup plus the trigger checks and conditions of the few rules that
watch that resource. Matching is pure: no I/O, no clock except ``now()`` in templates.

* :meth:`Engine.match` -- the rules to run for an event (dispatch calls it).
* :meth:`Engine.context`, :meth:`Engine.step_applies`, :meth:`Engine.render_step` -- what the
  run actor needs to execute a rule's steps in order.
* :meth:`Engine.evaluate` -- everything at once, without side effects, for ``ppw rules test`` and
  ``ppw rules explain``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import nodes

from worker.actions.params import result_resource
from worker.events import Event
from worker.observability.scrub import Scrubber
from worker.rules import context as ctx
from worker.rules.model import (
    AllOf,
    AnyOf,
    NotOf,
    RecordTrigger,
    Rule,
    ScheduleTrigger,
    StepBase,
    WebhookTrigger,
)
from worker.rules.preview import describe
from worker.rules.ruleset import LoadedRule, RuleSet
from worker.rules.templating import (
    Compiled,
    CompiledTemplate,
    RenderError,
    RulesEnvironment,
    compile_value,
    environment,
    render_value,
)
from worker.rules.views import Placeholder, RecordView, resource_definition, unwrap
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)


# -- results --------------------------------------------------------------------------------------


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
            out["value"] = _jsonable(self.value)
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
            "params": _jsonable(self.params),
            "request": _jsonable(self.request),
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
                return f"condition {condition.source!r} is {_short(condition.value)}"
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


# -- compiled rules ---------------------------------------------------------------------------------


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


def _compile_condition(env: RulesEnvironment, condition: Any) -> CompiledCondition:
    if isinstance(condition, str):
        text = condition.strip()
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            text = text[2:-2]
        return CompiledCondition("expr", condition, env.expression(text))
    if isinstance(condition, AnyOf):
        return CompiledCondition("any", "any", None, tuple(_compile_condition(env, c) for c in condition.any))
    if isinstance(condition, AllOf):
        return CompiledCondition("all", "all", None, tuple(_compile_condition(env, c) for c in condition.all))
    if isinstance(condition, NotOf):
        return CompiledCondition(
            "not", "not", None, tuple(_compile_condition(env, c) for c in condition.not_)
        )
    raise TypeError(f"not a condition: {condition!r}")


def compile_rule(env: RulesEnvironment, loaded: LoadedRule) -> CompiledRule:
    """Compile every template of a rule (done once per rule version)."""
    rule = loaded.rule
    conditions = tuple(_compile_condition(env, c) for c in rule.conditions)
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
    return CompiledRule(loaded, conditions, steps, rule_vars, _compared_fields(env, rule))


def _compared_fields(env: RulesEnvironment, rule: Rule) -> frozenset[str]:
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
    return frozenset(names)


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


# -- the engine ---------------------------------------------------------------------------------------


class Engine:
    """Matches events to rules and renders their steps.

    Parameters:
      ruleset: the rules in force (disabled rules are kept for ``evaluate`` but never match).
      settings: time zone and env allow-list (default: the process settings).
      clock: what ``now()`` is based on (tests and ``ppw rules test --now`` pass a fixed one).
      previous: an engine for an earlier rule set; rules whose version did not change reuse its
        compiled templates, so a hot reload only compiles what changed.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        *,
        settings: Settings | None = None,
        clock: ctx.Clock = ctx.system_clock,
        previous: Engine | None = None,
    ) -> None:
        settings = settings or get_settings()
        self.settings = settings
        self.ruleset = ruleset
        self.env = environment(settings.timezone)
        self.zone = ZoneInfo(settings.timezone)
        self.clock = clock
        allowlist = list(settings.env_allowlist)
        self._env_view = ctx.env_view(ctx.allowed_env(allowlist, settings.secret_values()), allowlist)
        reuse = previous._compiled if previous is not None else {}
        self._compiled: dict[tuple[str, str], CompiledRule] = {}
        for loaded in ruleset:
            key = (loaded.id, loaded.version)
            self._compiled[key] = reuse.get(key) or compile_rule(self.env, loaded)
        self._by_id = {loaded.id: self._compiled[(loaded.id, loaded.version)] for loaded in ruleset}
        self._index: dict[tuple[str, str], tuple[CompiledRule, ...]] = {}
        index: dict[tuple[str, str], list[CompiledRule]] = {}
        for compiled in self._by_id.values():
            for key in _index_keys(compiled.rule):
                index.setdefault(key, []).append(compiled)
        self._index = {key: tuple(rules) for key, rules in index.items()}

    # -- lookup ---------------------------------------------------------------------------------
    def watched(self) -> dict[str, list[str]]:
        """Rule ids by the resource they watch (enabled rules only), for status pages."""
        out: dict[str, list[str]] = {}
        for (resource, kind), rules in self._index.items():
            if kind in _TRIGGER_EVENT_TYPES:
                continue
            ids = out.setdefault(resource, [])
            ids.extend(c.loaded.id for c in rules if c.loaded.id not in ids)
        return out

    def compared_fields(self, resource: str) -> set[str]:
        """Fields of ``resource`` whose old value the enabled rules use (``changed:``, ``from:``,
        ``changes.X``, ``previous.X``): the poller should keep these in full in its snapshots."""
        fields: set[str] = set()
        for (watched, _kind), rules in self._index.items():
            if watched == resource:
                for compiled in rules:
                    fields |= compiled.compared
        return fields

    def webhooks(self) -> dict[str, list[LoadedRule]]:
        """Enabled rules with a webhook trigger, by hook name (several rules may share a hook)."""
        out: dict[str, list[LoadedRule]] = {}
        for compiled in self._by_id.values():
            trigger = compiled.rule.webhook_trigger
            if trigger is not None and compiled.rule.enabled:
                out.setdefault(trigger.webhook, []).append(compiled.loaded)
        return out

    def schedules(self) -> list[LoadedRule]:
        """Enabled rules with a schedule trigger, in file order."""
        return [
            c.loaded for c in self._by_id.values() if c.rule.schedule_trigger is not None and c.rule.enabled
        ]

    def rules_for(self, resource: str, event_type: str) -> tuple[LoadedRule, ...]:
        """The enabled rules that watch ``event_type`` events of ``resource``."""
        return tuple(c.loaded for c in self._index.get((resource, event_type), ()))

    def _get(self, rule: LoadedRule | str) -> CompiledRule:
        rule_id = rule if isinstance(rule, str) else rule.id
        try:
            return self._by_id[rule_id]
        except KeyError:
            raise KeyError(f"no rule {rule_id!r} in this rule set") from None

    # -- matching ---------------------------------------------------------------------------------
    def match(self, event: Event) -> list[Match]:
        """The rules that fire for ``event``, in file order. A condition that fails to evaluate
        (a template error) does not fire its rule and is logged."""
        candidates = self._index.get((event.resource, event.type))
        if not candidates:
            return []
        base: dict[str, Any] | None = None
        matches: list[Match] = []
        own = event.origin == "ppw"
        for compiled in candidates:
            rule = compiled.rule
            if own and not rule.allow_own_changes:
                continue
            if not _trigger_fires(rule, event):
                continue
            if not compiled.conditions:
                matches.append(Match(compiled.loaded, event, [], []))
                continue
            if base is None:
                base = self._base_context(event, rule.resource)
            variables = base | compiled.rule_vars
            results: list[ConditionResult] = []
            fired = True
            for condition in compiled.conditions:
                result = _evaluate_condition(condition, variables, short=True)
                results.append(result)
                if not result.passed:
                    fired = False
                    if result.error:
                        log.warning(
                            "rule %s: condition failed to evaluate for event %s: %s",
                            rule.id,
                            event.id,
                            result.error,
                        )
                    break
            if fired:
                matches.append(Match(compiled.loaded, event, [], results))
        return matches

    # -- running steps ----------------------------------------------------------------------------
    def context(
        self, rule: LoadedRule | str, event: Event, steps: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The template variables for running ``rule`` on ``event``; ``steps`` holds results of the
        steps done so far, by step id."""
        compiled = self._get(rule)
        variables = self._rule_context(self._base_context(event, compiled.rule.resource), compiled.loaded)
        if steps:
            variables["steps"] = ctx.steps_view(
                {name: _step_view(compiled, name, output) for name, output in steps.items()}
            )
        return variables

    def with_step_result(
        self, variables: dict[str, Any], step_id: str, result: Any, rule: LoadedRule | str | None = None
    ) -> dict[str, Any]:
        """A copy of ``variables`` where ``steps.<step_id>`` is ``result`` (shaped like the step's
        records when ``rule`` is given)."""
        results = dict(variables["steps"])
        results[step_id] = _step_view(self._get(rule), step_id, result) if rule is not None else result
        return {**variables, "steps": ctx.steps_view(results)}

    def step_applies(
        self, rule: LoadedRule | str, step: StepBase | int | str, variables: Mapping[str, Any]
    ) -> bool:
        """Whether the step's ``if:`` holds (True without one). Raises :class:`RenderError`."""
        compiled = self._step(rule, step)
        if compiled.condition is None:
            return True
        return bool(compiled.condition(variables))

    def render_step(
        self, rule: LoadedRule | str, step: StepBase | int | str, variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The step's ``with:`` block rendered, in canonical form (shorthands expanded to
        ``{resource, data}``), as plain data; validate it with ``STEP_TYPES[step.action]``.
        Raises :class:`RenderError`."""
        compiled = self._step(rule, step)
        rendered: dict[str, Any] = unwrap(render_value(compiled.params, variables))
        return rendered

    def _step(self, rule: LoadedRule | str, step: StepBase | int | str) -> CompiledStep:
        compiled = self._get(rule)
        for candidate in compiled.steps:
            if (
                candidate.step is step
                or (isinstance(step, int) and candidate.index == step)
                or (isinstance(step, str) and candidate.step.id == step)
            ):
                return candidate
        raise KeyError(f"rule {compiled.rule.id!r} has no step {step!r}")

    # -- evaluation (dry) -----------------------------------------------------------------------------
    def evaluate(self, rule: LoadedRule | str, event: Event, *, steps: bool = True) -> Evaluation:
        """Evaluate one rule against one event without side effects: every trigger check, every
        condition (no short-circuit) and, when it fires (or always with ``steps``), each step's
        rendered parameters; a step using ``steps.X`` of an earlier step sees a placeholder."""
        compiled = self._get(rule)
        rule_model = compiled.rule
        passed, checks = _trigger_checks(rule_model, event, explain=True)
        variables = self._rule_context(self._base_context(event, rule_model.resource), compiled.loaded)
        conditions = [_evaluate_condition(c, variables, short=False) for c in compiled.conditions]
        matched = passed and all(c.passed for c in conditions)
        evaluation = Evaluation(compiled.loaded, event, matched, checks, conditions)
        if steps:
            evaluation.steps = self._preview_steps(compiled, variables)
        return evaluation

    def evaluate_all(self, event: Event, *, steps: bool = True) -> list[Evaluation]:
        """:meth:`evaluate` for every rule in the set (disabled ones included, marked as such)."""
        return [self.evaluate(loaded, event, steps=steps) for loaded in self.ruleset]

    def _preview_steps(self, compiled: CompiledRule, variables: dict[str, Any]) -> list[StepPreview]:
        previews: list[StepPreview] = []
        results: dict[str, Any] = {}
        scrubber = Scrubber(self.settings.secret_values())
        for item in compiled.steps:
            step = item.step
            variables = {**variables, "steps": ctx.steps_view(results)}
            preview = StepPreview(item.index, step.id, step.type, step.action, runs=True)
            if item.condition is not None:
                condition = _evaluate_condition(
                    CompiledCondition("expr", step.if_ or "", item.condition), variables, short=False
                )
                preview.condition = condition
                preview.runs = condition.passed
            if preview.runs:
                try:
                    rendered = unwrap(render_value(item.params, variables))
                except RenderError as exc:
                    preview.error = exc.message
                else:
                    preview.params = scrubber.value(rendered)
                    preview.request = describe(step.action, rendered, self.settings)
            if step.id:
                results[step.id] = Placeholder(f"steps.{step.id}")
            previews.append(preview)
        return previews

    # -- contexts -----------------------------------------------------------------------------------
    def _base_context(self, event: Event, resource: str | None) -> dict[str, Any]:
        variables = ctx.build(event, resource=resource, env=self._env_view, zone=self.zone, clock=self.clock)
        return {**self.env.globals, **variables}

    def _rule_context(self, base: dict[str, Any], loaded: LoadedRule) -> dict[str, Any]:
        return base | self._get(loaded.id).rule_vars

    def __len__(self) -> int:
        return len(self._by_id)


#: Event types of triggers that are not record changes (their index keys are not resources).
_TRIGGER_EVENT_TYPES = frozenset({"webhook", "schedule"})


def _index_keys(rule: Rule) -> list[tuple[str, str]]:
    if not rule.enabled:
        return []
    trigger = rule.trigger
    if isinstance(trigger, RecordTrigger):
        return [(trigger.resource, kind) for kind in trigger.on]
    if isinstance(trigger, WebhookTrigger):
        return [(ctx.webhook_resource(trigger.webhook), "webhook")]
    if isinstance(trigger, ScheduleTrigger):
        return [(ctx.schedule_resource(rule.id), "schedule")]
    return []


def _step_view(compiled: CompiledRule, step_id: str, output: Any) -> Any:
    """A finished step's output as later templates see it: a step that returns PracticePanther
    records gives a record view (``none`` when it found nothing), or a list of them for
    ``result: all``; other results stay as they are."""
    step = next((c.step for c in compiled.steps if c.step.id == step_id), None)
    if step is None or not isinstance(output, dict):
        return output
    found = result_resource(step.action, step.params)
    if found is None:
        return output
    resource, is_list = found
    definition = resource_definition(resource)
    if is_list:
        records = output.get("records", [])
        return [RecordView(r, definition, resource) if isinstance(r, dict) else r for r in records]
    if not output:
        return None
    return RecordView(output, definition, resource)


# -- trigger checks ---------------------------------------------------------------------------------


def _trigger_fires(rule: Rule, event: Event) -> bool:
    """The fast path of :func:`_trigger_checks` for :meth:`Engine.match`: the index already chose
    resource and event type, and the own-change guard ran."""
    trigger = rule.trigger
    if not isinstance(trigger, RecordTrigger):
        return _trigger_checks(rule, event, explain=False)[0]
    changed = trigger.changed
    if not changed:
        return True
    if event.type == "updated":
        changes = event.changes
        if not any(name in changes for name in changed):
            return False
    elif not any(_changed(event, name) for name in changed):
        return False
    if trigger.has_from or trigger.has_to:
        old, new = _transition(event, changed[0])
        if trigger.has_from and not _value_matches(old, trigger.from_):
            return False
        if trigger.has_to and not _value_matches(new, trigger.to):
            return False
    return True


def _trigger_checks(rule: Rule, event: Event, *, explain: bool) -> tuple[bool, list[Check]]:
    """Whether the trigger fires for ``event``; with ``explain`` every check is listed (else the
    list stays empty and the first failure returns early)."""
    checks: list[Check] = []
    trigger = rule.trigger

    def check(name: str, passed: bool, detail: str = "") -> bool:
        if explain:
            checks.append(Check(name, passed, detail))
        return passed

    ok = check("enabled", rule.enabled, "" if rule.enabled else "the rule has enabled: false")
    if not ok and not explain:
        return False, checks
    if isinstance(trigger, WebhookTrigger):
        wanted = ctx.webhook_resource(trigger.webhook)
        ok &= check(
            "webhook",
            event.type == "webhook" and event.resource == wanted,
            f"a delivery to /hooks/{trigger.webhook}"
            if event.resource == wanted
            else f"rule listens on /hooks/{trigger.webhook}; event is {event.type} {event.resource}",
        )
        return ok, checks
    if isinstance(trigger, ScheduleTrigger):
        wanted = ctx.schedule_resource(rule.id)
        ok &= check(
            "schedule",
            event.type == "schedule" and event.resource == wanted,
            f"slot {event.record.get('slot')}"
            if event.resource == wanted
            else "runs on its schedule, not on record changes",
        )
        return ok, checks
    if not check(
        "resource",
        event.resource == trigger.resource,
        f"event is for {event.resource}, rule watches {trigger.resource}",
    ):
        ok = False
        if not explain:
            return False, checks
    if not check(
        "event type",
        event.type in trigger.on,
        f"event is {event.type!r}; rule fires on {', '.join(trigger.on)}",
    ):
        ok = False
        if not explain:
            return False, checks
    own = event.origin == "ppw"
    if own and not check(
        "own change",
        rule.allow_own_changes,
        "the change was made by ppw itself (set allow_own_changes: true to fire on it)",
    ):
        ok = False
        if not explain:
            return False, checks
    if trigger.changed:
        changed = [name for name in trigger.changed if _changed(event, name)]
        detail = (
            f"{', '.join(changed)} changed"
            if changed
            else f"{' or '.join(trigger.changed)} did not change"
            + (
                f" (changed: {', '.join(sorted(event.changes)) or 'nothing'})"
                if event.type == "updated"
                else ""
            )
        )
        if not check("changed", bool(changed), detail):
            ok = False
            if not explain:
                return False, checks
        if trigger.has_from or trigger.has_to:
            old, new = _transition(event, trigger.changed[0])
            if trigger.has_from and not check(
                "from",
                _value_matches(old, trigger.from_),
                f"{trigger.changed[0]} was {old!r}, rule wants {trigger.from_!r}",
            ):
                ok = False
                if not explain:
                    return False, checks
            if trigger.has_to and not check(
                "to",
                _value_matches(new, trigger.to),
                f"{trigger.changed[0]} is {new!r}, rule wants {trigger.to!r}",
            ):
                ok = False
    return ok, checks


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _changed(event: Event, name: str) -> bool:
    if event.type == "created":
        return not _empty(event.record.get(name))
    if event.type == "deleted":
        return not _empty((event.previous or event.record).get(name))
    return name in event.changes


def _transition(event: Event, name: str) -> tuple[Any, Any]:
    if event.type == "created":
        return None, event.record.get(name)
    if event.type == "deleted":
        return (event.previous or event.record).get(name), None
    change = event.changes.get(name)
    if change is not None:
        return change.old, change.new
    previous = (event.previous or {}).get(name)
    return previous, event.record.get(name)


def _value_matches(actual: Any, expected: Any) -> bool:
    """Equality, where ``expected`` may list alternatives and a reference matches its id or name."""
    if isinstance(expected, list):
        return any(_value_matches(actual, option) for option in expected)
    if isinstance(actual, dict) and not isinstance(expected, dict):
        return expected in (actual.get("id"), actual.get("display_name"), actual.get("name"))
    return bool(actual == expected)


# -- conditions ----------------------------------------------------------------------------------------


def _evaluate_condition(
    condition: CompiledCondition, variables: Mapping[str, Any], *, short: bool
) -> ConditionResult:
    if condition.kind == "expr":
        assert condition.template is not None
        try:
            value = condition.template(variables)
        except RenderError as exc:
            return ConditionResult("expr", condition.source, False, None, exc.message)
        return ConditionResult("expr", condition.source, bool(value), value)
    children: list[ConditionResult] = []
    for child in condition.children:
        result = _evaluate_condition(child, variables, short=short)
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


def _short(value: Any) -> str:
    text = repr(unwrap(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _jsonable(value: Any) -> Any:
    value = unwrap(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def rules_by_resource(engine: Engine) -> dict[str, list[str]]:
    """Rule ids by watched resource (same as :meth:`Engine.watched`)."""
    return engine.watched()
