"""What the poller remembers about each record: the whole record, compressed, to tell what changed.

An account's state holds one snapshot per record, so a snapshot must stay small (the budget is
300 bytes of state per record at 100,000 records, docs/benchmarks.md). The snapshot format 3
(written since issue #16) holds

* the record's revision (its ``updated_at``) as 8 bytes of microseconds, read without
  decompressing anything, so the usual re-read of the overlap costs no decompression;
* the whole record as JSON (minus its ``id``, the hash field already, and its ``updated_at``
  when the revision renders it back exactly), compressed with zstd and the resource's dictionary
  (:mod:`~worker.polling.dictionaries`), whose id it names;
* for resources without ``updated_at`` only, the content hash (the event revision there).

So ``changes.<field>.old`` is the exact old value of every changed field, references with their
display names, lists and nested values included, and ``previous`` is the whole old record.

Snapshots of earlier versions keep loading (:meth:`Snapshot.decode`): format 1 (JSON without
``f``: short values by name, hex digests of the rest) and format 2 (``"f":2``: the values rules
compared, digests packed in the catalogue's order). Where they hold only a digest, a change
reports ``old_known=False``; the snapshot written after it is format 3.

Values are compared in a normal form, so cosmetic differences never look like changes:

* references (``matter_ref`` ...) by id only, so renaming the matter does not "change" its tasks;
* lists of references, tags and other collections as unordered sets;
* datetimes as instants (``2026-04-04T00:00:00`` and ``2026-04-04T00:00:00Z`` are equal);
* uuids case-insensitively, and numbers by value (``200`` and ``200.0`` are equal).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import zstandard

from worker.errors import PpwError
from worker.events import Change
from worker.polling.dictionaries import Codec, Dictionaries, DictionaryMissing
from worker.practicepanther import customfields
from worker.practicepanther.odata import TIMESTAMP_CACHE, parse_timestamp
from worker.practicepanther.resources import FieldSpec, Resource
from worker.state.base import StateStore

log = logging.getLogger(__name__)

#: Never compared: they move on every save, or never change.
VOLATILE_FIELDS = frozenset({"updated_at", "created_at"})
#: The snapshot format :meth:`Snapshot.encode` writes (binary); 1 and 2 were JSON text.
FORMAT = 3

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


# format 3: b"\x03", a flags byte, then the parts the flags name, then the payload --------------
_CODEC_MASK = 0b11
_RAW, _ZSTD, _ZSTD_DICT = 0, 1, 2  # the payload's codec
_HAS_REVISION = 0b100
_HAS_CONTENT = 0b1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SnapshotUnreadable(PpwError, ValueError):
    """A stored snapshot cannot be read (cut short, corrupt, or its dictionary is gone).

    The poller logs it as an error and reports the record's fields as changed with an unknown
    old value, so no change is lost; the record's next snapshot is readable again.
    """


def _revision_micros(revision: str) -> int:
    moment = datetime.strptime(revision, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _micros_revision(micros: int) -> str:
    return revision_text(_EPOCH + timedelta(microseconds=micros))


def _pp_timestamp(revision: str) -> str:
    """``updated_at`` as PracticePanther writes it (milliseconds, no zone): dropped from the
    payload when the record's text is exactly this, since the revision gives it back."""
    return revision[:23]


