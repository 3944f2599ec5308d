"""Logs, metrics and error reports: how ops see what the worker does, without seeing client data.

Public API::

    configure_logging(settings)          # once per process, before anything logs
    init_sentry(settings)                # before the Dramatiq broker is created
    with log_context(event_id=..., rule_id=...): ...
    scrub_text(text) / scrub_value(obj)  # mask secrets before storing or showing text
    from worker.observability import metrics; metrics.POLLS.labels("matters", "ok").inc()

:mod:`worker.observability.metrics` is not imported here on purpose: in multi-process mode the
shared metrics directory must be prepared before the first metric is created (see that module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.exports import lazy_exports
from worker.observability.context import bind, clear, current_context, log_context, unbind
from worker.observability.logs import configure_logging
from worker.observability.scrub import (
    Scrubber,
    add_secrets,
    get_scrubber,
    scrub_text,
    scrub_value,
    text_through,
    value_through,
)
from worker.observability.sentry import init_sentry, scrub_breadcrumb, scrub_event

# Resolved on first use: the middleware needs Dramatiq, the exposition prometheus_client.
_LAZY = {
    "LogContextMiddleware": "worker.observability.middleware",
    "collecting_registry": "worker.observability.exposition",
    "render": "worker.observability.exposition",
}

__all__ = [
    "LogContextMiddleware",
    "Scrubber",
    "add_secrets",
    "bind",
    "clear",
    "collecting_registry",
    "configure_logging",
    "current_context",
    "get_scrubber",
    "init_sentry",
    "log_context",
    "render",
    "scrub_breadcrumb",
    "scrub_event",
    "scrub_text",
    "scrub_value",
    "text_through",
    "unbind",
    "value_through",
]

if TYPE_CHECKING:
    from worker.observability.exposition import collecting_registry, render
    from worker.observability.middleware import LogContextMiddleware


__getattr__ = lazy_exports(__name__, _LAZY)
