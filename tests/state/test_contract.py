"""One contract, two backends: every test here runs on SQLite and on Redis (fixture ``store``)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from worker.state import StateError, StateStore, Turn, key, open_store


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.02)


# plain keys ---------------------------------------------------------------------------------
def test_get_set_delete(store: StateStore, connection_id: str) -> None:
    a, b = key(connection_id, "a"), key(connection_id, "b")
    assert store.get(a) is None
    store.set(a, "1")
    store.set(a, "2")
    assert store.get(a) == "2"
    assert store.get_many([a, b, a]) == ["2", None, "2"]
    assert store.get_many([]) == []
    assert store.delete(a, b) == 1
    assert store.delete(a) == 0
    assert store.delete() == 0
    assert store.get(a) is None


def test_values_round_trip_unicode_and_json(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "ünïcode:key")
    value = '{"name": "Zoë \\u00e9", "emoji": "⚖️", "nl": "a\\nb"}'
    store.set(k, value)
    assert store.get(k) == value


def test_set_if_absent(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "once")
    assert store.set_if_absent(k, "first") is True
    assert store.set_if_absent(k, "second") is False
    assert store.get(k) == "first"


def test_set_many_if_absent_decides_each_key(store: StateStore, connection_id: str) -> None:
    a, b, c = (key(connection_id, "many", n) for n in "abc")
    store.set(a, "taken")
    assert store.set_many_if_absent({a: "1", b: "2", c: "3"}, ttl=60) == {b, c}
    assert store.get_many([a, b, c]) == ["taken", "2", "3"]
    assert 0 < (store.ttl(b) or 0) <= 60
    assert store.ttl(a) is None  # an existing key is left exactly as it was
    assert store.set_many_if_absent({a: "x", b: "y"}) == frozenset()
    assert store.get_many([a, b]) == ["taken", "2"]
    assert store.set_many_if_absent({}) == frozenset()


def test_set_many_if_absent_after_expiry(store: StateStore, connection_id: str) -> None:
    a = key(connection_id, "many-expiring")
    store.set(a, "old", ttl=0.05)
    time.sleep(0.1)
    assert store.set_many_if_absent({a: "new"}) == {a}
    assert store.get(a) == "new"


def test_incr_many(store: StateStore, connection_id: str) -> None:
    a, b = key(connection_id, "incr-many", "a"), key(connection_id, "incr-many", "b")
    store.incr(a, 4)
    assert store.incr_many([a, b, b], ttl=30) == [5, 1, 2]
    assert store.ttl(a) is None  # the ttl applies to counters this call creates
    assert 0 < (store.ttl(b) or 0) <= 30
    assert store.incr_many([]) == []


def test_acquire_leases_and_get(store: StateStore, connection_id: str) -> None:
    one, two, a, b = (key(connection_id, "claim", n) for n in ("one", "two", "a", "b"))
    store.set(a, "")
    assert store.acquire_leases_and_get([(one, "me", 5)], [a, b]) == ([True], ["", None])
    assert store.acquire_leases_and_get([(one, "me", 5)], []) == ([True], [])  # renewing
    assert store.acquire_leases_and_get([(one, "you", 5), (two, "you", 5)], [a]) == ([False, True], [""])
    assert store.get(one) == "me" and store.get(two) == "you"
    assert 0 < (store.ttl(two) or 0) <= 5
    assert store.acquire_leases_and_get([], [b]) == ([], [None])
    assert store.release_lease(one, "me") is True
    assert store.acquire_leases_and_get([(one, "you", 5)], [a]) == ([True], [""])


def test_batch_releases_only_its_own_lease(store: StateStore, connection_id: str) -> None:
    mine, theirs, other = (key(connection_id, "rel", n) for n in ("mine", "theirs", "other"))
    assert store.acquire_lease(mine, "me", 5) and store.acquire_lease(theirs, "them", 5)
    with store.batch() as batch:
        batch.release_lease(mine, "me")
        batch.release_lease(theirs, "me")
        batch.release_lease(key(connection_id, "rel", "none"), "me")
        batch.set(other, "1")
    assert store.get(mine) is None
    assert store.get(theirs) == "them"
    assert store.get(other) == "1"


def test_take_turn(store: StateStore, connection_id: str) -> None:
    queue, lease = key(connection_id, "queue"), key(connection_id, "turn")

    def turn(member: str, score: float) -> tuple[str, bool]:
        return store.take_turn(Turn(queue, member, score, lease, 5))

    assert turn("b", 2.0) == ("b", True)  # first in line: the lease
    assert turn("c", 3.0) == ("b", False)  # waits behind b
    assert turn("b", 2.0) == ("b", True)  # b again: renewed
    assert turn("a", 1.0) == ("a", False)  # first, but b holds it
    assert store.get(lease) == "b"
    assert store.release_lease(lease, "b")
    assert turn("a", 1.0) == ("a", True)
    assert [m for m, _ in store.zrange_by_score(queue)] == ["a", "b", "c"]


def test_take_turns_answers_each_in_order(store: StateStore, connection_id: str) -> None:
    """Several records' queues in one call; a later turn sees what an earlier one did."""
    q1, q2 = key(connection_id, "queue", "1"), key(connection_id, "queue", "2")
    l1, l2 = key(connection_id, "turn", "1"), key(connection_id, "turn", "2")
    assert store.take_turns([]) == []
    answers = store.take_turns(
        [
            Turn(q1, "a", 1.0, l1, 5),
            Turn(q2, "x", 5.0, l2, 5),
            Turn(q1, "b", 2.0, l1, 5),  # behind a, which took the lease just before
            Turn(q2, "w", 4.0, l2, 5),  # first now, but x holds the lease
        ]
    )
    assert answers == [("a", True), ("x", True), ("a", False), ("w", False)]
    assert store.get(l1) == "a" and store.get(l2) == "x"
    assert [m for m, _ in store.zrange_by_score(q2)] == ["w", "x"]
    assert 0 < (store.ttl(l1) or 0) <= 5


