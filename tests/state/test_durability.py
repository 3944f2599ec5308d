"""ppw checks the Redis that keeps its state: an evicting Redis is refused, a forgetful one warned of.

Each test runs a ``redis-server`` of its own, configured as a firm's might be; the shared Redis on
6379 is never reconfigured.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import PrivateRedis
from worker.process.runtime import Runtime
from worker.settings import Settings
from worker.state import open_store
from worker.state.durability import UnsafeStateStore, check_durability

PPW = str(Path(sys.executable).with_name("ppw"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    started: list[PrivateRedis] = []

    def start(*args: str) -> PrivateRedis:
        server = PrivateRedis(tmp_path / f"redis{len(started)}", *args).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
def test_an_evicting_redis_is_refused(redis_server: Callable[..., PrivateRedis], policy: str) -> None:
    store = open_store(redis_server("--maxmemory-policy", policy).url)
    try:
        with pytest.raises(UnsafeStateStore, match=f"maxmemory-policy {policy}") as raised:
            check_durability(store)
        assert "noeviction" in str(raised.value)
    finally:
        store.close()


def test_a_redis_without_persistence_is_a_warning(
    redis_server: Callable[..., PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(redis_server("--appendonly", "no", "--save", "").url)
    try:
        with caplog.at_level(logging.WARNING, logger="worker.state.durability"):
            found = check_durability(store)
        assert found.errors == [] and len(found.warnings) == 1
        assert "keeps nothing on disk" in caplog.text and "appendonly yes" in caplog.text
    finally:
        store.close()


def test_aof_or_rdb_snapshots_with_noeviction_say_nothing(redis_server: Callable[..., PrivateRedis]) -> None:
    for args in [(), ("--appendonly", "no", "--save", "900 1")]:
        store = open_store(redis_server(*args).url)
        try:
            assert check_durability(store).errors == check_durability(store).warnings == []
        finally:
            store.close()


def test_an_unreachable_redis_is_not_refused_at_start(caplog: pytest.LogCaptureFixture) -> None:
    store = open_store("redis://127.0.0.1:1/0")
    try:
        with caplog.at_level(logging.WARNING, logger="worker.state.durability"):
            assert check_durability(store).errors == []
        assert "could not check" in caplog.text
    finally:
        store.close()


def test_the_password_of_the_redis_url_is_not_in_the_error(redis_server: Callable[..., PrivateRedis]) -> None:
    server = redis_server("--maxmemory-policy", "allkeys-lru", "--requirepass", "hunter2-secret")
    store = open_store(f"redis://:hunter2-secret@127.0.0.1:{server.port}/0")
    try:
        with pytest.raises(UnsafeStateStore) as raised:
            check_durability(store)
        assert "hunter2-secret" not in str(raised.value)
    finally:
        store.close()


def test_runtime_refuses_an_evicting_redis(redis_server: Callable[..., PrivateRedis], tmp_path: Path) -> None:
    url = redis_server("--maxmemory-policy", "allkeys-lru").url
    settings = Settings(_env_file=None, state_url=url, broker_url="memory://", rules_dir=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(UnsafeStateStore):
        Runtime.create(settings)


@pytest.mark.parametrize("command", ["worker", "scheduler", "run"])
def test_the_processes_exit_with_a_clear_error_on_an_evicting_redis(
    redis_server: Callable[..., PrivateRedis], tmp_path: Path, command: str
) -> None:
    url = redis_server("--maxmemory-policy", "allkeys-lru").url
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPW_")} | {
        "PPW_STATE_URL": url,
        "PPW_BROKER_URL": url if command != "run" else "memory://",
        "PPW_RULES_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [PPW, command, "--no-http"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "error: Redis at redis://127.0.0.1:" in done.stderr
    assert "maxmemory-policy allkeys-lru" in done.stderr and "noeviction" in done.stderr
    assert "Traceback" not in done.stderr


def _shipped_redis_args() -> dict[str, list[str]]:
    from tests.ops.yamlfiles import load, load_all

    root = Path(__file__).resolve().parents[2]
    compose = load(root / "docker-compose.yml")["services"]["redis"]["command"]
    [statefulset] = [
        doc for doc in load_all(root / "deploy" / "kubernetes" / "redis.yaml") if doc["kind"] == "StatefulSet"
    ]
    [container] = statefulset["spec"]["template"]["spec"]["containers"]
    return {"compose": [str(a) for a in compose[1:]], "kubernetes": [str(a) for a in container["args"]]}


@pytest.mark.parametrize("deployment", ["compose", "kubernetes"])
def test_the_shipped_redis_configuration_passes_the_check(
    redis_server: Callable[..., PrivateRedis], deployment: str
) -> None:
    args = _shipped_redis_args()[deployment]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    # the test's server starts with AOF and no RDB: switch AOF off to see the shipped args turn it on
    store = open_store(redis_server("--appendonly", "no", *args).url)
    try:
        found = check_durability(store)
        assert found.errors == [] and found.warnings == []
    finally:
        store.close()
