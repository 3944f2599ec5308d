"""``/api/v2``: every path and method of the swagger, routed from the resource catalogue.

Each call passes the same gate first: the request is logged, faults are applied (latency, 429,
5xx), and the bearer token is checked (401 without a live one). Listings then apply their own
faults (``refuse_select``, ``empty_listings``). Then:

* ``GET <collection>`` (and ``/customfields/<scope>``, ``/tags/<scope>``): a bare JSON array,
  see :mod:`worker.sandbox.listing`; ``GET <collection>/$count``: a plain number.
* ``GET <collection>/{id}``: the record (payments answer ``Payment_Detail``), 404 when unknown.
* ``POST <collection>``: create; ``PUT <collection>?id=``: full replace; ``DELETE <collection>?id=``.
* ``GET /users/me``: the API user; ``GET /files/download/{id}``: the file's bytes when the sandbox
  has them (uploaded with ``POST /files`` as a raw body), else 404; ``POST /files/box``: accepted.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from worker.practicepanther import resources
from worker.practicepanther.resources import Resource
from worker.sandbox.errors import ApiError, bad_request, invalid, not_found
from worker.sandbox.listing import list_records
from worker.sandbox.records import API_USER_ID
from worker.sandbox.state import SandboxState

Handler = Callable[[Request, SandboxState], Awaitable[Response]]

UNAUTHORIZED = {"message": "Authorization has been denied for this request."}
SELECT_REFUSED = (
    "The query specified in the URI is not valid. Query option 'Select' is not allowed: "
    "$select is not supported."
)


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body, status_code=error.status, headers=error.headers)


async def _gate(state: SandboxState, request: Request) -> None:
    """Faults and authentication, in the order a real front end applies them."""
    settings = state.faults.snapshot()
    if settings["latency"] > 0:
        await asyncio.sleep(settings["latency"])
    if state.faults.roll(settings["rate_429"]):
        retry_after = str(max(0, math.ceil(settings["retry_after"])))
        raise ApiError(429, {"message": "Too many requests. Slow down."}, {"Retry-After": retry_after})
    if state.faults.roll(settings["rate_5xx"]):
        raise ApiError(state.faults.pick_5xx(), {"message": "An error has occurred."})
    if not state.auth.valid_bearer(request.headers.get("authorization")):
        raise ApiError(401, UNAUTHORIZED, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with the gate, ApiError rendering and the request log."""

    async def run(request: Request) -> Response:
        state = _state(request)
        try:
            await _gate(state, request)
            response = await handler(request, state)
        except ApiError as error:
            response = error_response(error)
        state.log.record(request.method, request.url.path, request.url.query, response.status_code)
        return response

    return run


async def _json_body(request: Request, param: str) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise invalid({param: [f"The {param} field is required."]})
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise invalid({param: [f"Invalid JSON: {exc.msg} at position {exc.pos}."]}) from None
    except UnicodeDecodeError:
        raise invalid({param: ["The body is not UTF-8 JSON."]}) from None


def _query_id(request: Request) -> str:
    record_id = request.query_params.get("id")
    if not record_id:
        raise invalid({"id": ["The id field is required."]})
    return record_id.lower()


def _listing_faults(state: SandboxState, resource: Resource, params: Any) -> bool:
    """Apply the listing faults: 400 for ``$select`` (``refuse_select``); True = answer empty."""
    if "$select" in params and state.faults.refuses_select():
        raise bad_request(SELECT_REFUSED)
    return state.faults.lists_empty(resource.name)


def _collection(resource: Resource, scope: str) -> Handler:
    async def handle(request: Request, state: SandboxState) -> Response:
        records = state.records
        if request.method == "GET":
            if _listing_faults(state, resource, request.query_params):
                return JSONResponse([])
            page = list_records(
                records,
                resource,
                request.query_params,
                scope=scope,
                max_page_size=state.config.max_page_size,
                between_pages=state.between_pages,
            )
            return JSONResponse(page.records)
        param = "message" if resource.name == "messages" else "value"
        if request.method == "POST":
            if resource.name == "files":
                return await _upload(request, state)
            row = records.create(resource.name, await _json_body(request, param))
            return JSONResponse(records.render(resource.name, row))
        if request.method == "PUT":
            record_id = _query_id(request)
            body = await _json_body(request, param)
            row = records.replace(resource.name, record_id, body)
            return JSONResponse(records.render(resource.name, row))
        return JSONResponse(records.delete(resource.name, _query_id(request)))

    return handle


