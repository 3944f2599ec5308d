"""Dispatch: events in, one run per matching rule out.

A dispatch message names a batch of event ids (a poll emits its events a chunk at a time), and
the state-store work is done for the batch as a whole: a handful of round trips per message, not
a handful per event.

- **Dedupe.** The event id is deterministic, so an overlapping poll or a redelivered message brings
  the same id again; a marker per event id (kept for the retention period) makes the second
  dispatch a no-op. The marker says ``started`` until every run message is sent and ``done``
  after, so a dispatch that crashed half way is finished by its retry, and the run records
  (their id is derived from event and rule) keep each rule to one run.
- **Loop guard.** Events caused by ppw's own writes (``origin: ppw``) fire only rules with
  ``allow_own_changes: true``.
- **Detailed records.** When a rule of the event's resource says ``fetch: true``, the record is
  read by id first (PracticePanther's detailed form, with fields lists lack) and the event stored
  with it, so conditions and steps see it.
- **Timed triggers.** Each event sets, moves or removes the alarms of the date-relative and
  "for" rules of its resource (:mod:`~worker.delivery.alarms`), in the closing write. A ``due``
  event (an alarm rang) is for one rule: the record is read again first, and nothing fires when
  it is gone or its date moved (the alarm was moved with it).
- **Circuit breaker.** More fires of one rule for one record than the rule's ``rate_limit``
  (default ``PPW_RULE_BURST_PER_MINUTE`` per minute) pause that rule for that record; the run is
  recorded with status ``paused`` and the reason, and a warning is logged once per trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from worker.delivery.alarms import still_due
from worker.delivery.app import DeliveryApp
from worker.delivery.breaker import Verdict
from worker.delivery.history import EventSummary, Run, run_id_for
from worker.delivery.rulebook import Matched
from worker.events import Event
from worker.eventstore import EventStore
from worker.practicepanther.errors import NotFound
from worker.state.base import key

log = logging.getLogger(__name__)

SendRuns = Callable[[str, list[str]], None]


@dataclass
class Dispatched:
    """What one dispatch did, for logs, tests and the demo's live view."""

    event_id: str
    duplicate: bool = False
    runs: list[str] = field(default_factory=list)
    own_change_skipped: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    """A run a matched rule asks for, before the breaker and the run history have had their say."""

    matched: Matched
    run: Run
    result: Dispatched


