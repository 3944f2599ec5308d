"""The Dramatiq actors: poll, dispatch, run, each on its own queue.

Actors are declared on a given broker by :func:`declare_actors` (never on Dramatiq's global
broker), so one process can hold a memory, a Redis and a RabbitMQ broker at once, and the same
actors run on each. They are thin: every decision is made by
:class:`~worker.delivery.dispatch.Dispatcher` and :class:`~worker.delivery.runner.Runner`.

Messages carry ids only: ``poll(connection, resource)``, ``dispatch(connection, event_id)``,
``run(connection, run_id)``. The event (with the record's privileged data) stays in the state
store, out of broker logs, dumps and management UIs.

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

from worker.broker import BrokerOptions
from worker.delivery.app import DeliveryApp
from worker.delivery.dispatch import Dispatcher
from worker.delivery.runner import Runner
from worker.events import Event
from worker.observability import log_context
from worker.state.base import key

log = logging.getLogger(__name__)

#: Seconds past its due time a run message that has not been picked up counts as lost.
IN_FLIGHT_MARGIN = 120.0


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
    dispatch: dramatiq.Actor[[str, str], None]
    run: dramatiq.Actor[[str, str], None]
    dispatcher: Dispatcher
    runner: Runner
    #: called with every batch of events emitted (the demo's live view, tests)
    listeners: list[Callable[[list[Event]], None]] = field(default_factory=list)

    def send_poll(self, connection: str, resource: str) -> None:
        self.poll.send(connection, resource)

    def send_run(self, connection: str, run_id: str, delay: float | None = None) -> None:
        # Note that the message is on its way (until it is picked up, or its due time plus a margin
        # passes), so the sweeper (Runtime.recover) re-sends only runs whose message was lost: the
        # memory broker's die with its process, and a retry Dramatiq could not enqueue (the broker
        # down at that moment) is gone too.
        self.app.store.set(in_flight_key(connection, run_id), "1", ttl=(delay or 0) + IN_FLIGHT_MARGIN)
        if delay is None:
            self.run.send(connection, run_id)
        else:
            self.run.send_with_options(args=(connection, run_id), delay=int(delay * 1000))

    def emit(self, events: list[Event]) -> None:
        """Store ``events`` and send one dispatch message each (the poller's ``emit``)."""
        for event in events:
            self.app.events.save(event)
            self.dispatch.send(event.connection, event.id)
        for listener in self.listeners:
            try:
                listener(events)
            except Exception:
                log.exception("an event listener failed")


def declare_actors(broker: dramatiq.Broker, app: DeliveryApp, *, queue_prefix: str | None = None) -> Actors:
    """Declare the poll, dispatch and run actors on ``broker``, working with ``app``.

    Parameters:
      broker: from :func:`worker.broker.create_broker`.
      app: the delivery application (state, rules, clients) these actors use.
      queue_prefix: queue names are ``<prefix>.poll|dispatch|run`` (default ``PPW_QUEUE_PREFIX`` or
        ``ppw``); tests use a unique prefix so they can share one Redis or RabbitMQ.
    """
    prefix = queue_prefix or BrokerOptions.from_settings(app.settings).queue_prefix
    queues = QueueNames.with_prefix(prefix)
    dispatcher = Dispatcher(app)
    runner = Runner(app)
    holder: dict[str, Actors] = {}

    def poll(connection: str, resource: str) -> None:
        from worker.polling.poller import Poller, PollOptions

        with log_context(connection=connection, resource=resource):
            poller = Poller(
                app.services.pp(connection),
                app.store,
                connection=connection,
                options=PollOptions.from_settings(
                    app.settings, keep_fields={resource: app.rules.compared_fields(resource)}
                ),
            )
            poller.poll(resource, holder["actors"].emit)

    def dispatch(connection: str, event_id: str) -> None:
        with log_context(connection=connection, event_id=event_id):
            result = dispatcher.dispatch(connection, event_id, holder["actors"].send_run)
            if result.runs:
                log.info("event %s fired %d rule(s)", event_id, len(result.runs))

    def run(connection: str, run_id: str) -> None:
        app.store.delete(in_flight_key(connection, run_id))  # picked up: no longer "on its way"
        outcome = runner.run(connection, run_id)
        if outcome.requeue_after is not None:
            holder["actors"].send_run(connection, run_id, delay=outcome.requeue_after)

    actors = Actors(
        broker=broker,
        app=app,
        queues=queues,
        # A failed poll is simply polled again on the next tick: no retries, nothing piles up.
        poll=dramatiq.actor(broker=broker, actor_name="ppw_poll", queue_name=queues.poll, max_retries=0)(
            poll
        ),
        dispatch=dramatiq.actor(broker=broker, actor_name="ppw_dispatch", queue_name=queues.dispatch)(
            dispatch
        ),
        run=dramatiq.actor(broker=broker, actor_name="ppw_run", queue_name=queues.run)(run),
        dispatcher=dispatcher,
        runner=runner,
    )
    holder["actors"] = actors
    return actors