@dataclass(frozen=True)
class Snapshot:
    """One record as last seen.

    ``revision`` is the fixed-width ``updated_at`` (None for resources without one); ``content``
    hashes every compared field (stored only where there is no revision, else None once
    loaded). A format-3 snapshot holds the compressed record in ``payload`` (``codec``,
    ``dictionary``), read by :meth:`Snapshotter.restore`. Older formats hold ``values`` (the
    fields rules compared), ``packed`` digests in the catalogue's order behind the layout's tag,
    and ``extra`` digests by name (see :meth:`Snapshotter.changes`).
    """

    revision: str | None
    content: str | None
    values: dict[str, Any] = field(default_factory=dict)
    packed: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT
    codec: int = _RAW
    dictionary: int | None = None
    payload: bytes = b""

    @property
    def holds_record(self) -> bool:
        """Whether the whole record is in it (format 3), so every old value is known."""
        return self.format >= 3

    def encode(self) -> bytes:
        """The stored bytes (format 3): a snapshot of an older format is never written back."""
        flags = self.codec
        parts = [b""]
        if self.revision is not None:
            flags |= _HAS_REVISION
            parts.append(_revision_micros(self.revision).to_bytes(8, "big", signed=True))
        if self.codec == _ZSTD_DICT:
            parts.append((self.dictionary or 0).to_bytes(4, "big"))
        if self.revision is None and self.content is not None:
            flags |= _HAS_CONTENT
            parts.append(_unb64(self.content))
        parts[0] = bytes((FORMAT, flags))
        parts.append(self.payload)
        return b"".join(parts)

    @classmethod
    def decode(cls, raw: bytes) -> Snapshot:
        """Read stored bytes of any format; raises :class:`SnapshotUnreadable`."""
        if raw[:1] == b"{":
            try:
                return cls.loads(raw.decode())
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
                raise SnapshotUnreadable(f"an old-format snapshot is not readable JSON: {exc}") from None
        if len(raw) < 2 or raw[0] != FORMAT:
            raise SnapshotUnreadable(f"unknown snapshot format {raw[:1]!r}")
        flags, at = raw[1], 2
        revision = content = None
        dictionary = None
        if flags & _HAS_REVISION:
            revision = _micros_revision(int.from_bytes(raw[at : at + 8], "big", signed=True))
            at += 8
        codec = flags & _CODEC_MASK
        if codec == _ZSTD_DICT:
            dictionary = int.from_bytes(raw[at : at + 4], "big")
            at += 4
        if flags & _HAS_CONTENT:
            content = _b64(raw[at : at + _CONTENT_BYTES])
            at += _CONTENT_BYTES
        if at > len(raw):
            raise SnapshotUnreadable("a snapshot is cut short")
        return cls(revision, content, codec=codec, dictionary=dictionary, payload=raw[at:])

    def dumps(self) -> str:
        """The format-2 JSON text (what versions before format 3 wrote; kept for upgrade tests)."""
        data: dict[str, Any] = {"f": 2}
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
        """Read a format-2 snapshot (``"f":2``) or a format-1 one (no ``f``: ``v`` and ``d`` by name)."""
        data = json.loads(text)
        if "f" in data:
            return cls(
                revision=data.get("r"),
                content=data["h"],
                values=data.get("v", {}),
                packed=data.get("p", ""),
                extra=data.get("x", {}),
                format=int(data["f"]),
            )
        # The first format kept every short value by name and hex blake2b digests of the rest.
        return cls(
            revision=data.get("r"),
            content=_from_hex(data["h"], _CONTENT_BYTES),
            values=data.get("v", {}),
            extra={name: _from_hex(digest, _DIGEST_BYTES) for name, digest in data.get("d", {}).items()},
            format=1,
        )


#: What an unreadable stored snapshot loads as: a record seen before whose past is unknown, so
#: its next change fires as ``updated`` with ``old_known=False`` (not as ``created``, not lost).
UNREADABLE = Snapshot(revision=None, content=None, format=0)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _from_hex(digest: str, size: int) -> str:
    """A first-format hex hash in this format (a prefix of the same hash)."""
    try:
        return _b64(bytes.fromhex(digest)[:size])
    except (TypeError, ValueError):
        return str(digest)  # unreadable: it then never matches, so the field reads as changed


#: Changes derived from a record pair beyond its own fields (custom fields by label ...):
#: ``(old record, new record) -> {name: (old, new)}``.
DerivedChanges = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, tuple[Any, Any]]]


def default_derived(resource: Resource) -> tuple[DerivedChanges, ...]:
    """The derived changes every snapshotter of ``resource`` reports: its custom fields by label."""
    if resource.name not in customfields.VALUES_FIELDS:
        return ()
    return (functools.partial(customfields.expand_changes, resource.name),)


