"""Running one rule on one event: its steps in order, each at most once.

A run message names a run id only. The runner:

1. loads the run record (rule snapshot, event id) and stops if it already finished;
2. takes the run's lease, so a duplicate message or a second worker cannot run it concurrently;
   a keeper thread renews it while the run works (however long a step takes), so a worker killed
   mid-run loses it within ``run_lease`` seconds and another worker resumes the run;
3. honours the rule's ``mode`` for this record: ``parallel`` runs at once, ``queued`` waits for
   earlier runs of the same rule for the same record (in detection order), ``single`` skips the
   run while another one of the same rule is executing or waiting for the record, ``restart``
   cancels the waiting one and goes on;
4. walks the steps: a step the ledger shows finished is not run again (its recorded output feeds
   later templates); a step whose ``if:`` is false is recorded as skipped; otherwise the step is
   rendered, recorded as started, executed, and recorded as done;
5. on failure: a transient error schedules another attempt with exponential backoff and jitter
   (``Retry-After`` honoured) until ``max_attempts``; a permanent error, or the last attempt,
   puts the run in the dead-letter store with the reason and the failed step;
6. a step that waits (``wait``) stores the run as ``waiting`` with its wake time in the timer
   index (:mod:`~worker.delivery.timers`) and ends the message; the finished steps' ledger
   entries and the event are kept until the wait is over plus the retention. Woken, the run
   walks its steps again: the finished ones are reused, the wait step is given the moment it
   waited for, and a record it read again is the ``record`` of the steps after it. A run whose
   rule was deleted or disabled meanwhile is cancelled by the leader when the rules reload
   (:class:`~worker.delivery.alarms.AlarmPump`), or at the latest when it wakes.

The rule definition used is the snapshot stored at dispatch, so a retry after the rule file was
edited still runs the steps the first attempt started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from worker.actions.base import StepContext, step_type
from worker.actions.errors import CancelRun, PermanentStepError, StopRun, WaitUntil
from worker.delivery.app import DeliveryApp
from worker.delivery.carry import Carry
from worker.delivery.failures import Failure, backoff_seconds, classify
from worker.delivery.history import Run, StepTrace, queue_key, run_lease_key
from worker.delivery.journal import Journal, trace
from worker.delivery.ledger import LedgerEntry, RunKey
from worker.delivery.rulebook import PreparedRule, steps_of
from worker.delivery.timers import RunBusy, cancel_waiting, end_waiting
from worker.events import Event
from worker.eventstore import EventNotFound
from worker.observability import log_context
from worker.rules.model import Rule, StepBase
from worker.state.base import StateError, Turn, key
from worker.state.locks import Lease, keep_alive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery of a run message.

    ``requeue_after`` (seconds) asks the caller to deliver the run message again later: a retry
    after a transient failure, a queued run waiting for its turn, a run another worker holds.
    """

    status: str
    requeue_after: float | None = None
    run: Run | None = None
    reason: str | None = None


@dataclass
class Batch:
    """What became of one run message: an outcome per run dealt with, and the runs handed back
    unstarted because the message's time budget was spent."""

    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)
    handed_back: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _StepAt:
    """Which step of the rule: its position, its definition and its ledger key."""

    index: int
    step: StepBase
    sid: str


@dataclass(frozen=True)
class _Loaded:
    rule: PreparedRule
    event: Event
    entries: dict[str, LedgerEntry]


def step_ids(rule: Rule) -> list[str]:
    """Ledger keys of the rule's steps: the step's ``id``, else its position (``step1`` ...)."""
    return [step.id or f"step{index + 1}" for index, step in enumerate(steps_of(rule))]


