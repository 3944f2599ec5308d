"""The detector: records in, events out, with no I/O at all.

Given the records a poll read and the snapshots stored for them, it decides what happened to each
record and what the snapshots become. Keeping it pure means every rule of change detection is
tested directly, without a server or a store:

* a record with no snapshot, once the resource is primed, was ``created``;
* a known record whose compared content changed was ``updated``, with ``changes`` per field
  (each with its exact old value, or ``old_known=False`` against an older-format snapshot) and
  ``previous`` the whole old record;
* a record whose ``updated_at`` moved but whose content did not (a "touch") fires nothing, and
  neither does a revision seen before (overlapping polls re-read the last minutes on purpose);
* several revisions of one record in one poll become one event, against the pre-poll snapshot;
* resources without ``updated_at`` (contacts, relationships ...) are compared by content hash.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.events import Change, Event, EventType
from worker.polling.snapshots import Snapshot, Snapshotter, content_hash, parse_revision
from worker.practicepanther.resources import Resource

log = logging.getLogger(__name__)


@dataclass
class Detection:
    """What one poll found: events to emit, and snapshots to store once they are emitted.

    ``snapshots`` includes records that fire nothing (touches, priming) so their new revision is
    remembered; ``unchanged`` counts records already seen at this revision.
    """

    events: list[Event] = field(default_factory=list)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    unchanged: int = 0


def record_id(record: Mapping[str, Any]) -> str | None:
    value = record.get("id")
    return str(value) if value not in (None, "") else None


class Detector:
    """Change detection for one resource of one connection.

    Parameters
    ----------
    resource:
        Catalogue entry (fields, references, whether records carry ``updated_at``).
    connection:
        Connection id, part of every event id.
    snapshotter:
        Builds and reads the snapshots; the default keeps its dictionaries in memory
        (:func:`~worker.polling.snapshots.snapshotter_for` gives one backed by the state store).
    """

    def __init__(
        self, resource: Resource, *, connection: str, snapshotter: Snapshotter | None = None
    ) -> None:
        self.resource = resource
        self.connection = connection
        self.snapshotter = snapshotter or Snapshotter(resource)

    # one poll's records -------------------------------------------------------------------------
    def collapse(self, records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        """One record per id: the newest revision (the last one read when revisions tie)."""
        latest: dict[str, Mapping[str, Any]] = {}
        for record in records:
            rid = record_id(record)
            if rid is None:
                log.warning("%s: a record without an id was ignored", self.resource.name)
                continue
            seen = latest.get(rid)
            if seen is None or not self._older(record, seen):
                latest[rid] = record
        return latest

    def _older(self, record: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
        mine = parse_revision(record.get("updated_at"))
        theirs = parse_revision(than.get("updated_at"))
        return mine is not None and theirs is not None and mine < theirs

    def detect(
        self,
        records: Iterable[Mapping[str, Any]],
        previous: Mapping[str, Snapshot | None],
        *,
        primed: bool = True,
        backfill_since: datetime | None = None,
        detected_at: datetime | None = None,
    ) -> Detection:
        """Compare ``records`` with their ``previous`` snapshots.

        With ``primed=False`` (the first poll of a resource) nothing fires and every record is
        snapshotted, except that records changed at or after ``backfill_since`` fire as if new.
        """
        now = detected_at or datetime.now(UTC)
        result = Detection()
        for rid, record in self.collapse(records).items():
            event, snapshot = self.observe(
                rid, record, previous.get(rid), primed=primed, backfill_since=backfill_since, now=now
            )
            if snapshot is None:
                result.unchanged += 1
                continue
            result.snapshots[rid] = snapshot
            if event is not None:
                result.events.append(event)
        return result

    # one record --------------------------------------------------------------------------------
    def observe(
        self,
        rid: str,
        record: Mapping[str, Any],
        old: Snapshot | None,
        *,
        primed: bool,
        backfill_since: datetime | None,
        now: datetime,
    ) -> tuple[Event | None, Snapshot | None]:
        """The event for one record (or None) and its new snapshot (None when nothing moved)."""
        if old is not None and self._seen_revision(old, record):
            return None, None  # the usual re-read of the overlap: known without a snapshot
        new = self.snapshotter.take(record)
        if old is not None and self._seen(old, new, record):
            return None, None
        if not primed:
            return self._backfill(rid, record, new, old, backfill_since, now), new
        if old is None:
            return self._event("created", rid, record, new, now), new
        changes = self.snapshotter.changes(old, record, rid)
        if not changes:
            return None, new  # touched: updated_at moved, content did not
        previous = self.snapshotter.previous(old, rid)
        event = self._event("updated", rid, record, new, now, previous=previous, changes=changes)
        return event, new

    def _seen_revision(self, old: Snapshot, record: Mapping[str, Any]) -> bool:
        """:meth:`_seen` decided from the record's revision alone, before any snapshot is taken.

        Every poll re-reads the records changed within the overlap, so most records it reads
        were seen at this revision; building and hashing their snapshots would be thrown away.
        False means "not known from the revision": content-hash resources, and records whose
        ``updated_at`` is missing or unreadable, take the full comparison in :meth:`_seen`.
        """
        if old.revision is None:
            return False
        revision = self.snapshotter.revision(record)
        return revision is not None and revision <= old.revision

    def _seen(self, old: Snapshot, new: Snapshot, record: Mapping[str, Any]) -> bool:
        """This revision (or a newer one) was processed before."""
        if new.revision is not None and old.revision is not None:
            return new.revision <= old.revision
        old_content = self.snapshotter.content_of(old)
        if old_content is None:
            return False
        new_content = new.content or content_hash(self.snapshotter.normals(record))
        return new_content == old_content

    def _backfill(
        self,
        rid: str,
        record: Mapping[str, Any],
        new: Snapshot,
        old: Snapshot | None,
        since: datetime | None,
        now: datetime,
    ) -> Event | None:
        changed_at = parse_revision(record.get("updated_at"))
        if since is None or changed_at is None or changed_at < since:
            return None
        created_at = parse_revision(record.get("created_at"))
        if old is None and (created_at is None or created_at >= since):
            return self._event("created", rid, record, new, now)
        previous = self.snapshotter.previous(old, rid) if old else None
        return self._event("updated", rid, record, new, now, previous=previous)

    def _event(
        self,
        type_: EventType,
        rid: str,
        record: Mapping[str, Any],
        snapshot: Snapshot,
        now: datetime,
        *,
        previous: dict[str, Any] | None = None,
        changes: dict[str, Change] | None = None,
    ) -> Event:
        return Event.build(
            type=type_,
            resource=self.resource.name,
            record_id=rid,
            revision=snapshot.revision or snapshot.content or "",
            connection=self.connection,
            record=dict(record),
            previous=previous,
            changes=changes or {},
            detected_at=now,
        )
