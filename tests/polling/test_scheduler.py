"""The scheduler: one leader among several processes, jobs per watched resource, no pile-ups."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.polling.conftest import wait_for
from worker.polling.poller import poll_lock_key, poll_pending_key
from worker.polling.scheduler import PollScheduler, leader_key, polled_resources
from worker.settings import Settings
from worker.state import StateStore, open_store
from worker.state.locks import Lease


class Recorder:
    """A submit function that records what it was asked and finishes the poll at once."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, connection: str, resource: str) -> None:
        with self.lock:
            self.calls.append((connection, resource))
        self.store.delete(poll_pending_key(connection, resource))  # as the poll itself does


def make(
    store: StateStore, connection: str, recorder: Recorder, names: list[str], **kwargs: float
) -> PollScheduler:
    options = {"interval": 0.3, "jitter": 0.0, "leader_ttl": 1.0, **kwargs}
    return PollScheduler(store, recorder, lambda: names, connection=connection, **options)


def test_polls_every_watched_resource_at_its_interval(store: StateStore, connection_id: str) -> None:
    recorder = Recorder(store)
    names = ["matters", "tasks"]
    with make(store, connection_id, recorder, names) as scheduler:
        wait_for(lambda: Counter(r for _, r in recorder.calls)["tasks"] >= 3)
        assert scheduler.is_leader
        assert scheduler.jobs == [f"poll:{connection_id}:matters", f"poll:{connection_id}:tasks"]
        names.remove("tasks")  # a rule reload stops watching tasks
        wait_for(lambda: scheduler.jobs == [f"poll:{connection_id}:matters"])
    assert {c for c, _ in recorder.calls} == {connection_id}


def test_exactly_one_leader_and_clean_handover(store: StateStore, connection_id: str) -> None:
    recorders = [Recorder(store) for _ in range(3)]
    schedulers = [make(store, connection_id, r, ["matters"]) for r in recorders]
    for scheduler in schedulers:
        scheduler.start()
    try:
        wait_for(lambda: any(s.is_leader for s in schedulers))
        [leader] = [s for s in schedulers if s.is_leader]
        wait_for(lambda: len(recorders[schedulers.index(leader)].calls) >= 2)
        assert all(not r.calls for s, r in zip(schedulers, recorders, strict=True) if s is not leader)
        leader.shutdown()
        wait_for(lambda: any(s.is_leader for s in schedulers if s is not leader))
        [successor] = [s for s in schedulers if s is not leader and s.is_leader]
        wait_for(lambda: len(recorders[schedulers.index(successor)].calls) >= 1)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown()
    assert store.get(leader_key(connection_id)) is None


def test_no_poll_submitted_while_one_is_in_flight_or_queued(store: StateStore, connection_id: str) -> None:
    submitted: list[str] = []
    scheduler = PollScheduler(
        store,
        lambda c, r: submitted.append(r),
        lambda: ["matters"],
        connection=connection_id,
        pending_ttl=30,
    )
    scheduler.heartbeat()  # become leader without starting the background jobs
    running = Lease(store, poll_lock_key(connection_id, "matters"), ttl=30)
    assert running.acquire()
    assert scheduler.tick("matters") is False
    running.release()
    assert scheduler.tick("matters") is True
    assert scheduler.tick("matters") is False  # still queued: the poll has not started
    store.delete(poll_pending_key(connection_id, "matters"))  # the poll started
    assert scheduler.tick("matters") is True
    assert submitted == ["matters", "matters"]
    scheduler.shutdown()


def test_a_failed_submit_does_not_block_the_next_turn(store: StateStore, connection_id: str) -> None:
    def broken(connection: str, resource: str) -> None:
        raise ConnectionError("broker down")

    scheduler = PollScheduler(store, broken, lambda: ["matters"], connection=connection_id)
    scheduler.heartbeat()
    assert scheduler.tick("matters") is False
    assert store.get(poll_pending_key(connection_id, "matters")) is None
    scheduler.shutdown()


