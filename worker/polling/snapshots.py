"""What the poller remembers about each record: enough to tell what changed, and no more.

A snapshot is not a copy of the record: an account's state holds one per record, so it must stay
small (a couple of hundred bytes). It holds

* the record's revision (its ``updated_at``) and a hash of its whole compared content;
* the full values of the fields the loaded rules compare (``keep``), so ``changes.<field>.old``
  and ``previous.<field>`` can be reported for them;
* for every other compared field, a short digest, which still tells *that* the field changed
  (``old`` is then reported as ``None``).

The digests are packed positionally into one string in the catalogue's field order for the
resource (see :class:`Snapshotter`), so field names are not repeated in every snapshot. Fields
the service sends that the catalogue does not know are digested under their name.

Values are compared in a normal form, so cosmetic differences never look like changes:

* references (``matter_ref`` ...) by id only, so renaming the matter does not "change" its tasks;
* lists of references, tags and other collections as unordered sets;
* datetimes as instants (``2026-04-04T00:00:00`` and ``2026-04-04T00:00:00Z`` are equal);
* uuids case-insensitively, and numbers by value (``200`` and ``200.0`` are equal).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from worker.practicepanther.odata import TIMESTAMP_CACHE, parse_timestamp
from worker.practicepanther.resources import FieldSpec, Resource

#: Never compared: they move on every save, or never change.
VOLATILE_FIELDS = frozenset({"updated_at", "created_at"})
#: The snapshot JSON format written by :meth:`Snapshot.dumps` (the first format had no marker).
FORMAT = 2

# A packed slot is one marker character or a DIGEST_CHARS-long digest (base64url, so no marker
# character can start a digest). Common values get a marker of their own: it is shorter than a
# digest and compares exactly.
_ABSENT = "."  # the record did not have the field
_KEPT = "="  # the full value is in ``values``
_CONSTANTS: dict[str, Any] = {"~": None, "[": [], "'": "", "+": True, "!": False}
_MARKERS = frozenset({_ABSENT, _KEPT, *_CONSTANTS})
#: A field digest: the first 6 bytes of blake2b-64 (48 bits), 8 base64url characters.
_DIGEST_BYTES = 6
DIGEST_CHARS = 8
#: The content hash: the first 12 bytes of blake2b-128 (96 bits), 16 base64url characters.
_CONTENT_BYTES = 12
#: The packed string starts with this many characters naming the field layout it follows.
_TAG_CHARS = 4


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


def revision_of(value: Any) -> str | None:
    """``value`` (an ``updated_at``) as :func:`revision_text`; None when absent or unreadable.

    This is how a snapshot's revision is derived, and how a re-read record is recognised as seen
    without a snapshot (:meth:`~worker.polling.detector.Detector.observe`), so both stay one rule.
    """
    return _revision_of_text(value) if isinstance(value, str) else None


@lru_cache(maxsize=TIMESTAMP_CACHE)
def _revision_of_text(value: str) -> str | None:
    """Remembered per string: every poll re-reads the ``updated_at`` of the last minutes."""
    parsed = parse_revision(value)
    return revision_text(parsed) if parsed is not None else None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _blake(value: Any, size: int) -> bytes:
    return hashlib.blake2b(_canonical(value).encode(), digest_size=size).digest()


def content_hash(normals: Mapping[str, Any]) -> str:
    """A hash of every compared field's normal form.

    A prefix of blake2b-128, the hash the first snapshot format stored in hex, so hashes stored
    by older versions convert without the record (:meth:`Snapshot.loads`).
    """
    return _b64(_blake(normals, 16)[:_CONTENT_BYTES])


def _field_digest(normal: Any) -> str:
    # A prefix of blake2b-64, the first format's per-field digest (converted the same way).
    return _b64(_blake(normal, 8)[:_DIGEST_BYTES])


def slot(normal: Any) -> str:
    """What a snapshot stores for a field it does not keep: a marker or a short digest."""
    for marker, constant in _CONSTANTS.items():
        if normal is constant or (type(normal) is type(constant) and normal == constant):
            return marker
    return _field_digest(normal)


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
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if spec is not None and spec.kind == "datetime" and isinstance(value, str):
        revision = _revision_of_text(value)
        return revision if revision is not None else value
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


def _split_slots(packed: str) -> Iterator[str]:
    """The slots of a packed string, in order; ValueError when it is cut short."""
    index = 0
    while index < len(packed):
        if packed[index] in _MARKERS:
            yield packed[index]
            index += 1
            continue
        found = packed[index : index + DIGEST_CHARS]
        if len(found) < DIGEST_CHARS or any(c in _MARKERS for c in found):
            raise ValueError("a packed snapshot ends inside a digest")
        yield found
        index += DIGEST_CHARS


def layout_tag(layout: Sequence[str]) -> str:
    """Names a field order, so a snapshot packed for another catalogue is never misread."""
    return _b64(hashlib.blake2b("\x1f".join(layout).encode(), digest_size=3).digest())


@dataclass(frozen=True)
class Snapshot:
    """One record as last seen.

    ``revision`` is the fixed-width ``updated_at`` (None for resources without one); ``content``
    hashes every compared field; ``values`` holds the full values of the kept fields; ``packed``
    the other fields' digests in the catalogue's order, behind the layout's tag (decoded by
    :meth:`Snapshotter.changes`, which knows the layout); ``extra`` the digests of fields outside
    the catalogue (and, for a snapshot of the first format, of every long field), by name.
    """

    revision: str | None
    content: str
    values: dict[str, Any] = field(default_factory=dict)
    packed: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def dumps(self) -> str:
        data: dict[str, Any] = {"f": FORMAT}
        if self.revision is not None:
            data["r"] = self.revision
        data["h"] = self.content
        if self.packed:
            data["p"] = self.packed
        if self.values:
            data["v"] = self.values
        if self.extra:
            data["x"] = self.extra
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)

    @classmethod
    def loads(cls, text: str) -> Snapshot:
        """Read a snapshot of this format or of the first one (no ``f``: ``v`` and ``d`` by name)."""
        data = json.loads(text)
        if "f" in data:
            return cls(
                revision=data.get("r"),
                content=data["h"],
                values=data.get("v", {}),
                packed=data.get("p", ""),
                extra=data.get("x", {}),
            )
        # The first format kept every short value by name and hex blake2b digests of the rest.
        return cls(
            revision=data.get("r"),
            content=_from_hex(data["h"], _CONTENT_BYTES),
            values=data.get("v", {}),
            extra={name: _from_hex(digest, _DIGEST_BYTES) for name, digest in data.get("d", {}).items()},
        )


def _from_hex(digest: str, size: int) -> str:
    """A first-format hex hash in this format (a prefix of the same hash)."""
    try:
        return _b64(bytes.fromhex(digest)[:size])
    except (TypeError, ValueError):
        return str(digest)  # unreadable: it then never matches, so the field reads as changed


class Snapshotter:
    """Builds and compares snapshots for one resource.

    Parameters
    ----------
    resource:
        The catalogue entry: its swagger fields say which values are references, datetimes ...,
        and their order is the order of a snapshot's packed digests.
    keep:
        Fields whose full value snapshots keep (the ones loaded rules compare), however long.
        Every other field is kept as a digest only: its changes are detected, with ``old`` None.
    """

    def __init__(self, resource: Resource, *, keep: Collection[str] = ()) -> None:
        self.resource = resource
        self.specs = resource.fields
        self.has_timestamps = resource.has_timestamps  # asked for every record read
        self.keep = frozenset(keep)
        self.layout = tuple(n for n in self.specs if n not in VOLATILE_FIELDS and n != "id")
        self.tag = layout_tag(self.layout)

    def compared_fields(self, record: Mapping[str, Any]) -> list[str]:
        """The resource's fields plus any extra ones the service sends, minus the volatile ones."""
        names = dict.fromkeys([*self.layout, *record])
        return [n for n in names if n not in VOLATILE_FIELDS and n != "id"]

    def revision(self, record: Mapping[str, Any]) -> str | None:
        """The revision :meth:`take` stores: the record's ``updated_at`` (None without one)."""
        if not self.has_timestamps:
            return None
        return revision_of(record.get("updated_at"))

    def normals(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Every compared field the record has, in its normal form."""
        return {
            name: normal_form(record[name], self.specs.get(name))
            for name in self.compared_fields(record)
            if name in record
        }

    def take(self, record: Mapping[str, Any]) -> Snapshot:
        normals = self.normals(record)
        values: dict[str, Any] = {}
        slots: list[str] = []
        extra: dict[str, str] = {}
        for name, normal in normals.items():
            if name in self.keep:
                values[name] = _kept_value(record[name], self.specs.get(name))
            elif name not in self.specs:
                extra[name] = slot(normal)
        for name in self.layout:
            if name not in normals:
                slots.append(_ABSENT)
            else:
                slots.append(_KEPT if name in values else slot(normals[name]))
        packed = "".join(slots).rstrip(_ABSENT)
        return Snapshot(
            revision=self.revision(record),
            content=content_hash(normals),
            values=values,
            packed=self.tag + packed if packed else "",
            extra=extra,
        )

    def changes(self, old: Snapshot, new_record: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``{field: (old, new)}`` for every field whose normal form differs.

        ``old`` is the kept value, or None for a field the snapshot kept only as a digest.
        """
        digests = self._digests(old)
        if digests is None:
            return self._changes_without_digests(old, new_record)
        changed: dict[str, tuple[Any, Any]] = {}
        for name in dict.fromkeys([*self.compared_fields(new_record), *old.values, *digests]):
            if name in VOLATILE_FIELDS or name == "id":
                continue
            spec = self.specs.get(name)
            new_value = new_record.get(name)
            new_normal = normal_form(new_value, spec)
            if name in old.values:
                old_value = old.values[name]
                if normal_form(old_value, spec) != new_normal:
                    changed[name] = (old_value, new_value)
            elif name in digests:
                if digests[name] != slot(new_normal):
                    changed[name] = (None, new_value)
            elif new_value is not None:
                changed[name] = (None, new_value)  # a field the service did not send before
        return changed

    def _digests(self, old: Snapshot) -> dict[str, str] | None:
        """The snapshot's digests by field name; None when it was packed for another layout."""
        found = dict(old.extra)
        if not old.packed:
            return found
        if old.packed[:_TAG_CHARS] != self.tag:
            return None
        try:
            slots = list(_split_slots(old.packed[_TAG_CHARS:]))
        except ValueError:
            return None
        if len(slots) > len(self.layout):
            return None
        for name, value in zip(self.layout, slots, strict=False):
            if value not in (_ABSENT, _KEPT):
                found[name] = value
        return found

    def _changes_without_digests(
        self, old: Snapshot, new_record: Mapping[str, Any]
    ) -> dict[str, tuple[Any, Any]]:
        """Compare with a snapshot packed for another catalogue (ppw was upgraded meanwhile).

        Its digests cannot be matched to fields, only the content hash and the kept values can be
        compared. So that no change is lost, a record whose content changed reports every field
        it does not keep as changed (with ``old`` None), once; its new snapshot is readable again.
        """
        if content_hash(self.normals(new_record)) == old.content:
            return {}
        changed: dict[str, tuple[Any, Any]] = {}
        for name in dict.fromkeys([*self.compared_fields(new_record), *old.values]):
            spec = self.specs.get(name)
            new_value = new_record.get(name)
            if name in old.values:
                if normal_form(old.values[name], spec) != normal_form(new_value, spec):
                    changed[name] = (old.values[name], new_value)
            elif name in new_record:
                changed[name] = (None, new_value)
        return changed
