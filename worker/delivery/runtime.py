"""Assembling a worker process: state, rules, delivery app, broker, actors and Dramatiq workers.

``ppw worker``, ``ppw run``, ``ppw dlq replay``, the demo and the end-to-end tests all build their
process from here, so they cannot drift apart. Reading top to bottom: open the state store, load
the rules, make the delivery app, create the broker, declare the actors, start the workers; stop
in the reverse order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import dramatiq

from worker.actions.services import Services
from worker.actors import Actors, declare_actors
from worker.broker import BrokerOptions, create_broker, is_embedded
from worker.delivery.app import DeliveryApp
from worker.delivery.options import DeliveryOptions
from worker.delivery.rulebook import EngineRuleBook
from worker.rules.watcher import RuleRegistry
from worker.settings import Settings
from worker.state import StateStore, open_store

log = logging.getLogger(__name__)

#: The queues a worker can consume, one per stage.
STAGES: tuple[str, ...] = ("poll", "dispatch", "run")
#: How often the embedded runtime re-sends runs and events nobody is working on (see :meth:`recover`).
SWEEP_INTERVAL = 30.0


def open_rules(settings: Settings, *, watch: bool) -> tuple[EngineRuleBook, RuleRegistry]:
    """The rules of ``settings.rules_dir``; with ``watch``, reloaded as the files change.

    A file with errors is left out (and logged); with ``watch`` its last good version keeps running.
    """
    registry = RuleRegistry(settings=settings)
    if watch:
        registry.start()
    else:
        registry.load()
    status = registry.status()
    log.info(
        "loaded %d rule(s) from %s%s",
        status["loaded"],
        settings.rules_dir,
        f"; {len(status['failed_files'])} file(s) with errors" if status["failed_files"] else "",
    )
    return EngineRuleBook(lambda: registry.engine, settings), registry


@dataclass
class Runtime:
    """A running (or ready to run) delivery process.

    Parameters:
      app: the delivery application (state, rules, clients).
      broker: the Dramatiq broker the actors are declared on.
      actors: the poll, dispatch and run actors.
      owns_store: whether :meth:`close` closes ``app.store`` (not when the caller passed it in).
    """

    app: DeliveryApp
    broker: dramatiq.Broker
    actors: Actors
    owns_store: bool = True
    registry: RuleRegistry | None = None
    worker: dramatiq.Worker | None = None
    _sweeper: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        store: StateStore | None = None,
        rules: EngineRuleBook | None = None,
        services: Services | None = None,
        options: DeliveryOptions | None = None,
        broker: dramatiq.Broker | None = None,
        queue_prefix: str | None = None,
        watch_rules: bool = False,
    ) -> Runtime:
        """Everything but the workers; pass pieces in to share them (tests, the demo).

        Without ``rules`` the rules directory is loaded (and, with ``watch_rules``, hot-reloaded).
        """
        owns_store = store is None
        store = store or open_store(settings.state_url)
        registry = None
        if rules is None:
            rules, registry = open_rules(settings, watch=watch_rules)
        app = DeliveryApp.create(settings, store, rules, services=services, options=options)
        broker_options = BrokerOptions.from_settings(settings)
        if queue_prefix:
            broker_options = replace(broker_options, queue_prefix=queue_prefix)
        broker = broker or create_broker(settings, broker_options)
        actors = declare_actors(broker, app, queue_prefix=broker_options.queue_prefix)
        return cls(app=app, broker=broker, actors=actors, owns_store=owns_store, registry=registry)

    @property
    def embedded(self) -> bool:
        return is_embedded(self.broker)

    def start_workers(
        self, threads: int | None = None, *, stages: tuple[str, ...] = STAGES
    ) -> dramatiq.Worker:
        """Start Dramatiq worker threads on the queues of ``stages`` (poll, dispatch, run)."""
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}; stages are {', '.join(STAGES)}")
        queues = {getattr(self.actors.queues, stage) for stage in stages}
        self.worker = dramatiq.Worker(
            self.broker,
            queues=queues,
            worker_threads=threads or self.app.settings.worker_threads,
            worker_timeout=200,
        )
        self.worker.start()
        if self.embedded:
            self.recover()
            self._sweeper = threading.Thread(target=self._sweep, name="ppw-sweeper", daemon=True)
            self._sweeper.start()
        return self.worker

    def recover(self, *, older_than: float = 0.0) -> tuple[int, int]:
        """Re-send work that lives only in the state store: undispatched events and unfinished runs.

        The memory broker loses its messages when the process stops; the state store does not, so
        on start (and periodically) the embedded runtime sends a dispatch message for every event
        still pending and a run message for every run not finished whose next retry is due. Both
        are safe to repeat (dispatch dedupes by event id; a run skips finished steps and waits for
        a run lease another worker holds). Returns (events, runs) re-sent.
        """
        app, connection = self.app, self.app.settings.connection_id
        events = app.events.pending(connection, older_than=older_than)
        for event_id in events:
            self.actors.dispatch.send(connection, event_id)
        now, runs = time.time(), 0
        for run_id in app.history.active(connection):
            run = app.history.find(connection, run_id)
            if run is None or run.terminal:
                continue
            if run.next_retry_at is not None and run.next_retry_at > now:
                continue
            if older_than and now - (run.started_at or run.created_at) < older_than:
                continue
            self.actors.send_run(connection, run_id)
            runs += 1
        if events or runs:
            log.info(
                "re-sent %d pending event(s) and %d unfinished run(s) from the state store", len(events), runs
            )
        return len(events), runs

    def _sweep(self) -> None:
        while not self._stopping.wait(SWEEP_INTERVAL):
            try:
                self.recover(older_than=SWEEP_INTERVAL * 2)
            except Exception:
                log.exception("sweeping unfinished work failed; trying again in %.0fs", SWEEP_INTERVAL)

    def stop(self, grace: float | None = None) -> None:
        """Stop the workers: running steps get ``grace`` seconds (default ``PPW_SHUTDOWN_GRACE``) to finish.

        Messages not started go back to the broker (Redis, RabbitMQ); runs cut short resume from
        the ledger when their message is delivered again (or, embedded, on the next start).
        """
        self._stopping.set()
        if self.worker is not None:
            seconds = self.app.settings.shutdown_grace if grace is None else grace
            self.worker.stop(timeout=int(seconds * 1000))
            self.worker = None

    def close(self) -> None:
        self.stop()
        if self.registry is not None:
            self.registry.stop()
        self.broker.close()
        self.app.close()
        if self.owns_store:
            self.app.store.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; True when it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
