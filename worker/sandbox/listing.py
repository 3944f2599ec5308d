"""List endpoints: the swagger's own query parameters, then OData, then paging.

Order of work for ``GET /api/v2/<resource>``: rows of the table (of one scope for custom fields
and tags) -> the endpoint's swagger parameters (``updated_since``, ``matter_id``, ``status`` ...)
-> ``$filter`` -> ``$orderby`` (default: ``created_at`` order, stable) -> ``$skip``/``$top`` -> ``$select``.

Paging: without ``$top`` at most ``max_page_size`` records come back (default 2500, the largest
page a public client has reported from the live service); a larger ``$top`` is capped the same
way. Responses are bare arrays with no next link, so a client that wants everything must page
with ``$top``/``$skip`` or a keyset filter until a short page.

``created_since``/``updated_since`` are inclusive (``>=``) and work for every resource, including
those whose model has no timestamps (contacts, relationships, bank accounts, custom fields): the
server tracks a modification time for every row. ``date_to``-style bounds given as a bare date
(``2026-04-04``) cover that whole day.

Polling queries (``$filter=updated_at ge <t> and ...``, ``updated_since=<t>``) read only the rows
the table's :class:`~worker.sandbox.timeline.Timeline` has at or after ``t`` and evaluate the
whole query over those, so the answer is the one a scan of the whole table gives, at a cost that
grows with the changes since ``t`` rather than with the table.

Records are rendered only when the query needs them: a listing without filters or ``$orderby``
slices the table's cached creation order (:meth:`~worker.sandbox.store.Database.in_creation_order`)
and renders the page alone, and ``$select=id`` renders nothing, so paging the ids of a 100k-record
table costs about the page, not the table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any

from worker.practicepanther.resources import ParamSpec, Resource, definition
from worker.sandbox.clock import is_date_only, parse_timestamp
from worker.sandbox.errors import ApiError, bad_request
from worker.sandbox.odata import ODataError, compile_filter, compile_orderby, lower_bound, sort_records
from worker.sandbox.records import Records
from worker.sandbox.store import Row
from worker.sandbox.timeline import instant

DEFAULT_MAX_PAGE_SIZE = 2500
ODATA_OPTIONS = frozenset(
    {"$filter", "$orderby", "$top", "$skip", "$select", "$count", "$inlinecount", "$format"}
)

# A row and its rendering; ``None`` until something (a filter, the order, the page) needs it.
Item = tuple[Row, dict[str, Any] | None]
# Called before a page after the first is cut, with the rows earlier pages held; True = it
# changed some of them (the ``page_mutation`` fault), so the listing is evaluated again.
BetweenPages = Callable[[str, list[Row]], bool]


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    total: int


def _ref_id(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    return value.get("id") if isinstance(value, dict) else None


def _param_value(spec: ParamSpec, raw: str) -> Any:
    """Parse a query parameter as its swagger type; 400 like ASP.NET model binding when it is not."""
    try:
        if spec.kind == "uuid":
            return str(uuid.UUID(raw))
        if spec.kind == "datetime":
            return parse_timestamp(raw)
    except ValueError:
        raise ApiError(
            400,
            {
                "message": "The request is invalid.",
                "modelState": {spec.name: [f"The value '{raw}' is not valid."]},
            },
        ) from None
    if spec.enum:
        match = next((e for e in spec.enum if e.lower() == raw.lower()), None)
        if match is None:
            raise ApiError(
                400,
                {
                    "message": "The request is invalid.",
                    "modelState": {spec.name: [f"The value '{raw}' is not valid for {spec.name}."]},
                },
            )
        return match
    return raw


class _ParamFilters:
    """Builds one predicate per supported swagger parameter."""

    def __init__(self, records: Records, resource: Resource) -> None:
        self.records = records
        self.resource = resource

    def build(self, name: str, raw: str) -> Callable[[Row, dict[str, Any]], bool] | None:
        spec = self.resource.list_params.get(name)
        if spec is None:
            return None
        value = _param_value(spec, raw)
        end_of_day = spec.kind == "datetime" and is_date_only(raw)
        builder = getattr(self, f"_{name}", None)
        if builder is None:
            return None
        predicate: Callable[[Row, dict[str, Any]], bool] = builder(value, end_of_day)
        return predicate

    # timestamps
    def _created_since(self, value: datetime, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda row, _rec: row.created >= value

    def _updated_since(self, value: datetime, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda row, _rec: row.modified >= value

    # date ranges
    def _date_field(self) -> str:
        fields = self.resource.fields
        for name in ("date", "start_date_time", "issue_date"):
            if name in fields:
                return name
        return "date"

    def _range(
        self, field: str, value: datetime, eod: bool, lower: bool
    ) -> Callable[[Row, dict[str, Any]], bool]:
        bound = value + timedelta(days=1) if (eod and not lower) else value

        def predicate(_row: Row, record: dict[str, Any]) -> bool:
            raw = record.get(field)
            if not raw:
                return False
            moment = parse_timestamp(raw)
            return moment >= bound if lower else (moment < bound if eod else moment <= bound)

        return predicate

    def _date_from(self, value: datetime, eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._range(self._date_field(), value, eod, True)

    def _date_to(self, value: datetime, eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._range(self._date_field(), value, eod, False)

    def _due_date_from(self, value: datetime, eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._range("due_date", value, eod, True)

    def _due_date_to(self, value: datetime, eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._range("due_date", value, eod, False)

    # references
    def _account_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        def predicate(_row: Row, record: dict[str, Any]) -> bool:
            if record.get("account_id") == value or _ref_id(record, "account_ref") == value:
                return True
            matter = self.records.db.get("matters", _ref_id(record, "matter_ref"))
            return matter is not None and _ref_id(matter.data, "account_ref") == value

        return predicate

    def _matter_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda _row, rec: _ref_id(rec, "matter_ref") == value or rec.get("matter_id") == value

    def _by_ref(self, field: str, value: str) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda _row, rec: _ref_id(rec, field) == value

    def _contact_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._by_ref("contact_ref", value)

    def _user_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._by_ref("billed_by_user_ref", value)

    _billed_by_user_id = _user_id

    def _item_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._by_ref("item_ref", value)

    def _expense_category_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._by_ref("expense_category_ref", value)

    def _bank_account_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._by_ref("bank_account", value)

    def _bank_account_type(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda _row, rec: (rec.get("bank_account") or {}).get("type") == value

    def _activity_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return self._by_ref("activity_ref", value)

    def _created_by_user_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda row, _rec: row.extra.get("created_by") == value

    def _assigned_to_user_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        def predicate(row: Row, record: dict[str, Any]) -> bool:
            users = record.get("assigned_to_users")
            if users is None and self.resource.name == "contacts":
                account = self.records.db.get("accounts", row.extra.get("account_id"))
                users = (account.data.get("assigned_to_users") or []) if account else []
            return any(isinstance(u, dict) and u.get("id") == value for u in users or [])

        return predicate

    # values
    def _status(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda _row, rec: rec.get("status") == value

    def _email_address(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda _row, rec: str(rec.get("email") or "").lower() == value.lower()

    def _external_message_id(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda _row, rec: rec.get("external_message_id") == value

    def _search_text(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        needle = value.lower()
        return lambda _row, rec: any(isinstance(v, str) and needle in v.lower() for v in rec.values())

    def _account_of(self, row: Row, record: dict[str, Any]) -> Row | None:
        if self.resource.name == "accounts":
            return row
        if self.resource.name == "contacts":
            return self.records.db.get("accounts", row.extra.get("account_id"))
        return self.records.db.get("accounts", _ref_id(record, "account_ref"))

    def _company_name(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        def predicate(row: Row, record: dict[str, Any]) -> bool:
            account = self._account_of(row, record)
            return (
                account is not None and value.lower() in str(account.data.get("company_name") or "").lower()
            )

        return predicate

    def _account_tag(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        def predicate(row: Row, record: dict[str, Any]) -> bool:
            account = self._account_of(row, record)
            return account is not None and value in (account.data.get("tags") or [])

        return predicate

    def _tagged(self, value: str, _eod: bool) -> Callable[[Row, dict[str, Any]], bool]:
        return lambda _row, rec: value in (rec.get("tags") or [])

    _matter_tag = _tagged
    _activity_tag = _tagged


def _non_negative(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise bad_request(f"The query specified in the URI is not valid. Invalid value '{raw}' for {name}.")
    return value


def _selected(raw: str | None, resource: Resource) -> list[str] | None:
    """The field names ``$select`` asks for; ``None`` for whole records (absent or ``*``)."""
    if not raw:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in resource.fields and n != "*"]
    if unknown:
        raise bad_request(
            f"The query specified in the URI is not valid. Could not find a property named '{unknown[0]}'."
        )
    return None if "*" in names or not names else names


def _project(records: Records, resource: Resource, items: list[Item], names: list[str] | None) -> list[Any]:
    """The page's records, rendered only when needed: ``$select=id`` reads no record at all."""
    if names is not None and set(names) == {"id"}:
        return [{"id": row.id} for row, _rec in items]
    rendered = [rec if rec is not None else records.render(resource.name, row) for row, rec in items]
    if names is None:
        return rendered
    return [{n: r.get(n) for n in names} for r in rendered]