def test_incr(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "counter")
    assert store.incr(k) == 1
    assert store.incr(k, 5) == 6
    assert store.incr(k, -2) == 4
    assert store.get(k) == "4"
    assert store.ttl(k) is None


def test_incr_ttl_applies_only_on_creation(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "window")
    assert store.incr(k, ttl=60) == 1
    first = store.ttl(k)
    assert first is not None and 0 < first <= 60
    assert store.incr(k, ttl=3600) == 2
    second = store.ttl(k)
    assert second is not None and second <= 60


def test_incr_on_non_integer_is_an_error(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "text")
    store.set(k, "abc")
    with pytest.raises(StateError):
        store.incr(k)
    assert store.get(k) == "abc"


# expiry -------------------------------------------------------------------------------------
def test_ttl_reports_remaining_seconds(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "ttl")
    assert store.ttl(k) is None
    store.set(k, "v")
    assert store.ttl(k) is None
    store.set(k, "v", ttl=30)
    remaining = store.ttl(k)
    assert remaining is not None and 25 < remaining <= 30
    store.set(k, "v")  # a plain set clears the expiry, as in Redis
    assert store.ttl(k) is None


def test_expired_keys_are_gone_everywhere(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "short")
    store.set(k, "v", ttl=0.2)
    assert store.get(k) == "v"
    wait_for(lambda: store.get(k) is None)
    assert store.get_many([k]) == [None]
    assert store.ttl(k) is None
    assert k not in list(store.scan(key(connection_id)))
    assert store.delete(k) == 0
    assert store.set_if_absent(k, "again", ttl=10) is True
    assert store.get(k) == "again"


def test_incr_after_expiry_starts_over(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "bucket")
    store.incr(k, 3, ttl=0.2)
    wait_for(lambda: store.get(k) is None)
    assert store.incr(k, ttl=10) == 1


def test_rejects_non_positive_ttl(store: StateStore, connection_id: str) -> None:
    with pytest.raises(ValueError):
        store.set(key(connection_id, "x"), "v", ttl=0)


