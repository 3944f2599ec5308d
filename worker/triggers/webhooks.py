"""Inbound webhooks: ``POST /hooks/<name>`` on the worker's HTTP server starts the rules listening
on that hook.

A delivery goes through, in order (each refusal is counted in ``ppw_webhook_deliveries`` with
``hook="inbound:<name>"`` and the reason as ``result``):

1. **the hook exists**: an enabled rule has ``trigger: {webhook: <name>}``; else ``404``;
2. **size**: a body over ``PPW_WEBHOOK_MAX_BODY`` is ``413``, refused before it is read to the end;
3. **authentication** (:mod:`worker.triggers.auth`): the signature of the hook's ``verify:`` scheme
   (ppw's HMAC, Standard Webhooks, Stripe, GitHub, Typeform, Calendly; timestamps within the replay
   window) or a bearer token, with the secret ``PPW_WEBHOOK_SECRETS__<NAME>``; else ``401``;
4. **rate**: more than ``PPW_WEBHOOK_RATE_PER_MINUTE`` deliveries a minute to the hook (across all
   replicas) is ``429`` with ``Retry-After``;
5. **body**: JSON or form-encoded (``400`` if it does not parse, ``415`` for other types), valid
   against the ``schema:`` of every rule on the hook (``422`` with the problems);
6. **dedupe**: the same ``Idempotency-Key`` (or Standard Webhooks' signed ``webhook-id``; without
   either, the same body within
   ``PPW_WEBHOOK_DEDUPE_WINDOW``) is the same delivery and gets the same event id; a key reused
   with a different body is ``409``;
7. **queue**: the event is stored and its dispatch message sent *before* the answer, ``202``
   ``{"event_id": ..., "duplicate": false}``. If the broker or state store is down the answer is
   ``503`` and the sender's retry is not mistaken for a duplicate.

The body is client data: it goes into the state store with the event and is never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import anyio
import jsonschema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker.events import Event
from worker.eventstore import EventNotFound, EventStore
from worker.rules.engine import Engine
from worker.rules.ruleset import LoadedRule
from worker.settings import Settings
from worker.state.base import StateError, StateStore, key
from worker.triggers import auth
from worker.triggers.events import digest, webhook_event
from worker.triggers.options import TriggerOptions
from worker.triggers.ratelimit import SlidingWindowLimiter

log = logging.getLogger(__name__)

Emit = Callable[[list[Event]], None]
EngineSource = Callable[[], Engine]

#: Longest ``Idempotency-Key`` accepted (Stripe's limit).
MAX_IDEMPOTENCY_KEY = 255
#: Most schema problems listed in a 422 answer.
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Reply:
    """The answer to one delivery."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    result: str = "accepted"

    def response(self) -> Response:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def _refuse(status: int, result: str, message: str, **extra: Any) -> Reply:
    headers = extra.pop("headers", {})
    return Reply(status, {"error": result, "detail": message, **extra}, headers, result)


@dataclass(frozen=True)
class HookConfig:
    """What the rules on one hook ask of a delivery."""

    name: str
    rules: tuple[LoadedRule, ...]

    @property
    def credentials(self) -> list[tuple[str, str]]:
        """(auth scheme, secret name) pairs a delivery must satisfy: all of them, so a rule that
        asks for a signature is never weakened by another rule on the same hook asking for less."""
        pairs: list[tuple[str, str]] = []
        for loaded in self.rules:
            trigger = loaded.rule.webhook_trigger
            if trigger is not None and (trigger.scheme, trigger.secret_name) not in pairs:
                pairs.append((trigger.scheme, trigger.secret_name))
        return pairs

    def delivery_id(self, headers: Mapping[str, str]) -> str:
        """The sender's own id of the delivery, signed and the same on its retries (Standard
        Webhooks' ``webhook-id``), when a scheme of this hook has one; else ``""``."""
        for name, _ in self.credentials:
            header = auth.SCHEMES[name].delivery_header
            if header:
                return (headers.get(header) or headers.get(header.lower()) or "").strip()
        return ""

    @property
    def schemas(self) -> list[tuple[LoadedRule, dict[str, Any]]]:
        out: list[tuple[LoadedRule, dict[str, Any]]] = []
        for loaded in self.rules:
            trigger = loaded.rule.webhook_trigger
            if trigger is not None and trigger.schema_ is not None:
                out.append((loaded, trigger.schema_))
        return out


