"""What the console's pages read and what its buttons do, over the delivery and polling modules'
public functions (the same ones ``ppw runs``, ``ppw dlq``, ``ppw held`` and ``ppw status`` call).

:class:`Ops` holds the delivery app (state store, history, dead letters, events, timers), how to
send a run message and emit events, and where readiness and the rules' state come from. Built
from a :class:`~worker.process.runtime.Runtime`: the one ``ppw run`` runs (its broker and workers
take the work at once), or one of its own for ``ppw console``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.delivery.app import DeliveryApp
from worker.delivery.history import Position, Run, RunPage, RunQuery
from worker.delivery.replay import replay, replay_all
from worker.delivery.timers import cancel_waiting
from worker.events import Event
from worker.eventstore import EventNotFound
from worker.polling import held
from worker.polling.status import ResourceStatus, humanize_seconds, queue_depths, resource_statuses
from worker.process.health import RulesState, probe
from worker.process.runtime import Runtime
from worker.rules.ruleset import LoadedRule, RuleSet
from worker.settings import Settings

log = logging.getLogger(__name__)

#: Runs on one page of the Runs list.
PAGE_SIZE = 50


@dataclass(frozen=True)
class Readiness:
    """``/readyz`` of the worker as the console sees it: None when it could not be asked."""

    ok: bool | None
    checks: dict[str, dict[str, Any]]
    source: str


@dataclass(frozen=True)
class ChangeRow:
    field: str
    old: Any
    new: Any
    old_known: bool


@dataclass(frozen=True)
class Overview:
    readiness: Readiness
    resources: list[ResourceStatus]
    queues: dict[str, int | None]
    held: int
    dead: int
    waiting: int
    rules: RulesState | None


@dataclass(frozen=True)
class RuleRow:
    """One rule in force, as the Rules page lists it."""

    id: str
    file: str
    location: str
    trigger: str
    mode: str
    enabled: bool
    dry_run: bool
    description: str


@dataclass(frozen=True)
class RuleError:
    """One error of a rule (or file) that did not load, at ``file:line:column``."""

    file: str
    line: int
    column: int
    rule: str | None
    message: str
    hint: str | None
    kept: tuple[str, ...]

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class RulesPage:
    rules: list[RuleRow]
    errors: list[RuleError]
    files: int


@dataclass(frozen=True)
class RuleSource:
    """A rule's own lines of its file (from its first line to the line before the next rule)."""

    row: RuleRow
    first_line: int
    lines: list[str]


def _values(value: Any) -> str:
    return "/".join(str(v) for v in value) if isinstance(value, list) else str(value)


def trigger_summary(loaded: LoadedRule) -> str:
    """A one-line reading of the rule's trigger: ``matters updated, status Open → Closed``."""
    rule = loaded.rule
    if (trigger := rule.record_trigger) is not None:
        parts = [f"{trigger.resource} {'/'.join(trigger.on)}"]
        if trigger.changed:
            parts.append(f"changed {', '.join(trigger.changed)}")
        if trigger.has_from or trigger.to is not None:
            old = _values(trigger.from_) if trigger.has_from else "*"
            new = _values(trigger.to) if trigger.to is not None else "*"
            parts.append(f"{old} → {new}")
        if trigger.for_:
            parts.append(f"for {trigger.for_}")
        if trigger.at:
            when = " ".join(p for p in (trigger.offset, trigger.time) if p)
            parts.append(f"at {trigger.at}" + (f" ({when})" if when else ""))
        return ", ".join(parts)
    if (hook := rule.webhook_trigger) is not None:
        return f"webhook {hook.webhook} (verify {hook.verify})"
    if (timed := rule.schedule_trigger) is not None:
        if timed.schedule:
            text = f"schedule {timed.schedule}"
        else:
            text = f"every {humanize_seconds(timed.every or 0)}"
        if timed.timezone:
            text += f" ({timed.timezone})"
        if timed.query is not None:
            text += f", query {timed.query.resource}"
        return text
    return rule.trigger_kind  # pragma: no cover - every trigger kind is above