# scan ---------------------------------------------------------------------------------------
def test_scan_finds_every_type_under_a_prefix_only(store: StateStore, connection_id: str) -> None:
    other = key(connection_id + "x", "plain")
    mine = {
        key(connection_id, "snap", "plain"),
        key(connection_id, "snap", "hash"),
        key(connection_id, "snap", "zset"),
    }
    store.set(key(connection_id, "snap", "plain"), "v")
    store.hset(key(connection_id, "snap", "hash"), {"f": "v"})
    store.zadd(key(connection_id, "snap", "zset"), {"m": 1.0})
    store.set(key(connection_id, "snapshot-not-matching"), "v")
    store.set(other, "v")
    try:
        assert set(store.scan(key(connection_id, "snap") + ":")) == mine
        assert other not in set(store.scan(key(connection_id) + ":"))
    finally:
        store.delete(other)


def test_scan_treats_glob_characters_literally(store: StateStore, connection_id: str) -> None:
    store.set(key(connection_id, "a*b", "1"), "v")
    store.set(key(connection_id, "axb", "1"), "v")
    store.set(key(connection_id, "a[b]", "1"), "v")
    assert list(store.scan(key(connection_id, "a*b"))) == [key(connection_id, "a*b", "1")]
    assert list(store.scan(key(connection_id, "a[b]"))) == [key(connection_id, "a[b]", "1")]


def test_scan_pages_through_many_keys(store: StateStore, connection_id: str) -> None:
    with store.batch() as b:
        for i in range(1203):
            b.set(key(connection_id, "many", f"{i:05d}"), "v")
    found = list(store.scan(key(connection_id, "many") + ":"))
    assert len(found) == len(set(found)) == 1203


def test_key_type_names_each_kind_of_key(store: StateStore, connection_id: str) -> None:
    plain, hashed, ranked = (key(connection_id, "type", n) for n in ("plain", "hash", "zset"))
    store.set(plain, "v")
    store.hset_bytes(hashed, {"f": b"\x28\xb5\x2f\xfd"})
    store.zadd(ranked, {"m": 1.0})
    assert [store.key_type(k) for k in (plain, hashed, ranked)] == ["string", "hash", "zset"]
    assert store.key_type(key(connection_id, "type", "missing")) is None
    store.hdel(hashed, "f")  # a hash goes with its last field
    assert store.key_type(hashed) is None


def test_key_type_of_an_expired_key_is_none(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "type", "brief")
    store.set(k, "v", ttl=0.05)
    assert store.key_type(k) == "string"
    time.sleep(0.1)
    assert store.key_type(k) is None


# hashes -------------------------------------------------------------------------------------
def test_hashes(store: StateStore, connection_id: str) -> None:
    h = key(connection_id, "h")
    assert store.hgetall(h) == {}
    assert store.hlen(h) == 0
    assert store.hget(h, "a") is None
    store.hset(h, {"a": "1", "b": "2"})
    store.hset(h, {"b": "3", "c": "4"})
    store.hset(h, {})
    assert store.hget(h, "b") == "3"
    assert store.hmget(h, ["a", "zz", "c"]) == ["1", None, "4"]
    assert store.hmget(h, []) == []
    assert store.hgetall(h) == {"a": "1", "b": "3", "c": "4"}
    assert store.hlen(h) == 3
    assert store.hdel(h, "a", "zz") == 1
    assert store.hdel(h) == 0
    assert store.hlen(h) == 2


def test_hash_disappears_with_its_last_field(store: StateStore, connection_id: str) -> None:
    h = key(connection_id, "h")
    store.hset(h, {"a": "1"})
    assert store.hdel(h, "a") == 1
    assert list(store.scan(h)) == []
    assert store.delete(h) == 0


def test_hmget_many_fields(store: StateStore, connection_id: str) -> None:
    h = key(connection_id, "big")
    mapping = {f"rec-{i}": str(i) for i in range(2500)}
    store.hset(h, mapping)
    fields = [f"rec-{i}" for i in range(0, 3000, 3)]
    assert store.hmget(h, fields) == [mapping.get(f) for f in fields]


# binary hash values (compressed snapshots) ------------------------------------------------------
_BLOBS = {"zero": b"\x00\x03\xff\xfe", "high": bytes(range(256)), "empty": b"", "text": "é".encode()}


