"""Measuring a running pipeline from the outside: Dramatiq middleware and a counting state store.

Both are plain extension points (Dramatiq's middleware hooks, the :class:`StateStore` interface by
delegation), so the worker code under measurement is exactly the shipped code.

- :class:`StageClock` times every message per actor (poll, dispatch, run) and records when each
  dispatch message was enqueued (the moment an event is handed to the broker).
- :class:`CountingStore` counts state-store calls per method, to tell how many round trips an
  event costs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker.state.base import StateStore, Turn, WriteBatch


class StageClock(Middleware):
    """Per-actor busy time and message counts, and the enqueue time of every dispatch message."""

    def __init__(self, dispatch_actor: str = "ppw_dispatch") -> None:
        self.dispatch_actor = dispatch_actor
        self._lock = threading.Lock()
        self._local = threading.local()
        self.busy: Counter[str] = Counter()
        self.count: Counter[str] = Counter()
        self.enqueued: dict[str, float] = {}

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        if message.actor_name == self.dispatch_actor and len(message.args) >= 2:
            ids = message.args[1]  # a batch of event ids (one id from older senders)
            now = time.time()
            with self._lock:
                for event_id in [ids] if isinstance(ids, str) else ids:
                    self.enqueued.setdefault(str(event_id), now)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._local.started = time.perf_counter()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started = getattr(self._local, "started", None)
        if started is None:
            return
        with self._lock:
            self.busy[message.actor_name] += time.perf_counter() - started
            self.count[message.actor_name] += 1

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message)

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {
                name: {
                    "messages": self.count[name],
                    "busy_seconds": round(self.busy[name], 3),
                    "ms_per_message": round(self.busy[name] / max(self.count[name], 1) * 1000, 2),
                }
                for name in sorted(self.count)
            }


class CountingStore(StateStore):
    """A :class:`StateStore` that delegates every call and counts it by method name."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _hit(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def get(self, key: str) -> str | None:
        self._hit("get")
        return self.inner.get(key)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self._hit("get_many")
        return self.inner.get_many(keys)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._hit("set")
        self.inner.set(key, value, ttl)

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        self._hit("set_if_absent")
        return self.inner.set_if_absent(key, value, ttl)

    def set_many_if_absent(self, values: Mapping[str, str], ttl: float | None = None) -> frozenset[str]:
        self._hit("set_many_if_absent")
        return self.inner.set_many_if_absent(values, ttl)

    def incr_many(self, keys: Sequence[str], ttl: float | None = None) -> list[int]:
        self._hit("incr_many")
        return self.inner.incr_many(keys, ttl)

    def acquire_leases_and_get(
        self, claims: Sequence[tuple[str, str, float]], keys: Sequence[str]
    ) -> tuple[list[bool], list[str | None]]:
        self._hit("acquire_leases_and_get")
        return self.inner.acquire_leases_and_get(claims, keys)

    def take_turns(self, turns: Sequence[Turn]) -> list[tuple[str, bool]]:
        self._hit("take_turns")
        return self.inner.take_turns(turns)

    def delete(self, *keys: str) -> int:
        self._hit("delete")
        return self.inner.delete(*keys)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        self._hit("incr")
        return self.inner.incr(key, amount, ttl)

    def ttl(self, key: str) -> float | None:
        self._hit("ttl")
        return self.inner.ttl(key)

    def scan(self, prefix: str) -> Iterator[str]:
        self._hit("scan")
        return self.inner.scan(prefix)

    def key_type(self, key: str) -> str | None:
        self._hit("key_type")
        return self.inner.key_type(key)

    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        self._hit("acquire_lease")
        return self.inner.acquire_lease(key, owner, ttl)

    def release_lease(self, key: str, owner: str) -> bool:
        self._hit("release_lease")
        return self.inner.release_lease(key, owner)

    def hget(self, key: str, field: str) -> str | None:
        self._hit("hget")
        return self.inner.hget(key, field)

    def hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        self._hit("hmget")
        return self.inner.hmget(key, fields)

    def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        self._hit("hset")
        self.inner.hset(key, mapping)

    def hdel(self, key: str, *fields: str) -> int:
        self._hit("hdel")
        return self.inner.hdel(key, *fields)

    def hgetall(self, key: str) -> dict[str, str]:
        self._hit("hgetall")
        return self.inner.hgetall(key)

    def hmget_bytes(self, key: str, fields: Sequence[str]) -> list[bytes | None]:
        self._hit("hmget_bytes")
        return self.inner.hmget_bytes(key, fields)

    def hset_bytes(self, key: str, mapping: Mapping[str, bytes]) -> None:
        self._hit("hset_bytes")
        self.inner.hset_bytes(key, mapping)

    def hlen(self, key: str) -> int:
        self._hit("hlen")
        return self.inner.hlen(key)

    def hkeys(self, key: str) -> list[str]:
        self._hit("hkeys")
        return self.inner.hkeys(key)

    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        self._hit("zadd")
        self.inner.zadd(key, mapping)

    def zrem(self, key: str, *members: str) -> int:
        self._hit("zrem")
        return self.inner.zrem(key, *members)

    def zrange_by_score(
        self,
        key: str,
        minimum: float = float("-inf"),
        maximum: float = float("inf"),
        *,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[tuple[str, float]]:
        self._hit("zrange_by_score")
        return self.inner.zrange_by_score(key, minimum, maximum, limit=limit, descending=descending)

    def zcard(self, key: str) -> int:
        self._hit("zcard")
        return self.inner.zcard(key)

    def zcount(self, key: str, minimum: float = float("-inf"), maximum: float = float("inf")) -> int:
        self._hit("zcount")
        return self.inner.zcount(key, minimum, maximum)

    def batch(self) -> AbstractContextManager[WriteBatch]:
        self._hit("batch")
        return self.inner.batch()

    def ping(self) -> bool:
        return self.inner.ping()

    def close(self) -> None:
        self.inner.close()

    def size_bytes(self, prefix: str) -> int:
        return self.inner.size_bytes(prefix)

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())
