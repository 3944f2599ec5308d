"""End-to-end throughput: changes in the sandbox → events → rules → a local HTTP sink.

``changes`` new matters are created in the sandbox (500 per request, as fast as it takes them)
while the whole worker runs (:mod:`benchmarks.pipeline`: scheduler polling every second, poll,
dispatch and run actors, one ``http.request`` step per event). The clock runs from the first
change to the sink receiving the last delivery; the rate is ``changes / seconds``. On Redis it is
compared with the engine ceiling (no-op Dramatiq messages on the same broker, measured in the same
run); embedded (memory broker, SQLite) with the durable floor (:mod:`benchmarks.durable_floor`: a
bare loop making the same number of fsync'd SQLite commits and the same POST per event, measured
in the same run), because each step's durable commits cost far more than an empty message.
Target: ratio ≥ 0.5.

``state_writes_per_event`` counts the state-store calls that write (each is one write
transaction on SQLite, one ``COMMIT`` with ``synchronous=FULL``: the figure the floor copies).

Every delivery carries an ``Idempotency-Key`` (event, rule, step), so the sink also proves
nothing was lost (``distinct == changes``) and nothing was delivered twice
(``received == distinct``).

    python -m benchmarks.throughput [changes] [memory|redis]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks.instruments import CountingStore, StageClock
from benchmarks.pipeline import BrokerKind, pipeline, produce
from benchmarks.services import THREADS
from worker.process.runtime import wait_until

TARGET_RATIO = 0.5

#: The :class:`~benchmarks.instruments.CountingStore` methods that write: on SQLite each call is
#: one ``BEGIN IMMEDIATE`` … ``COMMIT`` (a batch is one for all its writes).
WRITE_METHODS = frozenset(
    {
        "batch",
        "set",
        "set_if_absent",
        "set_many_if_absent",
        "incr",
        "incr_many",
        "acquire_lease",
        "acquire_leases_and_get",
        "release_lease",
        "take_turns",
        "delete",
        "hset",
        "hset_bytes",
        "hdel",
        "zadd",
        "zrem",
    }
)


def run(changes: int = 20_000, kind: BrokerKind = "memory", *, threads: int = THREADS) -> dict[str, Any]:
    """One sustained run of ``changes`` changes; rates, and the loss/duplicate check."""
    clock = StageClock()
    with pipeline(kind, threads=threads, middleware=[clock], count_state_calls=True) as running:
        store = running.store
        assert isinstance(store, CountingStore)
        calls_before = store.total()
        writes_before = _writes(store)
        started = produce(running.admin, changes)
        produced = time.time()
        deadline = max(600.0, changes / 10)
        delivered = wait_until(lambda: running.sink()["distinct"] >= changes, deadline, interval=0.25)
        sink = running.sink()
        state_calls = store.total() - calls_before
        state_writes = _writes(store) - writes_before
        by_method = dict(store.calls.most_common())
        runs = running.runtime.app.history.recent(running.connection, limit=5)
    last = sink["last"] or time.time()
    seconds = last - started
    return {
        "broker": kind,
        "state": "sqlite" if kind == "memory" else "redis",
        "changes": changes,
        "threads": threads,
        "seconds": round(seconds, 2),
        "produce_seconds": round(produced - started, 2),
        "events_per_second": round(changes / seconds, 1) if delivered else None,
        "received": sink["received"],
        "distinct": sink["distinct"],
        "complete": delivered,
        "duplicates": sink["received"] - sink["distinct"],
        "sample_run_status": [r.status for r in runs],
        "stages": clock.summary(),
        "state_calls_per_event": round(state_calls / changes, 1),
        "state_calls_by_method": by_method,
        "state_writes_per_event": round(state_writes / changes, 2),
    }


def _writes(store: CountingStore) -> int:
    return sum(count for method, count in store.calls.items() if method in WRITE_METHODS)


def main(argv: list[str]) -> int:
    changes = int(argv[0]) if argv else 20_000
    kind: BrokerKind = "redis" if len(argv) > 1 and argv[1] == "redis" else "memory"
    print(json.dumps(run(changes, kind), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
