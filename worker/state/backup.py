"""Backups that restore: a worker's whole state to one file and back, on either backend.

``ppw state export FILE`` and ``ppw state import FILE`` (worker/commands/state.py) call
:func:`export_state` and :func:`import_state`, which use nothing but the :class:`StateStore`
interface, so a backup taken from Redis restores into SQLite and the other way round.

The file is gzip'ed JSON lines (:data:`FORMAT`, version :data:`VERSION`)::

    {"format": "ppw-state-backup", "version": 1, "ppw": "0.1.0", "backend": "redis",
     "connections": ["default"], "exported_at": "2026-01-05T10:00:00+00:00", "keys": 3, "lines": 3}
    {"k": "ppw:default:cursor:matters", "t": "string", "ttl": null, "v": "{...}"}
    {"k": "ppw:default:snap:matters", "t": "hash", "ttl": null, "v": {"id1": {"$b64": "KLUv..."}}}
    {"k": "ppw:default:timers", "t": "zset", "ttl": null, "v": [["run-1", 1767607200.0]]}

* The header comes first; ``keys`` counts keys and ``lines`` the lines after the header.
* ``t`` is ``string``, ``hash`` or ``zset``; ``ttl`` the seconds the key had left when it was
  exported (null: no expiry), given to it again when it is imported.
* A hash value that is not UTF-8 text (a compressed snapshot) is ``{"$b64": "<base64>"}``; a sorted
  set is ``[[member, score], ...]``.
* A large hash or sorted set is split over consecutive lines of the same key, at most
  :data:`PART` fields or members each, so neither export nor import holds it whole as one line.
* Leases (:func:`~worker.state.locks.is_lease_key`) are left out: a restored lease would block the
  work it guards until it lapsed. Tokens are exported as stored (encrypted when
  ``PPW_TOKEN_ENCRYPTION_KEY`` is set), never decrypted.

The export is a live scan, not a snapshot: keys written while it runs may or may not be in it. A
run in flight during the export may therefore run once more after a restore, which its ledger
makes harmless (steps already done are not repeated). The file is written as ``FILE.tmp`` and
renamed when complete, so ``FILE`` is never half-written. The body is streamed through a temporary
file (the header, which counts the keys, is written last as its own gzip member in front).

An import reads the file twice: once to check every line (nothing is written when the file is
corrupt or cut short), then to write it in batches, each applied whole by ``store.batch()``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker import __version__
from worker.errors import PpwError
from worker.state.base import PREFIX, StateError, StateStore, key
from worker.state.locks import is_lease_key

FORMAT = "ppw-state-backup"
VERSION = 1
#: Fields (or members) per line of a large hash (sorted set), and per read of a hash.
PART = 1000
#: A write batch is applied once it holds this many fields, members or keys ...
BATCH_ITEMS = 2000
#: ... or this many bytes of values.
BATCH_BYTES = 4 * 1024 * 1024
TYPES = ("string", "hash", "zset")
_B64 = "$b64"
_HEADER_FIELDS = ("format", "version", "ppw", "backend", "connections", "exported_at", "keys", "lines")


class BackupError(PpwError, ValueError):
    """A backup could not be written or read: the message says which file, line and why."""


class BackupFileError(BackupError):
    """The backup file is not a complete, valid ppw state backup (nothing was imported)."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        where = f"{path}: line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line


class TargetNotEmpty(BackupError):
    """The connection to restore into already holds state; ``--replace`` deletes it first."""


class ImportIncomplete(BackupError):
    """The import stopped part-way (the state store failed); re-run it with ``--replace``."""


@dataclass
class ExportResult:
    """What :func:`export_state` wrote."""

    path: Path
    connections: list[str]
    keys: int = 0
    lines: int = 0
    skipped_leases: int = 0
    header: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportResult:
    """What :func:`import_state` did."""

    path: Path
    connections: list[str]
    keys: int = 0
    lines: int = 0
    deleted: int = 0
    header: dict[str, Any] = field(default_factory=dict)


def connection_prefix(connection: str) -> str:
    """``ppw:<connection>:``: every key of the connection starts with it."""
    return key(connection) + ":"


def connections_in(store: StateStore) -> list[str]:
    """Every connection id that has a key in ``store`` (leases alone count too)."""
    found: set[str] = set()
    for k in store.scan(PREFIX + ":"):
        parts = k.split(":", 2)
        if len(parts) == 3 and parts[1]:
            found.add(parts[1])
    return sorted(found)


