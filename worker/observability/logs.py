"""Log output: one line per record, text for people or JSON for a log pipeline, never a secret.

Every record passes through :class:`ContextFilter` (adds the bound event/rule/run/resource/connection
fields) and :class:`ScrubFilter` (masks secrets in the message, its arguments, the exception text and
extra fields) before a formatter sees it, so whatever else is attached to the handler later gets
clean records too.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import dramatiq
from dramatiq.broker import MessageProxy

from worker.observability.context import STANDARD_FIELDS, current_context, exception_context
from worker.observability.scrub import Scrubber, get_scrubber, redact_content, set_scrubber

if TYPE_CHECKING:
    from worker.settings import Settings

#: Attributes every ``LogRecord`` has; anything else on a record came from ``extra=`` or the context.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "ppw_fields",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}

#: Chatty libraries that log every request at INFO; their warnings still come through.
#: (urllib3 logs each request line at DEBUG: a Slack webhook's path is its secret.)
_QUIET_LOGGERS = ("httpx", "httpcore", "urllib3", "pika", "uvicorn.access", "apscheduler.executors.default")


class ContextFilter(logging.Filter):
    """Attach the bound context fields and any ``extra=`` fields as ``record.ppw_fields``."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(current_context())
        if record.exc_info and record.exc_info[1] is not None:
            for name, value in exception_context(record.exc_info[1]).items():
                fields.setdefault(name, value)
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS and not name.startswith("_"):
                fields[name] = value
        record.ppw_fields = fields
        return True


def _describe(arg: object) -> object:
    """Arguments that would print client records: a Dramatiq message shows only its identity, a
    mapping loses the values under record-content keys (``record``, ``changes`` ...)."""
    if isinstance(arg, dramatiq.Message | MessageProxy):
        return f"{arg.actor_name}[{arg.message_id}]"
    if isinstance(arg, Mapping | list):
        return redact_content(arg)
    return arg


def render_message(record: logging.LogRecord) -> str:
    """The record's message with client data left out of its arguments (not yet masked)."""
    args: Any = record.args
    if isinstance(args, tuple):
        args = tuple(_describe(arg) for arg in args)
    elif isinstance(args, Mapping):
        args = redact_content(args)
    try:
        return str(record.msg) % args if args else str(record.msg)
    except Exception:  # a bad format string must not lose the record
        return f"{record.msg!r} {args!r}"


class ScrubFilter(logging.Filter):
    """Render the message and exception once, masked, so no formatter can print the raw values."""

    def __init__(self, scrubber: Scrubber | None = None) -> None:
        super().__init__()
        self._scrubber = scrubber

    @property
    def scrubber(self) -> Scrubber:
        return self._scrubber or get_scrubber()

    def filter(self, record: logging.LogRecord) -> bool:
        scrubber = self.scrubber
        record.msg = scrubber.text(render_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrubber.text(record.exc_text)
        if record.stack_info:
            record.stack_info = scrubber.text(record.stack_info)
        fields = getattr(record, "ppw_fields", None)
        if fields:
            record.ppw_fields = scrubber.value(redact_content(fields))
        return True


def _ordered(fields: dict[str, Any]) -> list[tuple[str, Any]]:
    standard = [(k, fields[k]) for k in STANDARD_FIELDS if k in fields]
    return standard + sorted((k, v) for k, v in fields.items() if k not in STANDARD_FIELDS)


class TextFormatter(logging.Formatter):
    """``2026-04-06T10:00:00.123Z INFO  worker.polling [resource=matters event_id=ab12] message``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        fields = getattr(record, "ppw_fields", {}) or {}
        context = " ".join(f"{k}={v}" for k, v in _ordered(fields))
        line = f"{stamp} {record.levelname:<7} {record.name}"
        if context:
            line += f" [{context}]"
        line += f" {record.getMessage()}"
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the fields, ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in _ordered(getattr(record, "ppw_fields", {}) or {}):
            payload.setdefault(name, value)
        if record.exc_text:
            payload["exc_info"] = record.exc_text
        if record.stack_info:
            payload["stack_info"] = record.stack_info
        payload["process"] = record.process
        payload["thread"] = record.threadName
        return json.dumps(payload, default=str, ensure_ascii=False)


class PpwHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs; marked so reconfiguring replaces it."""


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``settings.log_format``, masked.

    Idempotent: calling it again (settings reloaded, a test) replaces the previous handler. Also
    sets the process-wide scrubber from ``settings.secret_values()``, which :func:`scrub_text` and
    the Sentry hooks use.
    """
    set_scrubber(Scrubber(settings.secret_values()))
    handler = PpwHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(ScrubFilter())
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, PpwHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    return handler
