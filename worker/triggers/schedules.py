"""Scheduled triggers: each slot of each schedule rule runs once, across every scheduler replica.

The scheduler that holds the poll scheduler's leader lease (:mod:`worker.polling.scheduler`) looks
at the clock every ``PPW_SCHEDULE_TICK`` seconds. For each enabled schedule rule it keeps, in the
state store, the last slot it handled (the rule's *schedule cursor*):

* **first sight** of a rule stores the current time and fires nothing (no surprise backfill: a new
  daily digest does not go out the moment it is deployed);
* a slot after the cursor is **due**. If several are due (no scheduler was running) only the
  latest runs, and only if it is at most the grace window late (``PPW_SCHEDULE_GRACE``, or the
  rule's ``grace:``); the others are logged as missed. Either way the cursor moves to it;
* firing a slot fetches the query's records (every page), stores the event and sends its dispatch
  message, and only then advances the cursor. A scheduler that dies in between leaves the cursor
  behind; the next leader fires the same slot again, with the same event id (a hash of rule and
  slot time), re-using the event already stored, and dispatch runs the rule once.

A query that fails (PracticePanther down) leaves the cursor where it was: the slot is tried again
on the next tick, for as long as the grace window allows.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from worker.events import Event
from worker.eventstore import EventNotFound, EventStore
from worker.rules.engine import Engine
from worker.rules.ruleset import LoadedRule
from worker.rules.templating import RenderError
from worker.settings import Settings
from worker.state.base import StateError, StateStore, key
from worker.triggers.events import schedule_event, utc_text
from worker.triggers.options import TriggerOptions
from worker.triggers.query import Lister, render_query, run_query
from worker.triggers.slots import describe, latest_slot, slots_between, zone_of

log = logging.getLogger(__name__)

Emit = Callable[[list[Event]], None]
EngineSource = Callable[[], Engine]
Clock = Callable[[], dt.datetime]
ClientSource = Callable[[], Lister]

Status = Literal["primed", "fired", "missed", "failed"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def cursor_key(connection: str, rule_id: str) -> str:
    return key(connection, "schedule-cursor", rule_id)


@dataclass(frozen=True)
class Outcome:
    """What one tick did with one rule."""

    rule_id: str
    status: Status
    slot: dt.datetime | None = None
    event_id: str | None = None
    detail: str = ""


class ScheduleRunner:
    """Fires the slots of schedule rules while ``leader()`` says this process leads.

    Parameters
    ----------
    settings:
        Default time zone, connection id, env allow-list for query templates.
    store:
        The schedule cursors (shared by every replica: Redis in deployment).
    emit:
        Stores events and sends their dispatch messages (``Actors.emit``).
    engine:
        The rules in force now.
    client:
        The PracticePanther client for queries (called only when a query runs).
    leader:
        Whether this process holds the scheduler lease now (``PollScheduler.is_leader``).
    clock:
        The current time; tests pass a faster one.
    """

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        emit: Emit,
        engine: EngineSource,
        client: ClientSource,
        leader: Callable[[], bool],
        *,
        options: TriggerOptions | None = None,
        clock: Clock = utc_now,
        events: EventStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.emit = emit
        self.engine = engine
        self.client = client
        self.leader = leader
        self.options = options or TriggerOptions.from_settings(settings)
        self.clock = clock
        self.events = events or EventStore(store, ttl=0.0)  # only read here
        self.connection = settings.connection_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> ScheduleRunner:
        if self._thread is not None:
            raise RuntimeError("ScheduleRunner already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ppw-schedules", daemon=True)
        self._thread.start()
        log.info(
            "schedule triggers: checking every %gs while this scheduler leads", self.options.schedule_tick
        )
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the tick in progress (a running query finishes; its slot is then fired)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ScheduleRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("schedule tick failed; trying again in %gs", self.options.schedule_tick)
            self._stop.wait(self.options.schedule_tick)

    # one look at the clock ---------------------------------------------------------------------
    def tick(self) -> list[Outcome]:
        """Fire whatever is due now; nothing unless this process leads."""
        if not self.leader():
            return []
        with self._lock:
            outcomes: list[Outcome] = []
            for loaded in self.engine().schedules():
                if self._stop.is_set() or not self.leader():
                    break
                try:
                    outcome = self._rule(loaded)
                except StateError as exc:
                    log.warning("schedule %s: state store unavailable: %s", loaded.id, exc)
                    continue
                if outcome is not None:
                    outcomes.append(outcome)
            return outcomes

    def _rule(self, loaded: LoadedRule) -> Outcome | None:
        rule = loaded.rule
        trigger = rule.schedule_trigger
        assert trigger is not None
        zone = zone_of(trigger, self.settings.timezone)
        now = self.clock()
        cursor = cursor_key(self.connection, rule.id)
        last_text = self.store.get(cursor)
        if last_text is None:
            self.store.set(cursor, utc_text(now))
            log.info(
                "schedule %s (%s): first seen; the first slot after now will run",
                rule.id,
                describe(trigger, self.settings.timezone),
            )
            return Outcome(rule.id, "primed", now)
        last = _parse(last_text)
        slot = latest_slot(trigger, now, zone)
        if slot <= last:
            return None
        grace = trigger.grace if trigger.grace is not None else self.options.schedule_grace
        late = (now - slot).total_seconds()
        if late > grace:
            self._advance(loaded, last, slot, zone, run=False)
            log.warning(
                "schedule %s: slot %s missed by %.0fs, more than its grace of %gs; not run",
                rule.id,
                utc_text(slot),
                late,
                grace,
            )
            return Outcome(rule.id, "missed", slot, detail=f"{late:.0f}s late")
        try:
            event = self.event_for(loaded, slot)
        except RenderError as exc:  # the rule needs fixing: trying again cannot help
            self._advance(loaded, last, slot, zone, run=False)
            log.error(
                "schedule %s: slot %s not run, its query does not render: %s", rule.id, utc_text(slot), exc
            )
            return Outcome(rule.id, "missed", slot, detail=str(exc))
        except Exception as exc:
            log.warning(
                "schedule %s: slot %s not fired yet, its query failed (%s); trying again",
                rule.id,
                utc_text(slot),
                exc,
            )
            return Outcome(rule.id, "failed", slot, detail=str(exc))
        if not self.leader():  # lost the lease while querying: the new leader fires it
            return None
        self.emit([event])
        self._advance(loaded, last, slot, zone, run=True)
        _count_event(event)
        log.info("schedule %s: slot %s fired as event %s", rule.id, utc_text(slot), event.id)
        return Outcome(rule.id, "fired", slot, event.id)

    def _advance(
        self, loaded: LoadedRule, last: dt.datetime, slot: dt.datetime, zone: ZoneInfo, *, run: bool
    ) -> None:
        """Move the rule's cursor to ``slot``, reporting the slots passed over on the way."""
        trigger = loaded.rule.schedule_trigger
        assert trigger is not None
        self.store.set(cursor_key(self.connection, loaded.id), utc_text(slot))
        earlier = sum(1 for s in slots_between(trigger, last, slot, zone, cap=10_000) if s < slot)
        missed = earlier + (0 if run else 1)
        if earlier:
            log.warning(
                "schedule %s: %d slot(s) between %s and %s passed while no scheduler ran; "
                "only the latest was considered",
                loaded.id,
                earlier,
                utc_text(last),
                utc_text(slot),
            )
        if missed:
            _count_missed(loaded.id, missed)

    def event_for(self, loaded: LoadedRule, slot: dt.datetime) -> Event:
        """The slot's event: the one already stored if an earlier leader fired it, else a new one
        with the query's results."""
        rule = loaded.rule
        trigger = rule.schedule_trigger
        assert trigger is not None
        zone = zone_of(trigger, self.settings.timezone)
        bare = schedule_event(rule.id, slot, timezone=zone.key, connection=self.connection)
        try:
            return self.events.load(self.connection, bare.id)
        except EventNotFound:
            pass
        return build_slot_event(
            loaded, slot, self.settings, self.client if trigger.query is not None else None, self.options
        )


