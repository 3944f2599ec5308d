"""The event: one detected change of one PracticePanther record, one webhook or schedule firing,
or one moment of a date-relative or "for" trigger coming (``due``, for one rule).

Its id is deterministic (a hash of connection, resource, record id and revision), so detecting the
same change twice, by an overlapping poll or after a crash, produces the same id and dispatch
fires the rules only once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

EventType = Literal["created", "updated", "deleted", "webhook", "schedule", "due"]
Origin = Literal["practicepanther", "ppw", "webhook", "schedule"]


class Change(BaseModel):
    """The old and new value of one field.

    ``old_known`` is False where the old value was never stored (the first change a snapshot
    written by an earlier version reports): ``old`` is then None without meaning "was null".
    """

    old: Any = None
    new: Any = None
    old_known: bool = True


def event_id(connection: str, resource: str, record_id: str, revision: str) -> str:
    """A stable id: the same change seen twice gets the same id.

    ``revision`` is the record's ``updated_at`` where it has one, else its content hash.
    """
    raw = "\x1f".join((connection, resource, record_id, revision)).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


class Event(BaseModel):
    """A change to dispatch to the rules."""

    id: str
    type: EventType
    connection: str = "default"
    resource: str
    record_id: str
    revision: str
    record: dict[str, Any] = Field(default_factory=dict)
    previous: dict[str, Any] | None = None
    changes: dict[str, Change] = Field(default_factory=dict)
    origin: Origin = "practicepanther"
    detected_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    #: a ``due`` event (a date-relative or "for" trigger's moment came): the one rule it is for
    rule: str | None = None

    @classmethod
    def build(
        cls,
        *,
        type: EventType,
        resource: str,
        record_id: str,
        revision: str,
        connection: str = "default",
        **fields: Any,
    ) -> Event:
        """Make an event with its deterministic id filled in."""
        return cls(
            id=event_id(connection, resource, record_id, f"{type}:{revision}"),
            type=type,
            resource=resource,
            record_id=record_id,
            revision=revision,
            connection=connection,
            **fields,
        )
