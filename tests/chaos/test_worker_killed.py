"""SIGKILL a worker while a step is writing to PracticePanther; another worker finishes the job.

The kill lands while ``practicepanther.create`` is in flight (PracticePanther is slow, and the
step's ledger entry says ``started``), so nobody knows whether the task was created. The second
worker gets the message again (Redis redelivers the dead worker's unacknowledged messages once
its heartbeat lapses), waits for the dead worker's run lease to expire, finds the ``started``
entry, looks for the create's marker in PracticePanther, and does not create a second task.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.chaos.conftest import Chaos, started_steps
from tests.chaos.harness import eventually

FAST_REDELIVERY = {
    "PPW_BROKER_HEARTBEAT_TIMEOUT": "2",  # seconds before a silent worker's messages are requeued
    "PPW_BROKER_MAINTENANCE_CHANCE": "1000000",  # requeue on every check (out of a million)
    "PPW_RUN_LEASE": "3",
    "PPW_HTTP_TIMEOUT": "2",  # the run lease is at least twice this
    "PPW_POLL_TIMEOUT": "5",
}


def test_sigkill_mid_step_never_writes_twice(chaos_factory: Callable[..., Chaos], redis_url: str) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url, **FAST_REDELIVERY)
    first = chaos.process("run").start()
    eventually(chaos.primed, 20, "the first poll to prime matters")
    matters = chaos.open_matters(2)

    chaos.admin.faults(latency=1.5)  # every API call now takes 1.5 s: the create is in flight a while
    closed = chaos.close(matters)
    in_flight = eventually(lambda: started_steps(chaos), 30, "a practicepanther.create step to be in flight")
    first.kill()
    mark = chaos.admin.mark()
    assert not first.alive()
    assert first.ready() == (None, {}), "a killed worker answers no probe: the orchestrator notices"

    chaos.admin.faults(latency=0)
    second = chaos.process("run").start()
    chaos.assert_invariants(closed)
    interrupted = [r for r in chaos.runs() if r.event_id in in_flight]
    assert interrupted and all(r.attempts >= 2 for r in interrupted), "the killed attempt was resumed"
    lookups = [
        r for r in chaos.admin.requests(mark)["requests"]
        if r["method"] == "GET" and r["path"] == "/api/v2/tasks" and "ppw" in r["query"]
    ]  # fmt: skip
    assert lookups, "the resumed create looked for its marker before writing again"
    # ready once its polls get through: the dead worker's poll lock lapses after PPW_POLL_TIMEOUT
    eventually(lambda: second.ready()[0] == 200, 20, "the second worker to report ready")
    chaos.assert_still_live()
