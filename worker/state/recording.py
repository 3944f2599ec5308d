"""A write batch that records instead of writing, to be replayed into a real batch later.

The runner holds back a step's ``done`` entry (and a run's ending) until its next write, so two
writes per step become one. Rules applied here:

* every :class:`~worker.state.base.WriteBatch` write is recorded, with its arguments, in order;
* :meth:`RecordingBatch.replay` applies the recorded writes to another batch (a store's atomic
  batch, or another recording) in the order they were made, and may be called more than once;
* nothing touches a store until replayed; an empty recording is falsy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from worker.state.base import WriteBatch


class RecordingBatch(WriteBatch):
    """Writes held back until :meth:`replay` puts them into a batch."""

    def __init__(self) -> None:
        self.ops: list[Callable[[WriteBatch], None]] = []

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.ops.append(lambda b: b.set(key, value, ttl))

    def delete(self, *keys: str) -> None:
        self.ops.append(lambda b: b.delete(*keys))

    def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        self.ops.append(lambda b: b.hset(key, mapping))

    def hdel(self, key: str, *fields: str) -> None:
        self.ops.append(lambda b: b.hdel(key, *fields))

    def hset_bytes(self, key: str, mapping: Mapping[str, bytes]) -> None:
        self.ops.append(lambda b: b.hset_bytes(key, mapping))

    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        self.ops.append(lambda b: b.zadd(key, mapping))

    def zrem(self, key: str, *members: str) -> None:
        self.ops.append(lambda b: b.zrem(key, *members))

    def release_lease(self, key: str, owner: str) -> None:
        self.ops.append(lambda b: b.release_lease(key, owner))

    def replay(self, batch: WriteBatch) -> None:
        """Apply the recorded writes to ``batch``, in order."""
        for op in self.ops:
            op(batch)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __len__(self) -> int:
        return len(self.ops)
