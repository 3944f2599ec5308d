"""The per-rule, per-record circuit breaker: a runaway rule stops itself for that record.

A rule that writes to the record it watches (with ``allow_own_changes``), or two rules feeding each
other, can fire for one record again and again. More than ``limit`` fires of one rule for one record
within one ``period`` (the rule's ``rate_limit``, by default ``PPW_RULE_BURST_PER_MINUTE`` per
minute) trips the breaker: that rule is paused for that record for ``pause`` seconds, the
dispatch says so in the log, the metrics and the run history (status ``paused``), and every other
record and rule carries on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker.state.base import StateStore, key


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    fires: int
    paused_until: float | None = None
    tripped_now: bool = False


class CircuitBreaker:
    def __init__(self, store: StateStore, *, limit: int, period: float = 60.0, pause: float) -> None:
        self.store = store
        self.limit = limit
        self.period = period
        self.pause = pause

    def check(self, connection: str, rule_id: str, resource: str, record_id: str) -> Verdict:
        """Count one fire and say whether it may run."""
        paused_key = key(connection, "breaker", "paused", rule_id, resource, record_id)
        paused = self.store.get(paused_key)
        if paused is not None:
            return Verdict(allowed=False, fires=0, paused_until=float(paused))
        if self.limit <= 0:
            return Verdict(allowed=True, fires=0)
        window = int(time.time() // self.period)
        counter = key(connection, "breaker", "fires", rule_id, resource, record_id, str(window))
        fires = self.store.incr(counter, ttl=self.period * 2)
        if fires <= self.limit:
            return Verdict(allowed=True, fires=fires)
        until = time.time() + self.pause
        tripped = self.store.set_if_absent(paused_key, f"{until:.3f}", ttl=self.pause)
        return Verdict(allowed=False, fires=fires, paused_until=until, tripped_now=tripped)

    def reset(self, connection: str, rule_id: str, resource: str, record_id: str) -> None:
        self.store.delete(key(connection, "breaker", "paused", rule_id, resource, record_id))
