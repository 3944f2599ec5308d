"""The per-resource index: which compiled rules an event can concern, found by one lookup.

Rules applied here:

* an enabled record rule is listed under ``(resource, event type)`` for each type in its ``on``;
  a timed one (``at:``, or ``for:``) only under ``(resource, "due")``: it fires when its moment
  comes, never on the change itself;
* a webhook rule under ``(webhook resource of its hook, "webhook")``, a schedule rule under
  ``(schedule resource of the rule, "schedule")``;
* a disabled rule is listed nowhere (it never fires; ``evaluate`` still reaches it by id);
* rules keep their file order under each key;
* the resources *watched* are those of record rules (hooks and schedules are not resources).
"""

from __future__ import annotations

from collections.abc import Iterable

from worker.rules import context as ctx
from worker.rules.compiled import CompiledRule
from worker.rules.model import RecordTrigger, Rule, ScheduleTrigger, WebhookTrigger

#: Event types of triggers that are not record changes (their index keys are not resources).
TRIGGER_EVENT_TYPES = frozenset({"webhook", "schedule"})


class RuleIndex:
    """Compiled rules by ``(resource, event type)``, in file order."""

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        index: dict[tuple[str, str], list[CompiledRule]] = {}
        for compiled in rules:
            for key in index_keys(compiled.rule):
                index.setdefault(key, []).append(compiled)
        self._by_key: dict[tuple[str, str], tuple[CompiledRule, ...]] = {
            key: tuple(rules) for key, rules in index.items()
        }

    def candidates(self, resource: str, event_type: str) -> tuple[CompiledRule, ...]:
        """The rules listed under ``(resource, event_type)``."""
        return self._by_key.get((resource, event_type), ())

    def watched(self) -> dict[str, list[str]]:
        """Rule ids by the resource they watch."""
        out: dict[str, list[str]] = {}
        for (resource, kind), rules in self._by_key.items():
            if kind in TRIGGER_EVENT_TYPES:
                continue
            ids = out.setdefault(resource, [])
            ids.extend(c.loaded.id for c in rules if c.loaded.id not in ids)
        return out


def index_keys(rule: Rule) -> list[tuple[str, str]]:
    """The keys ``rule`` is listed under (none when disabled)."""
    if not rule.enabled:
        return []
    trigger = rule.trigger
    if isinstance(trigger, RecordTrigger):
        if trigger.timed:
            return [(trigger.resource, "due")]
        return [(trigger.resource, kind) for kind in trigger.on]
    if isinstance(trigger, WebhookTrigger):
        return [(ctx.webhook_resource(trigger.webhook), "webhook")]
    if isinstance(trigger, ScheduleTrigger):
        return [(ctx.schedule_resource(rule.id), "schedule")]
    return []
