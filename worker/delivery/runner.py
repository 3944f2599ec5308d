"""Running one rule on one event: its steps in order, each at most once.

A run message names a run id only. The runner:

1. loads the run record (rule snapshot, event id) and stops if it already finished;
2. takes the run's lease, so a duplicate message or a second worker cannot run it concurrently;
   a keeper thread renews it while the run works (however long a step takes), so a worker killed
   mid-run loses it within ``run_lease`` seconds and another worker resumes the run;
3. honours the rule's ``mode`` for this record: ``parallel`` runs at once, ``queued`` waits for
   earlier runs of the same rule for the same record (in detection order), ``single`` skips the
   run while another one of the same rule is executing for the record;
4. walks the steps: a step the ledger shows finished is not run again (its recorded output feeds
   later templates); a step whose ``if:`` is false is recorded as skipped; otherwise the step is
   rendered, recorded as started, executed, and recorded as done;
5. on failure: a transient error schedules another attempt with exponential backoff and jitter
   (``Retry-After`` honoured) until ``max_attempts``; a permanent error, or the last attempt,
   puts the run in the dead-letter store with the reason and the failed step.

The rule definition used is the snapshot stored at dispatch, so a retry after the rule file was
edited still runs the steps the first attempt started with.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from worker.actions.base import StepContext, get_executor
from worker.actions.params import STEP_TYPES
from worker.delivery.app import DeliveryApp
from worker.delivery.eventstore import EventNotFound
from worker.delivery.failures import Failure, PermanentStepError, StopRun, backoff_seconds, classify
from worker.delivery.history import Run, StepTrace
from worker.delivery.ledger import LedgerEntry
from worker.delivery.rulebook import PreparedRule, steps_of
from worker.events import Event
from worker.observability import log_context
from worker.rules.model import Rule, StepBase
from worker.state.base import StateError, key
from worker.state.locks import Lease

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

    # entry point ----------------------------------------------------------------------------
    def run(self, connection: str, run_id: str) -> Outcome:
        app = self.app
        run = app.history.find(connection, run_id)
        if run is None:
            log.warning("run %s is gone (older than the retention period?); nothing to do", run_id)
            return Outcome("missing")
        if run.terminal:
            return Outcome("already", run=run)
        with log_context(
            connection=connection,
            run_id=run_id,
            rule_id=run.rule_id,
            event_id=run.event_id,
            resource=run.event.resource,
        ):
            lease = Lease(app.store, run_lease_key(connection, run_id), ttl=app.options.run_lease)
            if not lease.acquire():
                left = app.store.ttl(lease.key)  # None: released meanwhile, look again soon
                delay = max(0.5, left if left is not None else 0.5)
                log.info("run is being executed elsewhere; checking again in %.1fs", delay)
                return Outcome("busy", requeue_after=delay, run=run)
            try:
                with keep_alive(lease):
                    return self._run_leased(run, lease)
            finally:
                try:
                    lease.release()
                except StateError as exc:  # released by the sweeper once the store is back
                    log.warning("could not release the run lease: %s", exc)
                    with self._unreleased_lock:
                        self._unreleased.append(lease)

    # one attempt, holding the run lease --------------------------------------------------------
    def _run_leased(self, run: Run, lease: Lease) -> Outcome:
        app = self.app
        run = app.history.get(run.connection, run.id)  # re-read under the lease
        if run.terminal:
            return Outcome("already", run=run)
        try:
            rule = app.rules.prepare(run.rule_snapshot, run.rule_version)
            event = app.events.load(run.connection, run.event_id)
        except (EventNotFound, PydanticValidationError, ValueError) as exc:
            return self._dead(run, classify(exc), failed_step=None, event=None)

        if run.mode not in ("queued", "single"):
            return self._attempt(run, rule, event, lease)
        claim = self._claim_record(run)
        if isinstance(claim, Outcome):
            return claim
        try:
            with keep_alive(claim):
                return self._attempt(run, rule, event, lease)
        finally:
            claim.release()

    def _claim_record(self, run: Run) -> Lease | Outcome:
        """The per-(rule, record) turn for ``queued`` and ``single`` modes: the lease that holds
        it, or why this run cannot go now (waiting its turn, skipped)."""
        app = self.app
        parts = (run.rule_id, run.event.resource, run.event.record_id)
        if run.mode == "queued":
            head = self._queue_head(run)
            if head is not None:
                return Outcome("waiting", requeue_after=self._wait_for(head), run=run)
        record_lease = Lease(
            app.store, key(run.connection, "rule-record", *parts), ttl=app.options.run_lease, owner=run.id
        )
        if record_lease.acquire():
            return record_lease
        if run.mode == "single":
            skipped = run.model_copy(
                update={
                    "status": "skipped",
                    "reason": "mode single: another run of this rule for this record was in progress",
                    "finished_at": time.time(),
                }
            )
            app.history.save(skipped)
            _count(skipped)
            log.info("skipped: %s", skipped.reason)
            return Outcome("skipped", run=skipped)
        return Outcome("waiting", requeue_after=app.options.queued_wait, run=run)

    def _queue_head(self, run: Run) -> Run | None:
        """The unfinished run ahead of ``run`` in its rule's queue for this record, if any.

        Runs join the queue in the order their events were detected; finished (or expired) runs
        at the head are dropped as they are found.
        """
        store, queue = self.app.store, queue_key(run)
        store.zadd(queue, {run.id: run.queued_at or run.created_at})
        while True:
            head = store.zrange_by_score(queue, limit=1)
            if not head or head[0][0] == run.id:
                return None
            other = self.app.history.find(run.connection, head[0][0])
            if other is not None and not other.terminal:
                return other
            store.zrem(queue, head[0][0])

    def _wait_for(self, head: Run) -> float:
        """How long a queued run waits before looking again: until the head's next retry, if it has one."""
        wait = self.app.options.queued_wait
        if head.next_retry_at is not None:
            wait = max(wait, min(head.next_retry_at - time.time(), 60.0))
        return wait

    # the steps ----------------------------------------------------------------------------------
    def _attempt(self, run: Run, rule: PreparedRule, event: Event, lease: Lease) -> Outcome:
        app = self.app
        ids = step_ids(rule.rule)
        now = time.time()
        traces = {t.id: t for t in run.steps}
        run = run.model_copy(
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
        )
        app.history.save(run)
        entries = app.ledger.entries(run.connection, run.event_id, run.rule_id, ids)
        outputs: dict[str, Any] = {}
        for index, (sid, step) in enumerate(zip(ids, steps_of(rule.rule), strict=True)):
            entry = entries.get(sid)
            if entry is not None and entry.finished:
                outputs[sid] = entry.output or {}
                run = _trace(run, sid, reused=True, status=entry.status)
                continue
            if not lease.held:
                log.warning("lost the run lease before step %s; another worker has taken the run over", sid)
                return Outcome("busy", requeue_after=app.options.run_lease, run=run)
            with log_context(step=sid):
                run, outcome = self._step(run, rule, event, index, step, sid, entry, outputs)
            if outcome is not None and outcome.status == "stopped":
                return self._succeeded(run, reason=outcome.reason, skip_from=index + 1)
            if outcome is not None:
                return outcome
        return self._succeeded(run)

    def _step(
        self,
        run: Run,
        rule: PreparedRule,
        event: Event,
        index: int,
        step: StepBase,
        sid: str,
        previous: LedgerEntry | None,
        outputs: dict[str, Any],
    ) -> tuple[Run, Outcome | None]:
        """Run one step; returns the updated run and an outcome when the run must stop here."""
        app = self.app
        context = rule.context(event, outputs)
        dry_run = rule.rule.dry_run or run.dry_run
        try:
            if step.if_ is not None and not rule.applies(index, context):
                app.ledger.skip(run.connection, run.event_id, run.rule_id, sid, run.rule_version, "if: false")
                outputs[sid] = {}
                run = _trace(run, sid, status="skipped", condition=False)
                app.history.save(run)
                return run, None
            params = _params(step, rule.render(index, context))
        except Exception as exc:  # a template or parameter error: the rule needs fixing
            failure = classify(exc)
            failure = Failure(f"step {sid}: {failure.reason}", transient=failure.transient, kind=failure.kind)
            run = _trace(run, sid, status="failed", error=failure.reason)
            return self._failed(run, rule, step, sid, failure, event)

        executor = get_executor(step.action)
        entry = app.ledger.start(run.connection, run.event_id, run.rule_id, sid, run.rule_version, previous)
        run = _trace(
            run,
            sid,
            status="started",
            condition=True if step.if_ is not None else None,
            attempts=entry.attempts,
        )
        app.history.save(run)
        ctx = StepContext(
            services=app.services,
            connection=run.connection,
            event=event,
            rule_id=run.rule_id,
            step_id=sid,
            run_id=run.id,
            uncertain=entry.may_have_applied,
            dry_run=dry_run,
        )
        started = time.perf_counter()
        try:
            result = executor.run(params, ctx)
        except StopRun as stop:
            seconds = time.perf_counter() - started
            app.ledger.finish(run.connection, run.event_id, run.rule_id, entry, {})
            outputs[sid] = {}
            run = _trace(run, sid, status="done", duration_ms=seconds * 1000, response={"stopped": str(stop)})
            return run, Outcome("stopped", run=run, reason=str(stop))
        except Exception as exc:
            seconds = time.perf_counter() - started
            failure = classify(exc)
            _observe(step.action, seconds, params, result="retry" if failure.transient else "failed")
            applied = bool(getattr(exc, "may_have_applied", False))
            entry = app.ledger.fail(
                run.connection, run.event_id, run.rule_id, entry, failure.reason, may_have_applied=applied
            )
            run = _trace(run, sid, status="failed", error=failure.reason, duration_ms=seconds * 1000)
            log.warning(
                "step %s (%s) failed (%s): %s",
                sid,
                step.action,
                "transient" if failure.transient else "permanent",
                failure.reason,
            )
            return self._failed(run, rule, step, sid, failure, event, entry=entry)
        seconds = time.perf_counter() - started
        _observe(step.action, seconds, params, result="ok")
        output = app.services.mask(result.output) if step.action in ("http.request",) else result.output
        app.ledger.finish(run.connection, run.event_id, run.rule_id, entry, output)
        outputs[sid] = output
        run = _trace(
            run,
            sid,
            status="done",
            request=app.services.mask(result.request),
            response=app.services.mask(result.response),
            duration_ms=seconds * 1000,
            error=None,
        )
        app.history.save(run)
        log.info("step %s (%s) done in %.0f ms", sid, step.action, seconds * 1000)
        return run, None

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
                entry = app.ledger.start(
                    run.connection, run.event_id, run.rule_id, sid, run.rule_version, None
                )
            app.ledger.give_up(run.connection, run.event_id, run.rule_id, entry, failure.reason)
            run = _trace(run, sid, status="errored", error=failure.reason)
            app.history.save(run)
            log.warning("step %s failed (%s); continuing (continue_on_error)", sid, failure.reason)
            return run, None
        if failure.transient:
            failure = Failure(
                f"gave up after {run.attempts} attempts: {failure.reason}", transient=False, kind=failure.kind
            )
        return run, self._dead(run, failure, failed_step=sid, event=event)

    def _dead(self, run: Run, failure: Failure, *, failed_step: str | None, event: Event | None) -> Outcome:
        app = self.app
        dead = app.dead_letters.add(run, failure.reason, failed_step=failed_step)
        if event is not None:
            app.events.keep(event)  # a replay needs it, however long the run waits in the DLQ
        log.error("run dead-lettered at step %s: %s", failed_step or "-", failure.reason)
        _count(dead)
        _dlq_size(app, run.connection)
        return Outcome("dead", run=dead)

    def _succeeded(self, run: Run, *, reason: str | None = None, skip_from: int | None = None) -> Outcome:
        now = time.time()
        steps = run.steps
        if skip_from is not None:
            steps = [
                s.model_copy(update={"status": "skipped"}) if i >= skip_from and s.status == "pending" else s
                for i, s in enumerate(steps)
            ]
        done = run.model_copy(
            update={
                "status": "succeeded",
                "reason": reason,
                "error": None,
                "failed_step": None,
                "finished_at": now,
                "duration_ms": (now - (run.started_at or now)) * 1000,
                "steps": steps,
            }
        )
        self.app.history.save(done)
        _count(done)
        log.info("run succeeded (%d step(s))", len(done.steps))
        return Outcome("succeeded", run=done)