class WebhookIntake:
    """Turns authenticated deliveries into queued events; see the module docstring.

    Parameters
    ----------
    settings:
        Secrets (``webhook_secrets``) and the connection id.
    store:
        Dedupe markers, rate counters, and (through ``events``) the stored events.
    emit:
        Stores events and sends their dispatch messages (``Actors.emit``).
    engine:
        The rules in force now (the hot-reloading registry's engine).
    options:
        Limits and windows (default from the settings).
    clock:
        Unix time (tests pass a fixed one to check the replay window).
    """

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        emit: Emit,
        engine: EngineSource,
        *,
        events: EventStore | None = None,
        options: TriggerOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.emit = emit
        self.engine = engine
        self.options = options or TriggerOptions.from_settings(settings)
        self.events = events or EventStore(store, ttl=0.0)  # only read here
        self.clock = clock
        self.connection = settings.connection_id
        self.limiter = SlidingWindowLimiter(
            store,
            key(self.connection, "webhook-rate"),
            max(1, self.options.webhook_rate_per_minute),
            60.0,
            clock,
        )
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}

    # HTTP -------------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        """The Starlette routes to mount on the health server (``HealthServer(routes=...)``)."""
        return [Route("/hooks/{name}", self.endpoint, methods=["POST"])]

    async def endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        hook = self.hook(name)
        if hook is None:
            _count("inbound:unknown", "not_found")
            return _refuse(404, "not_found", f"no rule listens on /hooks/{name}").response()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.options.webhook_max_body:
            return self._counted(hook, self._too_large()).response()
        body = await _read_limited(request, self.options.webhook_max_body)
        if body is None:
            return self._counted(hook, self._too_large()).response()
        reply = await anyio.to_thread.run_sync(
            self.accept, hook, request.headers, body, request.headers.get("content-type", "")
        )
        if not reply.status < 300:
            client = request.client.host if request.client else "-"
            log.warning(
                "webhook %s: refused a delivery from %s: %s %s", name, client, reply.status, reply.result
            )
        return reply.response()

    # the decision, without HTTP ------------------------------------------------------------------
    def hook(self, name: str) -> HookConfig | None:
        """The hook ``name`` as configured by the enabled rules now in force, or None."""
        rules = self.engine().webhooks().get(name)
        return HookConfig(name, tuple(rules)) if rules else None

    def accept(
        self, hook: HookConfig, headers: Mapping[str, str], body: bytes, content_type: str = ""
    ) -> Reply:
        """Authenticate, limit, parse, validate, dedupe and queue one delivery (steps 3 to 7)."""
        return self._counted(hook, self._accept(hook, headers, body, content_type))

    def _accept(self, hook: HookConfig, headers: Mapping[str, str], body: bytes, content_type: str) -> Reply:
        if len(body) > self.options.webhook_max_body:
            return self._too_large()
        denied = self._authenticate(hook, headers, body)
        if denied is not None:
            return denied
        try:
            decision = self.limiter.hit(hook.name)
        except StateError as exc:
            log.error("webhook %s: state store unavailable: %s", hook.name, exc)
            return _refuse(503, "error", "temporarily unavailable; retry later", headers={"Retry-After": "5"})
        if not decision.allowed:
            return _refuse(
                429,
                "rate_limited",
                f"more than {self.options.webhook_rate_per_minute} deliveries a minute to this hook",
                headers={"Retry-After": str(decision.retry_after)},
            )
        parsed = parse_body(body, content_type)
        if isinstance(parsed, Reply):
            return parsed
        problems = self._validate(hook, parsed)
        if problems:
            return _refuse(422, "invalid", "the body does not match the hook's schema", problems=problems)
        return self._enqueue(hook, headers, body, parsed, content_type)

    def _too_large(self) -> Reply:
        return _refuse(413, "too_large", f"body over {self.options.webhook_max_body} bytes")

    def _authenticate(self, hook: HookConfig, headers: Mapping[str, str], body: bytes) -> Reply | None:
        for name, secret_name in hook.credentials:
            scheme = auth.SCHEMES[name]
            value = (
                auth.hook_secret(self.settings.webhook_secrets, secret_name) if scheme.needs_secret else ""
            )
            if scheme.needs_secret and not value:
                log.error(
                    "webhook %s: no secret; set %s (every delivery is refused)",
                    hook.name,
                    auth.env_name(secret_name),
                )
                return _refuse(401, "no_secret", "this hook is not configured to accept deliveries yet")
            request = auth.Inbound(headers, body, value, self.clock(), self.options.webhook_replay_window)
            verdict = scheme.check(request)
            if not verdict.ok:
                log.warning("webhook %s: %s verification failed: %s", hook.name, name, verdict.detail)
                if verdict.reason == "bad_secret":
                    log.error(
                        "webhook %s: %s is not a %s secret", hook.name, auth.env_name(secret_name), name
                    )
                return _refuse(
                    401, verdict.reason, verdict.detail, headers={"WWW-Authenticate": scheme.challenge}
                )
        return None

    def _validate(self, hook: HookConfig, payload: Any) -> list[dict[str, str]]:
        problems: list[dict[str, str]] = []
        for loaded, schema in hook.schemas:
            validator = self._validators.get((loaded.id, loaded.version))
            if validator is None:
                validator = jsonschema.Draft202012Validator(
                    schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
                )
                self._validators[(loaded.id, loaded.version)] = validator
            for error in sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path)):
                problem = {
                    "path": "/" + "/".join(str(p) for p in error.absolute_path),
                    "message": error.message,
                }
                if problem not in problems:
                    problems.append(problem)
        return problems[:MAX_PROBLEMS]

    def _enqueue(
        self, hook: HookConfig, headers: Mapping[str, str], body: bytes, payload: Any, content_type: str
    ) -> Reply:
        now = self.clock()
        received = dt.datetime.fromtimestamp(now, dt.UTC)
        body_hash = digest(hook.name, body)
        idempotency = (headers.get("Idempotency-Key") or headers.get("idempotency-key") or "").strip()
        if not idempotency:  # a signed delivery id the sender keeps on its retries (webhook-id)
            idempotency = hook.delivery_id(headers)
        if len(idempotency) > MAX_IDEMPOTENCY_KEY:
            return _refuse(
                400, "bad_request", f"Idempotency-Key longer than {MAX_IDEMPOTENCY_KEY} characters"
            )
        claimed, marker = False, ""
        try:
            if idempotency:
                delivery = digest("key", hook.name, idempotency)
                marker = key(self.connection, "webhook-key", hook.name, delivery)
                claimed = self.store.set_if_absent(
                    marker, body_hash, ttl=self.options.webhook_idempotency_ttl
                )
                if not claimed and self.store.get(marker) not in (None, body_hash):
                    return _refuse(409, "conflict", "Idempotency-Key was used before with a different body")
            else:
                marker = key(self.connection, "webhook-body", hook.name, body_hash)
                claimed = self.store.set_if_absent(marker, repr(now), ttl=self.options.webhook_dedupe_window)
                first_seen = repr(now) if claimed else (self.store.get(marker) or repr(now))
                delivery = digest("body", hook.name, body_hash, first_seen)
            event = webhook_event(
                hook.name,
                payload,
                delivery=delivery,
                received_at=received,
                connection=self.connection,
                content_type=content_type.split(";")[0].strip() or "application/json",
            )
            if not claimed and self._stored(event):
                log.info("webhook %s: repeated delivery of event %s; not queued again", hook.name, event.id)
                return Reply(
                    202, {"event_id": event.id, "duplicate": True, "status": "queued"}, result="duplicate"
                )
            self.emit([event])
        except Exception as exc:  # the broker or the state store: the sender must retry
            if claimed:  # let the sender's retry through instead of calling it a duplicate
                with suppress(StateError):
                    self.store.delete(marker)
            log.error("webhook %s: could not queue the delivery: %s", hook.name, type(exc).__name__)
            return _refuse(
                503, "error", "could not queue the delivery; retry later", headers={"Retry-After": "5"}
            )
        _count_event(event)
        log.info("webhook %s: delivery queued as event %s", hook.name, event.id)
        return Reply(202, {"event_id": event.id, "duplicate": not claimed, "status": "queued"})

    def _stored(self, event: Event) -> bool:
        try:
            self.events.load(event.connection, event.id)
        except EventNotFound:
            return False
        return True

    def _counted(self, hook: HookConfig, reply: Reply) -> Reply:
        _count(f"inbound:{hook.name}", reply.result)
        return reply


# body -------------------------------------------------------------------------------------------


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit`` (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(body: bytes, content_type: str) -> Any:
    """The payload of a JSON or form-encoded body, or a 400/415 :class:`Reply`."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            return _refuse(400, "bad_request", "the form body is not valid UTF-8 form encoding")
        return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}
    if media and media != "application/json" and not media.endswith("+json"):
        return _refuse(
            415, "unsupported", f"{media} is not accepted; send application/json or form-encoded data"
        )
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        return _refuse(400, "bad_request", f"the body is not valid JSON ({_where(exc)})")


def _where(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno} column {exc.colno}: {exc.msg}"
    return "not UTF-8"


# metrics ----------------------------------------------------------------------------------------


def _count(hook: str, result: str) -> None:
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.WEBHOOK_DELIVERIES.labels(hook, result).inc()


def _count_event(event: Event) -> None:
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    metrics.EVENTS.labels(event.type, event.resource).inc()


def webhook_routes(intake: WebhookIntake | None) -> Sequence[BaseRoute]:
    """The routes of ``intake`` (none without one), for ``HealthServer(routes=...)``."""
    return intake.routes() if intake is not None else ()
