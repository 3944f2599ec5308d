"""Decline branches: ``on_decline:`` as a list of steps, flattened into the rule's own steps.

The runner knows one thing, a flat list of steps each with an optional ``if:``. A branch is
written as steps nested in an approval's ``with:``::

    - id: partner
      type: approval
      with: {..., on_decline: [s1, s2]}
    - r1
    - r2

and runs as the flat list ``partner, s1, s2, r1, r2`` where ``s1``/``s2`` are guarded by "the
partner declined" and ``r1``/``r2`` by "the partner did not decline", each guard combined with the
step's own ``if:`` (``(guard) and (own)``: the own condition is not evaluated when the guard fails,
so it may read steps of its own branch). The approval itself runs with ``on_decline: continue``.

Flattening happens whenever a :class:`~worker.rules.model.Rule` is validated, so every reader of
``rule.steps`` (the runner, the engine's compiled steps, ``rules test``/``explain``, a run's
snapshot) sees the flat form, and a snapshot (already flat) validates back to itself. Each flat
step also remembers where it is written (``rules check`` points at the branch step's own lines),
its ``if:`` as written, and which step ids can have run before it (its ``steps.<id>`` scope: a step
after the approval cannot read a step of the decline branch, which never ran when it runs).

A branch may hold an approval with its own branch: the same rule applies, the guards add up.
Guards use ``is true``/``is not true``, which hold no matter what ``steps.<id>`` is: an approval that
was itself skipped (its ``if:`` false, or on the other side of an outer branch) has an empty result,
so its branch is skipped and the steps after it run when their other guards hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.actions import base as step_types
from worker.rules.source import Path_

if TYPE_CHECKING:
    from worker.rules.model import StepBase


@dataclass(frozen=True)
class FlatStep:
    """One step of the flat list, and where it came from."""

    #: the step as it runs: guards folded into ``if:``, an approval's branch replaced by ``continue``
    step: StepBase
    #: where it is written in the rule's data: ``("steps", 2)``, ``("steps", 0, "with", "on_decline", 1)``
    path: Path_
    #: its ``if:`` as written (without the guards)
    own_if: str | None
    #: the guards it runs under, outermost first (``steps.partner.declined is true``)
    guards: tuple[str, ...]
    #: ids of the steps that can have run before it
    visible: tuple[str, ...]


def branch_fields(action: str) -> tuple[str, ...]:
    """The ``with:`` keys of ``action`` that may hold a list of steps (``approval``: ``on_decline``)."""
    of = step_types.registry().get(action)
    return tuple(getattr(of, "branches", ())) if of is not None else ()


def all_branch_fields() -> frozenset[str]:
    """Every key that holds a branch in some step type's ``with:``."""
    return frozenset(name for of in step_types.registry().values() for name in getattr(of, "branches", ()))


def branch_of(step: StepBase) -> tuple[str, list[StepBase]] | None:
    """The step's branch (its key and steps), None when it has none."""
    for name in branch_fields(step.action):
        value = getattr(step.with_, name, None)
        if isinstance(value, list):
            return name, value
    return None


def declined(step_id: str) -> str:
    return f"steps.{step_id}.declined is true"


def not_declined(step_id: str) -> str:
    return f"steps.{step_id}.declined is not true"


def flatten(steps: Sequence[StepBase]) -> list[FlatStep]:
    """The steps as they run, in order."""
    return list(_walk(steps, ("steps",), 0, (), ()))


def _walk(
    steps: Sequence[StepBase], path: Path_, start: int, guards: tuple[str, ...], seen: tuple[str, ...]
) -> Iterator[FlatStep]:
    visible = list(seen)
    for index in range(start, len(steps)):
        step = steps[index]
        where = (*path, index)
        branch = branch_of(step)
        runs = step if branch is None else _without_branch(step, branch[0])
        yield FlatStep(_guarded(runs, guards), where, step.if_, guards, tuple(visible))
        if step.id:
            visible.append(step.id)
        if branch is not None and step.id:  # the model requires the id (see StepBase)
            name, inner = branch
            yield from _walk(inner, (*where, "with", name), 0, (*guards, declined(step.id)), tuple(visible))
            yield from _walk(steps, path, index + 1, (*guards, not_declined(step.id)), tuple(visible))
            return


def _without_branch(step: StepBase, name: str) -> StepBase:
    params = step.with_.model_copy(update={name: "continue"})
    return step.model_copy(update={"with_": params})


def _guarded(step: StepBase, guards: tuple[str, ...]) -> StepBase:
    if not guards:
        return step
    parts = [*guards, step.if_] if step.if_ is not None else list(guards)
    condition = parts[0] if len(parts) == 1 else " and ".join(f"({p})" for p in parts)
    return step.model_copy(update={"if_": condition})


def node_at(data: Any, path: Path_) -> Any:
    """What ``path`` points at in the rule's data (None where it leads nowhere)."""
    node = data
    for part in path:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_dict or in_list):
            return None
        node = node[part]
    return node
