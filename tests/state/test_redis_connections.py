"""The Redis backend's connections: one per thread, and an outage costs no caller an error after it.

Each thread keeps a connection of its own instead of borrowing one from the pool per command; a
connection the server closed (a restart) is found before it is used again, as the pool would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.chaos.harness import PrivateRedis
from worker.state import key
from worker.state.redis import RedisStore


@pytest.fixture
def private(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.close()


def test_each_thread_keeps_one_connection(private: PrivateRedis) -> None:
    store = RedisStore(private.url)
    seen: list[int] = []
    together = threading.Barrier(4)  # all four alive at once, so no connection is handed on

    def work() -> None:
        for _ in range(20):
            store.set(key("c", "k"), "v")
        seen.append(id(store._client.connection))
        together.wait(10)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 4
    clients = redis.Redis.from_url(private.url).client_list()
    assert len(clients) <= 4 + 2  # the four threads' connections, this one, and at most one spare
    store.close()


def test_the_first_command_after_a_restart_succeeds(private: PrivateRedis) -> None:
    store = RedisStore(private.url)
    k = key("c", "kept")
    store.set(k, "before")
    private.stop()
    private.start()  # AOF: the value is back
    time.sleep(0.6)  # idle long enough to be checked before use
    assert store.get(k) == "before"
    store.close()
