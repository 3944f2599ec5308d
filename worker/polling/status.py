"""What ``ppw status`` shows: every cursor with its lag, the last poll, held batches, queue depths.

Kept apart from the command so the health server and tests read the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from worker.polling import cursors, held, reconcile
from worker.state.base import StateStore


@dataclass(frozen=True)
class ResourceStatus:
    """One resource of one connection, as ``ppw status`` lists it."""

    resource: str
    primed: bool
    cursor: str | None
    lag_seconds: float | None
    snapshots: int
    last_poll: str | None
    result: str | None
    events: int | None
    error: str | None
    last_success: str | None
    held_batches: int
    #: the last reconcile (deleted records): when, its result, and how many deletions it found
    reconciled_at: str | None = None
    reconcile_result: str | None = None
    deleted: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resource_statuses(
    store: StateStore,
    connection: str,
    resources: Iterable[str] = (),
    *,
    now: datetime | None = None,
) -> list[ResourceStatus]:
    """``resources`` plus every resource with state for ``connection``, in name order."""
    now = now or datetime.now(UTC)
    names = sorted(set(resources) | set(cursors.known_resources(store, connection)))
    batches = held.list_held(store, connection)
    out = []
    for name in names:
        cursor = cursors.load_cursor(store, connection, name)
        status = cursors.load_status(store, connection, name)
        position = cursor.position if cursor else None
        last_reconcile = reconcile.load_status(store, connection, name)
        out.append(
            ResourceStatus(
                resource=name,
                primed=cursor is not None,
                cursor=position.isoformat() if position else None,
                lag_seconds=round((now - position).total_seconds(), 1) if position else None,
                snapshots=store.hlen(cursors.snapshot_key(connection, name)),
                last_poll=status.at if status else None,
                result=status.result if status else None,
                events=status.events if status else None,
                error=status.error if status else None,
                last_success=status.last_success if status else None,
                held_batches=sum(1 for b in batches if b.resource == name),
                reconciled_at=last_reconcile.at if last_reconcile else None,
                reconcile_result=last_reconcile.result if last_reconcile else None,
                deleted=last_reconcile.deleted if last_reconcile else None,
            )
        )
    return out


def queue_depths(broker: Any, queue_names: Iterable[str]) -> dict[str, int | None]:
    """Messages waiting per queue; None where the broker cannot tell (it lives in another process).

    Dramatiq has no common API for this: RabbitMQ answers ``get_queue_message_counts`` (ready +
    delayed), the Redis broker ``qsize``, the in-process stub broker its queue objects.
    """
    depths: dict[str, int | None] = {}
    for name in queue_names:
        try:
            if hasattr(broker, "get_queue_message_counts"):
                ready, delayed, _dead = broker.get_queue_message_counts(name)
                depths[name] = int(ready) + int(delayed)
            elif type(broker).__name__ == "RedisBroker":
                depths[name] = int(broker.do_qsize(name)) + int(broker.do_qsize(f"{name}.DQ"))
            elif hasattr(broker, "queues") and isinstance(broker.queues, dict) and name in broker.queues:
                depths[name] = int(broker.queues[name].qsize())
            else:
                depths[name] = None
        except Exception:  # a broker that is down must not break the status page
            depths[name] = None
    return depths


def humanize_seconds(seconds: float | None) -> str:
    """``2h 5m``, ``3m 20s``, ``12s``; ``-`` for None."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    remaining = int(abs(seconds))
    days, remaining = divmod(remaining, 86400)
    hours, remaining = divmod(remaining, 3600)
    minutes, secs = divmod(remaining, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m"
    if minutes:
        return f"{sign}{minutes}m {secs}s"
    return f"{sign}{secs}s"
