"""The PracticePanther API client: one shared ``httpx.Client``, paced, retried, typed.

Every call:

1. gets a valid access token from :class:`~worker.practicepanther.auth.OAuthClient` (refreshed
   once across all processes when it is about to expire);
2. waits for its turn in the connection's shared rate limit;
3. is sent with ``settings.http_timeout``;
4. on 401 refreshes the token (unless another caller already did) and is sent once more;
5. maps failures to the typed errors in :mod:`~worker.practicepanther.errors` and retries the
   transient ones per :mod:`~worker.practicepanther.retry` (never a create that may have landed).

Records come back as plain dicts with every declared datetime as an aware UTC ``...Z`` string
(see :mod:`~worker.practicepanther.records`).

Metrics: each HTTP exchange calls the ``on_response`` hook given to the constructor and every
callable in the module-level :data:`response_hooks` with ``(method, route, status, seconds)``;
``route`` is a low-cardinality template such as ``/api/v2/matters/{id}`` and ``status`` is 0 when
no response arrived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from worker.practicepanther import odata, records, resources
from worker.practicepanther.auth import OAuthClient
from worker.practicepanther.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    PracticePantherError,
    RateLimited,
    ServerError,
    TransportError,
)
from worker.practicepanther.ratelimit import RateLimiter
from worker.practicepanther.retry import RetryPolicy, retry_after
from worker.settings import Settings
from worker.state.base import StateStore

__all__ = ["PracticePantherClient", "ResponseHook", "response_hooks"]

log = logging.getLogger(__name__)

ResponseHook = Callable[[str, str, int, float], None]
QueryValue = str | list[str]  # a list repeats the parameter
Query = Mapping[str, QueryValue]
#: Called after every HTTP exchange of every client: ``(method, route, status, seconds)``.
response_hooks: list[ResponseHook] = []

USER_AGENT = "ppw (PracticePanther automation worker)"
TASK_DEFAULT_STATUS = "NotCompleted"
_MESSAGE_LIMIT = 300


class PracticePantherClient:
    """Talk to one PracticePanther connection. Thread-safe; share one per process.

    Parameters
    ----------
    settings:
        ``pp_base_url``, credentials, ``http_timeout``, ``max_retries``, ``rate_limit_per_second``.
    store:
        The state backend holding the tokens and the shared rate-limit budget.
    connection:
        Connection id (defaults to ``settings.connection_id``).
    http:
        An ``httpx.Client`` to use (not closed by :meth:`close`); one is made otherwise.
    on_response:
        Optional metrics hook, ``(method, route, status, seconds)`` after each HTTP exchange.
    retry_wait, retry_wait_max:
        Exponential backoff bounds in seconds (default 0.5 and 30).
    retry_after_max:
        The longest ``Retry-After`` honoured (default 60 s).
    """

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        *,
        connection: str | None = None,
        http: httpx.Client | None = None,
        on_response: ResponseHook | None = None,
        retry_wait: float | None = None,
        retry_wait_max: float | None = None,
        retry_after_max: float | None = None,
    ) -> None:
        self.settings = settings
        self.connection = connection or settings.connection_id
        self._owns_http = http is None
        self.http = http or httpx.Client(
            timeout=settings.http_timeout,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self._base = settings.pp_base_url.rstrip("/")
        self.oauth = OAuthClient(settings, store, connection=self.connection, http=self.http)
        self.limiter = RateLimiter(store, self.connection, settings.rate_limit_per_second)
        self.retry = RetryPolicy(
            settings.max_retries,
            initial=_pick(retry_wait, settings, "retry_wait", 0.5),
            maximum=_pick(retry_wait_max, settings, "retry_wait_max", 30.0),
            retry_after_cap=_pick(retry_after_max, settings, "retry_after_max", 60.0),
        )
        self._on_response = on_response

    def __repr__(self) -> str:
        return f"PracticePantherClient(connection={self.connection!r}, base={self._base!r})"

    def __enter__(self) -> PracticePantherClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool, if this client made it."""
        if self._owns_http:
            self.http.close()

    # reading ----------------------------------------------------------------------------------
    def list_page(
        self,
        resource: str,
        *,
        filter: str | None = None,
        orderby: str | list[str] | None = None,
        top: int | None = None,
        skip: int | None = None,
        params: dict[str, Any] | None = None,
        variant: str = "",
        select: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """One page of a list endpoint: exactly one request (plus retries).

        ``params`` are the endpoint's own query parameters (``updated_since``, ``matter_id`` ...);
        datetimes in them are sent as UTC with ``Z``. ``variant`` picks a sub-list such as
        ``custom_fields``' ``matter``. ``select`` asks for those fields only (``$select``, which
        the live service may refuse with a 400: callers fall back to whole records).
        """
        res = resources.get(resource)
        path = _list_path(res, variant)
        query: dict[str, QueryValue] = {
            name: _param(value) for name, value in (params or {}).items() if value is not None
        }
        if filter:
            query["$filter"] = str(filter)
        if orderby:
            query["$orderby"] = odata.orderby(orderby)
        if top is not None:
            query["$top"] = str(top)
        if skip:
            query["$skip"] = str(skip)
        if select:
            query["$select"] = ",".join(select)
        data = self._request("GET", path, route=path, params=query)
        if isinstance(data, dict) and isinstance(data.get("value"), list):
            data = data["value"]  # an OData envelope, should the service ever send one
        if not isinstance(data, list):
            raise PracticePantherError("expected a JSON array", method="GET", path=path)
        # ``data`` was just decoded for this call alone, so it is normalised without copies.
        normalized: list[dict[str, Any]] = records.normalize_in_place(data, res.definition)
        return normalized

    def list(
        self,
        resource: str,
        *,
        filter: str | None = None,
        orderby: str | list[str] | None = None,
        params: dict[str, Any] | None = None,
        page_size: int = 200,
        limit: int | None = None,
        variant: str = "",
    ) -> Iterator[dict[str, Any]]:
        """Every matching record, fetched ``page_size`` at a time with ``$top``/``$skip``.

        A record is yielded once even if a concurrent change shifts it across a page boundary
        (records are de-duplicated by ``id``). Pass an ``orderby`` for a stable order across pages.

        PracticePanther documents no maximum page size, so a server that silently caps pages
        below ``page_size`` must not end the listing early: a short page ends it only when an
        earlier page was longer; a short *first* page is confirmed by asking for the next one.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        seen: set[str] = set()
        skip = yielded = longest = 0
        while limit is None or yielded < limit:
            page = self.list_page(
                resource,
                filter=filter,
                orderby=orderby,
                top=page_size,
                skip=skip,
                params=params,
                variant=variant,
            )
            for item in page:
                record_id = item.get("id")
                if record_id is not None:
                    if record_id in seen:
                        continue
                    seen.add(record_id)
                yield item
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            if not page or len(page) < min(page_size, longest):
                return
            longest = max(longest, len(page))
            skip += len(page)

    def count(self, resource: str, *, filter: str | None = None) -> int:
        """How many records match, with ``$count`` (falling back to listing ids where unsupported)."""
        res = resources.get(resource)
        path = _list_path(res, "") + "/$count"
        query = {"$filter": str(filter)} if filter else {}
        try:
            data = self._request("GET", path, route=path, params=query)
        except (NotFound, InvalidRequest):
            log.info("%s/$count is not supported; counting by listing", res.path)
            return sum(1 for _ in self.list(resource, filter=filter, page_size=500))
        try:
            return int(data)
        except (TypeError, ValueError):
            raise PracticePantherError("$count did not answer a number", method="GET", path=path) from None

    def get(self, resource: str, record_id: str) -> dict[str, Any]:
        """One record in its detailed form (with summary fields lists may lack)."""
        res = resources.get(resource)
        data = self._request("GET", _item_path(res, record_id), route=res.path + "/{id}")
        return _record(data, res.detail_definition, "GET", res.path)

    def me(self) -> dict[str, Any]:
        """The PracticePanther user the connection acts as."""
        path = resources.API_PREFIX + "/users/me"
        return _record(self._request("GET", path, route=path), "User", "GET", path)

    # writing ----------------------------------------------------------------------------------
    def create(self, resource: str, data: dict[str, Any]) -> dict[str, Any]:
        """Create a record; returns it as PracticePanther stored it (with its ``id``).

        Not retried once it may have reached PracticePanther (see :mod:`.retry`). A task without
        a ``status`` gets ``NotCompleted``: a null status breaks PracticePanther's web UI.
        """
        res = resources.get(resource)
        _require(res.can_create, res, "created")
        body = _with_task_status(res, records.writable(data))
        response = self._request("POST", res.path, route=res.path, body=body)
        return _record(response, res.detail_definition, "POST", res.path)

    def update(self, resource: str, record_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some fields and keep every other one.

        PracticePanther's ``PUT`` replaces the whole record (omitted fields are cleared), so this
        reads the record, merges ``changes`` into it, drops the read-only fields and ``PUT``s the
        result. A change made by someone else between the read and the write is overwritten
        for the fields in the record (PracticePanther offers no ETag to detect it).
        """
        res = resources.get(resource)
        _require(res.can_update, res, "updated")
        current = self.get(resource, record_id)
        body = _with_task_status(res, records.writable(records.merge(current, changes)))
        path = res.path
        response = self._request("PUT", path, route=path, params={"id": record_id}, body=body)
        if not response:
            return {**body, "id": record_id}
        return _record(response, res.detail_definition, "PUT", path)

    def delete(self, resource: str, record_id: str) -> None:
        """Delete a record. A retry that finds it already gone counts as success."""
        res = resources.get(resource)
        _require(res.can_delete, res, "deleted")
        self._request("DELETE", res.path, route=res.path, params={"id": record_id})

    # one request, with auth, pacing, retries -------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        route: str,
        params: Query | None = None,
        body: Any = None,
    ) -> Any:
        content = records.dumps(body) if body is not None else None
        may_have_applied = False
        for attempt in self.retry.for_method(method):
            with attempt:
                try:
                    return self._attempt(method, path, route, params, content)
                except NotFound:
                    if method == "DELETE" and may_have_applied:
                        return None  # our earlier, unanswered attempt deleted it
                    raise
                except PracticePantherError as error:
                    may_have_applied = may_have_applied or error.may_have_applied
                    raise
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _attempt(
        self,
        method: str,
        path: str,
        route: str,
        params: Query | None,
        content: bytes | None,
    ) -> Any:
        token = _before_request(self.oauth.access_token)
        response = self._send(method, path, route, params, content, token)
        if _is_auth_failure(response):
            token = _before_request(lambda: self.oauth.force_refresh(token))
            response = self._send(method, path, route, params, content, token)
            if _is_auth_failure(response):
                raise AuthError(
                    "PracticePanther refused a freshly refreshed access token",
                    method=method,
                    path=path,
                    status=response.status_code,
                )
        return _payload(response, method, path)

    def _send(
        self,
        method: str,
        path: str,
        route: str,
        params: Query | None,
        content: bytes | None,
        token: str,
    ) -> httpx.Response:
        self.limiter.acquire()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        status = 0
        try:
            response = self.http.request(
                method,
                self._base + path,
                params=params,
                content=content,
                headers=headers,
                timeout=self.settings.http_timeout,
            )
            status = response.status_code
            return response
        except httpx.TransportError as exc:
            raise _transport_error(exc, method, path) from None
        finally:
            self._report(method, route, status, time.perf_counter() - started)

    def _report(self, method: str, route: str, status: int, seconds: float) -> None:
        hooks = [self._on_response, *response_hooks] if self._on_response else response_hooks
        for hook in hooks:
            try:
                hook(method, route, status, seconds)
            except Exception:  # a metrics bug must never fail an API call
                log.exception("response hook %r failed", hook)