class Snapshotter:
    """Builds, reads and compares snapshots for one resource.

    Parameters
    ----------
    resource:
        The catalogue entry: its swagger fields say which values are references, datetimes ...,
        and their order is the order of an old-format snapshot's packed digests.
    dictionaries:
        The resource's compression dictionaries (:func:`snapshotter_for` loads them from the
        state store); none given: in memory only, trained by :meth:`train`.
    derived:
        Functions adding changes derived from the old and the new record (the one place changes
        are computed is :meth:`compare`, so a derived change is reported wherever a field is);
        None: :func:`default_derived` (``custom.<label>`` for resources with custom fields).
    """

    def __init__(
        self,
        resource: Resource,
        *,
        dictionaries: Dictionaries | None = None,
        derived: Sequence[DerivedChanges] | None = None,
    ) -> None:
        self.resource = resource
        self.specs = resource.fields
        self.has_timestamps = resource.has_timestamps  # asked for every record read
        self.layout = tuple(n for n in self.specs if n not in VOLATILE_FIELDS and n != "id")
        self.tag = layout_tag(self.layout)
        self.dictionaries = dictionaries or Dictionaries(resource=resource.name)
        self.codec = Codec(self.dictionaries)
        self.derived = tuple(derived) if derived is not None else default_derived(resource)

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

    # writing -------------------------------------------------------------------------------
    def encoded(self, record: Mapping[str, Any], revision: str | None = None) -> bytes:
        """The record as a snapshot stores it before compression (also a training sample)."""
        drop_stamp = revision is not None and record.get("updated_at") == _pp_timestamp(revision)
        body = {k: v for k, v in record.items() if k != "id" and not (drop_stamp and k == "updated_at")}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()

    def train(self, records: Sequence[Mapping[str, Any]]) -> int | None:
        """Train the resource's dictionary on ``records`` (see :mod:`~worker.polling.dictionaries`)."""
        return self.dictionaries.train(self.encoded(r, self.revision(r)) for r in records)

    def take(self, record: Mapping[str, Any]) -> Snapshot:
        revision = self.revision(record)
        raw = self.encoded(record, revision)
        dict_id = self.dictionaries.current
        codec, payload = _RAW, raw
        packed = self.codec.compress(raw, dict_id)
        if len(packed) < len(raw):
            codec, payload = (_ZSTD if dict_id is None else _ZSTD_DICT), packed
        return Snapshot(
            revision=revision,
            # only where there is no revision: hashing a 2 KB record's normal form is a third of
            # a priming's CPU, and a revision tells seen from new without it
            content=content_hash(self.normals(record)) if revision is None else None,
            codec=codec,
            dictionary=dict_id if codec == _ZSTD_DICT else None,
            payload=payload,
        )

    # reading -------------------------------------------------------------------------------
    def restore(self, snapshot: Snapshot, record_id: str | None = None) -> dict[str, Any] | None:
        """The whole record a snapshot holds (with ``id`` when given); None for formats 1 and 2.

        Raises :class:`SnapshotUnreadable` when the payload is corrupt or its dictionary gone.
        """
        if not snapshot.holds_record:
            return None
        try:
            if snapshot.codec == _RAW:
                raw = snapshot.payload
            else:
                dict_id = snapshot.dictionary if snapshot.codec == _ZSTD_DICT else None
                raw = self.codec.decompress(snapshot.payload, dict_id)
            body = json.loads(raw)
        except DictionaryMissing as exc:
            raise SnapshotUnreadable(str(exc)) from None
        except (zstandard.ZstdError, ValueError) as exc:
            raise SnapshotUnreadable(f"{self.resource.name}: a snapshot is corrupt: {exc}") from None
        if not isinstance(body, dict):
            raise SnapshotUnreadable(f"{self.resource.name}: a snapshot holds no record")
        record: dict[str, Any] = {"id": record_id} if record_id is not None else {}
        record.update(body)
        if snapshot.revision is not None and "updated_at" not in body and self.has_timestamps:
            record["updated_at"] = _pp_timestamp(snapshot.revision)
        return record

    # comparing -----------------------------------------------------------------------------
    def compare(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Change]:
        """Every field whose normal form differs, with its exact old and new value.

        The one place changes are computed from two whole records; :attr:`derived` adds the
        changes derived from them (custom fields by label ...).
        """
        changed: dict[str, Change] = {}
        for name in dict.fromkeys([*self.compared_fields(new), *self.compared_fields(old)]):
            spec = self.specs.get(name)
            old_value, new_value = old.get(name), new.get(name)
            if normal_form(old_value, spec) != normal_form(new_value, spec):
                changed[name] = Change(old=old_value, new=new_value)
        for derive in self.derived:
            for name, (old_value, new_value) in derive(old, new).items():
                changed[name] = Change(old=old_value, new=new_value)
        return changed

    def changes(
        self, old: Snapshot, new_record: Mapping[str, Any], record_id: str | None = None
    ) -> dict[str, Change]:
        """``{field: Change}`` for every field whose normal form differs.

        From a format-3 snapshot every old value is exact. From an older one, a field it kept
        only as a digest, or did not hold at all, has ``old_known=False``; so does every field
        when the snapshot cannot be read (logged as an error: the change is reported, not lost).
        """
        if old.holds_record:
            try:
                restored = self.restore(old, record_id)
            except SnapshotUnreadable as exc:
                log.error(
                    "%s %s: %s; every field is reported as changed with an unknown old value",
                    self.resource.name,
                    record_id or "?",
                    exc,
                )
                return self._all_unknown({}, new_record)
            assert restored is not None
            return self.compare(restored, new_record)
        digests = self._digests(old)
        if digests is None:
            if old.content is not None and content_hash(self.normals(new_record)) == old.content:
                return {}
            return self._all_unknown(old.values, new_record)
        changed: dict[str, Change] = {}
        for name in dict.fromkeys([*self.compared_fields(new_record), *old.values, *digests]):
            if name in VOLATILE_FIELDS or name == "id":
                continue
            spec = self.specs.get(name)
            new_value = new_record.get(name)
            new_normal = normal_form(new_value, spec)
            if name in old.values:
                old_value = old.values[name]
                if normal_form(old_value, spec) != new_normal:
                    changed[name] = Change(old=old_value, new=new_value)
            elif name in digests:
                if digests[name] != slot(new_normal):
                    changed[name] = Change(new=new_value, old_known=False)
            elif new_value is not None:
                changed[name] = Change(new=new_value, old_known=False)  # not sent before, or unknown
        return changed

    def previous(self, old: Snapshot, record_id: str | None = None) -> dict[str, Any] | None:
        """What an event reports as ``previous``: the whole old record (format 3), the values an
        older snapshot kept, or None when nothing is known."""
        if old.holds_record:
            try:
                return self.restore(old, record_id)
            except SnapshotUnreadable:
                return None
        return dict(old.values) or None

    def content_of(self, snapshot: Snapshot) -> str | None:
        """The snapshot's content hash: stored, or computed from the record it holds (a format-3
        snapshot of a resource with revisions stores none; only a record whose ``updated_at`` is
        missing or unreadable needs it). None when neither is there."""
        if snapshot.content is not None or not snapshot.holds_record:
            return snapshot.content
        try:
            restored = self.restore(snapshot)
        except SnapshotUnreadable:
            return None
        return content_hash(self.normals(restored)) if restored is not None else None

    def _digests(self, old: Snapshot) -> dict[str, str] | None:
        """An old snapshot's digests by field name; None when it was packed for another layout."""
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

    def _all_unknown(self, kept: Mapping[str, Any], new_record: Mapping[str, Any]) -> dict[str, Change]:
        """Every field the new record has, as changed from an unknown old value (kept values are
        compared as usual): what cannot be compared is reported once rather than missed."""
        changed: dict[str, Change] = {}
        for name in dict.fromkeys([*self.compared_fields(new_record), *kept]):
            spec = self.specs.get(name)
            new_value = new_record.get(name)
            if name in kept:
                if normal_form(kept[name], spec) != normal_form(new_value, spec):
                    changed[name] = Change(old=kept[name], new=new_value)
            elif name in new_record:
                changed[name] = Change(new=new_value, old_known=False)
        return changed


def snapshotter_for(
    store: StateStore,
    connection: str,
    resource: Resource,
    *,
    persist: bool = True,
    derived: Sequence[DerivedChanges] | None = None,
) -> Snapshotter:
    """A :class:`Snapshotter` with the resource's dictionaries from ``store``.

    How anything that reads or writes stored snapshots gets one (the poller, the deletion
    reconciler, ``ppw rules explain``). ``persist=False`` (a dry run) stores no dictionary it
    trains. One per thread: its zstd contexts are not thread-safe.
    """
    dictionaries = Dictionaries(store, connection, resource.name, persist=persist)
    return Snapshotter(resource, dictionaries=dictionaries, derived=derived)