def state_keys(store: StateStore, connection: str) -> Iterator[str]:
    """The connection's keys a backup holds: all but the leases."""
    return (k for k in store.scan(connection_prefix(connection)) if not is_lease_key(k))


def backend_name(store: StateStore) -> str:
    scheme = store.url.split(":", 1)[0].lower()
    return {"rediss": "redis", "unix": "redis"}.get(scheme, scheme)


# export -------------------------------------------------------------------------------------
def _encode_value(value: bytes) -> str | dict[str, str]:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {_B64: base64.b64encode(value).decode("ascii")}


def _remaining(store: StateStore, k: str) -> tuple[bool, float | None]:
    """(still live, seconds left rounded to milliseconds or None)."""
    ttl = store.ttl(k)
    if ttl is None:
        return True, None
    if ttl <= 0.001:
        return False, None  # expiring as we read it: leave it out
    return True, round(ttl, 3)


def _key_lines(store: StateStore, k: str) -> Iterator[dict[str, Any]]:
    """The lines of one key; none when it vanished (expired, deleted) while it was read."""
    kind = store.key_type(k)
    if kind is None:
        return
    if kind not in TYPES:
        raise BackupError(f"key {k!r} is a Redis {kind}: ppw keeps only strings, hashes and sorted sets")
    live, ttl = _remaining(store, k)
    if not live:
        return
    if kind == "string":
        value = store.get(k)
        if value is not None:
            yield {"k": k, "t": kind, "ttl": ttl, "v": value}
    elif kind == "hash":
        names = store.hkeys(k)
        for start in range(0, len(names), PART):
            chunk = names[start : start + PART]
            values = store.hmget_bytes(k, chunk)
            part = {n: _encode_value(v) for n, v in zip(chunk, values, strict=True) if v is not None}
            if part:
                yield {"k": k, "t": kind, "ttl": ttl, "v": part}
    else:
        members = store.zrange_by_score(k)
        for start in range(0, len(members), PART):
            yield {"k": k, "t": kind, "ttl": ttl, "v": [[m, s] for m, s in members[start : start + PART]]}


