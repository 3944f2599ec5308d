"""A per-hook rate limit shared by every replica, kept in the state store.

A sliding-window counter (the estimate ``previous window * share still in view + current window``),
so a burst cannot get twice the limit through by straddling a window boundary, at the cost of two
keys per hook and one ``INCR`` per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.state.base import StateStore


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int = 0


class SlidingWindowLimiter:
    """At most ``limit`` hits per ``period`` seconds for each name, counted under ``base``.

    Parameters
    ----------
    store:
        Shared by every replica (Redis in deployment), so the limit is per hook, not per process.
    base:
        Key prefix, built with :func:`worker.state.key`.
    """

    def __init__(
        self,
        store: StateStore,
        base: str,
        limit: int,
        period: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1:
            raise ValueError("a rate limit needs limit >= 1")
        self.store = store
        self.base = base
        self.limit = limit
        self.period = period
        self.clock = clock

    def hit(self, name: str) -> Decision:
        """Count one request for ``name``; refused (and not counted) when over the limit."""
        now = self.clock()
        window = int(now // self.period)
        current_key = f"{self.base}:{name}:{window}"
        count = self.store.incr(current_key, 1, ttl=self.period * 2 + 1)
        previous = int(self.store.get(f"{self.base}:{name}:{window - 1}") or 0)
        elapsed = now - window * self.period
        weight = 1.0 - elapsed / self.period
        if previous * weight + count <= self.limit:
            return Decision(True)
        self.store.incr(current_key, -1)  # a refused request does not use up the allowance
        return Decision(False, self._retry_after(previous, count - 1, elapsed))

    def _retry_after(self, previous: int, count: int, elapsed: float) -> int:
        """Seconds until one more request would fit."""
        room = self.limit - 1 - count
        if room < 0 or previous == 0:
            wait = self.period - elapsed  # this window is full: wait for the next one
        else:
            # previous * (1 - (elapsed + t) / period) <= room
            wait = self.period * (1 - room / previous) - elapsed
        return max(1, math.ceil(wait))