def _count(resource: Resource, scope: str) -> Handler:
    async def handle(request: Request, state: SandboxState) -> Response:
        if _listing_faults(state, resource, request.query_params):
            return PlainTextResponse("0")
        params = {k: v for k, v in request.query_params.items() if k not in ("$top", "$skip")}
        page = list_records(state.records, resource, params, scope=scope, max_page_size=sys.maxsize)
        return PlainTextResponse(str(page.total))

    return handle


def _item(resource: Resource) -> Handler:
    async def handle(request: Request, state: SandboxState) -> Response:
        record_id = str(request.path_params["id"])
        return JSONResponse(state.records.get(resource.name, record_id, detail=True))

    return handle


async def _me(request: Request, state: SandboxState) -> Response:
    return JSONResponse(state.records.get("users", API_USER_ID))


async def _download(request: Request, state: SandboxState) -> Response:
    with state.db.lock:
        row = state.records.row("files", str(request.path_params["id"]))
        content = row.extra.get("content")
        content_type = row.data.get("content_type") or "application/octet-stream"
    if not isinstance(content, bytes):
        raise not_found("The file has no content in the sandbox.")
    return Response(content, media_type=content_type)


async def _box(request: Request, state: SandboxState) -> Response:
    return JSONResponse({})


async def _upload(request: Request, state: SandboxState) -> Response:
    """``POST /files``: JSON metadata, or the file itself as the body with ``?file_name=``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("", "application/json", "text/json"):
        row = state.records.create("files", await _json_body(request, "value"))
        return JSONResponse(state.records.render("files", row))
    content = await request.body()
    params = request.query_params
    file_name = params.get("file_name") or unquote(request.headers.get("x-file-name", ""))
    if not file_name:
        raise bad_request("Upload the file as the body with ?file_name=<name> (or send JSON metadata).")
    body: dict[str, Any] = {"file_name": file_name, "description": params.get("description")}
    for key, field in (
        ("account_id", "account_ref"),
        ("matter_id", "matter_ref"),
        ("activity_id", "activity_ref"),
    ):
        if params.get(key):
            body[field] = {"id": params[key]}
    body["_content"] = content
    body["_content_type"] = content_type
    row = state.records.create("files", body)
    return JSONResponse(state.records.render("files", row))


def api_routes() -> list[BaseRoute]:
    """Routes for every swagger path, specific paths before ``{id}``."""
    specific: list[BaseRoute] = []
    by_id: list[BaseRoute] = []
    for resource in resources.catalogue().values():
        methods = {method for method, _path in resource.operations}
        for scope, path in resource.list_paths.items():
            collection_methods = ["GET"]
            if not scope:
                collection_methods += [
                    m for m, ok in (("POST", resource.can_create), ("PUT", resource.can_update)) if ok
                ]
                collection_methods += ["DELETE"] if resource.can_delete else []
            specific.append(Route(f"{path}/$count", endpoint(_count(resource, scope)), methods=["GET"]))
            specific.append(Route(path, endpoint(_collection(resource, scope)), methods=collection_methods))
        if not resource.list_paths and methods:
            allowed = [m for m in ("POST", "PUT", "DELETE") if (m, resource.path) in resource.operations]
            specific.append(Route(resource.path, endpoint(_collection(resource, "")), methods=allowed))
        if resource.can_get:
            by_id.append(Route(f"{resource.path}/{{id}}", endpoint(_item(resource)), methods=["GET"]))
    specific += [
        Route("/api/v2/users/me", endpoint(_me), methods=["GET"]),
        Route("/api/v2/files/download/{id}", endpoint(_download), methods=["GET"]),
        Route("/api/v2/files/box", endpoint(_box), methods=["POST"]),
    ]
    return specific + by_id