def test_bytes_hash_values_round_trip(store: StateStore, connection_id: str) -> None:
    h = key(connection_id, "blobs")
    assert store.hmget_bytes(h, ["zero"]) == [None]
    store.hset_bytes(h, _BLOBS)
    store.hset_bytes(h, {})
    assert store.hmget_bytes(h, [*_BLOBS, "missing"]) == [*_BLOBS.values(), None]
    assert store.hmget_bytes(h, []) == []
    assert store.hlen(h) == len(_BLOBS)
    assert sorted(store.hkeys(h)) == sorted(_BLOBS)


def test_hkeys(store: StateStore, connection_id: str) -> None:
    h = key(connection_id, "keys")
    assert store.hkeys(h) == []
    many = {f"rec-{i}": bytes([i % 256]) for i in range(2500)}
    store.hset_bytes(h, many)
    store.hset(h, {"text": "x"})
    assert sorted(store.hkeys(h)) == sorted([*many, "text"])
    store.hdel(h, "text", "rec-1")
    assert len(store.hkeys(h)) == 2499


def test_bytes_and_text_values_share_a_hash(store: StateStore, connection_id: str) -> None:
    """Snapshots of earlier versions are text in the hash that now receives binary ones."""
    h = key(connection_id, "mixed")
    store.hset(h, {"old": '{"f":2,"h":"x"}'})
    store.hset_bytes(h, {"new": b"\x03\x80"})
    assert store.hmget_bytes(h, ["old", "new"]) == [b'{"f":2,"h":"x"}', b"\x03\x80"]
    assert store.hmget(h, ["old"]) == ['{"f":2,"h":"x"}']


def test_batch_writes_bytes_hash_values(store: StateStore, connection_id: str) -> None:
    h, plain = key(connection_id, "bblobs"), key(connection_id, "plain")
    many = {f"rec-{i}": bytes([i % 256, 0, 255]) * (i % 5) for i in range(2500)}
    with store.batch() as batch:
        batch.hset_bytes(h, _BLOBS)
        batch.set(plain, "1")
        batch.hset_bytes(h, many)
        batch.hset_bytes(h, {})
    assert store.hmget_bytes(h, list(_BLOBS)) == list(_BLOBS.values())
    assert store.hmget_bytes(h, list(many)) == list(many.values())
    assert store.get(plain) == "1"


def test_batch_of_bytes_checks_the_key_type_first(store: StateStore, connection_id: str) -> None:
    text, h = key(connection_id, "text"), key(connection_id, "bh")
    store.set(text, "v")
    with pytest.raises(StateError), store.batch() as batch:
        batch.hset_bytes(h, {"a": b"\x01"})
        batch.hset_bytes(text, {"a": b"\x01"})
    assert store.hmget_bytes(h, ["a"]) == [None]


# sorted sets --------------------------------------------------------------------------------
def test_sorted_sets(store: StateStore, connection_id: str) -> None:
    z = key(connection_id, "z")
    assert store.zcard(z) == 0
    assert store.zrange_by_score(z) == []
    store.zadd(z, {"b": 2.0, "a": 1.0, "c": 3.5, "a2": 1.0})
    store.zadd(z, {"b": 2.5})
    assert store.zcard(z) == 4
    assert store.zrange_by_score(z) == [("a", 1.0), ("a2", 1.0), ("b", 2.5), ("c", 3.5)]
    assert store.zrange_by_score(z, 1.0, 2.5) == [("a", 1.0), ("a2", 1.0), ("b", 2.5)]
    assert store.zrange_by_score(z, limit=2) == [("a", 1.0), ("a2", 1.0)]
    assert store.zrange_by_score(z, descending=True) == [("c", 3.5), ("b", 2.5), ("a2", 1.0), ("a", 1.0)]
    assert store.zrange_by_score(z, maximum=2.0, descending=True, limit=1) == [("a2", 1.0)]
    assert store.zrange_by_score(z, limit=0) == []
    assert store.zrem(z, "a", "nope") == 1
    assert store.zrem(z) == 0
    assert store.zcard(z) == 3
    store.zrem(z, "a2", "b", "c")
    assert list(store.scan(z)) == []


