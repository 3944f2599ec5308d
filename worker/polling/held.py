"""Held batches: a poll that finds more changes than the flood limit waits for an operator.

A flood usually means something unusual: a bulk import, a mass re-assignment, a restored backup, a
rule set pointed at the wrong account. Firing hundreds of Slack messages or creating hundreds of
tasks is hard to undo, so such a poll stores its events here instead of emitting them, advances its
cursor as usual (later changes keep flowing) and raises an alert. ``ppw held list`` shows the
batches; ``ppw held release`` emits one, ``ppw held discard`` drops it.

Keys (under ``ppw:<connection>:``): ``held`` (sorted set of batch ids by time), ``held:<id>``
(JSON metadata) and ``held:<id>:events`` (hash: event id → event JSON). Release removes events as
they are emitted, so an interrupted release resumes where it stopped.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from worker.errors import PpwError
from worker.events import Event
from worker.observability import metrics
from worker.state.base import StateStore, WriteBatch, key
from worker.state.locks import lock

RELEASE_CHUNK = 100


class HeldBatchNotFound(PpwError, LookupError):
    """No held batch has that id (released or discarded already, or a typo)."""


@dataclass(frozen=True)
class HeldBatch:
    """One held batch: which resource, when, how many events, and why."""

    id: str
    connection: str
    resource: str
    held_at: str
    count: int
    limit: int
    types: dict[str, int]
    #: ``flood`` (a poll found too many changes) or ``deleted`` (a reconcile found too many gone)
    kind: str = "flood"

    @property
    def reason(self) -> str:
        if self.kind == "deleted":
            return (
                f"{self.count} tracked records are missing from the listing, more than the flood "
                f"limit of {self.limit} (a mass deletion, or a permission change hiding them)"
            )
        return f"{self.count} events exceed the flood limit of {self.limit}"


def _index_key(connection: str) -> str:
    return key(connection, "held")


def _meta_key(connection: str, batch_id: str) -> str:
    return key(connection, "held", batch_id)


def _events_key(connection: str, batch_id: str) -> str:
    return key(connection, "held", batch_id, "events")


def hold(
    batch: WriteBatch,
    connection: str,
    resource: str,
    events: Sequence[Event],
    *,
    limit: int,
    now: datetime | None = None,
    kind: str = "flood",
) -> HeldBatch:
    """Add writes holding ``events`` to ``batch`` (the poll's own atomic commit)."""
    held_at = (now or datetime.now(UTC)).astimezone(UTC)
    batch_id = f"{held_at:%Y%m%dT%H%M%S}-{resource}-{secrets.token_hex(3)}"
    types: dict[str, int] = {}
    for event in events:
        types[event.type] = types.get(event.type, 0) + 1
    held = HeldBatch(
        id=batch_id,
        connection=connection,
        resource=resource,
        held_at=held_at.isoformat(),
        count=len(events),
        limit=limit,
        types=types,
        kind=kind,
    )
    batch.set(_meta_key(connection, batch_id), json.dumps(asdict(held)))
    batch.hset(_events_key(connection, batch_id), {e.id: e.model_dump_json() for e in events})
    batch.zadd(_index_key(connection), {batch_id: held_at.timestamp()})
    return held


def list_held(store: StateStore, connection: str, resource: str | None = None) -> list[HeldBatch]:
    """Held batches, oldest first (optionally of one resource)."""
    batches = []
    for batch_id, _ in store.zrange_by_score(_index_key(connection)):
        raw = store.get(_meta_key(connection, batch_id))
        if raw is None:
            continue
        held = HeldBatch(**json.loads(raw))
        remaining = store.hlen(_events_key(connection, batch_id))
        held = HeldBatch(**{**asdict(held), "count": remaining})
        if resource is None or held.resource == resource:
            batches.append(held)
    return batches


def prune_index(store: StateStore, connection: str) -> int:
    """Drop index entries whose batch is gone (a batch itself stays until released or discarded)."""
    ids = [batch_id for batch_id, _ in store.zrange_by_score(_index_key(connection))]
    if not ids:
        return 0
    metas = store.get_many([_meta_key(connection, batch_id) for batch_id in ids])
    gone = [batch_id for batch_id, raw in zip(ids, metas, strict=True) if raw is None]
    if gone:
        store.zrem(_index_key(connection), *gone)
    return len(gone)


def get_held(store: StateStore, connection: str, batch_id: str) -> HeldBatch:
    for held in list_held(store, connection):
        if held.id == batch_id:
            return held
    raise HeldBatchNotFound(f"no held batch {batch_id!r} for connection {connection!r}")


def held_events(store: StateStore, connection: str, batch_id: str) -> list[Event]:
    """The batch's events, oldest detection first."""
    if store.get(_meta_key(connection, batch_id)) is None:
        raise HeldBatchNotFound(f"no held batch {batch_id!r} for connection {connection!r}")
    events = [
        Event.model_validate_json(raw) for raw in store.hgetall(_events_key(connection, batch_id)).values()
    ]
    return sorted(events, key=lambda e: (e.detected_at, e.record.get("updated_at") or "", e.record_id))


def release(
    store: StateStore,
    connection: str,
    batch_id: str,
    emit: Callable[[list[Event]], None],
    *,
    chunk: int = RELEASE_CHUNK,
) -> int:
    """Emit a held batch's events, then forget it; returns how many were emitted.

    Events are removed from the batch chunk by chunk after each is emitted, so a failure part-way
    leaves only the rest held (run release again). Two operators cannot release one batch at once.
    """
    with lock(store, key(connection, "lock", "held", batch_id)):
        events = held_events(store, connection, batch_id)
        for start in range(0, len(events), chunk):
            part = events[start : start + chunk]
            emit(part)
            store.hdel(_events_key(connection, batch_id), *(e.id for e in part))
        _forget(store, connection, batch_id)
        return len(events)


def discard(store: StateStore, connection: str, batch_id: str) -> int:
    """Drop a held batch without firing anything; returns how many events were dropped."""
    with lock(store, key(connection, "lock", "held", batch_id)):
        if store.get(_meta_key(connection, batch_id)) is None:
            raise HeldBatchNotFound(f"no held batch {batch_id!r} for connection {connection!r}")
        count = store.hlen(_events_key(connection, batch_id))
        _forget(store, connection, batch_id)
        return count


def _forget(store: StateStore, connection: str, batch_id: str) -> None:
    raw = store.get(_meta_key(connection, batch_id))
    with store.batch() as batch:
        batch.delete(_meta_key(connection, batch_id), _events_key(connection, batch_id))
        batch.zrem(_index_key(connection), batch_id)
    if raw is not None:
        resource = json.loads(raw)["resource"]
        metrics.HELD_BATCHES.labels(resource).set(len(list_held(store, connection, resource)))
