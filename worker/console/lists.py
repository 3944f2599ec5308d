"""The console's lists read from a request: filters and cursors in, a page of an index out.

The Runs page filters by status (and ``failed``), rule, resource, record id and creation time;
every list pages by position (``after``/``before`` a run's time and id, in the list's order),
so the 50th page costs what the first does. What the filters and cursors mean for the store is
:meth:`worker.delivery.history.RunHistory.page`'s business; this module only reads them from the
query string, with an error that names the field when one does not parse.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from worker.delivery.history import FILTER_STATUSES, Position, RunHistory, RunPage, RunQuery
from worker.delivery.report import parse_moment
from worker.errors import PpwError

#: Runs (and dead letters) on one page.
PAGE_SIZE = 50
#: The filters of the Runs page, in the order of its form.
RUN_FILTERS = ("status", "rule", "resource", "record", "since", "until")
#: The window of a rule's "runs in the last day".
DAY = 86_400.0
#: Longest filter value the console accepts (an id, a rule name); longer is a mistake.
MAX_VALUE = 200


class BadFilter(PpwError, ValueError):
    """A filter or cursor of the query string that does not parse; the message names it."""


@dataclass(frozen=True)
class Listing:
    """A list's filters as asked (strings, for the form and the links) and as a query."""

    filters: dict[str, str]
    query: RunQuery
    after: Position | None
    before: Position | None

    def link(self, path: str, **cursor: Position | None) -> str:
        """``path`` with these filters and one cursor (``after=`` or ``before=``)."""
        params = dict(self.filters)
        params.update({name: value.text() for name, value in cursor.items() if value is not None})
        return f"{path}?{urlencode(params)}" if params else path


@dataclass(frozen=True)
class Pager:
    """The links beside a page: ``back`` (the page before, in the list's order) and ``forward``;
    ``searched`` when a page stopped at the scan limit before it was full."""

    back: str | None
    forward: str | None
    back_label: str
    forward_label: str
    searched: int | None = None

    @classmethod
    def of(cls, asked: Listing, path: str, page: RunPage, *, back: str, forward: str) -> Pager:
        return cls(
            back=asked.link(path, before=page.previous) if page.previous else None,
            forward=asked.link(path, after=page.next) if page.next else None,
            back_label=back,
            forward_label=forward,
            searched=page.searched if page.limited else None,
        )


def parse_time(name: str, text: str) -> float:
    """``2026-03-02``, ``2026-03-02T15:00`` (UTC, as the pages show times) or with an offset."""
    try:
        return parse_moment(text)
    except ValueError:
        raise BadFilter(
            f"{name}: {text[:40]!r} is not a date or time (expected e.g. 2026-03-02T15:00)"
        ) from None


def _cursor(name: str, text: str | None) -> Position | None:
    if not text:
        return None
    try:
        return Position.parse(text)
    except ValueError as exc:
        raise BadFilter(f"{name}: {exc}; follow the page links instead of editing them") from None


def listing(params: Mapping[str, str], fields: Sequence[str]) -> Listing:
    """The filters ``fields`` (of ``status``, ``rule``, ``resource``, ``record``, ``since``,
    ``until``) and the cursors of a query string; empty values are no filter."""
    filters: dict[str, str] = {}
    for name in fields:
        value = (params.get(name) or "").strip()
        if not value:
            continue
        if len(value) > MAX_VALUE:
            raise BadFilter(f"{name}: longer than {MAX_VALUE} characters")
        filters[name] = value
    status = filters.get("status")
    if status is not None and status not in FILTER_STATUSES:
        raise BadFilter(f"unknown status {status!r}; expected one of {', '.join(FILTER_STATUSES)}")
    since = parse_time("since", filters["since"]) if "since" in filters else None
    until = parse_time("until", filters["until"]) if "until" in filters else None
    if since is not None and until is not None and since > until:
        raise BadFilter("since is after until: no run can match")
    query = RunQuery(
        status=status,
        rule=filters.get("rule"),
        resource=filters.get("resource"),
        record=filters.get("record"),
        since=since,
        until=until,
    )
    return Listing(
        filters, query, _cursor("after", params.get("after")), _cursor("before", params.get("before"))
    )


@dataclass(frozen=True)
class RuleActivity:
    """A rule's line of the Rules page beside its definition."""

    last_fired: float | None
    runs_last_day: int


def rule_activity(history: RunHistory, connection: str, rules: Sequence[str]) -> dict[str, RuleActivity]:
    """When each rule last fired and its runs in the last day, from its index (two reads a rule)."""
    found = history.rule_activity(connection, rules, since=time.time() - DAY)
    return {rule: RuleActivity(last, count) for rule, (last, count) in found.items()}
