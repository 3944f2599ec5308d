"""Delivery: everything between "an event was detected" and "its rules' steps were done once".

- :mod:`worker.eventstore` keeps events in the state store so broker messages carry ids only.
- :mod:`~worker.delivery.dispatch` matches an event to rules (dedupe, loop guard, circuit breaker).
- :mod:`~worker.delivery.runner` runs one rule on one event, step by step, through the
  :mod:`~worker.delivery.ledger`, recording :mod:`~worker.delivery.history` and
  :mod:`~worker.delivery.deadletters`.

The names in ``__all__`` are resolved lazily: ``ppw --help`` imports one module of this package
(``history``) and should not pay for the runner and its step types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.exports import lazy_exports

_EXPORTS = {
    "parse_moment": "worker.delivery.report",
    "Position": "worker.delivery.history",
    "RunPage": "worker.delivery.history",
    "RunQuery": "worker.delivery.history",
    "DeliveryApp": "worker.delivery.app",
    "DeadLetters": "worker.delivery.deadletters",
    "Dispatcher": "worker.delivery.dispatch",
    "Run": "worker.delivery.history",
    "RunHistory": "worker.delivery.history",
    "RunNotFound": "worker.delivery.history",
    "DeliveryOptions": "worker.delivery.options",
    "ReplayError": "worker.delivery.replay",
    "replay": "worker.delivery.replay",
    "replay_all": "worker.delivery.replay",
    "EngineRuleBook": "worker.delivery.rulebook",
    "Runner": "worker.delivery.runner",
    "run_lease_key": "worker.delivery.history",
    "AlarmPump": "worker.delivery.alarms",
    "Alarms": "worker.delivery.alarms",
    "RunBusy": "worker.delivery.timers",
    "TimerPump": "worker.delivery.timers",
    "Timers": "worker.delivery.timers",
    "cancel_waiting": "worker.delivery.timers",
    "wake_now": "worker.delivery.timers",
}

__all__ = [
    "AlarmPump",
    "Alarms",
    "DeadLetters",
    "DeliveryApp",
    "DeliveryOptions",
    "Dispatcher",
    "EngineRuleBook",
    "Position",
    "ReplayError",
    "Run",
    "RunBusy",
    "RunHistory",
    "RunNotFound",
    "RunPage",
    "RunQuery",
    "Runner",
    "TimerPump",
    "Timers",
    "cancel_waiting",
    "parse_moment",
    "replay",
    "replay_all",
    "run_lease_key",
    "wake_now",
]

if TYPE_CHECKING:
    from worker.delivery.alarms import AlarmPump, Alarms
    from worker.delivery.app import DeliveryApp
    from worker.delivery.deadletters import DeadLetters
    from worker.delivery.dispatch import Dispatcher
    from worker.delivery.history import (
        Position,
        Run,
        RunHistory,
        RunNotFound,
        RunPage,
        RunQuery,
        run_lease_key,
    )
    from worker.delivery.options import DeliveryOptions
    from worker.delivery.replay import ReplayError, replay, replay_all
    from worker.delivery.report import parse_moment
    from worker.delivery.rulebook import EngineRuleBook
    from worker.delivery.runner import Runner
    from worker.delivery.timers import RunBusy, TimerPump, Timers, cancel_waiting, wake_now


__getattr__ = lazy_exports(__name__, _EXPORTS)
