"""PracticePanther steps: create (and its shorthands), update, find, find_or_create.

Every write is remembered through the loop guard (:mod:`worker.polling.own_writes`), so the poller
marks the change it later detects as ``origin: ppw`` and rules do not fire on their own writes
unless they opt in with ``allow_own_changes``.

Creates are idempotent across retries and crashes through the marker scheme of
:mod:`worker.actions.markers`; updates are GET → merge → PUT (``PracticePantherClient.update``), so
repeating one after an uncertain failure writes the same values again.

Custom fields are written by label (``custom: {"Case Stage": "Settlement"}``): the label's field id
and value slot come from the account's definitions (the state store's cache, fetched from
PracticePanther when the cache lacks the scope or the label), and an unknown label or a value the
field cannot hold is a permanent step error (a retry would fail the same way). An update changes
only the custom fields it names: the record's list is read, the named entries replaced by field id,
and the whole list written back (PracticePanther's PUT replaces the list too).

One :class:`~worker.actions.base.StepType` per step type; ``practicepanther.create`` carries the
create shorthands (``create_task`` ...), and the search shorthands ``find_contact_by_email`` and
``find_matter`` are step types of their own that run a ``practicepanther.find``.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from worker.actions import markers
from worker.actions.base import DataSchema, StepContext, StepResult, StepType
from worker.actions.errors import PermanentStepError, StepError, StopRun
from worker.actions.params import (
    CreateParams,
    FindContactByEmailParams,
    FindMatterParams,
    FindOrCreateParams,
    FindParams,
    RecordData,
    UpdateParams,
)
from worker.polling.own_writes import remember_own_record
from worker.practicepanther import customfields, odata, resources
from worker.practicepanther.customfields import CustomFieldError, DefinitionCache, Definitions
from worker.practicepanther.errors import AuthError, PracticePantherError

if TYPE_CHECKING:
    from worker.settings import Settings

log = logging.getLogger(__name__)

#: How many records ``result: all`` returns when the step sets no ``limit``.
DEFAULT_FIND_LIMIT = 100


def _client_error(exc: PracticePantherError) -> StepError:
    """A PracticePanther failure as a step error (an expired login waits for ``ppw auth login``)."""
    if isinstance(exc, AuthError):
        return StepError(
            f"{exc} (run `ppw auth login`; the run is retried and can be replayed from the DLQ)",
            transient=True,
        )
    return StepError(
        str(exc),
        transient=exc.transient,
        retry_after=exc.retry_after,
        may_have_applied=exc.may_have_applied,
    )


def _remember(ctx: StepContext, resource: str, record: dict[str, Any]) -> None:
    """The loop guard: the poller will see this revision and mark its event ``origin: ppw``."""
    if record.get("id"):
        remember_own_record(ctx.services.store, ctx.connection, resource, record)


def _request(
    method: str, resource: resources.Resource, body: dict[str, Any], ctx: StepContext
) -> dict[str, Any]:
    return {"method": method, "path": resource.path, "body": ctx.services.mask(body)}


def _summary(record: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": record.get("id"), "updated_at": record.get("updated_at"), **extra}


def _find_marked(
    ctx: StepContext, resource: resources.Resource, field: str, mark: str
) -> dict[str, Any] | None:
    client = ctx.services.pp(ctx.connection)
    try:
        found = next(
            iter(client.list(resource.name, filter=markers.lookup_filter(field, mark), limit=1)), None
        )
    except PracticePantherError as exc:
        raise _client_error(exc) from None
    return found


def _definitions(ctx: StepContext, resource: str, labels: list[str]) -> Definitions:
    """The definitions holding every one of ``labels``: the cache, else fetched (and cached)."""
    cached = DefinitionCache(ctx.services.store, ctx.connection).load()
    if cached.known(resource) and all(cached.by_label(resource, label) for label in labels):
        return cached
    try:
        return customfields.refresh(ctx.services.pp(ctx.connection), ctx.services.store, ctx.connection)
    except PracticePantherError as exc:
        raise _client_error(exc) from None


def custom_entries(ctx: StepContext, resource: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``CustomFieldValue`` entries that set ``values`` (by label) on a ``resource`` record.

    Raises
    ------
    PermanentStepError
        A label that is not one of the account's, a value its field cannot hold, or a resource
        without custom fields.
    """
    if resource not in customfields.SCOPES:
        raise PermanentStepError(
            f"{resource} have no custom fields (custom fields exist on {', '.join(customfields.SCOPES)})"
        )
    definitions = _definitions(ctx, resource, list(values))
    try:
        return [
            customfields.encode(definitions.find(resource, label), value) for label, value in values.items()
        ]
    except CustomFieldError as exc:
        raise PermanentStepError(str(exc)) from None