class Dispatcher:
    def __init__(self, app: DeliveryApp) -> None:
        self.app = app

    def _marker(self, connection: str, event_id: str) -> str:
        return key(connection, "dispatched", event_id)

    def dispatch_many(
        self, connection: str, event_ids: Sequence[str], send_runs: SendRuns
    ) -> list[Dispatched]:
        """Match the stored events ``event_ids`` and send the runs of the rules they match.

        The state-store work is done for the whole batch at once (markers and events read
        together, runs created together, one closing write), so its cost hardly grows with the
        number of events a poll found.
        """
        app = self.app
        ids = list(dict.fromkeys(event_ids))
        markers = [self._marker(connection, event_id) for event_id in ids]
        raws = app.store.get_many([*markers, *(app.events.key(connection, e) for e in ids)])
        results = {event_id: Dispatched(event_id) for event_id in ids}
        settled: list[str] = []  # dispatched before, or gone: nothing more to do
        events: list[Event] = []
        for event_id, marker, raw in zip(ids, raws[: len(ids)], raws[len(ids) :], strict=True):
            if marker == "done":
                log.info("event %s was dispatched before; ignoring the duplicate", event_id)
                results[event_id].duplicate = True
                settled.append(event_id)
            elif raw is None:
                log.warning("event %s is not in the state store (expired?); nothing to dispatch", event_id)
                settled.append(event_id)
            else:
                events.append(EventStore.parse(event_id, raw))
        if events:
            app.store.set_many_if_absent(
                {self._marker(connection, e.id): "started" for e in events}, ttl=app.options.retention
            )
            fetching = {r for r in {e.resource for e in events} if app.rules.fetches(r)}  # once a batch
            events = [
                self._fresh(e) if e.type == "due" else self._detailed(e) if e.resource in fetching else e
                for e in events
            ]
            candidates = [c for event in events for c in self._candidates(event, results[event.id])]
            send_runs(connection, self._create_runs(connection, candidates))
        now = datetime.now(UTC).timestamp()
        timed = {resource: app.rules.timed(resource) for resource in {e.resource for e in events}}
        with app.store.batch() as batch:
            for event in events:
                batch.set(self._marker(connection, event.id), "done", ttl=app.options.retention)
                app.alarms.plan(batch, event, timed[event.resource], now)
            app.events.dispatched(connection, *settled, *(e.id for e in events), batch=batch)
        return [results[event_id] for event_id in ids]

    def _fresh(self, event: Event) -> Event:
        """A ``due`` event with the record as PracticePanther holds it now (stored for the run);
        unchanged but firing nothing when the record is gone or its date moved."""
        app = self.app
        current = app.rules.current(event.rule or "")
        if current is None:
            log.info("due event %s: rule %s is gone; nothing fires", event.id, event.rule)
            return event.model_copy(update={"rule": None})
        try:
            record = app.services.pp(event.connection).get(event.resource, event.record_id)
        except NotFound:
            log.info("due event %s: %s %s is gone; nothing fires", event.id, event.resource, event.record_id)
            return event.model_copy(update={"rule": None})
        if not still_due(app.alarms, current.rule, event, record):
            log.info("due event %s: the date moved since the alarm was set; nothing fires", event.id)
            return event.model_copy(update={"rule": None})
        fresh = event.model_copy(update={"record": record})
        app.events.save(fresh)
        return fresh

    def _detailed(self, event: Event) -> Event:
        """The event with the record's detailed form (a GET by id: fields lists lack), for a
        resource a rule of which says ``fetch: true``; stored so the runs see it too. A record
        gone meanwhile keeps the listed form (the rules still see the change)."""
        app = self.app
        if event.type not in ("created", "updated"):
            return event
        try:
            detail = app.services.pp(event.connection).get(event.resource, event.record_id)
        except NotFound:
            log.info("%s %s is gone: its rules see the listed record", event.resource, event.record_id)
            return event
        detailed = event.model_copy(update={"record": {**event.record, **detail}})
        app.events.save(detailed)
        return detailed

    def _candidates(self, event: Event, result: Dispatched) -> list[_Candidate]:
        """The runs ``event`` asks for: one per matching rule, but for ppw's own changes (loop guard)."""
        found = []
        for matched in self.app.rules.match(event):
            rule = matched.rule
            if event.origin == "ppw" and not rule.allow_own_changes:
                log.debug("rule %s skipped: the change was made by ppw (allow_own_changes is off)", rule.id)
                result.own_change_skipped.append(rule.id)
                continue
            found.append(_Candidate(matched, self._run(event, matched), result))
        return found

    def _run(self, event: Event, matched: Matched) -> Run:
        rule = matched.rule
        return Run(
            id=run_id_for(event.id, rule.id),
            connection=event.connection,
            event_id=event.id,
            event=EventSummary(
                type=event.type,
                resource=event.resource,
                record_id=event.record_id,
                revision=event.revision,
                origin=event.origin,
                changed={name: change.old_known for name, change in event.changes.items()},
            ),
            rule_id=rule.id,
            rule_version=matched.version,
            rule_snapshot=self.app.rules.snapshot(matched),
            mode=rule.mode,
            conditions=matched.conditions,
            queued_at=_timestamp(event.detected_at),
            dry_run=rule.dry_run,
        )

    def _create_runs(self, connection: str, candidates: list[_Candidate]) -> list[str]:
        """Create the candidates' runs (or find those an earlier, crashed dispatch made); ids to send."""
        app = self.app
        if not candidates:
            return []
        existing = app.store.get_many([app.history.key(connection, c.run.id) for c in candidates])
        send: list[str] = []
        fresh: list[_Candidate] = []
        for candidate, raw in zip(candidates, existing, strict=True):
            if raw is None:
                fresh.append(candidate)
            elif Run.model_validate_json(raw).status == "queued":  # made, but maybe never sent
                send.append(candidate.run.id)
                candidate.result.runs.append(candidate.run.id)
        verdicts = self._breaker_verdicts(connection, fresh)
        runs = [self._paused(c, v) if not v.allowed else c.run for c, v in zip(fresh, verdicts, strict=True)]
        created = app.history.create_many(runs)
        for candidate, verdict, run in zip(fresh, verdicts, runs, strict=True):
            if verdict.allowed:
                if run.id in created:
                    send.append(run.id)
                    candidate.result.runs.append(run.id)
                continue
            if run.id in created:
                _count_paused(run.rule_id)
                if verdict.tripped_now:
                    log.warning("%s", run.reason)
            candidate.result.paused.append(run.rule_id)
        return send

    def _breaker_verdicts(self, connection: str, candidates: list[_Candidate]) -> list[Verdict]:
        """One breaker verdict per candidate, asked of each rule's own limit in one go per limit."""
        verdicts: list[Verdict | None] = [None] * len(candidates)
        by_limit: dict[tuple[int | None, float], list[int]] = {}
        for index, candidate in enumerate(candidates):
            rate = candidate.matched.rule.rate_limit
            by_limit.setdefault((rate.max, rate.period_seconds) if rate else (None, 60), []).append(index)
        for (limit, period), indexes in by_limit.items():
            fires = [(candidates[i].run.rule_id, *_record(candidates[i].run)) for i in indexes]
            checked = self.app.breaker(limit, period).check_many(connection, fires)
            for index, verdict in zip(indexes, checked, strict=True):
                verdicts[index] = verdict
        return [v for v in verdicts if v is not None]

    @staticmethod
    def _paused(candidate: _Candidate, verdict: Verdict) -> Run:
        run = candidate.run
        paused_until = datetime.fromtimestamp(verdict.paused_until or 0, UTC).isoformat(timespec="seconds")
        return run.model_copy(
            update={
                "status": "paused",
                "reason": f"circuit breaker: rule {run.rule_id} fired too often for {run.event.resource} "
                f"{run.event.record_id}; paused for this record until {paused_until}",
            }
        )


def _record(run: Run) -> tuple[str, str]:
    return run.event.resource, run.event.record_id


def _timestamp(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _count_paused(rule_id: str) -> None:
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.RULE_RUNS.labels(rule_id, "paused").inc()