def _dump(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def export_state(
    store: StateStore,
    path: str | os.PathLike[str],
    connections: Sequence[str] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> ExportResult:
    """Write every key of ``connections`` (None: every connection in the store) to ``path``.

    Parameters
    ----------
    store:
        The state store to read (it is only read).
    path:
        The backup file; written as ``<path>.tmp`` and renamed once complete.
    connections:
        Connection ids to export; None exports all of them (``ppw state export --all``).
    clock:
        The time written to the header as ``exported_at``.
    """
    target = Path(path)
    chosen = sorted(set(connections)) if connections is not None else connections_in(store)
    result = ExportResult(path=target, connections=list(chosen))
    exported_at = datetime.fromtimestamp(clock(), UTC).isoformat()
    partial = target.with_name(target.name + ".tmp")
    try:
        with tempfile.TemporaryFile(dir=target.parent, prefix=f".{target.name}.") as spool:
            with gzip.GzipFile(fileobj=spool, mode="wb", compresslevel=6, mtime=0) as body:
                for connection in chosen:
                    for k in store.scan(connection_prefix(connection)):
                        if is_lease_key(k):
                            result.skipped_leases += 1
                            continue
                        wrote = False
                        for line in _key_lines(store, k):
                            body.write(_dump(line))
                            result.lines += 1
                            wrote = True
                        result.keys += wrote
            result.header = {
                "format": FORMAT,
                "version": VERSION,
                "ppw": __version__,
                "backend": backend_name(store),
                "connections": result.connections,
                "exported_at": exported_at,
                "keys": result.keys,
                "lines": result.lines,
            }
            spool.seek(0)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # tokens are inside
            with os.fdopen(fd, "wb") as out:
                # Two gzip members make one gzip file: the header's, then the body's.
                out.write(gzip.compress(_dump(result.header), mtime=0))
                shutil.copyfileobj(spool, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return result


# import -------------------------------------------------------------------------------------
@dataclass
class _Line:
    number: int
    key: str
    kind: str
    ttl: float | None
    value: Any

    def size(self) -> tuple[int, int]:
        """(items, approximate bytes) this line adds to a batch."""
        if self.kind == "string":
            return 1, len(self.value)
        if self.kind == "hash":
            return len(self.value), sum(len(name) + len(v) for name, v in self.value.items())
        return len(self.value), sum(len(member) + 8 for member in self.value)


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line; a damaged or cut-short file raises with the line."""
    number = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="\n") as source:
            for number, text in enumerate(source, start=1):
                if not text.endswith("\n"):
                    raise BackupFileError(path, number, "the line is cut short (the file is truncated)")
                yield number, text
    except FileNotFoundError:
        raise BackupFileError(path, None, "no such file") from None
    except EOFError:
        raise BackupFileError(
            path, number + 1, "the file ends in the middle of its gzip stream (truncated)"
        ) from None
    except (gzip.BadGzipFile, zlib.error, UnicodeDecodeError) as exc:
        raise BackupFileError(
            path, number + 1 if number else None, f"not a readable gzip'ed ppw backup ({exc})"
        ) from None
    except OSError as exc:
        raise BackupFileError(path, None, f"cannot read it: {exc}") from None


def _header(path: Path, number: int, text: str) -> dict[str, Any]:
    try:
        header = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackupFileError(path, number, f"expected the JSON header line ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupFileError(path, number, f'expected a header with "format": "{FORMAT}"')
    missing = [name for name in _HEADER_FIELDS if name not in header]
    if missing:
        raise BackupFileError(path, number, f"the header lacks {', '.join(missing)}")
    if header["version"] != VERSION:
        raise BackupFileError(
            path, number, f"format version {header['version']!r}; this ppw reads version {VERSION}"
        )
    connections = header["connections"]
    if (
        not isinstance(connections, list)
        or not all(isinstance(c, str) and c and ":" not in c for c in connections)
        or len(set(connections)) != len(connections)
    ):
        raise BackupFileError(path, number, 'expected "connections" to be a list of connection ids')
    for name in ("keys", "lines"):
        if not isinstance(header[name], int) or isinstance(header[name], bool) or header[name] < 0:
            raise BackupFileError(path, number, f'expected "{name}" to be a count (a whole number >= 0)')
    return header


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse(path: Path, number: int, text: str, prefixes: tuple[str, ...]) -> _Line:
    def bad(problem: str) -> BackupFileError:
        return BackupFileError(path, number, problem)

    try:
        line = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"invalid JSON ({exc})") from None
    if not isinstance(line, dict) or set(line) != {"k", "t", "ttl", "v"}:
        raise bad('expected an object with exactly "k", "t", "ttl" and "v"')
    k, kind, ttl, value = line["k"], line["t"], line["ttl"], line["v"]
    if not isinstance(k, str) or not k.startswith(prefixes):
        raise bad(f"expected a key of the header's connections ({', '.join(prefixes)}...), got {k!r}")
    if kind not in TYPES:
        raise bad(f'expected "t" to be one of {", ".join(TYPES)}, got {kind!r}')
    if ttl is not None and (not _is_number(ttl) or ttl <= 0):
        raise bad(f'expected "ttl" to be null or seconds > 0, got {ttl!r}')
    if ttl is not None and kind != "string":
        raise bad(f"a {kind} with a time-to-live: the state store gives a time-to-live to strings only")
    if kind == "string":
        if not isinstance(value, str):
            raise bad('expected "v" of a string to be a JSON string')
    elif kind == "hash":
        if not isinstance(value, dict) or not value:
            raise bad('expected "v" of a hash to be an object of its fields')
        decoded: dict[str, str | bytes] = {}
        for name, item in value.items():
            if isinstance(item, str):
                decoded[name] = item
            elif isinstance(item, dict) and set(item) == {_B64} and isinstance(item[_B64], str):
                try:
                    decoded[name] = base64.b64decode(item[_B64], validate=True)
                except (binascii.Error, ValueError):
                    raise bad(f"field {name!r}: invalid base64") from None
            else:
                raise bad(f'field {name!r}: expected a string or {{"{_B64}": "<base64>"}}')
        value = decoded
    else:
        if not isinstance(value, list) or not value:
            raise bad('expected "v" of a zset to be a list of [member, score]')
        members: dict[str, float] = {}
        for item in value:
            pair = isinstance(item, list) and len(item) == 2
            if not (pair and isinstance(item[0], str) and _is_number(item[1])):
                raise bad(f"expected [member, score], got {item!r}")
            if item[1] != item[1]:
                raise bad(f"member {item[0]!r}: the score is NaN")
            members[item[0]] = float(item[1])
        value = members
    return _Line(number, k, kind, ttl, value)


def _lines(path: Path) -> tuple[dict[str, Any], Iterator[_Line]]:
    """The header, and an iterator over the checked lines after it."""
    source = _read_lines(path)
    first = next(source, None)
    if first is None:
        raise BackupFileError(path, 1, "the file is empty: expected the header line")
    header = _header(path, *first)
    prefixes = tuple(connection_prefix(c) for c in header["connections"])

    def rest() -> Iterator[_Line]:
        for number, text in source:
            yield _parse(path, number, text, prefixes)

    return header, rest()


def check_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the whole backup and check every line; its header when it is complete and valid."""
    source = Path(path)
    header, lines = _lines(source)
    keys = count = 0
    previous: str | None = None
    number = 1
    for line in lines:
        count += 1
        number = line.number
        if line.key != previous:
            keys += 1
            previous = line.key
    if count != header["lines"] or keys != header["keys"]:
        raise BackupFileError(
            source,
            number + 1,
            f"expected {header['keys']} keys in {header['lines']} lines after the header, as it says; "
            f"the file ends after {keys} keys in {count} lines (truncated?)",
        )
    return header


def _apply(store: StateStore, pending: list[_Line]) -> None:
    with store.batch() as batch:
        for line in pending:
            if line.kind == "string":
                batch.set(line.key, line.value, line.ttl)
            elif line.kind == "hash":
                text = {n: v for n, v in line.value.items() if isinstance(v, str)}
                binary = {n: v for n, v in line.value.items() if isinstance(v, bytes)}
                if text:
                    batch.hset(line.key, text)
                if binary:
                    batch.hset_bytes(line.key, binary)
            else:
                batch.zadd(line.key, line.value)


def delete_connection(store: StateStore, connection: str) -> int:
    """Delete the connection's state (all but its leases, which lapse by themselves)."""
    deleted = 0
    doomed = list(state_keys(store, connection))
    for start in range(0, len(doomed), 500):
        chunk = doomed[start : start + 500]
        with store.batch() as batch:
            batch.delete(*chunk)
        deleted += len(chunk)
    return deleted


def import_state(store: StateStore, path: str | os.PathLike[str], *, replace: bool = False) -> ImportResult:
    """Restore the backup ``path`` into ``store``.

    Parameters
    ----------
    store:
        The state store to write to, of either backend.
    path:
        A file written by :func:`export_state`. It is checked whole before anything is written.
    replace:
        Delete the state of the backup's connections first. Without it, a connection that already
        holds state (leases aside) is refused with :class:`TargetNotEmpty`.
    """
    source = Path(path)
    header = check_file(source)
    connections: list[str] = list(header["connections"])
    result = ImportResult(path=source, connections=connections, header=header)
    occupied = [c for c in connections if next(state_keys(store, c), None) is not None]
    if occupied and not replace:
        raise TargetNotEmpty(
            f"the state store already holds state of connection(s) {', '.join(occupied)}: refusing to "
            f"mix a backup into it. Stop ppw and run `ppw state import --replace {source}` to delete "
            "that state first"
        )
    done = 0  # lines written, in whole batches
    pending: list[_Line] = []
    try:
        for connection in occupied:
            result.deleted += delete_connection(store, connection)
        _, lines = _lines(source)
        items = size = 0
        previous: str | None = None
        for line in lines:
            pending.append(line)
            if line.key != previous:
                result.keys += 1
                previous = line.key
            more, weight = line.size()
            items, size = items + more, size + weight
            if items >= BATCH_ITEMS or size >= BATCH_BYTES:
                _apply(store, pending)
                done += len(pending)
                pending, items, size = [], 0, 0
        if pending:
            _apply(store, pending)
            done += len(pending)
            pending = []
    except StateError as exc:
        where = f" at line {pending[0].number}" if pending else ""
        raise ImportIncomplete(
            f"{source}: the import stopped{where}: {exc}. {done} of the backup's {header['lines']} "
            "lines were written (each batch whole or not at all), the rest not. Run "
            f"`ppw state import --replace {source}` again once the state store answers"
        ) from exc
    result.lines = done
    return result
