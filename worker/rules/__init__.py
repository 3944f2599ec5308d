"""Rules: YAML files saying "when this changes in PracticePanther and these conditions hold, do
these steps".

The public API, importable from here:

* :func:`load_rules` -> :class:`RuleSet` (rules plus located :class:`Diagnostic` objects)
* :class:`Engine` -- ``match(event)``, ``context``/``step_applies``/``render_step``, ``evaluate``
* :class:`RuleRegistry` -- the rules in force, hot-reloaded from the rules directory
* :class:`CustomFieldsWatch` -- refreshes custom field definitions, reports labels rules use that
  are gone (:func:`read_report` for ``/readyz``)
* :func:`explain` -- why each rule would or would not fire for a record
* :class:`Rule`, :class:`LoadedRule`, :class:`Match`, :class:`Evaluation`

Names are resolved lazily, so importing a submodule (``worker.rules.templating`` from the triggers,
for one) does not drag in the whole package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.exports import lazy_exports

_EXPORTS = {
    "date_moment": "worker.rules.explain",
    "for_end": "worker.rules.explain",
    "moments": "worker.rules.explain",
    "value_since": "worker.rules.explain",
    "value_matches": "worker.rules.triggers",
    "field_value": "worker.rules.triggers",
    "RecordTrigger": "worker.rules.model",
    "allowed_env": "worker.rules.context",
    "env_view": "worker.rules.context",
    "rule_view": "worker.rules.context",
    "schedule_resource": "worker.rules.context",
    "webhook_resource": "worker.rules.context",
    "CustomFieldsWatch": "worker.rules.customlabels",
    "read_report": "worker.rules.customlabels",
    "Diagnostic": "worker.rules.diagnostics",
    "count": "worker.rules.diagnostics",
    "Engine": "worker.rules.engine",
    "rules_by_resource": "worker.rules.engine",
    "event_from_data": "worker.rules.explain",
    "explain": "worker.rules.explain",
    "explain_live": "worker.rules.explain",
    "load_rules": "worker.rules.loader",
    "load_text": "worker.rules.loader",
    "Query": "worker.rules.model",
    "Rule": "worker.rules.model",
    "ScheduleTrigger": "worker.rules.model",
    "StepBase": "worker.rules.model",
    "Evaluation": "worker.rules.results",
    "Match": "worker.rules.results",
    "LoadedRule": "worker.rules.ruleset",
    "RuleSet": "worker.rules.ruleset",
    "SourceMap": "worker.rules.source",
    "load_data": "worker.rules.source",
    "RenderError": "worker.rules.templating",
    "RulesEnvironment": "worker.rules.templating",
    "compile_value": "worker.rules.templating",
    "environment": "worker.rules.templating",
    "render_value": "worker.rules.templating",
    "unwrap": "worker.rules.views",
    "RuleRegistry": "worker.rules.watcher",
}

__all__ = [
    "CustomFieldsWatch",
    "Diagnostic",
    "Engine",
    "Evaluation",
    "LoadedRule",
    "Match",
    "Query",
    "RecordTrigger",
    "RenderError",
    "Rule",
    "RuleRegistry",
    "RuleSet",
    "RulesEnvironment",
    "ScheduleTrigger",
    "SourceMap",
    "StepBase",
    "allowed_env",
    "compile_value",
    "count",
    "date_moment",
    "env_view",
    "environment",
    "event_from_data",
    "explain",
    "explain_live",
    "field_value",
    "for_end",
    "load_data",
    "load_rules",
    "load_text",
    "moments",
    "read_report",
    "render_value",
    "rule_view",
    "rules_by_resource",
    "schedule_resource",
    "unwrap",
    "value_matches",
    "value_since",
    "webhook_resource",
]

if TYPE_CHECKING:
    from worker.rules.context import allowed_env, env_view, rule_view, schedule_resource, webhook_resource
    from worker.rules.customlabels import CustomFieldsWatch, read_report
    from worker.rules.diagnostics import Diagnostic, count
    from worker.rules.engine import Engine, rules_by_resource
    from worker.rules.explain import (
        date_moment,
        event_from_data,
        explain,
        explain_live,
        for_end,
        moments,
        value_since,
    )
    from worker.rules.loader import load_rules, load_text
    from worker.rules.model import Query, RecordTrigger, Rule, ScheduleTrigger, StepBase
    from worker.rules.results import Evaluation, Match
    from worker.rules.ruleset import LoadedRule, RuleSet
    from worker.rules.source import SourceMap, load_data
    from worker.rules.templating import (
        RenderError,
        RulesEnvironment,
        compile_value,
        environment,
        render_value,
    )
    from worker.rules.triggers import field_value, value_matches
    from worker.rules.views import unwrap
    from worker.rules.watcher import RuleRegistry


__getattr__ = lazy_exports(__name__, _EXPORTS)
