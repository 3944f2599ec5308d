"""The recording batch on both backends (fixture ``store``): nothing is written until it is
replayed into a store batch, and then every kind of write lands, in order, atomically."""

from __future__ import annotations

from worker.state import StateStore, key
from worker.state.recording import RecordingBatch


def test_records_every_kind_of_write_and_replays_them(store: StateStore, connection_id: str) -> None:
    s, h, z, gone, lease = (key(connection_id, n) for n in ("s", "h", "z", "gone", "lease"))
    store.set(gone, "x")
    store.hset(h, {"old": "1", "keep": "2"})
    store.zadd(z, {"old": 1.0})
    assert store.acquire_lease(lease, "me", 5)

    recording = RecordingBatch()
    assert not recording and len(recording) == 0
    recording.set(s, "v", ttl=30)
    recording.delete(gone)
    recording.hset(h, {"new": "3"})
    recording.hdel(h, "old")
    recording.zadd(z, {"new": 2.0})
    recording.zrem(z, "old")
    recording.release_lease(lease, "me")
    assert recording and len(recording) == 7
    # recorded only: the store is as it was
    assert store.get(s) is None and store.get(gone) == "x" and store.get(lease) == "me"
    assert store.hgetall(h) == {"old": "1", "keep": "2"}

    with store.batch() as batch:
        recording.replay(batch)
    assert store.get(s) == "v"
    ttl = store.ttl(s)
    assert ttl is not None and ttl <= 30
    assert store.get(gone) is None
    assert store.hgetall(h) == {"keep": "2", "new": "3"}
    assert store.zrange_by_score(z) == [("new", 2.0)]
    assert store.get(lease) is None


def test_replays_in_order_and_into_another_recording(store: StateStore, connection_id: str) -> None:
    k, other = key(connection_id, "k"), key(connection_id, "other")
    first = RecordingBatch()
    first.set(k, "1")
    first.delete(k)
    first.set(k, "2")
    outer = RecordingBatch()
    first.replay(outer)  # the runner carries a run's writes this way
    outer.set(other, "o")
    with store.batch() as batch:
        outer.replay(batch)
    assert store.get(k) == "2" and store.get(other) == "o"


def test_replaying_an_empty_recording_writes_nothing(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "k")
    with store.batch() as batch:
        RecordingBatch().replay(batch)
        batch.set(k, "1")
    assert store.get(k) == "1"
