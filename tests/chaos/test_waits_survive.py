"""Waiting runs survive the processes that made them: SIGKILL the worker and the leading scheduler
while runs wait, or restart Redis (AOF on) under a running `ppw run`, and each run still wakes
once, at its moment, and runs its steps once; deleting the rule under a running `ppw run`
cancels its waiting runs without waiting for them to wake.

A deployment as docs/operations.md describes it (Redis for broker and state, two schedulers, one
leading, and a worker). The wait is a few seconds of real time: what is tested is that nothing of
a waiting run lives in a process (it is in the state store's timer index), not a long wait (those
run on time-machine's clock in tests/delivery/test_waits.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.conftest import CLOSED_MATTER_RULE, Chaos
from tests.chaos.harness import PpwProcess, PrivateRedis, eventually
from worker.delivery.history import Run
from worker.delivery.timers import timers_key
from worker.polling.scheduler import leader_key

WAITING_RULE = CLOSED_MATTER_RULE.replace(
    "  steps:\n", '  steps:\n    - id: later\n      type: wait\n      with: {{for: "8s"}}\n', 1
)

DEPLOYMENT = {
    "PPW_POLL_INTERVAL": "5",
    "PPW_POLL_RESOURCES": "matters",
    "PPW_HTTP_TIMEOUT": "10",
}


def _waiting(chaos: Chaos) -> int:
    return sum(1 for r in chaos.runs() if r.rule_id == "chaos-closed-matter" and r.status == "waiting")


def _leader(chaos: Chaos, schedulers: list[PpwProcess]) -> PpwProcess:
    owner = chaos.store.get(leader_key(chaos.connection)) or ""
    pid = int(owner.split("/")[1]) if owner.count("/") >= 2 else -1
    [leading] = [s for s in schedulers if s.process is not None and s.process.pid == pid]
    return leading


def test_waiting_runs_wake_once_across_sigkill_of_the_worker_and_the_leader(
    chaos_factory: Callable[..., Chaos], redis_url: str
) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url, **DEPLOYMENT)
    chaos.write_rules(WAITING_RULE)
    schedulers = [chaos.process("scheduler").start(wait_ready=False) for _ in range(2)]
    worker = chaos.process("worker").start(wait_ready=False)
    eventually(chaos.primed, 30, "the first poll to prime matters")
    closed = chaos.close(chaos.open_matters(3))
    eventually(lambda: _waiting(chaos) == 3, 60, "the three runs to wait")
    assert chaos.closing_tasks() == {}, "nothing acted before the wait ended"

    _leader(chaos, schedulers).kill()  # the standby takes the leadership and wakes the runs
    worker.kill()
    chaos.process("worker").start(wait_ready=False)

    chaos.assert_invariants(closed, timeout=90)  # one closing task, one delivery, one run each


def test_waiting_runs_survive_a_redis_restart_with_aof(
    chaos_factory: Callable[..., Chaos], tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    redis = PrivateRedis(tmp_path / "redis").start()
    try:
        chaos = chaos_factory(state_url=redis.url, broker_url=redis.url, **DEPLOYMENT)
        chaos.write_rules(WAITING_RULE)
        worker = chaos.process("run").start()
        eventually(chaos.primed, 30, "the first poll to prime matters")
        closed = chaos.close(chaos.open_matters(2))
        eventually(lambda: _waiting(chaos) == 2, 60, "the two runs to wait")
        redis.stop()  # the state store goes away while the runs wait ...
        time.sleep(2.0)  # an outage a little longer than a few pump looks (real processes)
        redis.start()  # ... and comes back from its AOF
        chaos.assert_invariants(closed, timeout=90)
        assert worker.alive()
    finally:
        redis.close()


def test_deleting_the_rule_cancels_its_waiting_runs_in_a_running_deployment(
    chaos_factory: Callable[..., Chaos], redis_url: str
) -> None:
    """`ppw run` hot-reloads its rules: the file's deletion reaches the leader's pump, which
    cancels the waiting runs long before they would wake (production wiring, real processes)."""
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url, **DEPLOYMENT)
    chaos.write_rules(WAITING_RULE.replace('{{for: "8s"}}', '{{for: "10 minutes"}}'))
    worker = chaos.process("run").start()
    eventually(chaos.primed, 30, "the first poll to prime matters")
    chaos.close(chaos.open_matters(2))
    eventually(lambda: _waiting(chaos) == 2, 60, "the two runs to wait")
    (chaos.rules_dir / "rules.yaml").unlink()

    def cancelled() -> list[Run]:
        runs = [r for r in chaos.runs() if r.rule_id == "chaos-closed-matter"]
        return [r for r in runs if r.status == "cancelled"] if len(runs) == 2 else []

    eventually(lambda: len(cancelled()) == 2, 30, "the waiting runs to be cancelled")
    assert {r.reason for r in cancelled()} == {"the rule was deleted while the run waited (rules reloaded)"}
    assert chaos.store.zcard(timers_key(chaos.connection)) == 0
    assert chaos.closing_tasks() == {} and worker.alive()