class Runner:
    def __init__(self, app: DeliveryApp) -> None:
        self.app = app
        self._unreleased: list[Lease] = []
        self._unreleased_lock = threading.Lock()

    def release_leftover_leases(self) -> int:
        """Release run leases this process could not release when a run failed with the state store
        down; until then they block the sweeper from re-sending those runs. Returns how many."""
        with self._unreleased_lock:
            pending, self._unreleased = self._unreleased, []
        released, kept = 0, []
        for lease in pending:
            try:
                lease.release()
                released += 1
            except StateError:
                kept.append(lease)
        if kept:
            with self._unreleased_lock:
                self._unreleased.extend(kept)
        return released

    # entry points ---------------------------------------------------------------------------
    def run(self, connection: str, run_id: str) -> Outcome:
        """Deliver one run (a retry, ``ppw dlq replay``, a test)."""
        [(_, outcome)] = self.run_many(connection, [run_id]).outcomes
        return outcome

    def run_many(
        self,
        connection: str,
        run_ids: Sequence[str],
        *,
        budget: float | None = None,
        clear: Sequence[str] = (),
    ) -> Batch:
        """Deliver the runs of one message, in order.

        Every run is claimed and its record read in one round trip, the events and ledger entries
        of those to execute in a second, and the ``queued`` runs' turns taken in a third
        (:meth:`_take_turns`), so a message of ten runs costs three round trips before its first
        step, not thirty. A run's ending rides with the next run's first write (:class:`Carry`). With
        ``budget`` (seconds), the runs not started once it is spent (slow steps) are released and
        handed back for other workers. ``clear``: keys deleted with the message's first write (the
        markers saying its runs are on their way).
        """
        app = self.app
        ids = list(dict.fromkeys(run_ids))
        leases = [Lease(app.store, run_lease_key(connection, r), ttl=app.options.run_lease) for r in ids]
        records = Lease.acquire_all_and_read(leases, [app.history.key(connection, r) for r in ids])
        batch = Batch()
        carry = Carry()
        if clear:
            carry.pending.delete(*clear)
        started = time.monotonic()
        try:
            ready = self._ready(connection, ids, leases, records, batch)
            loads = self._load(ready)
            turns = self._take_turns(ready, loads)
            taken = [turn.lease for turn in turns.values() if turn.taken]
            leases += taken  # given back at the end if still held
            with ExitStack() as kept:
                for kept_lease in [lease for _run, lease in ready] + taken:
                    kept.enter_context(keep_alive(kept_lease))
                for position, ((run, lease), loaded) in enumerate(zip(ready, loads, strict=True)):
                    if budget is not None and position and time.monotonic() - started > budget:
                        batch.handed_back = [r.id for r, _ in ready[position:]]
                        break
                    with log_context(
                        connection=connection,
                        run_id=run.id,
                        rule_id=run.rule_id,
                        event_id=run.event_id,
                        resource=run.event.resource,
                    ):
                        outcome = self._run_loaded(run, lease, loaded, carry, turns.get(run.id))
                        batch.outcomes.append((run.id, outcome))
        finally:
            try:
                carry.flush(app.store)
            finally:
                self._release(leases)  # those the runs' last writes did not give back
        return batch

    def _ready(
        self,
        connection: str,
        ids: list[str],
        leases: list[Lease],
        records: list[str | None],
        batch: Batch,
    ) -> list[tuple[Run, Lease]]:
        """The claimed runs that still have work to do; the others' outcomes go into ``batch``."""
        ready = []
        for run_id, lease, raw in zip(ids, leases, records, strict=True):
            run = self.app.history.parse(raw)  # under the lease no one else writes it
            if not lease.held:
                batch.outcomes.append((run_id, self._busy(run_id, run, lease)))
                continue
            if run is None:
                log.warning("run %s is gone (older than the retention period?); nothing to do", run_id)
                batch.outcomes.append((run_id, Outcome("missing")))
            elif run.terminal:
                batch.outcomes.append((run_id, Outcome("already", run=run)))
            else:
                ready.append((run, lease))
        return ready

    def _load(self, ready: list[tuple[Run, Lease]]) -> list[_Loaded | Exception]:
        """Each run's rule, event and ledger entries (one read for all), or why it cannot run."""
        app = self.app
        plans: list[tuple[PreparedRule, list[str], int] | Exception] = []
        keys: list[str] = []
        for run, _lease in ready:
            try:
                rule = app.rules.prepare(run.rule_snapshot, run.rule_version)
            except (PydanticValidationError, ValueError) as exc:
                plans.append(exc)
                continue
            ids = step_ids(rule.rule)
            plans.append((rule, ids, len(keys)))
            keys.append(app.events.key(run.connection, run.event_id))
            keys += app.ledger.keys(RunKey.of(run), ids)
        raws = app.store.get_many(keys) if keys else []
        loaded: list[_Loaded | Exception] = []
        for (run, _lease), plan in zip(ready, plans, strict=True):
            if isinstance(plan, Exception):
                loaded.append(plan)
                continue
            rule, ids, at = plan
            try:
                event = app.events.parse(run.event_id, raws[at])
            except (EventNotFound, PydanticValidationError) as exc:
                loaded.append(exc)
                continue
            loaded.append(_Loaded(rule, event, app.ledger.parse(ids, raws[at + 1 : at + 1 + len(ids)])))
        return loaded

    def _take_turns(
        self, ready: list[tuple[Run, Lease]], loads: list[_Loaded | Exception]
    ) -> dict[str, _Turn]:
        """Take the record turns of the message's ``queued`` runs in one round trip, before the
        first of them runs, instead of one round trip per run.

        Only a record's first run in the message asks early: a later run of the same rule for the
        same record must wait for the earlier one's ending (:meth:`_claim_record`). A turn taken
        early is held (and renewed) while the runs before it execute; one not taken is looked
        into when its run comes (:meth:`_take_turn`)."""
        early: dict[str, tuple[Run, Lease]] = {}
        for (run, _lease), loaded in zip(ready, loads, strict=True):
            if run.mode == "queued" and not isinstance(loaded, Exception):
                record_lease = self._record_lease(run)
                early.setdefault(record_lease.key, (run, record_lease))
        if not early:
            return {}
        answers = self.app.store.take_turns([_turn_of(run, lease) for run, lease in early.values()])
        turns = {}
        for (run, record_lease), (head, taken) in zip(early.values(), answers, strict=True):
            record_lease.held = taken
            turns[run.id] = _Turn(record_lease, head, taken)
        return turns

    def _release(self, leases: list[Lease]) -> None:
        """Give back, in one write, the leases still held (the runs' last writes released theirs)."""
        held = [lease for lease in leases if lease.held]
        if not held:
            return
        try:
            with self.app.store.batch() as batch:
                for lease in held:
                    lease.release_in(batch)
        except StateError as exc:  # released by the sweeper once the store is back
            log.warning("could not release %d run lease(s): %s", len(held), exc)
            with self._unreleased_lock:
                self._unreleased.extend(held)
            return
        for lease in held:
            lease.released_by_batch()

    def _busy(self, run_id: str, run: Run | None, lease: Lease) -> Outcome:
        """Another worker holds the run (read along with the claim): look again when its lease
        would lapse, unless it finished."""
        if run is None:
            return Outcome("missing")
        if run.terminal:
            return Outcome("already", run=run)
        left = self.app.store.ttl(lease.key)  # None: released meanwhile, look again soon
        delay = max(0.5, left if left is not None else 0.5)
        log.info("run %s is being executed elsewhere; checking again in %.1fs", run_id, delay)
        return Outcome("busy", requeue_after=delay, run=run)

    # one attempt, holding the run lease --------------------------------------------------------
    def _run_loaded(
        self, run: Run, lease: Lease, loaded: _Loaded | Exception, carry: Carry, turn: _Turn | None
    ) -> Outcome:
        if isinstance(loaded, Exception):
            return self._dead(run, classify(loaded), failed_step=None, event=None)
        rule, event, entries = loaded.rule, loaded.event, loaded.entries
        if run.status == "waiting" and self._rule_gone(run):
            return self._cancel(run, "the rule was deleted or disabled while the run waited", carry)
        if run.mode not in ("queued", "single", "restart"):
            return self._attempt(run, rule, event, entries, (lease,), carry)
        claim = self._claim_record(run, carry, turn)
        if isinstance(claim, Outcome):
            return claim
        try:
            with keep_alive(claim):
                return self._attempt(run, rule, event, entries, (lease, claim), carry)
        finally:
            if not carry.releases(claim.key):
                claim.release()

    def _record_lease(self, run: Run) -> Lease:
        """The lease on the run's (rule, record) pair that ``queued`` and ``single`` modes take."""
        parts = (run.rule_id, run.event.resource, run.event.record_id)
        return Lease(
            self.app.store,
            key(run.connection, "rule-record", *parts),
            ttl=self.app.options.run_lease,
            owner=run.id,
        )

    def _claim_record(self, run: Run, carry: Carry, turn: _Turn | None = None) -> Lease | Outcome:
        """The per-(rule, record) turn for ``queued`` and ``single`` modes: the lease that holds
        it, or why this run cannot go now (waiting its turn, skipped). ``turn``: the answer to
        the message's early ask (:meth:`_take_turns`).

        An earlier run of this message for the same rule and record must have ended in the store
        first (its history, its record lease given back), so a carried ending goes out now."""
        app = self.app
        if turn is not None:
            return self._take_turn(run, turn.lease, (turn.head, turn.taken))
        record_lease = self._record_lease(run)
        if carry.releases(record_lease.key):
            carry.flush(app.store)
        if run.mode == "queued":
            return self._take_turn(run, record_lease)
        if not record_lease.acquire():
            return self._skipped(
                run, f"mode {run.mode}: another run of this rule for this record was in progress"
            )
        waiting = self.app.timers.waiting_run(run)
        if waiting is None:
            return record_lease
        if run.mode == "single":
            record_lease.release()
            return self._skipped(run, "mode single: another run of this rule for this record is waiting")
        try:  # restart: the newer event wins
            cancel_waiting(
                app.history,
                app.store,
                run.connection,
                waiting,
                f"mode restart: a newer event for this record started run {run.id}",
                lease_ttl=app.options.run_lease,
            )
        except RunBusy:  # it is waking right now: look again once it has moved on
            record_lease.release()
            return Outcome("waiting", requeue_after=app.options.queued_wait, run=run)
        return record_lease

    def _skipped(self, run: Run, reason: str) -> Outcome:
        app = self.app
        skipped = run.model_copy(update={"status": "skipped", "reason": reason, "finished_at": time.time()})
        app.history.save(skipped)
        _count(skipped)
        log.info("skipped: %s", skipped.reason)
        return Outcome("skipped", run=skipped)

    def _take_turn(
        self, run: Run, record_lease: Lease, answer: tuple[str, bool] | None = None
    ) -> Lease | Outcome:
        """Join the rule's queue for this record; the record lease when it is this run's turn.
        ``answer``: what joining said already (the message's early ask).

        Runs join in the order their events were detected; finished (or expired) runs at the
        head are dropped as they are found.
        """
        store, turn = self.app.store, _turn_of(run, record_lease)
        while True:
            head, taken = answer or store.take_turn(turn)
            answer = None
            if taken:
                record_lease.held = True
                return record_lease
            if head == run.id:  # its turn, but the record is still held (by a run just finishing)
                return Outcome("waiting", requeue_after=self.app.options.queued_wait, run=run)
            other = self.app.history.find(run.connection, head)
            if other is not None and not other.terminal:
                return Outcome("waiting", requeue_after=self._wait_for(other), run=run)
            store.zrem(turn.queue, head)

    def _wait_for(self, head: Run) -> float:
        """How long a queued run waits before looking again: until the head's next retry or its
        wake time (looking every few minutes meanwhile: the head may be cancelled)."""
        wait = self.app.options.queued_wait
        if head.next_retry_at is not None:
            wait = max(wait, min(head.next_retry_at - time.time(), 60.0))
        if head.status == "waiting" and head.wake_at is not None:
            wait = max(wait, min(head.wake_at - time.time(), 300.0))
        return wait

    def _rule_gone(self, run: Run) -> bool:
        """The rule of a waiting run is no longer loaded, or is disabled."""
        current = self.app.rules.current(run.rule_id)
        return current is None or not current.rule.enabled

    def _cancel(self, run: Run, reason: str, carry: Carry) -> Outcome:
        """End a woken run as cancelled (its lease is held: the message's leases are released)."""
        carry.flush(self.app.store)
        cancelled = end_waiting(self.app.history, self.app.store, run, reason)
        log.info("run cancelled: %s", reason)
        return Outcome("cancelled", run=cancelled)

    # the steps ----------------------------------------------------------------------------------
    def _attempt(
        self,
        run: Run,
        rule: PreparedRule,
        event: Event,
        entries: dict[str, LedgerEntry],
        leases: tuple[Lease, ...],
        carry: Carry,
    ) -> Outcome:
        """One attempt at the steps. ``leases``: the run's lease first, then the record's (modes
        ``queued``/``single``); the run's last write releases them."""
        app, lease = self.app, leases[0]
        ids = step_ids(rule.rule)
        now = time.time()
        traces = {t.id: t for t in run.steps}
        journal = Journal(
            app,
            run.model_copy(
                update={
                    "status": "running",
                    "attempts": run.attempts + 1,
                    "started_at": run.started_at or now,
                    "next_retry_at": None,
                    "steps": [
                        traces.get(sid) or StepTrace(id=sid, type=step.action)
                        for sid, step in zip(ids, steps_of(rule.rule), strict=True)
                    ],
                }
            ),
            leases,
            carry,
        )
        outputs: dict[str, Any] = {}
        for index, (sid, step) in enumerate(zip(ids, steps_of(rule.rule), strict=True)):
            entry = entries.get(sid)
            if entry is not None and entry.finished:
                outputs[sid] = entry.output or {}
                journal.trace(sid, reused=True, status=entry.status)
                event = _refreshed(event, step, outputs[sid])
                continue
            if not lease.held:
                log.warning("lost the run lease before step %s; another worker has taken the run over", sid)
                journal.flush()
                return Outcome("busy", requeue_after=app.options.run_lease, run=journal.run)
            with log_context(step=sid):
                outcome = self._step(journal, rule, event, _StepAt(index, step, sid), entry, outputs)
            if outcome is not None and outcome.status == "stopped":
                return self._succeeded(journal, reason=outcome.reason, skip_from=index + 1)
            if outcome is not None and outcome.status == "cancelled":
                return self._succeeded(
                    journal, reason=outcome.reason, skip_from=index + 1, status="cancelled"
                )
            if outcome is not None:
                return outcome
            event = _refreshed(event, step, outputs.get(sid, {}))
        return self._succeeded(journal)

    def _step(
        self,
        journal: Journal,
        rule: PreparedRule,
        event: Event,
        at: _StepAt,
        previous: LedgerEntry | None,
        outputs: dict[str, Any],
    ) -> Outcome | None:
        """Run one step; returns an outcome when the run must stop here.

        What the step did is left in ``journal`` for the next write (the next step's start, or the
        run's ending): the ledger entry saying ``done`` goes out with the run's history in one batch.
        """
        context = rule.context(event, outputs)
        try:
            if at.step.if_ is not None and not rule.applies(at.index, context):
                self._skip(journal, at, outputs)
                return None
            params = _params(at.step, rule.render(at.index, context))
        except Exception as exc:  # a template or parameter error: the rule needs fixing
            return self._unrenderable(journal, rule, event, at, exc)
        executor = step_type(at.step.action)
        entry = self._start(journal, at, previous)
        ctx = self._step_context(journal, rule, event, at, entry, outputs)
        if previous is not None and previous.status == "waiting":
            ctx.resumed_due = float((previous.output or {}).get("due", 0.0))
        started = time.perf_counter()
        try:
            result = executor.run(params, ctx)
        except StopRun as stop:
            return self._stopped(journal, at, entry, stop, time.perf_counter() - started, outputs)
        except WaitUntil as wait:
            return self._waiting(journal, event, at, entry, wait)
        except CancelRun as cancel:
            self._stopped(journal, at, entry, StopRun(str(cancel)), time.perf_counter() - started, outputs)
            self._woken(journal, previous)
            return Outcome("cancelled", run=journal.run, reason=str(cancel))
        except Exception as exc:
            seconds = time.perf_counter() - started
            return self._step_failed(journal, rule, event, at, entry, params, exc, seconds)
        self._woken(journal, previous)
        self._done(journal, rule, at, entry, params, result, time.perf_counter() - started, outputs)
        return None

    def _skip(self, journal: Journal, at: _StepAt, outputs: dict[str, Any]) -> None:
        """The step's ``if:`` is false: recorded as skipped (for the next write), no output."""
        self.app.ledger.skip(
            journal.key, at.sid, journal.run.rule_version, "if: false", batch=journal.pending
        )
        outputs[at.sid] = {}
        journal.trace(at.sid, status="skipped", condition=False)

    def _unrenderable(
        self, journal: Journal, rule: PreparedRule, event: Event, at: _StepAt, exc: Exception
    ) -> Outcome | None:
        """The step's ``if:`` or ``with:`` could not be rendered or validated: it fails before
        acting (nothing in the ledger says it started)."""
        failure = classify(exc)
        failure = replace(failure, reason=f"step {at.sid}: {failure.reason}")
        journal.trace(at.sid, status="failed", error=failure.reason)
        journal.flush()
        journal.run, outcome = self._failed(journal.run, rule, at.step, at.sid, failure, event)
        return outcome

    def _start(self, journal: Journal, at: _StepAt, previous: LedgerEntry | None) -> LedgerEntry:
        """Record that the step starts, and write it (with what is pending) before it acts."""
        entry = self.app.ledger.start(
            journal.key, at.sid, journal.run.rule_version, previous, batch=journal.pending
        )
        journal.trace(
            at.sid,
            status="started",
            condition=True if at.step.if_ is not None else None,
            attempts=entry.attempts,
        )
        journal.flush()  # the ledger says "started" before the step acts
        return entry

    def _step_context(
        self,
        journal: Journal,
        rule: PreparedRule,
        event: Event,
        at: _StepAt,
        entry: LedgerEntry,
        outputs: dict[str, Any],
    ) -> StepContext:
        run = journal.run

        def holds(expression: str, record: dict[str, Any]) -> bool:
            fresh = event.model_copy(update={"record": record})
            return rule.holds(expression, rule.context(fresh, outputs))

        return StepContext(
            services=self.app.services,
            connection=run.connection,
            event=event,
            rule_id=run.rule_id,
            step_id=at.sid,
            run_id=run.id,
            uncertain=entry.may_have_applied,
            dry_run=rule.rule.dry_run or run.dry_run,
            holds=holds,
        )

    def _waiting(
        self, journal: Journal, event: Event, at: _StepAt, entry: LedgerEntry, wait: WaitUntil
    ) -> Outcome:
        """The step waits: the run is stored as waiting and indexed by its wake time; what it
        needs when it wakes (the event, the finished steps' entries) is kept that long plus the
        retention. The message ends here, releasing the leases; no broker delay is involved."""
        app, run = self.app, journal.run
        keep = max(wait.due - time.time(), 0.0) + app.options.retention
        finished = [
            e
            for e in app.ledger.entries(journal.key, step_ids_before(journal.run, at.sid)).values()
            if e.finished
        ]
        app.ledger.keep(journal.key, finished, batch=journal.pending, ttl=keep)
        app.ledger.wait(journal.key, entry, wait.due, batch=journal.pending, ttl=keep)
        app.events.extend(event, ttl=keep, batch=journal.pending)
        app.timers.add(journal.pending, run, wait.due)
        journal.trace(at.sid, status="waiting", response={"due": _iso(wait.due)})
        journal.run = journal.run.model_copy(
            update={"status": "waiting", "wake_at": wait.due, "waiting_step": at.sid, "next_retry_at": None}
        )
        journal.flush(last=True)
        log.info("run waits until %s (step %s)", _iso(wait.due), at.sid)
        return Outcome("waiting", run=journal.run)

    def _woken(self, journal: Journal, previous: LedgerEntry | None) -> None:
        """A step that had waited is past its wait: out of the timer index (with the next write)."""
        if previous is not None and previous.status == "waiting":
            self.app.timers.remove(journal.pending, journal.run)
            journal.run = journal.run.model_copy(update={"wake_at": None, "waiting_step": None})

    def _stopped(
        self,
        journal: Journal,
        at: _StepAt,
        entry: LedgerEntry,
        stop: StopRun,
        seconds: float,
        outputs: dict[str, Any],
    ) -> Outcome:
        """The step asked to stop the run: it is done (no output), and the run ends here."""
        self.app.ledger.finish(journal.key, entry, {}, batch=journal.pending)
        outputs[at.sid] = {}
        journal.trace(at.sid, status="done", duration_ms=seconds * 1000, response={"stopped": str(stop)})
        return Outcome("stopped", run=journal.run, reason=str(stop))

    def _step_failed(
        self,
        journal: Journal,
        rule: PreparedRule,
        event: Event,
        at: _StepAt,
        entry: LedgerEntry,
        params: Any,
        exc: Exception,
        seconds: float,
    ) -> Outcome | None:
        """The step raised while acting: the ledger says so (and whether it may have applied)."""
        step = at.step
        failure = classify(exc)
        _observe(step.action, seconds, params, result="retry" if failure.transient else "failed")
        entry = self.app.ledger.fail(
            journal.key, entry, failure.reason, may_have_applied=failure.may_have_applied
        )
        journal.trace(at.sid, status="failed", error=failure.reason, duration_ms=seconds * 1000)
        log.warning(
            "step %s (%s) failed (%s): %s",
            at.sid,
            step.action,
            "transient" if failure.transient else "permanent",
            failure.reason,
        )
        journal.run, outcome = self._failed(journal.run, rule, step, at.sid, failure, event, entry=entry)
        return outcome

    def _done(
        self,
        journal: Journal,
        rule: PreparedRule,
        at: _StepAt,
        entry: LedgerEntry,
        params: Any,
        result: Any,
        seconds: float,
        outputs: dict[str, Any],
    ) -> None:
        """The step succeeded: ``done`` and its (masked) output recorded for the next write, which
        goes out now unless this was the last step (then it rides with the run's ending)."""
        app, step = self.app, at.step
        _observe(step.action, seconds, params, result="ok")
        output = app.services.mask(result.output) if step_type(step.action).mask_output else result.output
        app.ledger.finish(journal.key, entry, output, batch=journal.pending)
        outputs[at.sid] = output
        journal.trace(
            at.sid,
            status="done",
            request=app.services.mask(result.request),
            response=app.services.mask(result.response),
            duration_ms=seconds * 1000,
            error=None,
        )
        if at.index + 1 < len(rule.rule.steps):
            journal.flush()  # a later step may fail or wait: this one's result is recorded now
        log.info("step %s (%s) done in %.0f ms", at.sid, step.action, seconds * 1000)

    # endings --------------------------------------------------------------------------------------
    def _failed(
        self,
        run: Run,
        rule: PreparedRule,
        step: StepBase,
        sid: str,
        failure: Failure,
        event: Event,
        *,
        entry: LedgerEntry | None = None,
    ) -> tuple[Run, Outcome | None]:
        app = self.app
        last_attempt = run.attempts >= app.options.max_attempts
        if failure.transient and not last_attempt:
            delay = backoff_seconds(
                run.attempts,
                base=app.options.retry_base,
                maximum=app.options.retry_max,
                retry_after=failure.retry_after,
            )
            retrying = run.model_copy(
                update={
                    "status": "retrying",
                    "error": failure.reason,
                    "failed_step": sid,
                    "next_retry_at": time.time() + delay,
                }
            )
            app.history.save(retrying)
            log.info("attempt %d failed; retrying in %.1fs", run.attempts, delay)
            return retrying, Outcome("retrying", requeue_after=delay, run=retrying)
        if step.continue_on_error:
            if entry is None:
                entry = app.ledger.start(RunKey.of(run), sid, run.rule_version, None)
            app.ledger.give_up(RunKey.of(run), entry, failure.reason)
            run = trace(run, sid, status="errored", error=failure.reason)
            app.history.save(run)
            log.warning("step %s failed (%s); continuing (continue_on_error)", sid, failure.reason)
            return run, None
        if failure.transient:
            failure = replace(
                failure, reason=f"gave up after {run.attempts} attempts: {failure.reason}", transient=False
            )
        return run, self._dead(run, failure, failed_step=sid, event=event)

    def _dead(self, run: Run, failure: Failure, *, failed_step: str | None, event: Event | None) -> Outcome:
        app = self.app
        dead = app.dead_letters.add(run, failure.reason, failed_step=failed_step)
        if event is not None:
            app.events.keep(event)  # a replay needs it, however long the run waits in the DLQ
        app.ledger.keep_forever(RunKey.of(run), [step.id for step in run.steps])  # and which steps finished
        log.error("run dead-lettered at step %s: %s", failed_step or "-", failure.reason)
        _count(dead)
        _dlq_size(app, run.connection)
        return Outcome("dead", run=dead)

    def _succeeded(
        self,
        journal: Journal,
        *,
        reason: str | None = None,
        skip_from: int | None = None,
        status: str = "succeeded",
    ) -> Outcome:
        now = time.time()
        run = journal.run
        steps = run.steps
        if skip_from is not None:
            steps = [
                s.model_copy(update={"status": "skipped"}) if i >= skip_from and s.status == "pending" else s
                for i, s in enumerate(steps)
            ]
        journal.run = run.model_copy(
            update={
                "status": status,
                "reason": reason,
                "error": None,
                "failed_step": None,
                "finished_at": now,
                "duration_ms": (now - (run.started_at or now)) * 1000,
                "steps": steps,
            }
        )
        if run.mode == "queued":  # its turn is over: the next run for the record need not look it up
            journal.pending.zrem(queue_key(run), run.id)
        journal.flush(last=True)  # with the last step's ledger entry, releasing the leases (carried)
        done = journal.run
        _count(done)
        log.info("run %s (%d step(s))", status, len(done.steps))
        return Outcome(status, run=done)