def _modified_floor(resource: Resource, params: Mapping[str, str]) -> tuple[datetime, bool] | None:
    """``(moment, strict)``: every match was modified at or after (after, if strict) ``moment``.

    From a top-level ``updated_at ge|gt`` term of ``$filter`` and from ``updated_since``; the
    tightest wins. ``None`` when the query does not bound the modification time. Call once the
    query is known to be valid, so nothing here can fail.
    """
    bounds: list[tuple[datetime, bool]] = []
    text = params.get("$filter")
    updated_at = definition(resource.definition).fields.get("updated_at")
    if text and updated_at is not None and updated_at.kind == "datetime":
        bound = lower_bound(text, "updated_at")
        if bound is not None:
            bounds.append(bound)
    since = params.get("updated_since")
    spec = resource.list_params.get("updated_since")
    if since is not None and spec is not None and spec.kind == "datetime":
        # updated_since compares the untruncated time: bounding by its instant keeps every match.
        bounds.append((instant(parse_timestamp(since)), False))
    return max(bounds, default=None)


def list_records(
    records: Records,
    resource: Resource,
    params: Mapping[str, str],
    *,
    scope: str = "",
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE,
    between_pages: BetweenPages | None = None,
    narrow: bool = True,
) -> Page:
    """One page of ``resource`` for the request's query ``params``.

    ``narrow=False`` reads the whole table even for a polling query: the reference answer.
    """
    for name in params:
        if name.startswith("$") and name not in ODATA_OPTIONS:
            raise bad_request(f"The query parameter '{name}' is not supported.")
    top = _non_negative(params, "$top")
    skip = _non_negative(params, "$skip") or 0
    try:
        predicate = compile_filter(params["$filter"], resource.definition) if params.get("$filter") else None
        order = compile_orderby(params["$orderby"], resource.definition) if params.get("$orderby") else []
    except ODataError as exc:
        raise bad_request(str(exc)) from None
    builder = _ParamFilters(records, resource)
    filters = [f for f in (builder.build(n, v) for n, v in params.items() if not n.startswith("$")) if f]
    floor = _modified_floor(resource, params) if narrow else None
    selected = _selected(params.get("$select"), resource)

    def candidates() -> list[Row]:
        """Rows that may match, in listing order (created, seq)."""
        if floor is None:
            return records.db.in_creation_order(resource.name)
        moment, strict = floor
        rows = records.db.timelines[resource.name].since(moment, strict=strict)
        return sorted(rows, key=lambda r: (r.created, r.seq))

    needs_records = bool(filters) or predicate is not None or bool(order)

    def evaluate() -> tuple[list[Row], list[dict[str, Any]] | None]:
        """The matching rows in answer order, with their renderings when the query needed them.

        Plain paging renders nothing here, only the page later (a ``$select=id`` page of a 100k
        table reads no record), and slices the table's cached listing order.
        """
        with records.db.lock:
            rows = candidates()
            if scope:
                rows = [r for r in rows if r.extra.get("scope") == scope]
            if not needs_records:
                return rows, None
            items = [(row, records.render(resource.name, row)) for row in rows]
        items = [(row, rec) for row, rec in items if all(f(row, rec) for f in filters)]
        if predicate is not None:
            items = [(row, rec) for row, rec in items if predicate(rec)]
        if order:
            by_id = {id(rec): (row, rec) for row, rec in items}
            ordered = sort_records([rec for _row, rec in items], order)
            items = [by_id[id(rec)] for rec in ordered]
        return [row for row, _rec in items], [rec for _row, rec in items]

    rows, rendered = evaluate()
    if skip and between_pages is not None and between_pages(resource.name, rows[:skip]):
        rows, rendered = evaluate()
    limit = max_page_size if top is None else min(top, max_page_size)
    window = slice(skip, skip + limit)
    recs = rendered[window] if rendered is not None else repeat(None)
    page: list[Item] = list(zip(rows[window], recs, strict=False))
    return Page(_project(records, resource, page, selected), len(rows))
