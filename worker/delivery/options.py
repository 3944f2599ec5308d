"""Delivery knobs, read from the settings.

Kept as one frozen object handed to the actors, so a test can run the real machinery with short
backoffs and leases without patching anything. The knobs that are settings take their defaults
from :class:`~worker.settings.Settings` (see :mod:`worker.options`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from worker.options import options_from, setting
from worker.settings import Settings

DAY = 86_400.0


@dataclass(frozen=True)
class DeliveryOptions:
    """How hard and how long delivery tries.

    Parameters
    ----------
    max_attempts:
        Attempts of a run (first try included) before its failure is dead-lettered.
    retry_base:
        Seconds of the first backoff; doubled each attempt, with jitter.
    retry_max:
        Longest backoff, and the longest ``Retry-After`` honoured as asked.
    retention:
        Seconds events, ledger entries and run history are kept.
    run_lease:
        Seconds a run's lease lasts without renewal; the worker running it renews it
        all along, so this is how long a killed worker blocks the run before another resumes it.
    burst_per_minute:
        Fires of one rule for one record per minute before the circuit breaker
        pauses that rule for that record.
    breaker_pause:
        Seconds the breaker keeps a rule paused for a record.
    queued_wait:
        Seconds between checks when a ``mode: queued`` run waits for its turn.
    dispatch_batch:
        Events named by one dispatch message.
    run_batch:
        Runs named by one run message.
    run_batch_seconds:
        How long one run message works through its runs before it hands the ones
        it has not started to new messages (one run each), so slow steps spread over every thread.
    """

    max_attempts: int = setting("max_retries", lambda retries: max(1, int(retries) + 1))
    retry_base: float = setting("retry_base")
    retry_max: float = setting("retry_max")
    retention: float = setting("run_retention_days", lambda days: float(days) * DAY)
    run_lease: float = setting("run_lease")
    burst_per_minute: int = setting("rule_burst_per_minute", int)
    breaker_pause: float = setting("breaker_pause")
    queued_wait: float = 1.0
    dispatch_batch: int = 50
    run_batch: int = 10
    run_batch_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryOptions:
        return options_from(cls, settings)

    def with_(self, **changes: Any) -> DeliveryOptions:
        return replace(self, **changes)
