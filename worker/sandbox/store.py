"""The sandbox's in-memory database: one table of rows per catalogue resource.

A row keeps what a client may write (``data``, references stored as ``{"id": ...}``) apart from
what the server owns (creation and modification time, insertion order) and from internal
attributes the API never emits (``extra``: a contact's account, a custom field's scope, a file's
bytes). Rendering turns a row into the swagger model at read time, so display names and derived
references are always consistent with the rows they point to.

One re-entrant lock guards everything: the API handlers, the control endpoints and the churn
thread all go through it, and every operation is a few dictionary lookups.

Every row's modification time changes here (:meth:`Database.insert`, :meth:`Database.touch`),
so each table's :class:`~worker.sandbox.timeline.Timeline` is kept in step here too.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.practicepanther import resources
from worker.sandbox.timeline import Timeline


@dataclass
class Row:
    """One stored record."""

    id: str
    data: dict[str, Any]
    created: datetime
    modified: datetime
    seq: int
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = 0  # bumped on every write, so cached renderings know when they are stale


class Database:
    """Tables of rows by catalogue name, in insertion order."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables: dict[str, dict[str, Row]] = {name: {} for name in resources.catalogue()}
        self._seq = itertools.count(1)
        self._numbers: dict[str, int] = {}
        # Per-table write counters: a rendering is stale when a table it reads from changed.
        self.generations: dict[str, int] = dict.fromkeys(self.tables, 0)
        # Per-table rows by modification time, for listings that only want recent changes.
        self.timelines: dict[str, Timeline] = {name: Timeline() for name in self.tables}
        self._ordered: dict[str, tuple[int, list[Row]]] = {}

    def insert(
        self,
        resource: str,
        record_id: str,
        data: dict[str, Any],
        at: datetime,
        extra: dict[str, Any] | None = None,
    ) -> Row:
        row = Row(record_id, data, at, at, next(self._seq), dict(extra or {}))
        replaced = self.tables[resource].get(record_id)
        if replaced is not None:
            self.timelines[resource].remove(replaced)
        self.tables[resource][record_id] = row
        self.timelines[resource].add(row)
        self.generations[resource] += 1
        return row

    def get(self, resource: str, record_id: str | None) -> Row | None:
        if not record_id:
            return None
        return self.tables[resource].get(str(record_id).lower())

    def in_creation_order(self, resource: str) -> list[Row]:
        """The table's rows by (created, seq): the listing order, kept until the table changes.

        Shared: never mutate the result. Paging through a large table asks for this once a page,
        and sorting 100k rows each time would be most of the work.
        """
        generation = self.generations[resource]
        cached = self._ordered.get(resource)
        if cached is not None and cached[0] == generation:
            return cached[1]
        ordered = sorted(self.tables[resource].values(), key=lambda r: (r.created, r.seq))
        self._ordered[resource] = (generation, ordered)
        return ordered

    def rows(self, resource: str) -> list[Row]:
        return list(self.tables[resource].values())

    def iter_rows(self, resource: str) -> Iterator[Row]:
        return iter(self.tables[resource].values())

    def touch(self, resource: str, row: Row, at: datetime) -> None:
        """Record a write to ``row`` at ``at`` (its ``updated_at``)."""
        row.modified = at
        self.timelines[resource].move(row)
        self.changed(resource, row)

    def changed(self, resource: str, row: Row) -> None:
        """Record that ``row`` changed without moving its modification time."""
        row.version += 1
        self.generations[resource] += 1

    def delete(self, resource: str, record_id: str) -> Row | None:
        row = self.tables[resource].pop(record_id, None)
        if row is not None:
            self.timelines[resource].remove(row)
            row.version += 1
            self.generations[resource] += 1
        return row

    def next_number(self, resource: str) -> int:
        """The next display number (matters, accounts, payments are numbered 1, 2, 3 ...)."""
        current = self._numbers.get(resource)
        if current is None:
            numbers = [r.data.get("number") for r in self.tables[resource].values()]
            current = max((n for n in numbers if isinstance(n, int)), default=0)
        self._numbers[resource] = current + 1
        return current + 1

    def clear(self) -> None:
        for name, table in self.tables.items():
            table.clear()
            self.timelines[name] = Timeline()
            self.generations[name] += 1
        self._numbers.clear()
