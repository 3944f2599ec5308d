"""Dispatch: one event in, one run per matching rule out.

- **Dedupe.** The event id is deterministic, so an overlapping poll or a redelivered message brings
  the same id again; a marker per event id (kept for the retention period) makes the second
  dispatch a no-op. The marker says ``started`` until every run message is sent and ``done``
  after, so a dispatch that crashed half way is finished by its retry, and the run records
  (their id is derived from event and rule) keep each rule to one run.
- **Loop guard.** Events caused by ppw's own writes (``origin: ppw``) fire only rules with
  ``allow_own_changes: true``.
- **Circuit breaker.** More fires of one rule for one record than the rule's ``rate_limit``
  (default ``PPW_RULE_BURST_PER_MINUTE`` per minute) pause that rule for that record; the run is
  recorded with status ``paused`` and the reason, and a warning is logged once per trip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from worker.delivery.app import DeliveryApp
from worker.delivery.eventstore import EventNotFound
from worker.delivery.history import EventSummary, Run, run_id_for
from worker.delivery.rulebook import Matched
from worker.events import Event
from worker.state.base import key

log = logging.getLogger(__name__)

SendRun = Callable[[str, str], None]


@dataclass
class Dispatched:
    """What one dispatch did, for logs, tests and the demo's live view."""

    event_id: str
    duplicate: bool = False
    runs: list[str] = field(default_factory=list)
    own_change_skipped: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)


class Dispatcher:
    def __init__(self, app: DeliveryApp) -> None:
        self.app = app

    def _marker(self, connection: str, event_id: str) -> str:
        return key(connection, "dispatched", event_id)

    def dispatch(self, connection: str, event_id: str, send_run: SendRun) -> Dispatched:
        """Match the stored event ``event_id`` and send one run message per matching rule."""
        app = self.app
        marker = self._marker(connection, event_id)
        if app.store.get(marker) == "done":
            log.info("event %s was dispatched before; ignoring the duplicate", event_id)
            app.events.dispatched(connection, event_id)
            return Dispatched(event_id, duplicate=True)
        try:
            event = app.events.load(connection, event_id)
        except EventNotFound:
            log.warning("event %s is not in the state store (expired?); nothing to dispatch", event_id)
            app.events.dispatched(connection, event_id)
            return Dispatched(event_id)
        app.store.set_if_absent(marker, "started", ttl=app.options.retention)
        result = Dispatched(event_id)
        for matched in app.rules.match(event):
            self._one(event, matched, result, send_run)
        app.store.set(marker, "done", ttl=app.options.retention)
        app.events.dispatched(connection, event_id)
        return result

    def _one(self, event: Event, matched: Matched, result: Dispatched, send_run: SendRun) -> None:
        app, rule = self.app, matched.rule
        if event.origin == "ppw" and not rule.allow_own_changes:
            log.debug("rule %s skipped: the change was made by ppw (allow_own_changes is off)", rule.id)
            result.own_change_skipped.append(rule.id)
            return
        run = Run(
            id=run_id_for(event.id, rule.id),
            connection=event.connection,
            event_id=event.id,
            event=EventSummary(
                type=event.type,
                resource=event.resource,
                record_id=event.record_id,
                revision=event.revision,
                origin=event.origin,
            ),
            rule_id=rule.id,
            rule_version=matched.version,
            rule_snapshot=app.rules.snapshot(rule),
            mode=rule.mode,
            conditions=matched.conditions,
            queued_at=_timestamp(event.detected_at),
            dry_run=rule.dry_run,
        )
        existing = app.history.find(event.connection, run.id)
        if existing is not None:
            if existing.status == "queued":  # a crashed dispatch made it but may not have sent it
                send_run(event.connection, run.id)
                result.runs.append(run.id)
            return
        limit, period = (
            (rule.rate_limit.max, rule.rate_limit.period_seconds) if rule.rate_limit else (None, 60)
        )
        verdict = app.breaker(limit, period).check(event.connection, rule.id, event.resource, event.record_id)
        if not verdict.allowed:
            paused_until = datetime.fromtimestamp(verdict.paused_until or 0, UTC).isoformat(
                timespec="seconds"
            )
            run = run.model_copy(
                update={
                    "status": "paused",
                    "reason": f"circuit breaker: rule {rule.id} fired too often for {event.resource} "
                    f"{event.record_id}; paused for this record until {paused_until}",
                }
            )
            if app.history.create(run):
                _count_paused(rule.id)
            if verdict.tripped_now:
                log.warning("%s", run.reason)
            result.paused.append(rule.id)
            return
        if app.history.create(run):
            send_run(event.connection, run.id)
            result.runs.append(run.id)


def _timestamp(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _count_paused(rule_id: str) -> None:
    from worker.observability import metrics

    metrics.RULE_RUNS.labels(rule_id, "paused").inc()
