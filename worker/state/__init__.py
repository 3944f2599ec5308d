"""State: cursors, snapshots, held batches, ledger, run history, tokens, locks.

``open_store(settings.state_url)`` picks the backend from the URL: Redis for deployments with
several processes or hosts, SQLite for the embedded single-machine default.
"""

from __future__ import annotations

from pathlib import Path

from worker.state.backup import (
    BackupError,
    BackupFileError,
    ExportResult,
    ImportIncomplete,
    ImportResult,
    TargetNotEmpty,
    export_state,
    import_state,
)
from worker.state.base import StateError, StateStore, Turn, WriteBatch, key
from worker.state.durability import UnsafeStateStore, check_durability
from worker.state.locks import LEASE_KEYS, Lease, is_lease_key, keep_alive, lock, stop_keeping, try_lock
from worker.state.recording import RecordingBatch
from worker.state.usage import KindUsage, usage_by_kind

__all__ = [
    "LEASE_KEYS",
    "BackupError",
    "BackupFileError",
    "ExportResult",
    "ImportIncomplete",
    "ImportResult",
    "KindUsage",
    "Lease",
    "RecordingBatch",
    "StateError",
    "StateStore",
    "TargetNotEmpty",
    "Turn",
    "UnsafeStateStore",
    "WriteBatch",
    "check_durability",
    "export_state",
    "import_state",
    "is_lease_key",
    "keep_alive",
    "key",
    "lock",
    "open_store",
    "sqlite_path",
    "stop_keeping",
    "try_lock",
    "usage_by_kind",
]

_SQLITE_PREFIX = "sqlite:///"


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` URL."""
    if not url.startswith(_SQLITE_PREFIX):
        raise ValueError(f"not a SQLite state URL (expected {_SQLITE_PREFIX}<path>): {url!r}")
    raw = url[len(_SQLITE_PREFIX) :].split("?", 1)[0]
    if not raw or raw == ":memory:":
        raise ValueError(
            f"a SQLite state URL needs a file path (state is shared between threads and processes): {url!r}"
        )
    return Path(raw)


def open_store(url: str) -> StateStore:
    """The state store for ``url``.

    ``redis://`` and ``rediss://`` open a :class:`~worker.state.redis.RedisStore`;
    ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` a
    :class:`~worker.state.sqlite.SqliteStore` (parent directories are created).
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        from worker.state.redis import RedisStore  # lazy: only the backend in use is imported

        return RedisStore(url)
    if scheme == "sqlite":
        from worker.state.sqlite import SqliteStore  # lazy: only the backend in use is imported

        return SqliteStore(sqlite_path(url))
    shown = url if "@" not in url else url.split("://", 1)[0] + "://***"
    raise ValueError(
        f"unsupported PPW_STATE_URL {shown!r}: use redis://host:port/db, rediss://... "
        "or sqlite:///relative/path.db (sqlite:////absolute/path.db)"
    )