def build_slot_event(
    loaded: LoadedRule,
    slot: dt.datetime,
    settings: Settings,
    client: ClientSource | None,
    options: TriggerOptions,
) -> Event:
    """The event of one slot of a schedule rule, running its query (if any) through ``client``."""
    rule = loaded.rule
    trigger = rule.schedule_trigger
    assert trigger is not None
    zone = zone_of(trigger, settings.timezone)
    if trigger.query is None or client is None:
        return schedule_event(rule.id, slot, timezone=zone.key, connection=settings.connection_id)
    rendered = render_query(
        trigger.query, slot.astimezone(zone), settings, rule_id=rule.id, limit=options.schedule_query_limit
    )
    result = run_query(rendered, client())
    if result.truncated:
        log.warning(
            "schedule %s: the query found more than %d %s; results hold the first %d",
            rule.id,
            rendered.limit,
            rendered.resource,
            rendered.limit,
        )
    return schedule_event(
        rule.id,
        slot,
        timezone=zone.key,
        resource=rendered.resource,
        results=result.records,
        truncated=result.truncated,
        connection=settings.connection_id,
    )


def _parse(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _count_event(event: Event) -> None:
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.EVENTS.labels(event.type, event.resource).inc()


def _count_missed(rule_id: str, count: int) -> None:
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.RULE_RUNS.labels(rule_id, "missed").inc(count)
