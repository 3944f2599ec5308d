"""The shared rate limit: slots are claimed once across limiters (processes) sharing a store.

A controllable clock stands in for time so the pacing is checked exactly, without timing asserts.
"""

from __future__ import annotations

from worker.practicepanther.ratelimit import RateLimiter
from worker.state import StateStore


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_limiters_sharing_a_store_never_share_a_slot(store: StateStore, connection_id: str) -> None:
    clock = Clock(1_000_000.0)
    rate = 10.0
    first, second = (
        RateLimiter(store, connection_id, rate, burst=1, clock=clock, sleep=clock.sleep) for _ in range(2)
    )
    waits = [limiter.acquire() for _ in range(5) for limiter in (first, second)]
    # Ten calls at one instant: the first goes now, the others one slot (0.1 s) apart each.
    assert sorted(round(w, 6) for w in waits) == [round(i / rate, 6) for i in range(10)]


def test_burst_allows_a_quiet_connection_to_catch_up(store: StateStore, connection_id: str) -> None:
    clock = Clock(2_000_000.0)
    limiter = RateLimiter(store, connection_id, 5.0, burst=3, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert [round(w, 6) for w in waits[3:]] == [0.2, 0.4]


def test_disabled(store: StateStore, connection_id: str) -> None:
    limiter = RateLimiter(store, connection_id, 0)
    assert not limiter.enabled
    assert limiter.acquire() == 0.0


def test_connections_have_separate_budgets(store: StateStore, connection_id: str) -> None:
    clock = Clock(3_000_000.0)
    one = RateLimiter(store, connection_id, 1.0, burst=1, clock=clock, sleep=clock.sleep)
    other = RateLimiter(store, connection_id + "b", 1.0, burst=1, clock=clock, sleep=clock.sleep)
    assert one.acquire() == 0.0
    assert other.acquire() == 0.0
    store.delete(*store.scan(f"ppw:{connection_id}b:"))