def run_lease_key(connection: str, run_id: str) -> str:
    """The lease a worker holds while it executes the run."""
    return key(connection, "run-lease", run_id)


@contextmanager
def keep_alive(lease: Lease) -> Iterator[Lease]:
    """Renew ``lease`` every third of its time-to-live until the block ends.

    If a renewal finds the lease taken (this process stalled longer than the ttl), ``lease.held``
    turns False and the runner stops before its next step.
    """
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease.ttl / 3):
            try:
                if not lease.renew():
                    log.warning("lease %s was taken over while this worker held it", lease.key)
                    return
            except StateError as exc:  # the store is down: keep trying, the ttl is the limit
                log.warning("could not renew lease %s: %s", lease.key, exc)

    keeper = threading.Thread(target=renew, name=f"lease-keeper-{lease.key[-12:]}", daemon=True)
    keeper.start()
    try:
        yield lease
    finally:
        stop.set()
        keeper.join()


def queue_key(run: Run) -> str:
    """The ``mode: queued`` line of one rule for one record."""
    return key(run.connection, "rule-queue", run.rule_id, run.event.resource, run.event.record_id)


def _params(step: StepBase, rendered: dict[str, Any]) -> Any:
    """The rendered ``with:`` block validated by the step type's model (a bad value is permanent)."""
    model = STEP_TYPES[step.action]
    try:
        return model.model_validate(rendered)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'with'}: {err['msg']}" for err in exc.errors()
        )
        raise PermanentStepError(f"invalid parameters after rendering: {problems}") from None


def _trace(run: Run, step_id: str, **changes: Any) -> Run:
    steps = [s.model_copy(update=changes) if s.id == step_id else s for s in run.steps]
    return run.model_copy(update={"steps": steps})


#: Steps that deliver to Slack or a webhook, counted by destination name in ``ppw_webhook_deliveries``.
_DELIVERIES = frozenset({"slack.post", "http.request"})


def _observe(step_type: str, seconds: float, params: Any, *, result: str) -> None:
    from worker.observability import metrics

    metrics.STEP_LATENCY.labels(step_type).observe(seconds)
    if step_type in _DELIVERIES:
        # names from the rule (webhook/secret names, channels), never URLs
        hook = (
            getattr(params, "webhook", None)
            or getattr(params, "channel", None)
            or getattr(params, "secret", None)
        )
        metrics.WEBHOOK_DELIVERIES.labels(f"{step_type}:{hook or '-'}", result).inc()


def _count(run: Run) -> None:
    from worker.observability import metrics

    metrics.RULE_RUNS.labels(run.rule_id, run.status).inc()


def _dlq_size(app: DeliveryApp, connection: str) -> None:
    from worker.observability import metrics

    metrics.DLQ_SIZE.labels("runs").set(app.dead_letters.count(connection))
