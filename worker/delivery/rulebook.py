"""What delivery needs from the rules engine, in one narrow interface.

Dispatch asks which rules an event matches and stores a snapshot of each; the runner turns the
snapshot a run was dispatched with back into a :class:`PreparedRule` that evaluates ``if:``
expressions and renders ``with:`` blocks; ``ppw dlq replay --with-current-rule`` asks for the rule
as loaded now. Everything else about rules (files, hot reload, the checker) stays in
:mod:`worker.rules`.

A run keeps executing the rule *version* it was dispatched with, even after the file changed: the
current engine is used when it still holds that version, otherwise the snapshot is compiled into a
small engine of its own (cached per rule version).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from worker.events import Event
from worker.rules.engine import Engine
from worker.rules.model import RecordTrigger, Rule, StepBase
from worker.rules.ruleset import LoadedRule, RuleSet
from worker.rules.source import SourceMap
from worker.settings import Settings

#: Snapshot engines kept per process (one per rule version still being run or retried).
SNAPSHOT_CACHE = 256


@dataclass(frozen=True)
class Matched:
    """A rule an event matched, the version that matched and what its conditions said."""

    rule: Rule
    version: str
    conditions: Any = None


@dataclass(frozen=True)
class PreparedRule:
    """One rule version, compiled, ready to run steps."""

    rule: Rule
    version: str
    engine: Engine

    def context(self, event: Event, steps: Mapping[str, Any]) -> dict[str, Any]:
        """Template variables for the run: event, record, changes, previous, env, now, ``steps``."""
        return self.engine.context(self.rule.id, event, steps)

    def applies(self, index: int, variables: Mapping[str, Any]) -> bool:
        """Whether step ``index``'s ``if:`` holds (True without one)."""
        return self.engine.step_applies(self.rule.id, index, variables)

    def holds(self, expression: str, variables: Mapping[str, Any]) -> bool:
        """Whether an expression written in the rule (a wait's ``unless:``) is true now."""
        return bool(self.engine.env.expression(expression)(variables))

    def render(self, index: int, variables: Mapping[str, Any]) -> dict[str, Any]:
        """Step ``index``'s canonical ``with:`` block, rendered."""
        return self.engine.render_step(self.rule.id, index, variables)


class Versions(Sequence[tuple[Rule, str]]):
    """Every rule loaded now with its version, and what is known of the rules not loaded.

    The scheduler's leader compares it with the rules it saw before to retire the waiting runs and
    alarms of rules deleted or disabled (:class:`~worker.delivery.alarms.AlarmPump`), so it must
    tell "gone" from "not readable right now": ``unsure`` are the ids of rules that failed to load
    (a broken edit: the rule is not deleted), and ``complete`` is False when a rule file could not
    be read at all or the rules directory is missing (then nothing may be taken as deleted).
    """

    def __init__(
        self,
        rules: Sequence[tuple[Rule, str]],
        *,
        fingerprint: str,
        unsure: frozenset[str] = frozenset(),
        complete: bool = True,
    ) -> None:
        self._rules = tuple(rules)
        self.fingerprint = fingerprint
        self.unsure = unsure
        self.complete = complete

    @overload
    def __getitem__(self, index: int) -> tuple[Rule, str]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[Rule, str]]: ...
    def __getitem__(self, index: int | slice) -> tuple[Rule, str] | Sequence[tuple[Rule, str]]:
        return self._rules[index]

    def __len__(self) -> int:
        return len(self._rules)