@dataclass(frozen=True)
class _Turn:
    """A queued run's early ask for its record's turn: the record lease (held when ``taken``)
    and the queue's head at that moment."""

    lease: Lease
    head: str
    taken: bool


def _turn_of(run: Run, record_lease: Lease) -> Turn:
    return Turn(queue_key(run), run.id, run.queued_at or run.created_at, record_lease.key, record_lease.ttl)


def step_ids_before(run: Run, step_id: str) -> list[str]:
    """The ids of the run's steps before ``step_id`` (in the run's trace order)."""
    ids = [s.id for s in run.steps]
    return ids[: ids.index(step_id)] if step_id in ids else ids


def _refreshed(event: Event, step: StepBase, output: dict[str, Any]) -> Event:
    """``event`` with the record a step read again (after a wait) as its record."""
    record = output.get("record")
    if step_type(step.action).refreshes_record and isinstance(record, dict):
        return event.model_copy(update={"record": record})
    return event


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def _params(step: StepBase, rendered: dict[str, Any]) -> Any:
    """The rendered ``with:`` block validated by the step type's model (a bad value is permanent)."""
    model = step_type(step.action).params
    try:
        return model.model_validate(rendered)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'with'}: {err['msg']}" for err in exc.errors()
        )
        raise PermanentStepError(f"invalid parameters after rendering: {problems}") from None


def _observe(action: str, seconds: float, params: Any, *, result: str) -> None:
    """Step latency; steps that deliver to Slack or a webhook (their type names a ``destination``)
    are also counted by destination name in ``ppw_webhook_deliveries``."""
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.STEP_LATENCY.labels(action).observe(seconds)
    delivers = step_type(action)
    if delivers.destination:
        # names from the rule (webhook/secret names, channels), never URLs
        hook = delivers.hook(params)
        metrics.WEBHOOK_DELIVERIES.labels(f"{action}:{hook or '-'}", result).inc()


def _count(run: Run) -> None:
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.RULE_RUNS.labels(run.rule_id, run.status).inc()


def _dlq_size(app: DeliveryApp, connection: str) -> None:
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.DLQ_SIZE.labels("runs").set(app.dead_letters.count(connection))
