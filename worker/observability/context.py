"""Fields that every log record carries while a unit of work runs (event, rule, run, resource ...).

A context variable rather than ``LoggerAdapter``: the poller, the rules engine and the actions all
log through their own module loggers, and a field bound once at the top of an actor must show up in
all of them, in the worker thread that runs the message and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

#: The fields ops filter on; listed first (in this order) in text logs. Other fields are allowed.
STANDARD_FIELDS: tuple[str, ...] = ("connection", "resource", "event_id", "rule_id", "run_id")

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_fields: ContextVar[Mapping[str, Any]] = ContextVar("ppw_log_context", default=_EMPTY)


def current_context() -> Mapping[str, Any]:
    """The fields bound in the current context (read-only)."""
    return _fields.get()


def bind(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields to the current context until :func:`unbind` (``None`` removes a field).

    Prefer :func:`log_context`; ``bind`` is for hooks that open and close a unit of work in two
    different callbacks (Dramatiq middleware ``before_process_message`` / ``after_process_message``).
    """
    merged = {**_fields.get(), **fields}
    return _fields.set(MappingProxyType({k: v for k, v in merged.items() if v is not None}))


def unbind(token: Token[Mapping[str, Any]]) -> None:
    """Restore the context that was current before the :func:`bind` that returned ``token``."""
    _fields.reset(token)


def clear() -> None:
    """Drop every bound field (a worker thread starting a new message)."""
    _fields.set(_EMPTY)


_EXC_ATTR = "__ppw_log_context__"


@contextmanager
def log_context(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """``with log_context(event_id=e.id, rule_id=r.id): ...``: fields on every record inside.

    An exception leaving the block carries the fields with it (see :func:`exception_context`), so
    the line that finally reports it, often logged by Dramatiq after the block has exited, still
    says which event and rule failed.
    """
    token = bind(**fields)
    try:
        yield _fields.get()
    except BaseException as exc:
        _remember(exc, _fields.get())
        raise
    finally:
        _fields.reset(token)


def _remember(exc: BaseException, fields: Mapping[str, Any]) -> None:
    known: dict[str, Any] = dict(getattr(exc, _EXC_ATTR, {}))
    for name, value in fields.items():
        known.setdefault(name, value)  # the innermost block, which saw the raise first, wins
    with suppress(AttributeError):  # exceptions with __slots__ cannot carry the fields
        setattr(exc, _EXC_ATTR, known)


def exception_context(exc: BaseException | None) -> Mapping[str, Any]:
    """The fields bound where ``exc`` was raised (empty when it left no :func:`log_context`)."""
    return getattr(exc, _EXC_ATTR, _EMPTY) if exc is not None else _EMPTY