# helpers -------------------------------------------------------------------------------------
def _before_request(get_token: Callable[[], str]) -> str:
    """A token; a failure to get one is marked as happening before the API request was sent,
    so even a create may be retried after it (a refresh is safe to repeat)."""
    try:
        return get_token()
    except PracticePantherError as error:
        error.before_request = True
        raise


def _pick(explicit: float | None, settings: Settings, name: str, default: float) -> float:
    if explicit is not None:
        return explicit
    return float(getattr(settings, name, default))


def _list_path(res: resources.Resource, variant: str) -> str:
    if variant in res.list_paths:
        return res.list_paths[variant]
    if not res.list_paths:
        raise ValueError(f"{res.name} cannot be listed")
    choices = ", ".join(repr(v) for v in res.list_paths)
    raise ValueError(f"{res.name} has no list variant {variant!r}; choose one of {choices}")


def _item_path(res: resources.Resource, record_id: str) -> str:
    if not record_id:
        raise ValueError("a record id is required")
    return res.path + "/" + quote(str(record_id), safe="")


def _require(allowed: bool, res: resources.Resource, verb: str) -> None:
    if not allowed:
        raise ValueError(f"PracticePanther's API does not allow {res.name} to be {verb}")


def _with_task_status(res: resources.Resource, body: dict[str, Any]) -> dict[str, Any]:
    if res.name == "tasks" and body.get("status") is None:
        return {**body, "status": TASK_DEFAULT_STATUS}
    return body


