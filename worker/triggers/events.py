"""The events webhooks and schedules put on the dispatch queue, with ids that make retries harmless.

* A webhook delivery is ``Event(type="webhook", resource="webhook:<hook>")`` whose record holds the
  body as ``payload``. Its id comes from the sender's ``Idempotency-Key`` when it sends one (the
  same key is the same event, however often it is retried), else from the body and the moment it
  was first seen (the intake keeps that moment for the dedupe window).
* A schedule slot is ``Event(type="schedule", resource="schedule:<rule id>")`` whose record holds
  the slot time and the query's results. Its id is a hash of connection, rule id and slot time, so
  a slot fired twice (two schedulers, a retry after a crash) is one event, and dispatch runs the
  rule once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from worker.events import Event
from worker.rules.context import schedule_resource, webhook_resource


def digest(*parts: str | bytes) -> str:
    """A short hex digest of ``parts``: used where an id must not reveal what it was made from."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\x1f")
    return h.hexdigest()[:32]


def utc_text(moment: dt.datetime) -> str:
    """``2026-04-15T12:00:00Z``: how slot and delivery times are written into events."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def webhook_event(
    hook: str,
    payload: Any,
    *,
    delivery: str,
    received_at: dt.datetime,
    connection: str = "default",
    content_type: str = "application/json",
) -> Event:
    """The event for one delivery to ``hook``; ``delivery`` is the stable delivery id (from the
    Idempotency-Key or the first sighting of the body)."""
    return Event.build(
        type="webhook",
        resource=webhook_resource(hook),
        record_id=delivery,
        revision=delivery,
        connection=connection,
        record={
            "payload": payload,
            "hook": hook,
            "content_type": content_type,
            "received_at": utc_text(received_at),
        },
        origin="webhook",
        detected_at=received_at,
    )


def schedule_event(
    rule_id: str,
    slot: dt.datetime,
    *,
    timezone: str,
    resource: str | None = None,
    results: list[dict[str, Any]] | None = None,
    truncated: bool = False,
    connection: str = "default",
    detected_at: dt.datetime | None = None,
) -> Event:
    """The event for one slot of the schedule rule ``rule_id``."""
    when = utc_text(slot)
    record: dict[str, Any] = {"slot": when, "timezone": timezone}
    if resource is not None:
        found = results or []
        record.update(resource=resource, results=found, count=len(found), truncated=truncated)
    return Event.build(
        type="schedule",
        resource=schedule_resource(rule_id),
        record_id=when,
        revision=when,
        connection=connection,
        record=record,
        origin="schedule",
        detected_at=detected_at or dt.datetime.now(dt.UTC),
    )
