"""What the poller remembers about each record: enough to tell what changed, and no more.

A snapshot is not a copy of the record. It holds the record's revision (its ``updated_at``), a
hash of its whole content, and per field either the value itself (short values, and every field a
rule compares) or a short digest (long text, large collections). That is what a later comparison
needs to report ``changes: {field: {old, new}}``, while a snapshot of a matter stays a few hundred
bytes; for a long field that no rule reads, ``old`` is reported as ``None``.

Values are compared in a normal form, so cosmetic differences never look like changes:

* references (``matter_ref`` ...) by id only, so renaming the matter does not "change" its tasks;
* lists of references, tags and other collections as unordered sets;
* datetimes as instants (``2026-04-04T00:00:00`` and ``2026-04-04T00:00:00Z`` are equal);
* uuids case-insensitively.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.practicepanther.odata import parse_timestamp
from worker.practicepanther.resources import FieldSpec, Resource

#: Never compared: they move on every save, or never change.
VOLATILE_FIELDS = frozenset({"updated_at", "created_at"})
#: A value whose JSON is longer than this is kept as a digest unless a rule compares the field.
INLINE_LIMIT = 256


def revision_text(value: datetime) -> str:
    """A timestamp as a fixed-width UTC string, so text order is time order."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_revision(value: Any) -> datetime | None:
    """A record's ``updated_at`` as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _digest(value: Any, size: int = 8) -> str:
    return hashlib.blake2b(_canonical(value).encode(), digest_size=size).hexdigest()


def _ref_id(value: Any) -> Any:
    if isinstance(value, Mapping):
        ref = value.get("id")
        return ref.lower() if isinstance(ref, str) else ref
    return value


def _compact_ref(value: Any) -> Any:
    """What a snapshot keeps of a reference: its id and display name (for ``changes.old``)."""
    if isinstance(value, Mapping):
        return {k: value[k] for k in ("id", "display_name") if k in value}
    return value


def normal_form(value: Any, spec: FieldSpec | None) -> Any:
    """The value as comparisons see it (see the module docstring)."""
    if value is None:
        return None
    if spec is not None and spec.is_reference:
        return _ref_id(value)
    if isinstance(value, list):
        item_spec = _item_spec(spec)
        return sorted((normal_form(item, item_spec) for item in value), key=_canonical)
    if isinstance(value, Mapping):
        return {k: _ref_id(v) if k.endswith("_ref") else normal_form(v, None) for k, v in value.items()}
    if spec is not None and spec.kind == "datetime" and isinstance(value, str):
        parsed = parse_revision(value)
        return revision_text(parsed) if parsed is not None else value
    if spec is not None and spec.kind == "uuid" and isinstance(value, str):
        return value.lower()
    return value


def _item_spec(spec: FieldSpec | None) -> FieldSpec | None:
    if spec is None or spec.kind != "array" or spec.item_kind is None:
        return None
    return FieldSpec(name=spec.name, kind=spec.item_kind, ref=spec.item_ref)


def _kept_value(value: Any, spec: FieldSpec | None) -> Any:
    if spec is not None and spec.is_reference:
        return _compact_ref(value)
    if isinstance(value, list) and spec is not None and (spec.item_ref or "").endswith("Reference"):
        return [_compact_ref(item) for item in value]
    return value


@dataclass(frozen=True)
class Snapshot:
    """One record as last seen.

    ``revision`` is the fixed-width ``updated_at`` (None for resources without one); ``content``
    hashes every compared field; ``values`` keeps short values, ``digests`` the rest.
    """

    revision: str | None
    content: str
    values: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    def dumps(self) -> str:
        data: dict[str, Any] = {"r": self.revision, "h": self.content}
        if self.values:
            data["v"] = self.values
        if self.digests:
            data["d"] = self.digests
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)

    @classmethod
    def loads(cls, text: str) -> Snapshot:
        data = json.loads(text)
        return cls(
            revision=data.get("r"),
            content=data["h"],
            values=data.get("v", {}),
            digests=data.get("d", {}),
        )

    def fields(self) -> set[str]:
        return set(self.values) | set(self.digests)


class Snapshotter:
    """Builds and compares snapshots for one resource.

    Parameters
    ----------
    resource:
        The catalogue entry; its swagger fields say which values are references, datetimes ...
    keep:
        Fields whose full value is always kept (the ones loaded rules compare), however long.
    inline_limit:
        Longer values of other fields are kept as digests only.
    """

    def __init__(
        self, resource: Resource, *, keep: Collection[str] = (), inline_limit: int = INLINE_LIMIT
    ) -> None:
        self.resource = resource
        self.specs = resource.fields
        self.keep = frozenset(keep)
        self.inline_limit = inline_limit

    def compared_fields(self, record: Mapping[str, Any]) -> list[str]:
        """The resource's fields plus any extra ones the service sends, minus the volatile ones."""
        names = dict.fromkeys([*self.specs, *record])
        return [n for n in names if n not in VOLATILE_FIELDS and n != "id"]

    def revision(self, record: Mapping[str, Any]) -> str | None:
        if not self.resource.has_timestamps:
            return None
        parsed = parse_revision(record.get("updated_at"))
        return revision_text(parsed) if parsed is not None else None

    def take(self, record: Mapping[str, Any]) -> Snapshot:
        normals: dict[str, Any] = {}
        values: dict[str, Any] = {}
        digests: dict[str, str] = {}
        for name in self.compared_fields(record):
            if name not in record:
                continue
            spec = self.specs.get(name)
            raw = record[name]
            normals[name] = normal_form(raw, spec)
            kept = _kept_value(raw, spec)
            if name in self.keep or len(_canonical(kept)) <= self.inline_limit:
                values[name] = kept
            else:
                digests[name] = _digest(normals[name])
        return Snapshot(
            revision=self.revision(record),
            content=_digest(normals, size=16),
            values=values,
            digests=digests,
        )

    def changes(self, old: Snapshot, new_record: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{field: (old, new)}`` for every field whose normal form differs.

        ``old`` is None for a field the snapshot kept only as a digest.
        """
        changed: dict[str, tuple[Any, Any]] = {}
        names = dict.fromkeys([*self.compared_fields(new_record), *old.fields()])
        for name in names:
            if name in VOLATILE_FIELDS or name == "id":
                continue
            spec = self.specs.get(name)
            new_value = new_record.get(name)
            new_normal = normal_form(new_value, spec)
            if name in old.values:
                old_value = old.values[name]
                if normal_form(old_value, spec) != new_normal:
                    changed[name] = (old_value, new_value)
            elif name in old.digests:
                if old.digests[name] != _digest(new_normal):
                    changed[name] = (None, new_value)
            elif new_value is not None:
                changed[name] = (None, new_value)  # a field the service did not send before
        return changed
