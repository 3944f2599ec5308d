"""What templates see: records, changes, step results and env, as catalogue-aware read-only views.

A record is shown as a :class:`RecordView`: a ``dict`` (so ``tojson``, ``items()`` and native
rendering keep working) that knows its swagger definition. That makes three things work the way an
ops person expects:

* a field PracticePanther left out of the JSON reads as ``none`` (``record.account_ref is none``),
  while a misspelt field is an error naming the right one (``record.stauts``);
* references are views of their own definition (``record.account_ref.display_name``);
* string tags are :class:`Tag` values, ``str`` subclasses that also expose ``.name``, so both
  ``'vip' in record.tags`` and ``record.tags | map(attribute='name')`` work (the swagger says tags
  are strings; the live service and older clients show ``{name: ...}`` objects; either becomes a Tag).

The views are looked up by :class:`worker.rules.templating.RulesEnvironment`, which asks
:meth:`lookup` before falling back to the sandbox's own attribute rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from worker.hints import did_you_mean
from worker.practicepanther import resources
from worker.practicepanther.resources import Definition, FieldSpec


class Missing:
    """What ``lookup`` returns for a name that is not there; the environment turns it into an
    Undefined carrying the message and hint."""

    __slots__ = ("hint", "message")

    def __init__(self, message: str, hint: str | None) -> None:
        self.message = message
        self.hint = hint

    def describe(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class Tag(str):
    """A tag: a plain string that also answers ``.name`` (see the module docstring)."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return str(self)


def definition_or_none(name: str | None) -> Definition | None:
    if not name:
        return None
    try:
        return resources.definition(name)
    except KeyError:
        return None


def resource_definition(resource: str | None) -> Definition | None:
    if not resource:
        return None
    try:
        return resources.get(resource).model
    except KeyError:
        return None


def wrap(value: Any, spec: FieldSpec | None) -> Any:
    """A field value as templates see it."""
    if spec is None:
        return value
    if spec.kind == "object" and isinstance(value, dict):
        return RecordView(value, definition_or_none(spec.ref), spec.name)
    if spec.kind == "array" and isinstance(value, list):
        if spec.name == "tags" or spec.item_kind == "string":
            return [_tag(item) for item in value]
        item_definition = definition_or_none(spec.item_ref)
        return [
            RecordView(item, item_definition, spec.name) if isinstance(item, dict) else item for item in value
        ]
    return value


def _tag(item: Any) -> Any:
    if isinstance(item, str):
        return Tag(item)
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return Tag(item["name"])
    return item


class RecordView(dict[str, Any]):
    """A record (or reference) that knows its definition; see the module docstring."""

    __slots__ = ("_definition", "_label")

    def __init__(self, raw: Mapping[str, Any], definition: Definition | None, label: str) -> None:
        super().__init__(raw)
        self._definition = definition
        self._label = label

    @classmethod
    def of(cls, record: Mapping[str, Any] | None, resource: str | None) -> RecordView | None:
        if record is None:
            return None
        definition = resource_definition(resource)
        return cls(record, definition, resource or "record")

    def lookup(self, name: str) -> Any:
        """The field's value, ``None`` for a known field that is absent, else a :data:`Missing`."""
        definition = self._definition
        spec = definition.fields.get(name) if definition is not None else None
        if dict.__contains__(self, name):
            return wrap(dict.__getitem__(self, name), spec)
        if spec is not None:
            return None
        candidates: Iterable[str] = definition.fields if definition is not None else self.keys()
        return _missing(f"unknown field {name!r} on {self._label}", did_you_mean(name, candidates))


class ChangeView(dict[str, Any]):
    """``changes.<field>``: ``.old``, ``.new`` and ``.old_known`` (False where the old value was
    never stored, after an upgrade: ``old`` is then none without meaning "was empty")."""

    __slots__ = ()

    def lookup(self, name: str) -> Any:
        if name in ("old", "new", "old_known"):
            return dict.get(self, name)
        return _missing(f"a change has 'old', 'new' and 'old_known', not {name!r}", None)


class ChangesView(dict[str, Any]):
    """Fields that changed in this event; a known field that did not change reads as ``none``."""

    __slots__ = ("_definition",)

    def __init__(self, changes: Mapping[str, Any], definition: Definition | None) -> None:
        super().__init__(changes)
        self._definition = definition

    @classmethod
    def of(cls, changes: Mapping[str, Any], resource: str | None) -> ChangesView:
        definition = resource_definition(resource)
        wrapped: dict[str, ChangeView] = {}
        for name, change in changes.items():
            old = getattr(change, "old", None) if not isinstance(change, Mapping) else change.get("old")
            new = getattr(change, "new", None) if not isinstance(change, Mapping) else change.get("new")
            known = getattr(change, "old_known", True) if not isinstance(change, Mapping) else None
            if known is None:
                known = change.get("old_known", True)
            spec = definition.fields.get(name) if definition is not None else None
            wrapped[name] = ChangeView(old=wrap(old, spec), new=wrap(new, spec), old_known=bool(known))
        return cls(wrapped, definition)

    def lookup(self, name: str) -> Any:
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        if self._definition is None or name in self._definition.fields:
            return None
        return _missing(f"unknown field {name!r} in changes", did_you_mean(name, self._definition.fields))


class NamedView(dict[str, Any]):
    """A mapping whose missing keys are errors with a hint (``steps``, ``env``, ``event``)."""

    __slots__ = ("_explain", "_what")

    def __init__(self, values: Mapping[str, Any], what: str, explain: Callable[[str], str | None]) -> None:
        super().__init__(values)
        self._what = what
        self._explain = explain

    def lookup(self, name: str) -> Any:
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        return _missing(f"no {self._what} {name!r}", self._explain(name))


class Placeholder:
    """A stand-in for the result of a step that did not run (``ppw rules test``, ``rules check``).

    Any attribute of it is another placeholder, so ``steps.task.id`` renders as ``<steps.task.id>``;
    it is truthy and iterates as one placeholder item, so ``steps.found | first`` works too.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def lookup(self, name: str) -> Placeholder:
        return Placeholder(f"{self.path}.{name}")

    def __str__(self) -> str:
        return f"<{self.path}>"

    def __repr__(self) -> str:
        return str(self)

    def __iter__(self) -> Any:
        return iter((Placeholder(f"{self.path}[0]"),))

    def __len__(self) -> int:
        return 1

    def __getitem__(self, key: Any) -> Placeholder:
        return Placeholder(f"{self.path}[{key!r}]")

    def __bool__(self) -> bool:
        return True


def _missing(message: str, hint: str | None) -> Missing:
    return Missing(message, hint)


LOOKUP_TYPES = (RecordView, ChangesView, ChangeView, NamedView, Placeholder)


def unwrap(value: Any) -> Any:
    """Plain data again (views to dicts, tags to str, placeholders to text) for payloads."""
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in dict.items(value)}
    if isinstance(value, list | tuple):
        return [unwrap(v) for v in value]
    if isinstance(value, Tag):
        return str(value)
    if isinstance(value, Placeholder):
        return str(value)
    return value
