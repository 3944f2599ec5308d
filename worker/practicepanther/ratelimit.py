"""A client-side rate limit per connection, shared by every thread, process and host.

PracticePanther documents no rate limit and nobody has seen a 429, so the worker limits itself
(``PPW_RATE_LIMIT_PER_SECOND``) to stay polite however many worker processes run.

Time is cut into slots of ``1/rate`` seconds. A request claims the first free slot at or after
"now" with ``set_if_absent`` on ``ppw:<connection>:ratelimit:<slot>`` (an atomic ``SET NX`` on
Redis, an insert on SQLite) and sleeps until that slot starts. Each slot is claimed once across
all processes, so the pace never exceeds ``rate``. Up to ``burst`` unclaimed slots just behind
"now" may still be claimed: that is a token bucket of size ``burst`` that refills at ``rate``
(equivalent to GCRA), without a read-modify-write or a lock. Slot keys expire on their own.

Hosts derive slots from their own clocks, so skew between hosts loosens the limit by the skew;
NTP keeps that to milliseconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from worker.state.base import StateStore, key

__all__ = ["RateLimiter"]

MAX_BURST = 10


class RateLimiter:
    """Pace calls to ``rate`` per second across everything sharing ``store``.

    Parameters
    ----------
    store, connection:
        The shared state backend and the connection whose budget this is.
    rate:
        Calls per second; 0 or less disables the limit.
    burst:
        Calls allowed at once after a quiet period; defaults to one second's worth, at most 10.
    """

    def __init__(
        self,
        store: StateStore,
        connection: str,
        rate: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.rate = rate
        self.burst = burst if burst is not None else max(1, min(math.ceil(rate), MAX_BURST))
        self._prefix = key(connection, "ratelimit")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last_claimed = -1

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self) -> float:
        """Wait for this call's turn; returns the seconds waited."""
        if not self.enabled:
            return 0.0
        slot = self._claim()
        wait = slot / self.rate - self._clock()
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0

    def _claim(self) -> int:
        now_slot = math.floor(self._clock() * self.rate)
        with self._lock:
            # Slots this process already claimed or walked past need not be tried again.
            slot = max(now_slot - self.burst + 1, self._last_claimed + 1)
        while True:
            ttl = max(1.0, (slot - now_slot + self.burst + 1) / self.rate + 1.0)
            if self.store.set_if_absent(f"{self._prefix}:{slot}", "1", ttl=ttl):
                with self._lock:
                    self._last_claimed = max(self._last_claimed, slot)
                return slot
            slot += 1