def test_zcount_counts_a_score_range_inclusively(store: StateStore, connection_id: str) -> None:
    z = key(connection_id, "z")
    assert store.zcount(z) == 0
    store.zadd(z, {"a": 1.0, "b": 2.0, "b2": 2.0, "c": 3.5})
    assert store.zcount(z) == 4
    assert store.zcount(z, 2.0) == 3
    assert store.zcount(z, 2.0, 2.0) == 2
    assert store.zcount(z, maximum=1.999) == 1
    assert store.zcount(z, 4.0) == 0
    assert store.zcount(z, 3.0, 1.0) == 0  # an empty range, not an error
    assert store.zcount(key(connection_id, "nothing")) == 0


def test_scores_keep_float_precision(store: StateStore, connection_id: str) -> None:
    z = key(connection_id, "z")
    stamp = 1_775_000_000.123456
    store.zadd(z, {"m": stamp})
    assert store.zrange_by_score(z) == [("m", stamp)]


# types --------------------------------------------------------------------------------------
def test_a_key_holds_one_type(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "typed")
    store.hset(k, {"f": "v"})
    with pytest.raises(StateError):
        store.zadd(k, {"m": 1})
    with pytest.raises(StateError):
        store.get(k)
    assert store.get_many([k]) == [None]
    store.set(k, "now a string")  # set replaces any type
    assert store.get(k) == "now a string"
    with pytest.raises(StateError):
        store.hset(k, {"f": "v"})


# leases -------------------------------------------------------------------------------------
def test_lease_is_exclusive_renewable_and_owner_checked(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "lease")
    assert store.acquire_lease(k, "alice", 30)
    assert not store.acquire_lease(k, "bob", 30)
    assert store.acquire_lease(k, "alice", 60)  # renew
    remaining = store.ttl(k)
    assert remaining is not None and remaining > 30
    assert not store.release_lease(k, "bob")
    assert store.release_lease(k, "alice")
    assert not store.release_lease(k, "alice")
    assert store.acquire_lease(k, "bob", 30)


def test_lease_lapses_after_ttl(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "lease")
    assert store.acquire_lease(k, "crashed", 0.2)
    assert not store.acquire_lease(k, "next", 10)
    wait_for(lambda: store.acquire_lease(k, "next", 10))
    assert not store.release_lease(k, "crashed")
    assert store.get(k) == "next"


def test_lease_between_threads_is_exclusive(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "contended")
    owners = [f"owner-{i}" for i in range(8)]
    barrier = threading.Barrier(len(owners))

    def claim(owner: str) -> bool:
        barrier.wait()
        return store.acquire_lease(k, owner, 30)

    with ThreadPoolExecutor(len(owners)) as pool:
        results = list(pool.map(claim, owners))
    assert results.count(True) == 1
    assert store.get(k) == owners[results.index(True)]


def _critical_sections(url: str, lease_key: str, counter_key: str, rounds: int) -> None:
    """Unsafe read-modify-write guarded only by the lease: lost updates show a broken lease."""
    store = open_store(url)
    owner = f"pid-{multiprocessing.current_process().pid}"
    try:
        for _ in range(rounds):
            deadline = time.monotonic() + 30
            while not store.acquire_lease(lease_key, owner, 10):
                if time.monotonic() > deadline:
                    raise TimeoutError("lease never became free")
                time.sleep(0.005)
            value = int(store.get(counter_key) or "0")
            time.sleep(0.002)
            store.set(counter_key, str(value + 1))
            assert store.release_lease(lease_key, owner)
    finally:
        store.close()


def _count_up(url: str, counter_key: str, rounds: int) -> None:
    store = open_store(url)
    try:
        for _ in range(rounds):
            store.incr(counter_key)
    finally:
        store.close()


def _run_processes(target: Callable[..., None], *args: object, count: int = 3) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for _ in range(count)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0, f"worker process failed with exit code {proc.exitcode}"


