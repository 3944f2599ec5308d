"""Reading every changed record exactly once, although the list can change while we page.

PracticePanther lists are plain ``$top``/``$skip`` pages over a live table, so two things can go
wrong between two requests: a record is edited (it moves to a later ``updated_at``, shifting every
record behind it), and more records share one ``updated_at`` than fit a page (a bulk update), so
"continue after the last timestamp" would skip the rest of them.

The reader pages by timestamp (keyset: ``updated_at ge <last timestamp read>``) and, within one
timestamp, by offset. Each page after the first starts one record early, on the last record
already read; finding a record it has read there proves the page does not start past unread ones.
If it finds an unread record instead, records before its position were edited away (moved to a
later ``updated_at``) and everything shifted down, so it steps back a page and looks again. Records
it has already read are dropped from each page; edited ones come back later in the same listing
with their new timestamp and are read again (the poller keeps the newest revision of each).

With ``updated_since`` (PracticePanther's documented parameter, for services where ``$filter`` or
``$orderby`` on ``updated_at`` are refused) the listing has the service's own stable order (edits
do not move records) and the reader pages by offset with the same check. A record edited after it
was read is then caught by the next poll, whose window reaches back over this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any, Protocol

from worker.errors import PpwError
from worker.polling.snapshots import parse_revision
from worker.practicepanther import odata
from worker.practicepanther.resources import Resource

Record = dict[str, Any]
#: Steps back without reading anything new before the poll gives up (it is retried next interval).
MAX_RESTARTS = 20
ORDER = ["updated_at", "id"]


class PageSource(Protocol):
    """What the poller needs from the PracticePanther client: one list request per call."""

    def list_page(
        self,
        resource: str,
        *,
        filter: str | None = None,
        orderby: str | list[str] | None = None,
        top: int | None = None,
        skip: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[Record]: ...


class PagingError(PpwError, RuntimeError):
    """The list kept shifting while we paged; the poll fails and nothing is committed."""


@dataclass
class Query:
    """One poll's listing: by ``$filter`` on ``updated_at`` or by ``updated_since``.

    ``since`` None lists everything (priming).
    """

    resource: Resource
    since: datetime | None
    use_updated_since: bool
    page_size: int

    def describe(self) -> str:
        bound = odata.format_timestamp(self.since) if self.since else None
        if self.use_updated_since:
            return f"updated_since={bound}" if bound else "all records"
        return f"$filter=updated_at ge {bound}" if bound else "all records by updated_at"


def _stamp(record: Record) -> datetime | None:
    return parse_revision(record.get("updated_at"))


def _revision_key(record: Record) -> tuple[Any, datetime | None]:
    return record.get("id"), _stamp(record)


def _unread(
    page: list[Record], stamps: list[datetime | None], read: set[tuple[Any, datetime | None]]
) -> list[Record]:
    """The page's records whose (id, ``updated_at``) is not in ``read``, which then holds them all.

    ``stamps`` are the page's parsed ``updated_at``, in order, so each is parsed once per page.
    """
    keys = [(record.get("id"), stamp) for record, stamp in zip(page, stamps, strict=True)]
    fresh = [record for record, revision in zip(page, keys, strict=True) if revision not in read]
    read.update(keys)
    return fresh


class PageReader:
    """Iterates one query's pages, yielding only records not yielded before (see module docstring).

    Parameters
    ----------
    source:
        The client (anything with ``list_page``).
    query:
        What to list.
    before_request:
        Called before each request (the poller renews its lock there and may abort).
    """

    def __init__(
        self, source: PageSource, query: Query, *, before_request: Callable[[], None] | None = None
    ) -> None:
        if query.page_size < 2:
            raise ValueError("the poll page size must be at least 2 (one record anchors the next page)")
        self.source = source
        self.query = query
        self.before_request = before_request or (lambda: None)
        self.requests = 0
        self.restarts = 0
        self._stalled = 0

    def __iter__(self) -> Iterator[list[Record]]:
        if self.query.use_updated_since or not self.query.resource.has_timestamps:
            return self._by_offset()
        return self._by_timestamp()

    def _fetch(self, **kwargs: Any) -> list[Record]:
        self.before_request()
        self.requests += 1
        return self.source.list_page(self.query.resource.name, top=self.query.page_size, **kwargs)

    def _step_back(self) -> None:
        self.restarts += 1
        self._stalled += 1
        if self._stalled > MAX_RESTARTS:
            raise PagingError(
                f"{self.query.resource.name}: the list kept changing while paging "
                f"({self._stalled - 1} re-reads without progress); the poll will be retried"
            )

    def _by_timestamp(self) -> Iterator[list[Record]]:
        lower = self.query.since  # keyset: records at or after this timestamp ...
        position = 0  # ... of which this many (in order) were read
        read: set[tuple[Any, datetime | None]] = set()  # (id, updated_at) of every record read
        while True:
            skip = max(position - 1, 0)  # start on the last record read: it shows where we are
            page = self._fetch(
                filter=odata.ge("updated_at", lower) if lower else None,
                orderby=ORDER,
                skip=skip or None,
            )
            if skip and (not page or _revision_key(page[0]) not in read):
                # Records before our position moved on (edited): the page starts past unread ones.
                self._step_back()
                position = max(position - self.query.page_size, 0)
                continue
            stamps = [_stamp(r) for r in page]  # once per record: pages are mostly re-reads
            self._check_order(stamps, lower)
            fresh = _unread(page, stamps, read)
            if fresh:
                self._stalled = 0
                yield fresh
            if len(page) < self.query.page_size:
                return
            stamp = stamps[-1]
            if stamp is None:
                raise PagingError(
                    f"{self.query.resource.name}: a record without updated_at in an ordered list"
                )
            if lower is None or stamp > lower:
                lower = stamp
                position = stamps.count(stamp)
            else:
                position = skip + len(page)

    def _check_order(self, stamps: list[datetime | None], lower: datetime | None) -> None:
        """Keyset paging is only safe if the service honours ``$filter`` and ``$orderby``."""
        ordered = all(a is not None and b is not None and a <= b for a, b in pairwise(stamps))
        in_range = lower is None or all(s is not None and s >= lower for s in stamps)
        if not (ordered and in_range):
            name = self.query.resource.name
            raise PagingError(
                f"{name}: PracticePanther ignored $orderby or $filter on updated_at (records came back "
                f"{'out of order' if not ordered else 'outside the filter'}); add {name} to "
                "PPW_POLL_USE_UPDATED_SINCE to poll it with the documented updated_since parameter"
            )

    def _by_offset(self) -> Iterator[list[Record]]:
        params = {"updated_since": self.query.since} if self.query.since else None
        position = 0
        read_ids: set[Any] = set()
        read: set[tuple[Any, datetime | None]] = set()
        while True:
            skip = max(position - 1, 0)
            page = self._fetch(params=params, skip=skip or None)
            if skip and (not page or page[0].get("id") not in read_ids):
                self._step_back()
                position = max(position - self.query.page_size, 0)
                continue
            fresh = _unread(page, [_stamp(r) for r in page], read)
            read_ids.update(r.get("id") for r in fresh)
            if fresh:
                self._stalled = 0
                yield fresh
            if len(page) < self.query.page_size:
                return
            position = skip + len(page)
