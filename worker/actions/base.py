"""What every step executor gets and gives back, and the registry that maps step types to them.

An executor is a function ``(params, ctx) -> StepResult`` registered with :func:`executor` for one
or more step types. ``params`` is the step's rendered ``with:`` block validated by the step type's
pydantic model from :mod:`worker.actions.params`; ``ctx`` says which event, rule and step this is,
whether an earlier attempt may already have had its effect, and hands out the shared clients.
Executors raise :class:`~worker.actions.errors.StepError` (transient or permanent) and never
log or return a secret: the request summary they return goes into the run history as is.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from worker.actions.services import Services
from worker.events import Event

log = logging.getLogger(__name__)


def step_key(event_id: str, rule_id: str, step_id: str) -> str:
    """A short stable hash of (event, rule, step): the same on every retry, replay and worker."""
    return hashlib.sha256(f"{event_id}\x1f{rule_id}\x1f{step_id}".encode()).hexdigest()[:16]


@dataclass
class StepContext:
    """One step of one run.

    Parameters:
      uncertain: an earlier attempt of this step started and may have had its effect (the worker
        died mid-step, or the far side failed after possibly acting), so a write must first look
        for it instead of writing again.
      dry_run: the rule is in ``mode: dry_run`` (or a ``ppw rules test``): describe, do not act.
    """

    services: Services
    connection: str
    event: Event
    rule_id: str
    step_id: str
    run_id: str
    uncertain: bool = False
    dry_run: bool = False

    @property
    def key(self) -> str:
        return step_key(self.event.id, self.rule_id, self.step_id)


@dataclass
class StepResult:
    """What a step did.

    Parameters:
      output: exposed to later steps' templates as ``steps.<id>`` (e.g. the created record, with
        its ``id``); stored in the ledger, so keep it to what later steps need.
      request: the request as sent, secrets masked, for the run history.
      response: a summary of the answer (status, ids, Slack's ``ts``), for the run history.
    """

    output: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] = field(default_factory=dict)


ExecutorFn = Callable[[Any, StepContext], StepResult]


@dataclass(frozen=True)
class Executor:
    """A registered executor. ``writes`` is False for steps that only read (finds, ``log``): those
    act even in a dry run, so later steps render with real data."""

    step_type: str
    params_model: type[BaseModel] | None
    run: ExecutorFn
    writes: bool = True


_REGISTRY: dict[str, Executor] = {}
_ACTION_MODULES = (
    "worker.actions.practicepanther",
    "worker.actions.slack",
    "worker.actions.http",
    "worker.actions.log_step",
)


def executor(
    *types: str, params: type[BaseModel] | None = None, writes: bool = True
) -> Callable[[ExecutorFn], ExecutorFn]:
    """Register ``fn`` as the executor of ``types`` (``practicepanther.create``, shorthands ...)."""

    def register(fn: ExecutorFn) -> ExecutorFn:
        for step_type in types:
            _REGISTRY[step_type] = Executor(step_type=step_type, params_model=params, run=fn, writes=writes)
        return fn

    return register


def registry() -> dict[str, Executor]:
    """Every registered executor by step type (importing the action modules registers them)."""
    for module in _ACTION_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def get_executor(step_type: str) -> Executor:
    found = registry().get(step_type)
    if found is None:
        known = ", ".join(sorted(registry()))
        raise KeyError(f"no executor for step type {step_type!r}; known: {known}")
    return found
