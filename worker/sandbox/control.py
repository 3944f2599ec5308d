"""``/_sandbox/*``: the test and demo controls (no OAuth, never part of the real API).

``GET|POST /_sandbox/faults``   current faults / set faults and fire triggers (JSON object)
``POST /_sandbox/reset``        data back to the seed (tokens, faults, request log are kept)
``GET|DELETE /_sandbox/requests``  the request log (``?since=<index>``) / clear it
``POST /_sandbox/mutate``       edits as a person in the web UI would make them
``GET /_sandbox/info``          client id, redirect URIs, seed, clock skew, record counts
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker.practicepanther import resources
from worker.sandbox.errors import ApiError, bad_request
from worker.sandbox.faults import FaultError
from worker.sandbox.state import SandboxState

MUTATE_OPS = ("create", "update", "delete", "bulk_update")


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise bad_request("The body must be JSON.") from None


def _guard(handler: Any) -> Any:
    async def run(request: Request) -> Response:
        try:
            response: Response = await handler(request, _state(request))
            return response
        except ApiError as error:
            return JSONResponse(error.body, status_code=error.status, headers=error.headers)
        except FaultError as error:
            return JSONResponse({"message": str(error)}, status_code=400)

    return run


async def faults(request: Request, state: SandboxState) -> Response:
    if request.method == "POST":
        body = await _body(request)
        if not isinstance(body, dict):
            raise bad_request('Send a JSON object naming each fault, e.g. {"rate_429": 0.2}.')
        done = state.apply_faults(body)
        return JSONResponse({**state.faults.snapshot(), "triggered": done})
    return JSONResponse(state.faults.snapshot())


async def reset(request: Request, state: SandboxState) -> Response:
    state.reset()
    return JSONResponse({"reset": True, "seed": state.config.seed})


async def requests(request: Request, state: SandboxState) -> Response:
    if request.method == "DELETE":
        state.log.clear()
        return JSONResponse({"cleared": True})
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        raise bad_request("since must be an integer index.") from None
    return JSONResponse(state.log.since(since))


async def info(request: Request, state: SandboxState) -> Response:
    with state.db.lock:
        counts = {name: len(table) for name, table in state.db.tables.items()}
    return JSONResponse(
        {
            "client_id": state.config.client_id,
            "redirect_uris": list(state.config.redirect_uris),
            "seed": state.config.seed,
            "clock_skew": state.clock.skew_seconds,
            "max_page_size": state.config.max_page_size,
            "counts": counts,
        }
    )


def _resource_name(op: dict[str, Any], index: int) -> str:
    name = op.get("resource")
    resolved = resources.resolve_name(str(name)) if name else None
    if resolved is None:
        raise bad_request(f"ops[{index}]: unknown resource {name!r}.")
    return resolved


def _apply(state: SandboxState, op: Any, index: int) -> Any:
    if not isinstance(op, dict) or op.get("op") not in MUTATE_OPS:
        raise bad_request(f'ops[{index}]: each op needs "op": one of {", ".join(MUTATE_OPS)}.')
    records = state.records
    resource = _resource_name(op, index)
    at = records.backdated(op.get("backdate_seconds"))
    kind = op["op"]
    data = op.get("data") or {}
    if not isinstance(data, dict):
        raise bad_request(f"ops[{index}]: data must be an object.")
    if kind == "create":
        row = records.create(resource, data, at=at, trusted=True)
        return records.render(resource, row, detail=True)
    if kind == "delete":
        return records.delete(resource, str(op.get("id", "")).lower())
    if kind == "update":
        row = records.update(resource, str(op.get("id", "")).lower(), data, at=at)
        return records.render(resource, row, detail=True)
    return _bulk_update(state, resource, op, data, index)


def _bulk_update(
    state: SandboxState, resource: str, op: dict[str, Any], data: dict[str, Any], index: int
) -> Any:
    """Several records saved in one transaction: one identical ``updated_at`` for all."""
    records = state.records
    moment = records.backdated(op.get("backdate_seconds")) or state.clock.now()
    with state.db.lock:
        if "ids" in op:
            rows = [records.row(resource, str(i).lower()) for i in op["ids"] or []]
        else:
            count = op.get("count")
            if not isinstance(count, int) or count < 1:
                raise bad_request(f'ops[{index}]: bulk_update needs "ids" or a positive "count".')
            rows = state.faults.choose(state.db.rows(resource), count)
        for row in rows:
            if data:
                records.update(resource, row.id, data, at=moment)
            else:
                records.touch(resource, [row], moment)
        return [records.render(resource, row, detail=True) for row in rows]


async def mutate(request: Request, state: SandboxState) -> Response:
    body = await _body(request)
    ops = body if isinstance(body, list) else [body]
    results = []
    with state.db.lock:
        for index, op in enumerate(ops):
            try:
                results.append(_apply(state, op, index))
            except ApiError as error:
                error.body = {**error.body, "op_index": index, "applied": index}
                raise
    return JSONResponse(results if isinstance(body, list) else results[0])


def control_routes() -> list[BaseRoute]:
    return [
        Route("/_sandbox/faults", _guard(faults), methods=["GET", "POST"]),
        Route("/_sandbox/reset", _guard(reset), methods=["POST"]),
        Route("/_sandbox/requests", _guard(requests), methods=["GET", "DELETE"]),
        Route("/_sandbox/mutate", _guard(mutate), methods=["POST"]),
        Route("/_sandbox/info", _guard(info), methods=["GET"]),
    ]
