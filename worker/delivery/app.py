"""The delivery application: one object holding what dispatch and runs need in a worker process.

Built once per process (``ppw worker``, ``ppw run``, a test, the demo) and handed to
:func:`worker.process.actors.declare_actors`; the actors stay thin and every decision lives in
:mod:`~worker.delivery.dispatch` and :mod:`~worker.delivery.runner`, testable without a broker.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from worker.actions.services import Services
from worker.calendar import Calendar
from worker.delivery.alarms import Alarms
from worker.delivery.breaker import CircuitBreaker
from worker.delivery.deadletters import DeadLetters
from worker.delivery.history import RunHistory
from worker.delivery.ledger import Ledger
from worker.delivery.options import DeliveryOptions
from worker.delivery.rulebook import EngineRuleBook
from worker.delivery.timers import Timers
from worker.eventstore import EventStore
from worker.settings import Settings
from worker.state.base import StateStore


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class DeliveryApp:
    """Settings, state and clients for delivery.

    Parameters
    ----------
    rules:
        Where rules come from (the hot-reloading registry in production).
    services:
        The clients steps use (PracticePanther, HTTP); closed by :meth:`close`.
    options:
        Retry, lease and breaker knobs (defaults from the settings).
    """

    settings: Settings
    store: StateStore
    rules: EngineRuleBook
    services: Services
    options: DeliveryOptions
    worker_id: str = field(default_factory=_worker_id)

    def __post_init__(self) -> None:
        retention = self.options.retention
        self.events = EventStore(self.store, ttl=retention)
        self.history = RunHistory(self.store, retention=retention)
        self.ledger = Ledger(self.store, ttl=retention)
        self.dead_letters = DeadLetters(self.store, self.history)
        self.timers = Timers(self.store)
        self.alarms = Alarms(
            self.store, lambda: Calendar.from_settings(self.settings), backfill=self.settings.trigger_backfill
        )

    @classmethod
    def create(
        cls,
        settings: Settings,
        store: StateStore,
        rules: EngineRuleBook,
        *,
        services: Services | None = None,
        options: DeliveryOptions | None = None,
    ) -> DeliveryApp:
        return cls(
            settings=settings,
            store=store,
            rules=rules,
            services=services or Services(settings, store),
            options=options or DeliveryOptions.from_settings(settings),
        )

    def breaker(self, limit: int | None = None, period: float = 60.0) -> CircuitBreaker:
        """The circuit breaker for a rule's limit (default ``PPW_RULE_BURST_PER_MINUTE`` per minute)."""
        return CircuitBreaker(
            self.store,
            limit=self.options.burst_per_minute if limit is None else limit,
            period=period,
            pause=self.options.breaker_pause,
        )

    def close(self) -> None:
        self.services.close()
