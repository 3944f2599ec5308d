"""The services a benchmark runs against, and how it leaves them as it found them.

Benchmarks share Redis with the test suite and with other people's work, so everything a run
writes lives under its own names (a unique connection id, queue prefix and broker namespace) and
is deleted afterwards; nothing here ever flushes a database.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from worker.settings import Settings

REDIS_URL = os.environ.get("PPW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
#: Worker threads of every benchmark (and of its ceiling): the shipped ``PPW_WORKER_THREADS``.
THREADS: int = Settings.model_fields["worker_threads"].default


def unique(prefix: str = "bench") -> str:
    """A short name nobody else uses: ``bench3f9a1c2b``."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def redis_available(url: str = REDIS_URL) -> str | None:
    """None when Redis answers at ``url``, else why not (a benchmark then reports itself skipped)."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"Redis does not answer at {url}: {exc}"
    return None


def redis_version(url: str = REDIS_URL) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        version = str(client.info("server").get("redis_version"))
        client.close()
        return version
    except redis.RedisError:
        return None


def delete_matching(url: str, pattern: str) -> int:
    """Delete the keys matching ``pattern`` (SCAN, never KEYS or FLUSHDB)."""
    client = redis.Redis.from_url(url)
    deleted = 0
    batch: list[Any] = []
    for found in client.scan_iter(match=pattern, count=1000):
        batch.append(found)
        if len(batch) >= 500:
            deleted += int(client.delete(*batch))
            batch = []
    if batch:
        deleted += int(client.delete(*batch))
    client.close()
    return deleted


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Namespace:
    """The names one benchmark run writes under, on whichever backends it uses."""

    connection: str
    queue_prefix: str

    @property
    def state_pattern(self) -> str:
        """The connection's keys and those of the connections a benchmark derives from it
        (``<connection>-restart``, ``-burst`` ...)."""
        return f"ppw:{self.connection}*"

    @property
    def broker_pattern(self) -> str:
        return f"dramatiq-{self.queue_prefix}*"


@contextmanager
def namespace(redis_url: str | None = REDIS_URL) -> Iterator[Namespace]:
    """A fresh :class:`Namespace`; its Redis keys (state and broker) are deleted on exit."""
    name = unique()
    ns = Namespace(connection=name, queue_prefix=f"ppw_{name}")
    try:
        yield ns
    finally:
        if redis_url and redis_available(redis_url) is None:
            delete_matching(redis_url, ns.state_pattern)
            delete_matching(redis_url, ns.broker_pattern)
