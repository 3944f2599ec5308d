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
from collections.abc import Sequence
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
        return self.check_many(connection, [(rule_id, resource, record_id)])[0]

    def check_many(self, connection: str, fires: Sequence[tuple[str, str, str]]) -> list[Verdict]:
        """Count one fire for each (rule id, resource, record id) and say whether each may run.

        Three round trips for a whole dispatch batch, whatever its size: the pause flags, the fire
        counters, and (only when this batch trips the breaker) the new pause flags.
        """
        if not fires:
            return []
        paused_keys = [key(connection, "breaker", "paused", *fire) for fire in fires]
        paused = self.store.get_many(paused_keys)
        verdicts: list[Verdict | None] = [
            Verdict(allowed=False, fires=0, paused_until=float(p)) if p is not None else None for p in paused
        ]
        if self.limit <= 0:
            return [v or Verdict(allowed=True, fires=0) for v in verdicts]
        open_ = [i for i, v in enumerate(verdicts) if v is None]
        window = str(int(time.time() // self.period))
        counters = [key(connection, "breaker", "fires", *fires[i], window) for i in open_]
        for index, count in zip(open_, self.store.incr_many(counters, ttl=self.period * 2), strict=True):
            if count <= self.limit:
                verdicts[index] = Verdict(allowed=True, fires=count)
                continue
            until = time.time() + self.pause
            tripped = self.store.set_if_absent(paused_keys[index], f"{until:.3f}", ttl=self.pause)
            verdicts[index] = Verdict(allowed=False, fires=count, paused_until=until, tripped_now=tripped)
        return [v for v in verdicts if v is not None]

    def reset(self, connection: str, rule_id: str, resource: str, record_id: str) -> None:
        self.store.delete(key(connection, "breaker", "paused", rule_id, resource, record_id))