def rule_row(loaded: LoadedRule) -> RuleRow:
    rule = loaded.rule
    return RuleRow(
        id=rule.id,
        file=loaded.file,
        location=loaded.location,
        trigger=trigger_summary(loaded),
        mode=rule.mode,
        enabled=rule.enabled,
        dry_run=rule.dry_run,
        description=rule.description,
    )


def rule_source(loaded: LoadedRule) -> RuleSource:
    lines = loaded.source.lines
    first = loaded.position()[0] - 1 if loaded.base else 0
    last = len(lines)
    if loaded.base and isinstance(loaded.base[-1], int):
        following = (*loaded.base[:-1], loaded.base[-1] + 1)
        if following in loaded.source.values:
            last = loaded.source.values[following][0]
    while last > first + 1 and not lines[last - 1].strip():
        last -= 1
    return RuleSource(rule_row(loaded), first + 1, lines[first:last])


def rules_page(ruleset: RuleSet) -> RulesPage:
    errors = [
        RuleError(d.file, d.line, d.column, d.rule or broken.rule, d.message, d.hint, broken.kept)
        for broken in ruleset.broken
        for d in broken.errors
    ]
    return RulesPage([rule_row(r) for r in ruleset.rules], errors, len(ruleset.files))


def probe_readiness(settings: Settings) -> Callable[[], Readiness]:
    """Asks the worker's health server on this host (``PPW_HTTP_PORT``) for ``/readyz``."""
    url = f"http://127.0.0.1:{settings.http_port}/readyz"

    def read() -> Readiness:
        ok, body = probe(url, timeout=2.0)
        try:
            checks = json.loads(body.split(" ", 1)[1] if not ok and body[:3].isdigit() else body)["checks"]
        except (ValueError, KeyError, IndexError, TypeError):
            return Readiness(None, {}, f"{url} did not answer: {body[:200]}")
        return Readiness(ok, checks, url)

    return read


