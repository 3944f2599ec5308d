"""PracticePanther steps: create (and its shorthands), update, find, find_or_create.

Every write is remembered through the loop guard (:mod:`worker.polling.own_writes`), so the poller
marks the change it later detects as ``origin: ppw`` and rules do not fire on their own writes
unless they opt in with ``allow_own_changes``.

Creates are idempotent across retries and crashes through the marker scheme of
:mod:`worker.actions.markers`; updates are GET → merge → PUT (``PracticePantherClient.update``), so
repeating one after an uncertain failure writes the same values again.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from worker.actions import markers
from worker.actions.base import StepContext, StepResult, executor
from worker.actions.errors import PermanentStepError, StepError, StopRun
from worker.actions.params import (
    CreateParams,
    FindContactByEmailParams,
    FindMatterParams,
    FindOrCreateParams,
    FindParams,
    UpdateParams,
    search_as_find,
)
from worker.polling.own_writes import remember_own_record
from worker.practicepanther import odata, resources
from worker.practicepanther.errors import AuthError, PracticePantherError

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


@executor("practicepanther.create", params=CreateParams)
def create(params: CreateParams, ctx: StepContext) -> StepResult:
    record, created, request = create_record(ctx, params.resource, dict(params.data))
    return StepResult(
        output=record,
        request=request,
        response=_summary(record, created=created, reused=not created and not ctx.dry_run),
    )


@executor("practicepanther.update", params=UpdateParams)
def update(params: UpdateParams, ctx: StepContext) -> StepResult:
    resource = resources.get(params.resource)
    data = dict(params.data)
    request = {**_request("PUT", resource, data, ctx), "id": params.id, "merge": True}
    if ctx.dry_run:
        return StepResult(output={**data, "id": params.id}, request=request)
    try:
        record = ctx.services.pp(ctx.connection).update(resource.name, params.id, data)
    except PracticePantherError as exc:
        raise _client_error(exc) from None
    _remember(ctx, resource.name, record)
    return StepResult(output=record, request=request, response=_summary(record))


@executor("practicepanther.find", params=FindParams, writes=False)
def find(params: FindParams, ctx: StepContext) -> StepResult:
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


@executor("find_contact_by_email", params=FindContactByEmailParams, writes=False)
@executor("find_matter", params=FindMatterParams, writes=False)
def find_shorthand(params: FindContactByEmailParams | FindMatterParams, ctx: StepContext) -> StepResult:
    """``find_contact_by_email`` and ``find_matter``: a ``practicepanther.find`` with the filter
    built (and quoted) from the rendered values."""
    step_type = "find_matter" if isinstance(params, FindMatterParams) else "find_contact_by_email"
    try:
        expanded = search_as_find(step_type, params)
    except ValueError as exc:
        raise PermanentStepError(str(exc)) from None
    return find(expanded, ctx)


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


@executor("practicepanther.find_or_create", params=FindOrCreateParams)
def find_or_create(params: FindOrCreateParams, ctx: StepContext) -> StepResult:
    resource = resources.get(params.resource)
    flt = match_filter(resource, params.match)
    try:
        existing = next(iter(ctx.services.pp(ctx.connection).list(resource.name, filter=flt, limit=1)), None)
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