def test_leases_and_counters_hold_across_processes(store: StateStore, connection_id: str) -> None:
    lease_key, counter_key = key(connection_id, "plock"), key(connection_id, "pcount")
    _run_processes(_critical_sections, store.url, lease_key, counter_key, 15)
    assert store.get(counter_key) == str(3 * 15)
    incr_key = key(connection_id, "pincr")
    _run_processes(_count_up, store.url, incr_key, 40)
    assert store.get(incr_key) == str(3 * 40)


# batches ------------------------------------------------------------------------------------
def test_batch_applies_every_kind_of_write(store: StateStore, connection_id: str) -> None:
    s, h, z, gone = (key(connection_id, n) for n in ("s", "h", "z", "gone"))
    store.set(gone, "x")
    store.hset(h, {"old": "1", "keep": "2"})
    store.zadd(z, {"old": 1.0})
    with store.batch() as b:
        b.set(s, "v", ttl=30)
        b.delete(gone)
        b.hset(h, {"new": "3"})
        b.hdel(h, "old")
        b.zadd(z, {"new": 2.0})
        b.zrem(z, "old")
    assert store.get(s) == "v"
    ttl = store.ttl(s)
    assert ttl is not None and ttl <= 30
    assert store.get(gone) is None
    assert store.hgetall(h) == {"keep": "2", "new": "3"}
    assert store.zrange_by_score(z) == [("new", 2.0)]


def test_batch_applies_in_order(store: StateStore, connection_id: str) -> None:
    k = key(connection_id, "k")
    with store.batch() as b:
        b.hset(k, {"f": "1"})
        b.delete(k)
        b.zadd(k, {"m": 1.0})
    assert store.zrange_by_score(k) == [("m", 1.0)]


def test_batch_is_discarded_when_the_block_raises(store: StateStore, connection_id: str) -> None:
    cursor, snaps = key(connection_id, "cursor"), key(connection_id, "snaps")
    store.set(cursor, "old")
    with pytest.raises(RuntimeError), store.batch() as b:
        b.set(cursor, "new")
        b.hset(snaps, {"r1": "h1"})
        raise RuntimeError("emit failed half-way")
    assert store.get(cursor) == "old"
    assert store.hgetall(snaps) == {}


def test_batch_failing_mid_way_writes_nothing(store: StateStore, connection_id: str) -> None:
    cursor, snaps, typed = (key(connection_id, n) for n in ("cursor", "snaps", "typed"))
    store.set(cursor, "old")
    store.set(typed, "a string")
    with pytest.raises(StateError), store.batch() as b:
        b.set(cursor, "new")
        b.hset(snaps, {"r1": "h1"})
        b.zadd(typed, {"m": 1.0})  # wrong type: fails when applied
        b.delete(cursor)
    assert store.get(cursor) == "old"
    assert store.hgetall(snaps) == {}
    assert store.get(typed) == "a string"


def test_large_batch(store: StateStore, connection_id: str) -> None:
    h = key(connection_id, "snapshots")
    mapping = {f"record-{i}": f"hash-{i}" for i in range(5000)}
    with store.batch() as b:
        b.hset(h, mapping)
        b.zadd(key(connection_id, "z"), {f"m{i}": float(i) for i in range(3000)})
    assert store.hlen(h) == 5000
    assert store.zcard(key(connection_id, "z")) == 3000


def test_concurrent_batches_from_threads(store: StateStore, connection_id: str) -> None:
    h = key(connection_id, "h")

    def write(i: int) -> None:
        for j in range(10):
            with store.batch() as b:
                b.hset(h, {f"{i}-{j}": "v"})
                b.set(key(connection_id, "last", str(i)), str(j))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    assert store.hlen(h) == 40


# lifecycle ----------------------------------------------------------------------------------
def test_ping_and_size(store: StateStore, connection_id: str) -> None:
    assert store.ping()
    store.hset(key(connection_id, "snap"), {f"r{i}": "x" * 40 for i in range(50)})
    assert store.size_bytes(key(connection_id)) > 50 * 40
    assert store.size_bytes(key(connection_id + "-nothing")) == 0