@dataclass
class Ops:
    settings: Settings
    app: DeliveryApp
    #: ``send_run(connection, run_id)``: a replayed run's message
    send_run: Callable[[str, str], None]
    #: ``emit(events)``: a released batch's events, stored and sent to dispatch
    emit: Callable[[list[Event]], None]
    readiness: Callable[[], Readiness]
    rules: Callable[[], RulesState | None] = lambda: None
    queues: Callable[[], dict[str, int | None]] = dict
    #: said after an action when nothing in this process takes the work (a standalone console
    #: beside an embedded ``ppw run``: its sweeper picks queued runs and pending events up)
    pickup_note: str = ""
    resources: Callable[[], list[str]] = field(default=lambda: [])
    #: the rules in force and the broken ones (None when no rules are loaded in this process)
    ruleset: Callable[[], RuleSet | None] = lambda: None

    @property
    def connection(self) -> str:
        return self.settings.connection_id

    @classmethod
    def from_runtime(cls, settings: Settings, runtime: Runtime, *, live: bool) -> Ops:
        """``live``: the runtime's workers run here (``ppw run``), or its broker is shared, so a
        message sent is taken; otherwise (a memory broker of a standalone console) nothing is
        sent and ``ppw run`` picks the work up from the state store."""
        registry = runtime.registry
        sends = live or not runtime.embedded
        names = runtime.actors.queues.all()

        def rules() -> RulesState | None:
            if registry is None:
                return None
            ruleset = registry.ruleset
            return RulesState(len(ruleset), [b.summary() for b in ruleset.broken], len(ruleset.files))

        def watched() -> list[str]:
            from worker.rules.engine import rules_by_resource

            return sorted(rules_by_resource(registry.engine)) if registry is not None else []

        return cls(
            settings=settings,
            app=runtime.app,
            send_run=runtime.actors.send_run if sends else (lambda _c, _r: None),
            emit=runtime.actors.emit if sends else runtime.app.events.save_many,
            readiness=probe_readiness(settings),
            rules=rules,
            queues=(lambda: queue_depths(runtime.broker, names)) if sends else dict,
            pickup_note=""
            if sends
            else "ppw run picks it up from the state store within a minute (embedded broker)",
            resources=watched,
            ruleset=lambda: registry.ruleset if registry is not None else None,
        )

    # reading ---------------------------------------------------------------------------------

    def overview(self) -> Overview:
        store, conn = self.app.store, self.connection
        try:
            watched = self.resources()
        except Exception:  # a broken rules directory must not hide the overview
            watched = []
        return Overview(
            readiness=self.readiness(),
            resources=resource_statuses(store, conn, watched),
            queues=self.queues(),
            held=len(held.list_held(store, conn)),
            dead=self.app.dead_letters.count(conn),
            waiting=self.app.timers.pending(conn),
            rules=self.rules(),
        )

    def runs(
        self,
        query: RunQuery | None = None,
        *,
        after: Position | None = None,
        before: Position | None = None,
        size: int = PAGE_SIZE,
    ) -> RunPage:
        """One page, newest first, from the history's indexes (never a scan of every run)."""
        return self.app.history.page(self.connection, query, after=after, before=before, size=size)

    def run(self, run_id: str) -> Run:
        return self.app.history.resolve(self.connection, run_id)

    def changes(self, run: Run) -> list[ChangeRow] | None:
        """The event's changes, old → new, from the event store; None once the event is gone."""
        try:
            event = self.app.events.load(run.connection, run.event_id)
        except EventNotFound:
            return None
        return [ChangeRow(name, c.old, c.new, c.old_known) for name, c in event.changes.items()]

    def dead_letters(self, rule: str | None = None) -> list[Run]:
        return self.app.dead_letters.entries(self.connection, rule=rule)

    def held_batches(self) -> list[held.HeldBatch]:
        return held.list_held(self.app.store, self.connection)

    def rules_page(self) -> RulesPage | None:
        ruleset = self.ruleset()
        return rules_page(ruleset) if ruleset is not None else None

    def rule_source(self, rule_id: str) -> RuleSource | None:
        ruleset = self.ruleset()
        found = next((r for r in ruleset.rules if r.id == rule_id), None) if ruleset is not None else None
        return rule_source(found) if found is not None else None

    # acting ----------------------------------------------------------------------------------

    def replay(self, run_id: str, *, current_rule: bool = False) -> Run:
        """Requeue a dead run from its failed step, with the rule version it started with or (with
        ``current_rule``) the rule as loaded now: ``ppw dlq replay [--with-current-rule]``."""
        return replay(self.app, self.connection, run_id, self.send_run, with_current_rule=current_rule)

    def replay_all(
        self,
        rule: str | None = None,
        *,
        current_rule: bool = False,
        each: Callable[[str], None] = lambda _run_id: None,
    ) -> list[Run]:
        """Every dead run (of ``rule``), oldest first: ``ppw dlq replay --all``. ``each(run_id)`` is
        called as each run is requeued, so the caller can account for every replay even when a
        later one fails (the runs before it stay replayed)."""

        def send(connection: str, run_id: str) -> None:
            self.send_run(connection, run_id)
            each(run_id)

        return replay_all(self.app, self.connection, send, with_current_rule=current_rule, rule=rule)

    def cancel(self, run_id: str, who: str) -> Run:
        run = self.app.history.resolve(self.connection, run_id)
        if run.status != "waiting":
            raise ValueError(
                f"run {run.id} is {run.status}, not waiting: only a waiting run can be cancelled"
            )
        return cancel_waiting(
            self.app.history,
            self.app.store,
            self.connection,
            run.id,
            f"cancelled by {who} (console)",
            lease_ttl=self.app.options.run_lease,
        )

    def release(self, batch_id: str) -> int:
        return held.release(self.app.store, self.connection, batch_id, self.emit)

    def discard(self, batch_id: str) -> int:
        return held.discard(self.app.store, self.connection, batch_id)
