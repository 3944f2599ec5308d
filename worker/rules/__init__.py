"""Rules: YAML files saying "when this changes in PracticePanther and these conditions hold, do
these steps".

The public API, importable from here:

* :func:`load_rules` -> :class:`RuleSet` (rules plus located :class:`Diagnostic` objects)
* :class:`Engine` -- ``match(event)``, ``context``/``step_applies``/``render_step``, ``evaluate``
* :class:`RuleRegistry` -- the rules in force, hot-reloaded from the rules directory
* :func:`explain` -- why each rule would or would not fire for a record
* :class:`Rule`, :class:`LoadedRule`, :class:`Match`, :class:`Evaluation`

Names are resolved lazily, so importing a submodule (``worker.rules.hints`` from the step
parameter models, for one) does not drag in the whole package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Diagnostic": "worker.rules.diagnostics",
    "Engine": "worker.rules.engine",
    "Evaluation": "worker.rules.results",
    "Match": "worker.rules.results",
    "explain": "worker.rules.explain",
    "load_rules": "worker.rules.loader",
    "load_text": "worker.rules.loader",
    "Rule": "worker.rules.model",
    "LoadedRule": "worker.rules.ruleset",
    "RuleSet": "worker.rules.ruleset",
    "RuleRegistry": "worker.rules.watcher",
}

__all__ = [
    "Diagnostic",
    "Engine",
    "Evaluation",
    "LoadedRule",
    "Match",
    "Rule",
    "RuleRegistry",
    "RuleSet",
    "explain",
    "load_rules",
    "load_text",
]

if TYPE_CHECKING:
    from worker.rules.diagnostics import Diagnostic
    from worker.rules.engine import Engine
    from worker.rules.explain import explain
    from worker.rules.loader import load_rules, load_text
    from worker.rules.model import Rule
    from worker.rules.results import Evaluation, Match
    from worker.rules.ruleset import LoadedRule, RuleSet
    from worker.rules.watcher import RuleRegistry


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'worker.rules' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