def with_custom(
    ctx: StepContext,
    resource: str,
    data: dict[str, Any],
    values: dict[str, Any],
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``data`` with the custom fields ``values`` names merged into the record's list (the list in
    ``data``, else ``current``'s, so other custom fields are kept)."""
    if not values:
        return data
    updates = custom_entries(ctx, resource, values)
    field = customfields.VALUES_FIELDS[resource]
    base = data.get(field) if isinstance(data.get(field), list) else customfields.entries(resource, current)
    return {**data, field: customfields.merge_entries(base or [], updates)}


def create_record(
    ctx: StepContext, resource_name: str, data: dict[str, Any]
) -> tuple[dict[str, Any], bool, dict[str, Any]]:
    """Create once: ``(record, created_now, request summary)``; finds an earlier attempt's record."""
    resource = resources.get(resource_name)
    field = markers.marker_field(resource)
    mark = markers.marker(ctx.key)
    body = markers.with_marker(data, field, mark) if field else dict(data)
    request = _request("POST", resource, body, ctx)
    if ctx.dry_run:
        return {**body, "id": None}, False, request
    if ctx.uncertain:
        if field is None:
            log.warning(
                "%s has no free-text field for a marker; an earlier attempt may have created a record",
                resource.name,
            )
        else:
            existing = _find_marked(ctx, resource, field, mark)
            if existing is not None:
                log.info(
                    "found the %s record %s an earlier attempt created", resource.name, existing.get("id")
                )
                _remember(ctx, resource.name, existing)
                return existing, False, request
    try:
        record = ctx.services.pp(ctx.connection).create(resource.name, body)
    except PracticePantherError as exc:
        raise _client_error(exc) from None
    _remember(ctx, resource.name, record)
    return record, True, request


class _RecordStep(StepType):
    """A step whose result is the record of its ``resource``: later steps see a record view."""

    def result_resource(self, params: BaseModel) -> tuple[str, bool] | None:
        resource = getattr(params, "resource", None)
        return (resource, False) if isinstance(resource, str) else None

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        return _describe(self.name, params)


class Create(_RecordStep):
    """``practicepanther.create``, and the shorthands whose ``with:`` is the new record's data."""

    name = "practicepanther.create"
    params = CreateParams
    shorthands = {
        "create_time_entry": "time_entries",
        "create_task": "tasks",
        "create_note": "notes",
        "create_event": "events",
    }
    shorthand_with = RecordData
    data_schema = DataSchema("create", "create")
    with_doc = "`resource`, `data`, `custom` (custom field values by label)"
    result_doc = "the created record"

    def expand(self, shorthand: str, with_: Any) -> dict[str, Any]:
        """A shorthand's ``with:`` is the record's data, except ``custom:`` (values by label)."""
        data = dict(with_)
        custom = data.pop("custom", None)
        expanded = super().expand(shorthand, data)
        return {**expanded, "custom": custom} if custom is not None else expanded

    def run(self, params: CreateParams, ctx: StepContext) -> StepResult:
        data = with_custom(ctx, params.resource, dict(params.data), dict(params.custom))
        record, created, request = create_record(ctx, params.resource, data)
        return StepResult(
            output=record,
            request=request,
            response=_summary(record, created=created, reused=not created and not ctx.dry_run),
        )


class Update(_RecordStep):
    """``practicepanther.update``: GET, merge, PUT the whole record back."""

    name = "practicepanther.update"
    params = UpdateParams
    data_schema = DataSchema("update", "update")
    with_doc = (
        "`resource`, `id`, `data` (merged into the current record: PracticePanther's PUT replaces "
        "the whole record), `custom` (custom field values by label; the others are kept)"
    )
    result_doc = "the updated record"

    def run(self, params: UpdateParams, ctx: StepContext) -> StepResult:
        resource = resources.get(params.resource)
        data = dict(params.data)
        custom = dict(params.custom)
        request = {**_request("PUT", resource, data, ctx), "id": params.id, "merge": True}
        if custom:
            request["custom"] = ctx.services.mask(custom)
        if ctx.dry_run:
            return StepResult(output={**data, "id": params.id}, request=request)
        client = ctx.services.pp(ctx.connection)
        try:
            if custom:
                # the list is replaced whole by the PUT: start from the record's own list
                current = client.get(resource.name, params.id)
                data = with_custom(ctx, resource.name, data, custom, current)
            record = client.update(resource.name, params.id, data)
        except PracticePantherError as exc:
            raise _client_error(exc) from None
        _remember(ctx, resource.name, record)
        return StepResult(output=record, request=request, response=_summary(record))


class Find(_RecordStep):
    """``practicepanther.find``: reads only, so it acts in a dry run too."""

    name = "practicepanther.find"
    params = FindParams
    writes = False
    with_doc = (
        "`resource`, `filter` (OData) and/or `params` (list parameters), `orderby`, `limit`, "
        "`result: first\\|all`, `not_found: fail\\|continue\\|stop` (default `fail`)"
    )
    result_doc = "a record (or `none`), or a list with `result: all`"

    def result_resource(self, params: BaseModel) -> tuple[str, bool] | None:
        found = super().result_resource(params)
        return (found[0], getattr(params, "result", "first") == "all") if found else None

    def run(self, params: FindParams, ctx: StepContext) -> StepResult:
        return find(params, ctx)


def find(params: FindParams, ctx: StepContext) -> StepResult:
    """List the records ``params`` asks for (``practicepanther.find`` and the search steps)."""
    resource = resources.get(params.resource)
    limit = 1 if params.result == "first" else (params.limit or DEFAULT_FIND_LIMIT)
    request = {
        "method": "GET",
        "path": resource.path,
        "filter": params.filter,
        "params": ctx.services.mask(params.params),
        "orderby": params.orderby,
        "limit": limit,
    }
    try:
        found = list(
            ctx.services.pp(ctx.connection).list(
                resource.name,
                filter=params.filter,
                orderby=params.orderby,
                params=params.params or None,
                limit=limit,
                page_size=min(limit, 200),
            )
        )
    except PracticePantherError as exc:
        raise _client_error(exc) from None
    response = {"count": len(found), "ids": [r.get("id") for r in found][:20]}
    if not found:
        if params.not_found == "fail":
            raise PermanentStepError(f"no {resource.name} record matched ({params.filter or params.params})")
        if params.not_found == "stop":
            raise StopRun(f"no {resource.name} record matched; the rule stops here (not_found: stop)")
    if params.result == "first":
        return StepResult(output=found[0] if found else {}, request=request, response=response)
    return StepResult(output={"records": found, "count": len(found)}, request=request, response=response)


class _Search(StepType):
    """A search shorthand: a ``practicepanther.find`` of ``resource`` with the filter built (and
    quoted) from the *rendered* values, so a value from a webhook cannot change its meaning."""

    resource: str
    writes = False

    def as_find(self, params: Any) -> FindParams:
        raise NotImplementedError

    def result_resource(self, params: BaseModel) -> tuple[str, bool] | None:
        return self.resource, False

    def run(self, params: Any, ctx: StepContext) -> StepResult:
        try:
            expanded = self.as_find(params)
        except ValueError as exc:
            raise PermanentStepError(str(exc)) from None
        return find(expanded, ctx)

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        try:
            expanded = self.as_find(self.params.model_validate(params))
        except (ValueError, ValidationError):
            return {"params": params}
        return _describe("practicepanther.find", expanded.model_dump(exclude_none=True))


class FindContactByEmail(_Search):
    """``find_contact_by_email``: emails compared case-insensitively."""

    name = "find_contact_by_email"
    params = FindContactByEmailParams
    resource = "contacts"
    with_doc = "`email`, `not_found`"
    result_doc = "the contact (emails compared case-insensitively)"

    def as_find(self, params: FindContactByEmailParams) -> FindParams:
        email = params.email.strip().lower()
        clause = odata.Filter(f"tolower(email) eq {odata.literal(email)}")
        return FindParams(resource="contacts", filter=clause, not_found=params.not_found)


class FindMatter(_Search):
    """``find_matter``: by number (``1042``, ``#1042``) and/or name."""

    name = "find_matter"
    params = FindMatterParams
    resource = "matters"
    with_doc = "`number` and/or `name`, `not_found`"
    result_doc = "the matter"

    def as_find(self, params: FindMatterParams) -> FindParams:
        clauses: list[str] = []
        if params.number is not None:
            clauses.append(odata.eq("number", _matter_number(params.number)))
        if params.name is not None:
            clauses.append(odata.eq("name", params.name))
        return FindParams(resource="matters", filter=odata.and_(*clauses), not_found=params.not_found)


def _matter_number(value: int | str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip().lstrip("#")
    if not text.isdigit():
        raise ValueError(f"{value!r} is not a matter number (e.g. 1042)")
    return int(text)


def match_filter(resource: resources.Resource, match: dict[str, Any]) -> str:
    """``$filter`` for "every field equals": nested mappings become paths (``matter_ref/id``)."""
    clauses: list[str] = []
    for name, value in match.items():
        spec = resource.fields.get(name)
        if isinstance(value, dict):
            ref_fields = resources.definition(spec.ref).fields if spec is not None and spec.ref else {}
            for sub, sub_value in value.items():
                sub_spec = ref_fields.get(sub)
                clauses.append(
                    odata.eq(f"{name}/{sub}", _typed(sub_spec.kind if sub_spec else "", sub_value))
                )
        else:
            clauses.append(odata.eq(name, _typed(spec.kind if spec else "", value)))
    return odata.and_(*clauses)


def _typed(kind: str, value: Any) -> Any:
    if kind == "uuid" and isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise PermanentStepError(f"{value!r} is not a valid id") from None
    return value


class FindOrCreate(_RecordStep):
    """``practicepanther.find_or_create``: the search first, then a create carrying the marker."""

    name = "practicepanther.find_or_create"
    params = FindOrCreateParams
    result_keys = frozenset({"created"})
    data_schema = DataSchema("update", "create")
    with_doc = "`resource`, `match: {field: value}`, `data`"
    result_doc = "the found or created record"

    def run(self, params: FindOrCreateParams, ctx: StepContext) -> StepResult:
        resource = resources.get(params.resource)
        flt = match_filter(resource, params.match)
        try:
            existing = next(
                iter(ctx.services.pp(ctx.connection).list(resource.name, filter=flt, limit=1)), None
            )
        except PracticePantherError as exc:
            raise _client_error(exc) from None
        if existing is not None:
            return StepResult(
                output={**existing, "created": False},
                request={"method": "GET", "path": resource.path, "filter": flt},
                response=_summary(existing, created=False),
            )
        record, created, request = create_record(ctx, resource.name, {**params.match, **params.data})
        return StepResult(
            # created by this step: now, or by an earlier attempt whose record the marker found
            output={**record, "created": not ctx.dry_run},
            request={**request, "filter": flt},
            response=_summary(record, created=created),
        )


# -- previews (``ppw rules test``/``explain``) ------------------------------------------------------


def _describe(action: str, params: dict[str, Any]) -> dict[str, Any]:
    """The request(s) the PracticePanther step ``action`` would make with rendered ``params``."""
    resource = resources.get(str(params.get("resource")))
    custom = {"custom": params["custom"]} if params.get("custom") else {}
    if action == "practicepanther.create":
        return {"method": "POST", "url": resource.path, "json": params.get("data"), **custom}
    if action == "practicepanther.update":
        return {
            "method": "PUT",
            "url": f"{resource.path}?id={params.get('id')}",
            "json": "the current record (GET first) with these fields merged in",
            "merge": params.get("data"),
            **custom,
        }
    query: dict[str, Any] = {}
    if action == "practicepanther.find":
        query.update(params.get("params") or {})
        if params.get("filter"):
            query["$filter"] = params["filter"]
        if params.get("orderby"):
            query["$orderby"] = params["orderby"]
        if params.get("limit") or params.get("result", "first") == "first":
            query["$top"] = params.get("limit") or 1
        return {"method": "GET", "url": resource.path, "params": query}
    match = params.get("match") or {}
    return {
        "method": "GET",
        "url": resource.path,
        "params": {"$filter": " and ".join(f"{k} eq {_literal(v)}" for k, v in match.items()), "$top": 1},
        "then_if_none": {
            "method": "POST",
            "url": resource.path,
            "json": {**match, **(params.get("data") or {})},
        },
    }


def _literal(value: Any) -> str:
    if isinstance(value, dict) and "id" in value:
        value = value["id"]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