def test_followers_do_not_submit(store: StateStore, connection_id: str) -> None:
    other = Lease(store, leader_key(connection_id), ttl=30)
    assert other.acquire()
    submitted: list[str] = []
    scheduler = PollScheduler(
        store, lambda c, r: submitted.append(r), lambda: ["matters"], connection=connection_id
    )
    scheduler.heartbeat()
    assert not scheduler.is_leader
    assert scheduler.tick("matters") is False
    assert submitted == []
    other.release()


def test_polled_resources_from_settings_and_rules() -> None:
    settings = Settings(poll_resources=["matters", "TimeEntries", "tags", "bogus"])
    assert polled_resources(settings, ["tasks", "matters"]) == ["matters", "time_entries", "tasks"]


def test_default_leader_lease_allows_takeover_within_two_intervals(store: StateStore) -> None:
    for interval in (5.0, 60.0, 3600.0):
        scheduler = PollScheduler(store, lambda c, r: None, lambda: [], interval=interval)
        takeover = scheduler.leader_ttl + scheduler.leader_ttl / 3
        assert takeover < 2 * interval


# leader failover across processes -------------------------------------------------------------
def _scheduler_process(url: str, connection: str, log_path: str) -> None:
    store = open_store(url)

    def submit(conn: str, resource: str) -> None:
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()} {resource}\n")
        store.delete(poll_pending_key(conn, resource))

    scheduler = PollScheduler(
        store,
        submit,
        lambda: ["matters"],
        connection=connection,
        interval=0.3,
        jitter=0.0,
        leader_ttl=1.0,
        pending_ttl=2.0,
    )
    scheduler.start()
    threading.Event().wait()  # until killed


def _submitters(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_leader_failover_between_processes(
    backend: str, request: pytest.FixtureRequest, connection_id: str, tmp_path: Path
) -> None:
    store: StateStore = request.getfixturevalue(f"{backend}_store")
    log_path = tmp_path / "submits.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_scheduler_process, args=(store.url, connection_id, str(log_path)))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    try:
        wait_for(lambda: len(_submitters(log_path)) >= 3, timeout=30)
        leaders = set(_submitters(log_path))
        assert len(leaders) == 1, "two schedulers submitted polls at once"
        [leader_pid] = leaders
        os.kill(leader_pid, signal.SIGKILL)  # no clean shutdown: the lease must lapse
        [survivor] = [p for p in procs if p.pid != leader_pid]
        wait_for(lambda: survivor.pid in _submitters(log_path), timeout=30)
        before = len(_submitters(log_path))
        wait_for(lambda: len(_submitters(log_path)) >= before + 2, timeout=30)
        assert survivor.pid is not None
        after_kill = _submitters(log_path)[_submitters(log_path).index(survivor.pid) :]
        assert set(after_kill) == {survivor.pid}
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)


def test_a_turn_skipped_for_a_dead_pollers_lock_comes_back_when_it_lapses(
    store: StateStore, connection_id: str
) -> None:
    recorder = Recorder(store)
    dead = Lease(store, poll_lock_key(connection_id, "matters"), ttl=0.8)  # its holder was killed
    assert dead.acquire()
    with make(store, connection_id, recorder, ["matters"], interval=600.0):
        wait_for(lambda: store.get(dead.key) is None, timeout=5)
        assert recorder.calls == []  # the first turn found the lock held
        # not 600 s later at the next regular turn: once the lock has lapsed
        wait_for(lambda: len(recorder.calls) >= 1, timeout=3)


def test_a_new_leader_polls_every_resource_at_once(store: StateStore, connection_id: str) -> None:
    recorder = Recorder(store)
    old_leader = Lease(store, leader_key(connection_id), ttl=1.0)  # a scheduler that died
    assert old_leader.acquire()
    with make(store, connection_id, recorder, ["matters", "tasks"], interval=600.0) as scheduler:
        assert not scheduler.is_leader
        wait_for(lambda: scheduler.is_leader, timeout=5)
        # jobs first ran while it was not the leader; their next regular turn is 600 s away
        wait_for(lambda: {r for _, r in recorder.calls} == {"matters", "tasks"}, timeout=3)
