"""The rules engine: which rules an event fires, and what each step would send.

Rules are indexed by (resource, event type) and their templates compiled once, so matching an
event costs a dictionary lookup plus the trigger checks and conditions of the few rules that
watch that resource. Matching is pure: no I/O, no clock except ``now()`` in templates.

* :meth:`Engine.match` -- the rules to run for an event (dispatch calls it).
* :meth:`Engine.context`, :meth:`Engine.step_applies`, :meth:`Engine.render_step` -- what the
  run actor needs to execute a rule's steps in order.
* :meth:`Engine.evaluate` -- everything at once, without side effects, for ``ppw rules test`` and
  ``ppw rules explain``.

The parts live in modules of their own: :mod:`~worker.rules.compiled` (compiling a rule once per
version), :mod:`~worker.rules.matching` (the index), :mod:`~worker.rules.triggers` (the one
trigger evaluation firing and explaining share), :mod:`~worker.rules.conditions` and
:mod:`~worker.rules.results` (what evaluating returns). Rules applied here:

* a rule fires when its trigger holds (:func:`~worker.rules.triggers.check_trigger`) and then
  every condition holds, evaluated in order and stopping at the first that does not;
* a condition that fails to evaluate does not fire its rule, and is logged;
* a finished step's output is seen by later templates as records when the step returns
  PracticePanther records (:func:`_step_view`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from worker.actions.base import result_resource
from worker.calendar import Calendar
from worker.events import Event
from worker.observability.scrub import Scrubber
from worker.rules import context as ctx
from worker.rules.compiled import CompiledCondition, CompiledRule, CompiledStep, compile_rule
from worker.rules.conditions import evaluate_condition
from worker.rules.matching import RuleIndex
from worker.rules.model import StepBase
from worker.rules.preview import describe
from worker.rules.results import Check, ConditionResult, Evaluation, Match, StepPreview
from worker.rules.ruleset import LoadedRule, RuleSet
from worker.rules.templating import RenderError, environment, render_value
from worker.rules.triggers import check_trigger
from worker.rules.views import Placeholder, RecordView, resource_definition, unwrap
from worker.settings import Settings, get_settings

__all__ = [
    "Check",
    "ConditionResult",
    "Engine",
    "Evaluation",
    "Match",
    "StepPreview",
    "rules_by_resource",
]

log = logging.getLogger(__name__)


class Engine:
    """Matches events to rules and renders their steps.

    Parameters
    ----------
    ruleset:
        The rules in force (disabled rules are kept for ``evaluate`` but never match).
    settings:
        Time zone and env allow-list (default: the process settings).
    clock:
        What ``now()`` is based on (tests and ``ppw rules test --now`` pass a fixed one).
    previous:
        An engine for an earlier rule set; rules whose version did not change reuse its
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
        # the firm calendar is read (and its settings checked) when the rules are first set up
        self.env = environment(settings.timezone, Calendar.from_settings(settings))
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
        self._index = RuleIndex(self._by_id.values())

    # -- lookup ---------------------------------------------------------------------------------
    def watched(self) -> dict[str, list[str]]:
        """Rule ids by the resource they watch (enabled rules only), for status pages."""
        return self._index.watched()

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
        return tuple(c.loaded for c in self._index.candidates(resource, event_type))

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
        candidates = self._index.candidates(event.resource, event.type)
        if not candidates:
            return []
        base: dict[str, Any] | None = None
        matches: list[Match] = []
        for compiled in candidates:
            rule = compiled.rule
            if not check_trigger(rule, event, explain=False, indexed=True).held:
                continue
            if not compiled.conditions:
                matches.append(Match(compiled.loaded, event, [], []))
                continue
            if base is None:
                base = self._base_context(event, rule.resource)
            conditions = self._fire_conditions(compiled, base | compiled.rule_vars, event)
            if conditions is not None:
                matches.append(Match(compiled.loaded, event, [], conditions))
        return matches

    def _fire_conditions(
        self, compiled: CompiledRule, variables: dict[str, Any], event: Event
    ) -> list[ConditionResult] | None:
        """The rule's conditions, evaluated until one does not hold: their values when all hold,
        else ``None`` (a condition that failed to evaluate is logged)."""
        results: list[ConditionResult] = []
        for condition in compiled.conditions:
            result = evaluate_condition(condition, variables, short=True)
            results.append(result)
            if not result.passed:
                if result.error:
                    log.warning(
                        "rule %s: condition failed to evaluate for event %s: %s",
                        compiled.rule.id,
                        event.id,
                        result.error,
                    )
                return None
        return results

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
        ``{resource, data}``), as plain data; validate it with ``step_type(step.action).params``.
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
        verdict = check_trigger(rule_model, event, explain=True)
        variables = self._rule_context(self._base_context(event, rule_model.resource), compiled.loaded)
        conditions = [evaluate_condition(c, variables, short=False) for c in compiled.conditions]
        matched = verdict.held and all(c.passed for c in conditions)
        evaluation = Evaluation(compiled.loaded, event, matched, list(verdict.checks), conditions)
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
                condition = evaluate_condition(
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


def rules_by_resource(engine: Engine) -> dict[str, list[str]]:
    """Rule ids by watched resource (same as :meth:`Engine.watched`)."""
    return engine.watched()
