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
from pathlib import Path

import dramatiq

from worker.actions.services import Services
from worker.delivery.app import DeliveryApp
from worker.delivery.history import run_lease_key
from worker.delivery.options import DeliveryOptions
from worker.delivery.rulebook import EngineRuleBook
from worker.process.actors import Actors, declare_actors, in_flight_key
from worker.process.broker import BrokerOptions, create_broker, is_embedded, queue_backlog
from worker.rules.ruleset import RuleSet
from worker.rules.watcher import RuleRegistry
from worker.settings import Settings
from worker.state import StateStore, key, open_store
from worker.state.durability import UnsafeStateStore, check_durability
from worker.state.locks import Lease

log = logging.getLogger(__name__)

#: The queues a worker can consume, one per stage.
STAGES: tuple[str, ...] = ("poll", "dispatch", "run")
#: How often the embedded runtime re-sends runs and events nobody is working on (see :meth:`recover`).
SWEEP_INTERVAL = 10.0


def open_rules(settings: Settings, *, watch: bool) -> tuple[EngineRuleBook, RuleRegistry]:
    """The rules of ``settings.rules_dir``; with ``watch``, reloaded as the files change.

    A broken rule is left out (each of its errors logged at ERROR by the registry) and the others
    load; with ``watch`` its last good version keeps running. See :func:`announce_rules`.
    """
    registry = RuleRegistry(settings=settings)
    if watch:
        registry.start()
    else:
        registry.load()
    announce_rules(registry.ruleset, settings.rules_dir)
    return EngineRuleBook(lambda: registry.engine, settings), registry


def announce_rules(ruleset: RuleSet, rules_dir: Path) -> None:
    """Say at start how the rules loaded, the louder the worse: a worker that silently starts with
    no rules polls nothing and looks idle, not broken.

    ERROR when rule files are present but not one rule loaded (naming the files that failed),
    WARNING when some rules are broken or there is no rule at all, INFO otherwise.
    """
    loaded, broken = len(ruleset), ruleset.broken
    if loaded == 0 and broken:
        failed = sorted({error.file for entry in broken for error in entry.errors})
        log.error(
            "no rule loaded from %s: %d broken rule(s) in %s; nothing will be polled or run until "
            "they are fixed (errors above; `ppw rules check` lists them)",
            rules_dir,
            len(broken),
            ", ".join(failed),
        )
    elif broken:
        log.warning(
            "loaded %d rule(s) from %s; %d broken rule(s) left out (errors above): %s",
            loaded,
            rules_dir,
            len(broken),
            ", ".join(entry.location for entry in broken),
        )
    elif loaded == 0:
        log.warning(
            "no rule loaded from %s (%d rule file(s)): nothing will be polled or run",
            rules_dir,
            len(ruleset.files),
        )
    else:
        log.info("loaded %d rule(s) from %s", loaded, rules_dir)


@dataclass
class Runtime:
    """A running (or ready to run) delivery process.

    Parameters
    ----------
    app:
        The delivery application (state, rules, clients).
    broker:
        The Dramatiq broker the actors are declared on.
    actors:
        The poll, dispatch and run actors.
    owns_store:
        Whether :meth:`close` closes ``app.store`` (not when the caller passed it in).
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
        if store is None:
            store = open_store(settings.state_url)
            try:
                check_durability(store)
            except UnsafeStateStore:
                store.close()
                raise
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
            self.recover(fresh_broker=True)  # the memory broker starts empty: nothing is on its way
        self._sweeper = threading.Thread(target=self._sweep, name="ppw-sweeper", daemon=True)
        self._sweeper.start()
        return self.worker

    def recover(self, *, events_older_than: float = 0.0, fresh_broker: bool = False) -> tuple[int, int]:
        """Re-send work that lives only in the state store: undispatched events and unfinished runs.

        Messages can be lost: the memory broker's die with the process, and a retry Dramatiq could
        not enqueue because the broker was down is gone too. The state store keeps the truth, so
        this sends a dispatch message for every event still pending (for longer than
        ``events_older_than`` seconds: a live dispatch message is handled within moments) and a
        run message for every unfinished run that nobody holds and whose message is not known to
        be on its way or due later. Repeats are harmless: dispatch dedupes by event id, and a run
        skips finished steps and waits for a lease another worker holds. With ``fresh_broker`` (a
        memory broker just created) no message can be on its way, whatever was noted. Returns
        (events, runs) re-sent.

        Runs are held back while the run queue has a backlog on a shared broker: a run whose
        "on its way" marker lapsed is then most likely still waiting in it. The memory broker's
        queue counts delayed retries as waiting, and loses no message while its process lives.
        """
        app, connection = self.app, self.app.settings.connection_id
        events = (
            []
            if self._backlog(self.actors.queues.dispatch, fresh_broker)
            else app.events.pending(connection, events_older_than)
        )
        self.actors.send_dispatch(connection, events)
        waiting = not self.embedded and self._backlog(self.actors.queues.run, fresh_broker)
        runs = [] if waiting else self._lost_runs(fresh_broker)
        self.actors.send_runs(connection, runs)
        if events or runs:
            log.info(
                "re-sent %d pending event(s) and %d unfinished run(s) from the state store",
                len(events),
                len(runs),
            )
        return len(events), len(runs)

    def _lost_runs(self, fresh_broker: bool) -> list[str]:
        """Unfinished runs that nobody holds and whose message is not on its way nor due later."""
        app, connection = self.app, self.app.settings.connection_id
        now = time.time()
        runs: list[str] = []
        active = app.history.active(connection)
        probes = [
            k
            for run_id in active
            for k in (in_flight_key(connection, run_id), run_lease_key(connection, run_id))
        ]
        found = app.store.get_many(probes) if probes else []
        for index, run_id in enumerate(active):
            on_its_way = found[2 * index] is not None and not fresh_broker
            if on_its_way or found[2 * index + 1] is not None:  # ... or being run right now
                continue
            run = app.history.find(connection, run_id)
            if run is None or run.terminal or (run.next_retry_at is not None and run.next_retry_at > now):
                continue
            runs.append(run_id)
        return runs

    def _backlog(self, queue: str, fresh_broker: bool) -> bool:
        """Whether messages still wait in ``queue`` (or cannot be counted): then the work they carry
        is on its way, not lost, and re-sending it would only make duplicates. Messages a dead
        worker had taken are not waiting (see :func:`~worker.process.broker.queue_backlog`)."""
        if fresh_broker:
            return False
        backlog = queue_backlog(self.broker, queue)
        return backlog is None or backlog > 0

    def _sweep(self) -> None:
        """Every :data:`SWEEP_INTERVAL`, one process per connection (a lease elects it) recovers."""
        turn = Lease(
            self.app.store, key(self.app.settings.connection_id, "sweeper"), ttl=SWEEP_INTERVAL * 0.9
        )
        while not self._stopping.wait(SWEEP_INTERVAL):
            try:
                self.actors.runner.release_leftover_leases()
                if turn.acquire():
                    self.recover(events_older_than=SWEEP_INTERVAL * 2)
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
