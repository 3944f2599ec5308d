"""The engine ceiling: how many no-op Dramatiq messages one worker process handles per second.

This is the yardstick for the end-to-end figures. Whatever ppw does per event (store it, dispatch
it, run a rule), it cannot go faster than Dramatiq moving empty messages on the same broker, the
same machine and the same number of worker threads; the end-to-end benchmark reports its
throughput as a share of this ceiling.

Measured as *drain* throughput: ``n`` messages are enqueued first, then a ``dramatiq.Worker``
with ``threads`` threads is started and timed until the last one is done. The enqueue rate is
reported too. Raw Dramatiq: the broker's default middleware, no ppw code.

    python -m benchmarks.engine_ceiling [n] [threads]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from benchmarks.services import REDIS_URL, THREADS, delete_matching, redis_available, unique

DRAIN_TIMEOUT = 300.0


class _Counter:
    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self._lock = threading.Lock()
        self.done = threading.Event()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.target:
                self.done.set()


def measure(broker: dramatiq.Broker, n: int, threads: int = THREADS) -> dict[str, Any]:
    """Enqueue ``n`` no-op messages on ``broker``, then drain them with one worker; rates per second."""
    queue = unique("noop")
    counter = _Counter(n)

    def noop(index: int) -> None:
        counter.hit()

    actor = dramatiq.actor(broker=broker, actor_name=f"bench_{queue}", queue_name=queue, max_retries=0)(noop)
    started = time.perf_counter()
    for index in range(n):
        actor.send(index)
    enqueue_seconds = time.perf_counter() - started

    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=threads, worker_timeout=50)
    started = time.perf_counter()
    worker.start()
    finished = counter.done.wait(DRAIN_TIMEOUT)
    drain_seconds = time.perf_counter() - started
    worker.stop()
    if not finished:
        raise RuntimeError(f"only {counter.count} of {n} no-op messages were processed in {DRAIN_TIMEOUT:g}s")
    return {
        "messages": n,
        "threads": threads,
        "enqueue_seconds": round(enqueue_seconds, 3),
        "enqueue_per_second": round(n / enqueue_seconds),
        "drain_seconds": round(drain_seconds, 3),
        "messages_per_second": round(n / drain_seconds),
    }


def memory(n: int, threads: int = THREADS) -> dict[str, Any]:
    """The embedded broker: StubBroker with an in-process worker (what ``ppw run`` uses)."""
    broker = StubBroker()
    broker.emit_after("process_boot")
    try:
        return measure(broker, n, threads)
    finally:
        broker.close()


def redis(n: int, threads: int = THREADS, url: str = REDIS_URL) -> dict[str, Any]:
    """The Redis broker, under a namespace of its own that is deleted afterwards."""
    namespace = unique("dramatiq-bench-")
    broker = RedisBroker(url=url, namespace=namespace)
    try:
        return measure(broker, n, threads)
    finally:
        broker.close()
        delete_matching(url, f"{namespace}*")


def run(n: int = 20_000, threads: int = THREADS, redis_url: str = REDIS_URL) -> dict[str, Any]:
    """Both brokers; ``redis`` is None (with ``redis_skipped``) when Redis does not answer."""
    result: dict[str, Any] = {"memory": memory(n, threads)}
    missing = redis_available(redis_url)
    if missing:
        result["redis"] = None
        result["redis_skipped"] = missing
    else:
        result["redis"] = redis(n, threads, redis_url)
    return result


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 20_000
    threads = int(argv[1]) if len(argv) > 1 else THREADS
    print(json.dumps(run(n, threads), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