class EngineRuleBook:
    """Rules for delivery from the rules engine.

    Parameters
    ----------
    engine:
        Returns the engine for the rules in force now (the hot-reloading registry's current
        one, or a fixed engine).
    settings:
        Time zone and env allow-list for engines built from snapshots.
    """

    def __init__(self, engine: Callable[[], Engine], settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._snapshots: dict[tuple[str, str], Engine] = {}
        self._dumped: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def fixed(cls, ruleset: RuleSet, settings: Settings) -> EngineRuleBook:
        engine = Engine(ruleset, settings=settings)
        return cls(lambda: engine, settings)

    def match(self, event: Event) -> list[Matched]:
        return [
            Matched(m.rule.rule, m.rule.version, [c.to_dict() for c in m.conditions])
            for m in self._engine().match(event)
        ]

    def timed(self, resource: str) -> list[Rule]:
        """The enabled date-relative and "for" rules of ``resource`` loaded now."""
        return [
            loaded.rule
            for loaded in self._engine().ruleset
            if loaded.rule.enabled
            and isinstance(loaded.rule.trigger, RecordTrigger)
            and loaded.rule.trigger.timed
            and loaded.rule.trigger.resource == resource
        ]

    def fetches(self, resource: str) -> bool:
        """Whether an enabled rule of ``resource`` asks for the detailed record (``fetch: true``)."""
        return any(
            loaded.rule.enabled
            and isinstance(loaded.rule.trigger, RecordTrigger)
            and loaded.rule.trigger.fetch
            and loaded.rule.trigger.resource == resource
            for loaded in self._engine().ruleset
        )

    def versions(self) -> Versions:
        """Every rule loaded now, with its version (and which rules are broken, not deleted)."""
        ruleset = self._engine().ruleset
        unreadable = any(d.code == "io" and d.is_error for d in ruleset.diagnostics)  # a file, the dir
        return Versions(
            [(loaded.rule, loaded.version) for loaded in ruleset],
            fingerprint=ruleset.version,
            unsure=frozenset(b.rule for b in ruleset.broken if b.rule is not None),
            complete=not unreadable and all(b.rule is not None for b in ruleset.broken),
        )

    def current(self, rule_id: str) -> Matched | None:
        loaded = self._engine().ruleset.get(rule_id)
        return Matched(loaded.rule, loaded.version) if loaded is not None else None

    def snapshot(self, matched: Matched) -> dict[str, Any]:
        """The rule as plain JSON data (aliases as written in YAML, so it validates back).

        Every run carries one, so it is made once per rule version.
        """
        cache_key = (matched.rule.id, matched.version)
        with self._lock:
            data = self._dumped.get(cache_key)
        if data is None:
            data = matched.rule.model_dump(mode="json", by_alias=True, exclude_unset=True)
            with self._lock:
                if len(self._dumped) >= SNAPSHOT_CACHE:
                    self._dumped.clear()
                self._dumped[cache_key] = data
        return data

    def prepare(self, snapshot: dict[str, Any], version: str) -> PreparedRule:
        """The runnable rule for a run: from the current engine if it holds ``version``, else compiled
        from the snapshot. Raises ``pydantic.ValidationError`` if the snapshot no longer validates."""
        rule_id = str(snapshot.get("id", ""))
        engine = self._engine()
        loaded = engine.ruleset.get(rule_id)
        if loaded is not None and loaded.version == version:
            return PreparedRule(loaded.rule, version, engine)
        with self._lock:
            cached = self._snapshots.get((rule_id, version))
        if cached is None:
            rule = Rule.model_validate(snapshot)
            origin = f"<snapshot of {rule.id} {version}>"
            loaded = LoadedRule(
                rule=rule, file=origin, base=(), version=version, source=SourceMap(origin, [])
            )
            cached = Engine(RuleSet(rules=(loaded,)), settings=self._settings)
            with self._lock:
                if len(self._snapshots) >= SNAPSHOT_CACHE:
                    self._snapshots.clear()
                self._snapshots[(rule_id, version)] = cached
        prepared = cached.ruleset.get(rule_id)
        assert prepared is not None
        return PreparedRule(prepared.rule, version, cached)


def steps_of(rule: Rule) -> list[StepBase]:
    """The rule's steps, typed (the discriminated union is opaque to type checkers)."""
    steps: list[StepBase] = list(rule.steps)
    return steps
