"""Timers (waiting runs) at scale: what a look costs, what a timer weighs, how late one fires.

The scheduler's leader looks for due timers twice a second
(:class:`worker.delivery.timers.TimerPump`). Measured on SQLite and Redis with 100,000 timers pending:

- a look with none due: store calls (counted) and time (median and p99 of 2,000 looks), beside a
  bare ``zrange_by_score`` of the same set (the floor);
- state bytes per pending timer: its sorted-set member (the default ``queued`` mode), and with the
  rule-record marker that modes ``single`` and ``restart`` keep (a digest field in a small hash);
- 10,000 timers due at once: looks until all are sent, and that each was sent exactly once;
- lateness: timers due at random moments over 20 s, the pump looking every ``TIMER_TICK`` (as the
  scheduler's leader does) in real time;
  the delay between a timer's moment and its run message, p50/p99.

Targets (#18): one call and < 1 ms per idle look, ≤ 200 bytes per timer, none lost or repeated,
p99 lateness ≤ 1 s.

    python -m benchmarks.timers [pending]
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.instruments import CountingStore
from benchmarks.services import REDIS_URL, namespace, redis_available
from worker.delivery.history import EventSummary, Run
from worker.delivery.timers import TimerPump, Timers, timers_key
from worker.process.run import TIMER_TICK
from worker.state import StateStore, open_store

TARGET_LOOK_MS = 1.0
TARGET_BYTES = 200.0
TARGET_LATENESS_P99 = 1.0


def _run(connection: str, index: int, mode: str) -> Run:
    event = EventSummary(type="updated", resource="invoices", record_id=f"inv-{index:06d}", revision="r")
    return Run(
        id=f"{index:024x}",
        connection=connection,
        event_id=f"e{index}",
        event=event,
        rule_id="invoice-follow-up",
        rule_version="v1",
        mode=mode,
    )


def _fill(store: StateStore, connection: str, count: int, due: float, mode: str = "queued") -> None:
    timers = Timers(store)
    for start in range(0, count, 1000):
        with store.batch() as batch:
            for index in range(start, min(start + 1000, count)):
                timers.add(batch, _run(connection, index, mode), due + index)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(store: StateStore, connection: str, pending: int) -> dict[str, Any]:
    prefix = f"ppw:{connection}:"
    _fill(store, connection, pending, time.time() + 86_400)
    per_timer = store.size_bytes(prefix) / pending
    marked = f"{connection}-restart"
    _fill(store, marked, pending, time.time() + 86_400, mode="restart")
    per_marked = store.size_bytes(f"ppw:{marked}:") / pending

    counting = CountingStore(store)
    pump = TimerPump(counting, connection, lambda _c, _ids: None)
    pump.tick()  # the first look also counts the pending timers
    counting.calls.clear()
    looks: list[float] = []
    for _ in range(2000):
        started = time.perf_counter()
        pump.tick()
        looks.append((time.perf_counter() - started) * 1000)
    calls = sum(counting.calls.values()) / 2000
    floors: list[float] = []
    for _ in range(2000):
        started = time.perf_counter()
        store.zrange_by_score(timers_key(connection), maximum=time.time(), limit=1000)
        floors.append((time.perf_counter() - started) * 1000)

    burst = f"{connection}-burst"
    _fill(store, burst, 10_000, time.time() - 10_000)
    sent: Counter[str] = Counter()
    burst_pump = TimerPump(store, burst, lambda _c, ids: sent.update(ids))
    rounds = 0
    while sum(sent.values()) < 10_000 and rounds < 100:
        burst_pump.tick()
        rounds += 1
    repeats = sum(n - 1 for n in sent.values() if n > 1)
    return {
        "pending": pending,
        "bytes_per_timer": round(per_timer, 1),
        "bytes_per_timer_restart_mode": round(per_marked, 1),
        "calls_per_idle_look": calls,
        "idle_look_ms_median": round(statistics.median(looks), 4),
        "idle_look_ms_p99": round(_percentile(looks, 0.99), 4),
        "floor_ms_median": round(statistics.median(floors), 4),
        "burst": {"due": 10_000, "sent": len(sent), "repeats": repeats, "looks": rounds},
    }


def lateness(store: StateStore, connection: str, count: int = 200, spread: float = 20.0) -> dict[str, Any]:
    """The pump looking every ``TIMER_TICK`` in real time; timers due at random moments over ``spread`` s."""
    start = time.time() + 1.0
    dues = {f"{i:024x}": start + random.uniform(0, spread) for i in range(count)}
    with store.batch() as batch:
        batch.zadd(timers_key(connection), dues)
    late: dict[str, float] = {}
    lock = threading.Lock()

    def send(_connection: str, ids: list[str]) -> None:
        now = time.time()
        with lock:
            for run_id in ids:
                late.setdefault(run_id, now - dues[run_id])
                store.zrem(timers_key(connection), run_id)  # as the woken run does

    pump = TimerPump(store, connection, send)
    deadline = start + spread + 3.0
    while time.time() < deadline and len(late) < count:
        pump.tick()
        time.sleep(TIMER_TICK)
    values = list(late.values())
    return {
        "timers": count,
        "fired": len(values),
        "p50_seconds": round(_percentile(values, 0.5), 3) if values else None,
        "p99_seconds": round(_percentile(values, 0.99), 3) if values else None,
    }


def run_benchmark(pending: int = 100_000, *, redis_url: str = REDIS_URL) -> dict[str, Any]:
    backends: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ppw-bench-timers-") as tmp:
        for backend in ("sqlite", "redis"):
            if backend == "redis" and (missing := redis_available(redis_url)):
                backends.append({"backend": backend, "skipped": missing})
                continue
            with namespace(redis_url if backend == "redis" else None) as ns:
                url = redis_url if backend == "redis" else f"sqlite:///{Path(tmp) / 'timers.db'}"
                store = open_store(url)
                try:
                    result = measure(store, ns.connection, pending)
                    result["lateness"] = lateness(store, f"{ns.connection}-late")
                finally:
                    store.close()
            backends.append({"backend": backend, **result})
    return {"pending": pending, "backends": backends}


def main(argv: list[str]) -> int:
    pending = int(argv[0]) if argv else 100_000
    print(json.dumps(run_benchmark(pending), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