def _param(value: Any) -> QueryValue:
    """A query parameter as PracticePanther reads it; a list repeats the parameter."""
    if isinstance(value, list | tuple | set | frozenset):
        return [str(_param(v)) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return records.dumps(value).decode().strip('"')


def _record(data: Any, definition: str, method: str, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PracticePantherError("expected a JSON object", method=method, path=path)
    normalized: dict[str, Any] = records.normalize(data, definition)
    return normalized


def _is_auth_failure(response: httpx.Response) -> bool:
    """401, or the ``400 {"error": "invalid_grant"}`` one client saw for an expired token."""
    if response.status_code == 401:
        return True
    if response.status_code != 400:
        return False
    body = _json(response)
    return isinstance(body, dict) and body.get("error") == "invalid_grant"


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _message(body: Any, default: str) -> str:
    if isinstance(body, dict):
        for name in ("message", "Message", "error_description", "error"):
            if isinstance(body.get(name), str) and body[name]:
                return str(body[name])[:_MESSAGE_LIMIT]
    return default


def _model_state(body: Any) -> dict[str, list[str]]:
    if not isinstance(body, dict):
        return {}
    raw = body.get("modelState") or body.get("ModelState") or {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in raw.items()}


def _payload(response: httpx.Response, method: str, path: str) -> Any:
    """The decoded body of a 2xx response; the typed error for anything else."""
    status = response.status_code
    body = _json(response)
    if response.is_success:
        if response.content and body is None:
            text = response.text.strip()
            return text if text else None  # $count may answer text/plain
        return body
    where: dict[str, Any] = {"method": method, "path": path, "status": status}
    if status == 404:
        raise NotFound(_message(body, "not found"), **where)
    if status in (400, 422):
        raise InvalidRequest(_message(body, "request refused"), model_state=_model_state(body), **where)
    if status == 429:
        raise RateLimited(_message(body, "rate limited"), retry_after=retry_after(response), **where)
    if status >= 500:
        raise ServerError(_message(body, "server error"), **where)
    if status == 403:
        raise PracticePantherError(
            _message(body, "forbidden: the connected user may lack permission"), **where
        )
    raise PracticePantherError(_message(body, f"unexpected status {status}"), **where)


def _transport_error(exc: httpx.TransportError, method: str, path: str) -> TransportError:
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
    return TransportError(
        f"{kind} ({type(exc).__name__})", request_sent=not not_sent, method=method, path=path
    )
