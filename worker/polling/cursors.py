"""Where each (connection, resource) poll stands: cursor, snapshots, and the last poll's outcome.

Keys (all under ``ppw:<connection>:``):

``cursor:<resource>``
    JSON ``{"position": ..., "primed_at": ...}``. ``position`` is the greatest record
    ``updated_at`` whose changes were all turned into events; the next poll asks for
    ``updated_at ge position - overlap``. For resources without ``updated_at`` it is the start
    time of the last complete poll (there is no record time to use). No cursor: not primed yet.
``snap:<resource>``
    Hash: record id → :class:`~worker.polling.snapshots.Snapshot` bytes (format 3; older ones JSON).
``pollstatus:<resource>``
    JSON of :class:`PollStatus`, for ``ppw status`` and the health check.
``reconcile:<resource>``
    JSON of :class:`~worker.polling.reconcile.ReconcileStatus` (the last search for deletions).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from worker.polling.dictionaries import dictionary_key
from worker.polling.snapshots import UNREADABLE, Snapshot, SnapshotUnreadable
from worker.state.base import StateStore, WriteBatch, key

log = logging.getLogger(__name__)


def cursor_key(connection: str, resource: str) -> str:
    return key(connection, "cursor", resource)


def snapshot_key(connection: str, resource: str) -> str:
    return key(connection, "snap", resource)


def status_key(connection: str, resource: str) -> str:
    return key(connection, "pollstatus", resource)


def reconcile_status_key(connection: str, resource: str) -> str:
    return key(connection, "reconcile", resource)


def resources_key(connection: str) -> str:
    """The resources with state (a cursor or a poll status): what :func:`known_resources` reads
    instead of scanning the keyspace (a SCAN on Redis walks every key of the database)."""
    return key(connection, "resources")


def _resources_marker(connection: str) -> str:
    return key(connection, "indexed", "resources")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _from_iso(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Cursor:
    """How far a resource's changes have been turned into events.

    ``swept_at`` is when a poll last re-read the whole overlap window (this host's clock) and
    ``swept_from`` the cursor position that poll started from: the next sweep reaches back from
    there, so the polls in between may read from the cursor itself (see ``PPW_POLL_SWEEP_INTERVAL``).
    """

    position: datetime | None
    primed_at: datetime
    advanced_at: datetime
    swept_at: datetime | None = None
    swept_from: datetime | None = None

    def dumps(self) -> str:
        return json.dumps(
            {
                "position": _iso(self.position),
                "primed_at": _iso(self.primed_at),
                "advanced_at": _iso(self.advanced_at),
                "swept_at": _iso(self.swept_at),
                "swept_from": _iso(self.swept_from),
            }
        )

    @classmethod
    def loads(cls, text: str) -> Cursor:
        data = json.loads(text)
        primed_at = _from_iso(data.get("primed_at")) or datetime.now(UTC)
        return cls(
            position=_from_iso(data.get("position")),
            primed_at=primed_at,
            advanced_at=_from_iso(data.get("advanced_at")) or primed_at,
            swept_at=_from_iso(data.get("swept_at")),
            swept_from=_from_iso(data.get("swept_from")),
        )


@dataclass(frozen=True)
class PollStatus:
    """The outcome of the last poll of one resource."""

    at: str
    result: str  # ok | primed | held | busy | error
    events: int = 0
    records: int = 0
    requests: int = 0
    duration: float = 0.0
    error: str | None = None
    last_success: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> PollStatus:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def load_cursor(store: StateStore, connection: str, resource: str) -> Cursor | None:
    raw = store.get(cursor_key(connection, resource))
    return Cursor.loads(raw) if raw else None


def write_cursor(batch: WriteBatch, connection: str, resource: str, cursor: Cursor) -> None:
    batch.set(cursor_key(connection, resource), cursor.dumps())
    batch.hset(resources_key(connection), {resource: "1"})


def write_status(store: StateStore, connection: str, resource: str, status: PollStatus) -> None:
    """Store a poll's status (and that ``resource`` has state)."""
    with store.batch() as batch:
        batch.set(status_key(connection, resource), status.dumps())
        batch.hset(resources_key(connection), {resource: "1"})


def load_snapshots(
    store: StateStore, connection: str, resource: str, record_ids: Iterable[str]
) -> dict[str, Snapshot | None]:
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        return {}
    raw = store.hmget_bytes(snapshot_key(connection, resource), ids)
    return {rid: _decode(resource, rid, found) for rid, found in zip(ids, raw, strict=True)}


def _decode(resource: str, record_id: str, raw: bytes | None) -> Snapshot | None:
    """A stored snapshot; an unreadable one is logged and read as an unknown past (not as new)."""
    if not raw:
        return None
    try:
        return Snapshot.decode(raw)
    except SnapshotUnreadable as exc:
        log.error("%s %s: %s; its changes are reported with unknown old values", resource, record_id, exc)
        return UNREADABLE


def write_snapshots(
    batch: WriteBatch, connection: str, resource: str, snapshots: Mapping[str, Snapshot]
) -> None:
    if snapshots:
        encoded = {rid: snapshot.encode() for rid, snapshot in snapshots.items()}
        batch.hset_bytes(snapshot_key(connection, resource), encoded)


def load_status(store: StateStore, connection: str, resource: str) -> PollStatus | None:
    raw = store.get(status_key(connection, resource))
    return PollStatus.loads(raw) if raw else None


def known_resources(store: StateStore, connection: str) -> list[str]:
    """Every resource with a cursor or a poll status for ``connection``, sorted.

    Read from :func:`resources_key`; a store written before that index is scanned once and the
    index (and a marker saying it is complete) written from what the scan found.
    """
    marker = _resources_marker(connection)
    if store.get(marker) is not None:
        return sorted(store.hkeys(resources_key(connection)))
    names: set[str] = set()
    for kind in ("cursor", "pollstatus"):
        prefix = key(connection, kind) + ":"
        names.update(found[len(prefix) :] for found in store.scan(prefix))
    with store.batch() as batch:
        if names:
            batch.hset(resources_key(connection), dict.fromkeys(names, "1"))
        batch.set(marker, "1")
    return sorted(names | set(store.hkeys(resources_key(connection))))


def reset(store: StateStore, connection: str, resource: str) -> int:
    """Forget a resource's cursor and snapshots: its next poll primes again (fires nothing)."""
    store.hdel(resources_key(connection), resource)
    return store.delete(
        cursor_key(connection, resource),
        snapshot_key(connection, resource),
        status_key(connection, resource),
        reconcile_status_key(connection, resource),
        dictionary_key(connection, resource),
    )
