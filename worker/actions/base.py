"""Step types: one class each, and the registry built from them.

As Dramatiq has one class per middleware, ppw has one :class:`StepType` subclass per ``type:`` a
step may have. The class is the only place that knows the step type: its name, its ``with:`` model,
whether it writes, what later steps may read of its result, its shorthands, what of its output is
secret, and :meth:`StepType.run`. Everything else (the rule model, ``ppw rules check``, the editor
schema, previews, the runner, the docs' step table) reads the registry, so a new step type is one
new module under ``worker/actions/`` and nothing else: defining the subclass registers it.

``run(params, ctx)`` gets the step's rendered ``with:`` block validated by the class's ``params``
model, and ``ctx`` says which event, rule and step this is, whether an earlier attempt may already
have had its effect, and hands out the shared clients. It raises
:class:`~worker.actions.errors.StepError` (transient or permanent) and never logs or returns a
secret: the request summary it returns goes into the run history as is.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel

from worker.actions.services import Services
from worker.events import Event

if TYPE_CHECKING:
    from worker.settings import Settings

log = logging.getLogger(__name__)


def step_key(event_id: str, rule_id: str, step_id: str) -> str:
    """A short stable hash of (event, rule, step): the same on every retry, replay and worker."""
    return hashlib.sha256(f"{event_id}\x1f{rule_id}\x1f{step_id}".encode()).hexdigest()[:16]


@dataclass
class StepContext:
    """One step of one run.

    Parameters
    ----------
    uncertain:
        An earlier attempt of this step started and may have had its effect (the worker
        died mid-step, or the far side failed after possibly acting), so a write must first look
        for it instead of writing again.
    dry_run:
        The rule is in ``mode: dry_run`` (or a ``ppw rules test``): describe, do not act.
    resumed_due:
        The step waited (it raised :class:`~worker.actions.errors.WaitUntil`) and the run was
        woken: the moment it waited for, so the wait is not counted again from now.
    holds:
        ``holds(expression, record)``: whether an expression of the rule is true with ``record``
        as the record (a wait's ``unless:``, evaluated after the record was read again).
    """

    services: Services
    connection: str
    event: Event
    rule_id: str
    step_id: str
    run_id: str
    uncertain: bool = False
    dry_run: bool = False
    resumed_due: float | None = None
    holds: Callable[[str, dict[str, Any]], bool] | None = None

    @property
    def key(self) -> str:
        return step_key(self.event.id, self.rule_id, self.step_id)


@dataclass
class StepResult:
    """What a step did.

    Parameters
    ----------
    output:
        Exposed to later steps' templates as ``steps.<id>`` (e.g. the created record, with
        its ``id``); stored in the ledger, so keep it to what later steps need.
    request:
        The request as sent, secrets masked, for the run history.
    response:
        A summary of the answer (status, ids, Slack's ``ts``), for the run history.
    """

    output: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] = field(default_factory=dict)


class DataSchema(NamedTuple):
    """How the editor schema checks a step's ``data:`` against the fields of its resource.

    Parameters
    ----------
    kind:
        ``create`` enforces the fields required on create; ``update`` only knows the fields.
    resources:
        Which resources the step accepts, by capability (``create`` or ``update``).
    """

    kind: Literal["create", "update"]
    resources: Literal["create", "update"]


class StepType:
    """One step type; subclassing registers it (a subclass without ``name`` is an abstract base).

    The runner calls :meth:`run` on the one instance the registry holds, so a step type keeps no
    per-run state on ``self``.

    Parameters
    ----------
    name:
        The ``type:`` of the step in a rule file (``slack.post``).
    params:
        The pydantic model of the ``with:`` block: ``ppw rules check`` and the editor schema use it
        on the block as written, :meth:`run` gets the rendered block validated by it.
    writes:
        False for steps that only read (finds, ``log``): they act even in a dry run, so that later
        steps render with real data.
    result_keys:
        What later steps may read as ``steps.<id>.<key>`` (``rules check`` flags other keys). For a
        step whose result is a PracticePanther record (:meth:`result_resource`), the keys besides
        the record's fields; None leaves the result unchecked.
    shorthands:
        Shorthand ``type:`` -> resource: a shorthand's whole ``with:`` is the ``data`` of this step
        on that resource (``create_task`` is ``practicepanther.create`` on ``tasks``).
    shorthand_with:
        The model of a shorthand's ``with:`` as written.
    mask_output:
        Whether the output kept for later steps (and stored in the ledger) passes through the
        deployment's scrubber: a response from the far side may echo a secret back.
    destination:
        For steps that deliver somewhere (Slack, webhooks): the ``with:`` fields whose value names
        the destination in ``ppw_webhook_deliveries`` (names from the rule, never URLs).
    data_schema:
        How the editor schema checks ``data:`` against the step's resource, if it has one.
    refreshes_record:
        The step's output ``record`` (a record read again, after a wait) is the ``record`` of
        the steps after it.
    with_doc, result_doc:
        The docs' step table cells; by default the ``with:`` fields and the result keys.
    """

    name: ClassVar[str]
    params: ClassVar[type[BaseModel]]
    writes: ClassVar[bool] = True
    result_keys: ClassVar[frozenset[str] | None] = None
    shorthands: ClassVar[Mapping[str, str]] = {}
    shorthand_with: ClassVar[Any] = dict[str, Any]
    mask_output: ClassVar[bool] = False
    destination: ClassVar[tuple[str, ...]] = ()
    data_schema: ClassVar[DataSchema | None] = None
    refreshes_record: ClassVar[bool] = False
    with_doc: ClassVar[str] = ""
    result_doc: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            register(cls)

    def run(self, params: Any, ctx: StepContext) -> StepResult:
        """Act on the rendered, validated ``params``; raise a step error on failure."""
        raise NotImplementedError(f"step type {self.name!r} has no run()")

    def result_resource(self, params: BaseModel) -> tuple[str, bool] | None:
        """``(resource, is_list)`` when the step's result is PracticePanther record(s), else None:
        later steps then see a record view, and ``rules check`` checks their fields."""
        return None

    def expand(self, shorthand: str, with_: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical ``with:`` block a shorthand's ``with:`` stands for."""
        return {"resource": self.shorthands[shorthand], "data": dict(with_)}

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """What the step would send with the rendered ``params``, for ``ppw rules test`` and
        ``explain``; secrets only ever by name (the caller also scrubs the result)."""
        return {"params": params}

    def hook(self, params: Any) -> str | None:
        """The destination name for ``ppw_webhook_deliveries`` (None: the step delivers nowhere)."""
        for name in self.destination:
            value = getattr(params, name, None)
            if value:
                return str(value)
        return None


# -- the registry ------------------------------------------------------------------------------

_REGISTRY: dict[str, StepType] = {}
#: The sorted views :func:`registry` and :func:`shorthands` hand out, made again after a change (the
#: runner asks for a step type on every step).
_VIEWS: dict[str, dict[str, StepType]] = {}
_LISTENERS: list[Callable[[], None]] = []
_loaded = False
_load_lock = threading.RLock()


def register(cls: type[StepType]) -> None:
    """Add ``cls`` (done by subclassing :class:`StepType`); a name may be registered once."""
    held = _REGISTRY.get(cls.name)
    if held is not None and type(held).__qualname__ != cls.__qualname__:
        other = f"{type(held).__module__}.{type(held).__qualname__}"
        raise ValueError(f"step type {cls.name!r} is already {other}")
    taken = {s for st in _REGISTRY.values() if st.name != cls.name for s in (st.name, *st.shorthands)}
    clash = taken & {cls.name, *cls.shorthands}
    if clash:
        raise ValueError(f"step type {cls.__qualname__} reuses the name(s) {', '.join(sorted(clash))}")
    _REGISTRY[cls.name] = cls()
    _changed()


def unregister(name: str) -> None:
    """Remove a step type (tests that define one of their own clean up with this)."""
    if _REGISTRY.pop(name, None) is not None:
        _changed()


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever a step type is added or removed after loading (the rule model
    rebuilds its step union then)."""
    _LISTENERS.append(listener)


def _changed() -> None:
    _VIEWS.clear()
    if _loaded:
        for listener in _LISTENERS:
            listener()


def _load() -> None:
    """Import every module of ``worker.actions``: defining a step type's class registers it, so no
    list of step modules needs keeping."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
            importlib.import_module(f"worker.actions.{module.name}")
        _loaded = True


def registry() -> dict[str, StepType]:
    """Every step type by name, sorted (the schema and the docs table must not depend on which
    module happened to be imported first)."""
    _load()
    view = _VIEWS.get("registry")
    if view is None:
        view = _VIEWS["registry"] = dict(sorted(_REGISTRY.items()))
    return dict(view)


def step_type(name: str) -> StepType:
    """The step type called ``name`` (canonical, not a shorthand)."""
    _load()
    found = _REGISTRY.get(name)
    if found is None:
        raise KeyError(f"no step type {name!r}; known: {', '.join(sorted(registry()))}")
    return found


def shorthands() -> dict[str, StepType]:
    """Shorthand ``type:`` -> the step type it stands for."""
    view = _VIEWS.get("shorthands")
    if view is None:
        view = _VIEWS["shorthands"] = {s: st for st in registry().values() for s in st.shorthands}
    return dict(view)


def all_step_types() -> list[str]:
    """Every accepted ``type:``, canonical and shorthand."""
    return sorted([*registry(), *shorthands()])


def canonical(name: str, with_: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The canonical type and ``with:`` block of a step (shorthands expanded)."""
    of = shorthands().get(name)
    if of is not None:
        return of.name, of.expand(name, with_)
    return name, dict(with_)


def result_resource(name: str, params: BaseModel) -> tuple[str, bool] | None:
    """``(resource, is_list)`` when step type ``name``'s result is PracticePanther record(s)."""
    found = registry().get(name)
    return found.result_resource(params) if found is not None else None


def step_table() -> str:
    """The docs' table of step types (docs/rules.md), as markdown."""
    lines = ["| type | `with:` | result (`steps.<id>`) |", "|---|---|---|"]
    for st in registry().values():
        fields = st.params.model_fields
        with_doc = st.with_doc or ", ".join(f"`{f.alias or n}`" for n, f in fields.items())
        result_doc = st.result_doc or ", ".join(f"`{k}`" for k in sorted(st.result_keys or ()))
        lines.append(f"| `{st.name}` | {with_doc} | {result_doc} |")
    return "\n".join(lines) + "\n"
