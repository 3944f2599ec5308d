"""The services under the worker go away mid-run and come back: Redis (state and broker), RabbitMQ.

With a run in flight when Redis goes, its next state write fails and Dramatiq cannot enqueue the
retry either (the broker is the same Redis): the run must still finish, from the state store.

Redis is a private ``redis-server`` of this test (AOF on, ``appendfsync always``) restarted the way
``systemctl restart`` does it; the shared Redis on 6379 is never touched. RabbitMQ cannot be
restarted here, so the worker reaches it through a TCP proxy that drops every connection and
refuses new ones for the outage. While a service is down ``/readyz`` must say which one; once it
is back every change made before and during the outage fires exactly once.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import Chaos, drop_rabbitmq_queues, started_steps
from tests.chaos.harness import PrivateRedis, TcpProxy, eventually

OUTAGE_SECONDS = 3.0


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.close()


def test_redis_restart_between_runs(chaos_factory: Callable[..., Chaos], private_redis: PrivateRedis) -> None:
    chaos = chaos_factory(state_url=private_redis.url, broker_url=private_redis.url)
    worker = chaos.process("run").start()
    watch = chaos.watch(worker)
    eventually(chaos.primed, 20, "the first poll to prime matters")
    matters = chaos.open_matters(6)
    closed = chaos.close(matters[:3])
    chaos.wait_done(closed)

    private_redis.stop()
    down = time.time()
    closed += chaos.close(matters[3:])  # changes made while the worker cannot reach its state
    sample = watch.wait_for("state", timeout=15)
    assert "broker" in sample.failing, f"the broker lives in the same Redis: {sample.failing}"
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.time() - down)))
    private_redis.start()  # same port, same directory: the AOF brings the data back

    watch.wait_healthy(30)
    chaos.assert_invariants(closed)
    chaos.assert_still_live()
    assert worker.alive(), "the worker rides out the outage instead of exiting"


def test_redis_restart_with_a_run_in_flight(
    chaos_factory: Callable[..., Chaos], private_redis: PrivateRedis
) -> None:
    chaos = chaos_factory(state_url=private_redis.url, broker_url=private_redis.url)
    worker = chaos.process("run").start()
    watch = chaos.watch(worker)
    eventually(chaos.primed, 20, "the first poll to prime matters")
    chaos.admin.faults(latency=0.5)  # a step is in flight when Redis goes, and ends while it is gone
    closed = chaos.close(chaos.open_matters(2))
    eventually(lambda: started_steps(chaos), 30, "a step to be in flight")

    private_redis.stop()
    down = time.time()
    watch.wait_for("state", timeout=15)
    chaos.admin.faults(latency=0)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.time() - down)))
    private_redis.start()

    watch.wait_healthy(30)
    # The failed run's retry could not be enqueued (the broker is the same Redis): the sweeper
    # (every 10 s) re-sends it from the state store once it sees nobody holds it.
    chaos.assert_invariants(closed, timeout=45)
    assert worker.alive()


@pytest.fixture
def rabbit_proxy(rabbitmq_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5672)).start()
    yield proxy
    proxy.close()


def test_rabbitmq_outage_mid_run(
    chaos_factory: Callable[..., Chaos], redis_url: str, rabbitmq_url: str, rabbit_proxy: TcpProxy
) -> None:
    through_proxy = rabbitmq_url.replace(":5672", f":{rabbit_proxy.port}")
    chaos = chaos_factory(state_url=redis_url, broker_url=through_proxy)
    try:
        worker = chaos.process("run").start()
        watch = chaos.watch(worker)
        eventually(chaos.primed, 20, "the first poll to prime matters")
        matters = chaos.open_matters(6)
        closed = chaos.close(matters[:3])
        eventually(lambda: chaos.deliveries(), 30, "the first runs to start")

        rabbit_proxy.drop()
        down = time.time()
        closed += chaos.close(matters[3:])
        sample = watch.wait_for("broker", timeout=15)
        assert "state" not in sample.failing
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.time() - down)))
        rabbit_proxy.restore()

        watch.wait_healthy(40)
        chaos.assert_invariants(closed)
        chaos.assert_still_live()
        assert worker.alive()
    finally:
        for process in chaos.processes:
            process.stop()
        drop_rabbitmq_queues(rabbitmq_url, chaos.queue_prefix)
