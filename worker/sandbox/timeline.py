"""Each table's rows in modification-time order, so a polling query need not read the whole table.

The worker polls with ``$filter=updated_at ge <t>`` (or ``updated_since=<t>``) every second.
Evaluated over the whole table, each poll costs the sandbox time in proportion to every record
it holds, and on a small machine that time is taken from the worker being measured. A
:class:`Timeline` answers "which rows were modified at or after ``t``" with a binary search; the
listing then evaluates the full query over those rows only, so the timeline merely has to hold a
*superset* of a query's matches, in any order.

Rows are placed by :func:`instant` of their modification time: UTC truncated to milliseconds,
exactly the ``updated_at`` a ``$filter`` compares with. ``updated_since`` compares the untruncated
time, and truncation never reorders, so the rows at or after ``instant(t)`` include its matches.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # store.py keeps a Timeline per table
    from worker.sandbox.store import Row

_moment = itemgetter(0)


def instant(moment: datetime) -> datetime:
    """``moment`` as the API renders it in ``updated_at``: aware UTC, whole milliseconds."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


class Timeline:
    """The rows of one table, sorted by (:func:`instant` of modification time, insertion order)."""

    def __init__(self) -> None:
        self._order: list[tuple[datetime, int]] = []  # (instant, seq), sorted
        self._placed: dict[int, tuple[datetime, Row]] = {}  # seq -> (the instant it sits at, row)

    def __len__(self) -> int:
        return len(self._placed)

    def add(self, row: Row) -> None:
        """Place a row that has just been stored."""
        self.remove(row)
        moment = instant(row.modified)
        insort(self._order, (moment, row.seq))
        self._placed[row.seq] = (moment, row)

    def move(self, row: Row) -> None:
        """Re-place ``row`` after its modification time changed (a row no longer stored stays out)."""
        if row.seq in self._placed:
            self.add(row)

    def remove(self, row: Row) -> None:
        """Take out a row that is no longer stored."""
        placed = self._placed.pop(row.seq, None)
        if placed is not None:
            del self._order[bisect_left(self._order, (placed[0], row.seq))]

    def since(self, moment: datetime, *, strict: bool = False) -> list[Row]:
        """The rows whose instant is at or after ``moment`` (after it when ``strict``)."""
        find = bisect_right if strict else bisect_left
        start = find(self._order, moment, key=_moment)
        return [self._placed[seq][1] for _at, seq in self._order[start:]]
