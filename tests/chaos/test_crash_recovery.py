"""SIGKILL `ppw worker` in the middle of a poll or a run: polling resumes in seconds, not minutes.

A deployment as docs/operations.md describes it: one `ppw scheduler`, `ppw worker` processes, Redis
for the broker and the state, every timing setting at its default but the poll interval. A worker
killed mid-poll leaves the poll lock behind; it is a short lease (``PPW_POLL_LEASE``, 30 s), so the
next poll of that resource starts within ``interval + 30 s`` of the kill, by the killed worker
restarted or by another one already running, and not after ``PPW_POLL_TIMEOUT`` (300 s) as it did.
The broker's own redelivery of what the dead worker had fetched (Redis: a minute of silence, then
a randomised check) is left at its default too: nothing here may wait for it. Every change made
before and after the kill fires its rule exactly once (:meth:`Chaos.assert_invariants`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import pytest

from tests.chaos.conftest import Chaos, started_steps
from tests.chaos.harness import PpwProcess, eventually
from worker.polling import cursors
from worker.polling.poller import poll_lock_key

INTERVAL = 5.0
LEASE = 30.0  # PPW_POLL_LEASE's default: the bound this test proves
#: A poll after the kill takes a few requests, and the scheduler's tick may have just passed.
SLACK = 8.0

DEPLOYMENT = {
    "PPW_POLL_INTERVAL": str(INTERVAL),
    "PPW_POLL_TIMEOUT": "300",  # the default: the old lock lasted this long after a crash
    "PPW_POLL_PAGE_SIZE": "5",  # a poll of a burst takes several requests: time to kill it mid-way
    "PPW_POLL_RESOURCES": "matters",
    "PPW_HTTP_TIMEOUT": "10",
}


def _last_success(chaos: Chaos) -> float | None:
    status = cursors.load_status(chaos.store, chaos.connection, "matters")
    if status is None or status.last_success is None:
        return None
    return datetime.fromisoformat(status.last_success).timestamp()


def _poller_pid(chaos: Chaos) -> int | None:
    """The process holding the poll lock of matters (its owner is ``host/pid/token``)."""
    owner = chaos.store.get(poll_lock_key(chaos.connection, "matters"))
    return int(owner.split("/")[1]) if owner else None


def _wait_for_poll_after(chaos: Chaos, killed_at: float, what: str) -> float:
    """Seconds from the kill to the end of the first successful poll of matters after it."""
    bound = INTERVAL + LEASE + SLACK

    def polled() -> float | None:
        last = _last_success(chaos)
        return last - killed_at if last is not None and last > killed_at else None

    try:
        took: float = eventually(polled, bound, f"a poll of matters {what} after the kill")
    except AssertionError:
        raise AssertionError(chaos.describe()) from None
    return took


def _deployment(chaos: Chaos) -> tuple[PpwProcess, PpwProcess]:
    scheduler = chaos.process("scheduler").start(wait_ready=False)
    worker = chaos.process("worker").start(wait_ready=False)
    eventually(chaos.primed, 30, "the first poll to prime matters")
    return scheduler, worker


@pytest.mark.parametrize("takeover", ["restarted", "second"])
def test_sigkill_mid_poll_blocks_polling_for_the_lease_only(
    chaos_factory: Callable[..., Chaos], redis_url: str, takeover: str
) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url, **DEPLOYMENT)
    _scheduler, first = _deployment(chaos)
    workers = [first] + ([chaos.process("worker").start(wait_ready=False)] if takeover == "second" else [])
    burst = chaos.open_matters(18)
    chaos.admin.faults(latency=0.6)  # four pages at 0.6 s each: the poll takes a few seconds
    before = chaos.close(burst)
    pid = eventually(lambda: _poller_pid(chaos), 30, "a poll of matters to be in flight")
    [holder] = [w for w in workers if w.process is not None and w.process.pid == pid]
    holder.kill()
    killed_at = time.time()
    chaos.admin.faults(latency=0)
    assert _poller_pid(chaos) == pid, "the dead worker's poll lock is still there"
    if takeover == "restarted":
        holder.start(wait_ready=False)

    took = _wait_for_poll_after(chaos, killed_at, f"by the {takeover} worker")
    print(f"polling resumed {took:.1f}s after the kill ({takeover})")
    assert took <= INTERVAL + LEASE + SLACK, chaos.describe()
    after = chaos.close(chaos.open_matters(4))
    chaos.assert_invariants(before + after, timeout=90)


def test_sigkill_mid_run_blocks_neither_polling_nor_the_run(
    chaos_factory: Callable[..., Chaos], redis_url: str
) -> None:
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url, **DEPLOYMENT)
    _scheduler, worker = _deployment(chaos)
    matters = chaos.open_matters(6)
    chaos.admin.faults(latency=1.5)  # every call takes 1.5 s: the closing task's create is in flight
    before = chaos.close(matters)
    eventually(lambda: started_steps(chaos), 60, "a practicepanther.create step to be in flight")
    second = chaos.process("worker").start(wait_ready=False)
    worker.kill()
    killed_at = time.time()
    chaos.admin.faults(latency=0)

    took = _wait_for_poll_after(chaos, killed_at, "by the second worker")
    assert took <= INTERVAL + LEASE + SLACK, chaos.describe()
    after = chaos.close(chaos.open_matters(4))
    # the interrupted run waits for its lease (30 s) and the sweeper, never for the broker
    chaos.assert_invariants(before + after, timeout=90)
    assert second.alive()
