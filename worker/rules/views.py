"""What templates see: records, changes, step results and env, as catalogue-aware read-only views.

A record is shown as a :class:`RecordView`: a ``dict`` (so ``tojson``, ``items()`` and native
rendering keep working) that knows its swagger definition. That makes three things work the way an
ops person expects:

* a field PracticePanther left out of the JSON reads as ``none`` (``record.account_ref is none``),
  while a misspelt field is an error naming the right one (``record.stauts``);
* references are views of their own definition (``record.account_ref.display_name``);
* custom fields read by label, typed by their ``value_type``: ``record.custom['Case Stage']``
  (:class:`CustomView`; a label the record has no value for reads as ``none``), and
  ``changes['custom.Case Stage'].new`` typed the same way;
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
from worker.practicepanther import customfields, resources
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
        if name == "custom" and self._label in customfields.VALUES_FIELDS:
            return CustomView.of(self._label, self)
        definition = self._definition
        spec = definition.fields.get(name) if definition is not None else None
        if dict.__contains__(self, name):
            return wrap(dict.__getitem__(self, name), spec)
        if spec is not None:
            return None
        candidates: Iterable[str] = definition.fields if definition is not None else self.keys()
        return _missing(f"unknown field {name!r} on {self._label}", did_you_mean(name, candidates))


def typed_custom(value_type: str | None, raw: Any) -> Any:
    """A custom field's raw value as templates see it (a contact is a reference view)."""
    value = customfields.read(value_type, raw)
    if value_type == "Contact" and isinstance(value, dict):
        return RecordView(value, definition_or_none("ContactReference"), "contact_ref")
    return value


class CustomView(dict[str, Any]):
    """``record.custom``: the record's custom field values by label, typed by ``value_type``.

    A label the record holds no value for reads as ``none``: PracticePanther leaves unset fields
    out of the list, so absence is not an error here (``ppw rules check`` checks labels against
    the account's definitions instead).
    """

    __slots__ = ()

    @classmethod
    def of(cls, resource: str, record: Mapping[str, Any]) -> CustomView:
        values = customfields.values_by_label(resource, record)
        return cls({label: typed_custom(kind, raw) for label, (kind, raw) in values.items()})

    def lookup(self, name: str) -> Any:
        return dict.get(self, name)


class ChangeView(dict[str, Any]):
    """``changes.<field>``: ``.old``, ``.new`` and ``.old_known`` (False where the old value was
    never stored, so ``old`` is none without meaning "was empty")."""

    __slots__ = ()

    def lookup(self, name: str) -> Any:
        if name in ("old", "new"):
            return dict.get(self, name)
        if name == "old_known":
            return dict.get(self, name, True)
        return _missing(f"a change has 'old', 'new' and 'old_known', not {name!r}", None)


class ChangesView(dict[str, Any]):
    """Fields that changed in this event; a known field that did not change reads as ``none``."""

    __slots__ = ("_definition",)

    def __init__(self, changes: Mapping[str, Any], definition: Definition | None) -> None:
        super().__init__(changes)
        self._definition = definition

    @classmethod
    def of(
        cls,
        changes: Mapping[str, Any],
        resource: str | None,
        records: tuple[Mapping[str, Any] | None, ...] = (),
    ) -> ChangesView:
        """``records`` (the record, then its previous version) tell a custom field's value type."""
        definition = resource_definition(resource)
        kinds = _custom_kinds(resource, records) if resource in customfields.VALUES_FIELDS else {}
        wrapped: dict[str, ChangeView] = {}
        for name, change in changes.items():
            mapping = change if isinstance(change, Mapping) else None
            old = mapping.get("old") if mapping is not None else getattr(change, "old", None)
            new = mapping.get("new") if mapping is not None else getattr(change, "new", None)
            known = (
                mapping.get("old_known", True) if mapping is not None else getattr(change, "old_known", True)
            )
            label = customfields.custom_label(name)
            if label is not None:
                kind = kinds.get(label)
                wrapped[name] = ChangeView(
                    old=typed_custom(kind, old), new=typed_custom(kind, new), old_known=known
                )
                continue
            spec = definition.fields.get(name) if definition is not None else None
            wrapped[name] = ChangeView(old=wrap(old, spec), new=wrap(new, spec), old_known=known)
        return cls(wrapped, definition)

    def lookup(self, name: str) -> Any:
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        if self._definition is None or name in self._definition.fields:
            return None
        if customfields.custom_label(name) is not None:
            return None  # a custom field that did not change
        return _missing(f"unknown field {name!r} in changes", did_you_mean(name, self._definition.fields))


def _custom_kinds(resource: str | None, records: tuple[Mapping[str, Any] | None, ...]) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    for record in reversed(records):  # the newest record's type wins
        for label, (kind, _raw) in customfields.values_by_label(resource or "", record).items():
            if kind:
                kinds[label] = kind
    return kinds


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


LOOKUP_TYPES = (RecordView, CustomView, ChangesView, ChangeView, NamedView, Placeholder)


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
