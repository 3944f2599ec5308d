"""The Dramatiq actors: poll (and reconcile, on the poll queue), dispatch, run, each on its own queue.

Actors are declared on a given broker by :func:`declare_actors` (never on Dramatiq's global
broker), so one process can hold a memory, a Redis and a RabbitMQ broker at once, and the same
actors run on each. They are thin: every decision is made by
:class:`~worker.delivery.dispatch.Dispatcher` and :class:`~worker.delivery.runner.Runner`.

Messages carry ids only: ``poll(connection, resource)``, ``reconcile(connection, resource)``,
``dispatch(connection, event_ids)``,
``run(connection, run_ids)``. The event (with the record's privileged data) stays in the state
store, out of broker logs, dumps and management UIs.

Dispatch and run messages carry a *batch* of ids (``DeliveryOptions.dispatch_batch`` events,
``run_batch`` runs): a broker message costs about as much as the work of a simple rule, so one
message per event would spend most of the worker on the broker. A run message that has worked
longer than ``run_batch_seconds`` (slow steps) hands the runs it has not started to new messages,
one run each, so slow destinations still spread over every worker thread. A single id (a message
sent by an older version) is accepted too.

A run that must come back later (a transient failure, a queued run waiting for its turn, a run
another worker holds) is sent again with a delay rather than raised as :class:`dramatiq.Retry`,
so waiting does not use up Dramatiq's retry budget; that budget only bounds failures nobody
classified (the state store down ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import dramatiq

from worker.delivery.app import DeliveryApp
from worker.delivery.dispatch import Dispatcher
from worker.delivery.runner import Runner
from worker.events import Event
from worker.observability import log_context
from worker.polling.poller import Poller, PollOptions
from worker.polling.reconcile import ReconcileOptions, Reconciler
from worker.process.broker import BrokerOptions
from worker.state.base import key

log = logging.getLogger(__name__)

#: Seconds past its due time a run message that has not been picked up counts as lost (unless the
#: run queue still has a backlog): a message a dead worker had fetched is not waited for longer.
IN_FLIGHT_MARGIN = 30.0

Ids = list[str] | str


def _ids(value: Ids) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def in_flight_key(connection: str, run_id: str) -> str:
    return key(connection, "run-sent", run_id)


@dataclass(frozen=True)
class QueueNames:
    poll: str
    dispatch: str
    run: str

    @classmethod
    def with_prefix(cls, prefix: str) -> QueueNames:
        return cls(poll=f"{prefix}.poll", dispatch=f"{prefix}.dispatch", run=f"{prefix}.run")

    def all(self) -> list[str]:
        return [self.poll, self.dispatch, self.run]


@dataclass
class Actors:
    """The actors bound to one broker, and how to feed them."""

    broker: dramatiq.Broker
    app: DeliveryApp
    queues: QueueNames
    poll: dramatiq.Actor[[str, str], None]
    reconcile: dramatiq.Actor[[str, str], None]
    dispatch: dramatiq.Actor[[str, Ids], None]
    run: dramatiq.Actor[[str, Ids], None]
    dispatcher: Dispatcher
    runner: Runner
    #: called with every batch of events emitted (the demo's live view, tests)
    listeners: list[Callable[[list[Event]], None]] = field(default_factory=list)

    def send_poll(self, connection: str, resource: str) -> None:
        self.poll.send(connection, resource)

    def send_reconcile(self, connection: str, resource: str) -> None:
        self.reconcile.send(connection, resource)

    def send_run(self, connection: str, run_id: str, delay: float | None = None) -> None:
        """One run, now or after ``delay`` seconds (a retry, a run waiting for its turn)."""
        self.send_runs(connection, [run_id], delay=delay)

    def send_runs(
        self,
        connection: str,
        run_ids: list[str],
        delay: float | None = None,
        *,
        per_message: int | None = None,
    ) -> None:
        """Runs in messages of up to ``per_message`` runs (default ``DeliveryOptions.run_batch``).

        Each run is noted as on its way (until it is picked up, or its due time plus a margin
        passes), so the sweeper (Runtime.recover) re-sends only runs whose message was lost: the
        memory broker's die with its process, and a retry Dramatiq could not enqueue (the broker
        down at that moment) is gone too.
        """
        if not run_ids:
            return
        with self.app.store.batch() as batch:
            for run_id in run_ids:
                batch.set(in_flight_key(connection, run_id), "1", ttl=(delay or 0) + IN_FLIGHT_MARGIN)
        for chunk in chunks(run_ids, per_message or self.app.options.run_batch):
            if delay is None:
                self.run.send(connection, chunk)
            else:
                self.run.send_with_options(args=(connection, chunk), delay=int(delay * 1000))

    def send_dispatch(self, connection: str, event_ids: list[str]) -> None:
        """Dispatch messages for ``event_ids``, ``DeliveryOptions.dispatch_batch`` per message."""
        for chunk in chunks(event_ids, self.app.options.dispatch_batch):
            self.dispatch.send(connection, chunk)

    def emit(self, events: list[Event]) -> None:
        """Store ``events`` and send their dispatch messages (the poller's ``emit``)."""
        self.app.events.save_many(events)
        for connection in dict.fromkeys(e.connection for e in events):
            self.send_dispatch(connection, [e.id for e in events if e.connection == connection])
        for listener in self.listeners:
            try:
                listener(events)
            except Exception:
                log.exception("an event listener failed")


def declare_actors(broker: dramatiq.Broker, app: DeliveryApp, *, queue_prefix: str | None = None) -> Actors:
    """Declare the poll, dispatch and run actors on ``broker``, working with ``app``.

    Parameters
    ----------
    broker:
        From :func:`worker.process.broker.create_broker`.
    app:
        The delivery application (state, rules, clients) these actors use.
    queue_prefix:
        Queue names are ``<prefix>.poll|dispatch|run`` (default ``PPW_QUEUE_PREFIX`` or
        ``ppw``); tests use a unique prefix so they can share one Redis or RabbitMQ.
    """
    prefix = queue_prefix or BrokerOptions.from_settings(app.settings).queue_prefix
    queues = QueueNames.with_prefix(prefix)
    dispatcher = Dispatcher(app)
    runner = Runner(app)
    holder: dict[str, Actors] = {}

    def poll(connection: str, resource: str) -> None:
        with log_context(connection=connection, resource=resource):
            poller = Poller(
                app.services.pp(connection),
                app.store,
                connection=connection,
                options=PollOptions.from_settings(app.settings),
            )
            poller.poll(resource, holder["actors"].emit)

    def reconcile(connection: str, resource: str) -> None:
        with log_context(connection=connection, resource=resource):
            reconciler = Reconciler(
                app.services.pp(connection),
                app.store,
                connection=connection,
                options=ReconcileOptions.from_settings(app.settings),
            )
            reconciler.reconcile(resource, holder["actors"].emit)

    def dispatch(connection: str, event_ids: Ids) -> None:
        with log_context(connection=connection):
            results = dispatcher.dispatch_many(connection, _ids(event_ids), holder["actors"].send_runs)
            for result in results:
                if result.runs:
                    log.info("event %s fired %d rule(s)", result.event_id, len(result.runs))

    def run(connection: str, run_ids: Ids) -> None:
        ids = _ids(run_ids)
        picked_up = [in_flight_key(connection, r) for r in ids]  # no longer "on its way"
        batch = runner.run_many(connection, ids, budget=app.options.run_batch_seconds, clear=picked_up)
        for run_id, outcome in batch.outcomes:
            if outcome.requeue_after is not None:
                holder["actors"].send_run(connection, run_id, delay=outcome.requeue_after)
        # slow steps: one message per run left, so every worker thread can take one
        holder["actors"].send_runs(connection, batch.handed_back, per_message=1)

    actors = Actors(
        broker=broker,
        app=app,
        queues=queues,
        # A failed poll is simply polled again on the next tick: no retries, nothing piles up.
        poll=dramatiq.actor(broker=broker, actor_name="ppw_poll", queue_name=queues.poll, max_retries=0)(
            poll
        ),
        # A failed reconcile removed nothing; the scheduler asks again at its next check.
        reconcile=dramatiq.actor(
            broker=broker, actor_name="ppw_reconcile", queue_name=queues.poll, max_retries=0
        )(reconcile),
        dispatch=dramatiq.actor(broker=broker, actor_name="ppw_dispatch", queue_name=queues.dispatch)(
            dispatch
        ),
        run=dramatiq.actor(broker=broker, actor_name="ppw_run", queue_name=queues.run)(run),
        dispatcher=dispatcher,
        runner=runner,
    )
    holder["actors"] = actors
    return actors
