"""Error reporting to Sentry without sending a client's records or any credential.

Events leave the firm's infrastructure, so :func:`scrub_event` removes whatever could hold client
data (PracticePanther records, their previous versions and changes, request bodies, Dramatiq message
arguments, local variables) and masks secrets in every remaining string. Stack traces, exception
types, logger names and the bound ids (event, rule, run) remain: enough to find the bug, nothing
about the client.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.integrations.dramatiq import DramatiqIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

import worker
from worker.observability.context import STANDARD_FIELDS, current_context, exception_context
from worker.observability.logs import render_message
from worker.observability.scrub import CONTENT_KEYS, FILTERED, SECRET_KEYS, get_scrubber

if TYPE_CHECKING:
    from worker.settings import Settings

#: Paths (as tuples of keys) under which ``data`` is SDK telemetry, not client data.
_TELEMETRY_PATHS: tuple[tuple[str, ...], ...] = (("contexts", "trace"),)

#: Breadcrumb ``data`` keys kept (masked): enough to follow an HTTP call or a log line.
BREADCRUMB_KEYS: frozenset[str] = frozenset(
    {"url", "method", "status_code", "reason", "http.method", "http.query", "http.fragment", *STANDARD_FIELDS}
)


def _scrub(node: Any, path: tuple[str, ...]) -> Any:
    scrubber = get_scrubber()
    if isinstance(node, str):
        return scrubber.text(node)
    if isinstance(node, Mapping):
        telemetry = path[:2] in _TELEMETRY_PATHS
        out: dict[str, Any] = {}
        for key, value in node.items():
            name = str(key).lower().replace("-", "_")
            if value in (None, "", [], {}):
                out[key] = value
            elif name in SECRET_KEYS or (name in CONTENT_KEYS and not telemetry):
                out[key] = FILTERED
            else:
                out[key] = _scrub(value, (*path, str(key)))
        return out
    if isinstance(node, list | tuple):
        return [_scrub(value, path) for value in node]
    return node


def scrub_event(event: dict[str, Any], hint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``before_send``: drop client data and mask secrets in a Sentry event (also transactions)."""
    logentry = event.get("logentry")
    record = (hint or {}).get("log_record")
    if isinstance(logentry, dict) and (logentry.get("params") or isinstance(record, logging.LogRecord)):
        # Format once, then mask: a secret split over the format string and its parameters
        # matches no pattern, and a Dramatiq message parameter would print its arguments.
        if isinstance(record, logging.LogRecord):
            formatted = render_message(record)
        else:
            formatted = logentry.get("formatted") or logentry.get("message") or ""
        logentry.update(message=formatted, formatted=formatted, params=[])
    for frame in _frames(event):
        frame.pop("vars", None)
    scrubbed: dict[str, Any] = _scrub(event, ())
    tags = scrubbed.setdefault("tags", {})
    if isinstance(tags, dict):
        exc_info = (hint or {}).get("exc_info")
        raised = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None
        fields = {**exception_context(raised), **current_context()}
        for name, value in fields.items():
            if name in STANDARD_FIELDS:
                tags.setdefault(name, get_scrubber().text(str(value)))
    return scrubbed


def scrub_breadcrumb(crumb: dict[str, Any], hint: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``before_breadcrumb``: keep the message and a few request facts, masked; drop the rest."""
    record = (hint or {}).get("log_record")
    if isinstance(record, logging.LogRecord):
        crumb["message"] = render_message(record)
    data = crumb.get("data")
    if isinstance(data, Mapping):
        crumb["data"] = {k: v for k, v in data.items() if k in BREADCRUMB_KEYS}
    scrubbed: dict[str, Any] = _scrub(crumb, ("breadcrumb",))
    # ``_scrub`` filters the "data" key itself; the allow-listed subset is safe once masked.
    if isinstance(crumb.get("data"), Mapping):
        scrubbed["data"] = get_scrubber().value(crumb["data"])
    return scrubbed


def _frames(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    containers = [event.get("exception", {}).get("values", []), event.get("threads", {}).get("values", [])]
    for values in containers:
        for value in values or []:
            frames.extend((value.get("stacktrace") or {}).get("frames") or [])
    frames.extend((event.get("stacktrace") or {}).get("frames") or [])
    return frames


def _privacy_options() -> dict[str, Any]:
    """Collect no user data, bodies, cookies, queue payloads or frame variables.

    sentry-sdk 2.x later replaced ``send_default_pii`` by ``data_collection`` (and warns about the
    old option); both are supported since pyproject allows any 2.x from 2.10.
    """
    if "data_collection" not in inspect.signature(sentry_sdk.consts.ClientConstructor.__init__).parameters:
        return {
            "send_default_pii": False,
            "include_local_variables": False,
            "event_scrubber": EventScrubber(denylist=[*DEFAULT_DENYLIST, *SECRET_KEYS], recursive=True),
        }
    off = {"mode": "off"}
    return {
        "include_local_variables": False,
        "data_collection": {
            "user_info": False,
            "cookies": off,
            "http_headers": {"request": {"mode": "denylist", "terms": sorted(SECRET_KEYS)}},
            "http_bodies": [],
            "url_query_params": off,
            "queues": False,
            "database_query_data": False,
            "stack_frame_variables": False,
        },
    }


def init_sentry(settings: Settings, **overrides: Any) -> bool:
    """Start Sentry when ``PPW_SENTRY_DSN`` is set; True when it did.

    Call it before the Dramatiq broker is created: the Dramatiq integration hooks
    ``Broker.__init__`` to add its middleware. ``overrides`` go to ``sentry_sdk.init`` last (tests
    pass ``transport=``; deployments may pass ``environment=`` or ``traces_sample_rate=``).
    """
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else ""
    if not dsn:
        return False
    options: dict[str, Any] = {
        "dsn": dsn,
        "release": f"ppw@{worker.__version__}",
        "environment": settings.sentry_environment or "production",
        **_privacy_options(),
        "max_request_body_size": "never",
        "before_send": scrub_event,
        "before_send_transaction": scrub_event,
        "before_breadcrumb": scrub_breadcrumb,
        "traces_sample_rate": settings.sentry_traces_sample_rate,
        "integrations": [
            DramatiqIntegration(),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
    }
    get_scrubber().add(*settings.secret_values())
    options.update(overrides)
    sentry_sdk.init(**options)
    return True
