"""Idle footprint of ``ppw run`` with the example rules: resident memory and CPU while nothing happens.

``ppw run`` is started as an operator starts it (a child process, embedded defaults: memory
broker, SQLite state), connected to a sandbox with the seed firm and no churn, the example rules
of ``rules/`` loaded, Slack webhooks pointing at a local sink. After it has primed every watched
resource and ``/readyz`` answers, RSS and CPU are sampled over an idle window (a few polls at the
default interval happen inside it, as they would in production).

Baseline (same run): an interpreter that has imported the same modules and does nothing else,
which is the floor any Python worker pays. Targets: RSS ≤ 150 MB; CPU is reported.

    python -m benchmarks.footprint [idle_seconds]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks import children
from benchmarks.sandbox_tools import connect
from benchmarks.services import free_port, unique
from benchmarks.worker_process import clean_env, ppw_command
from worker.state import open_store

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
TARGET_RSS_MB = 150.0
READY_TIMEOUT = 90.0
IMPORTS = (
    "import worker.cli, worker.process.run, worker.process.runtime, worker.process.health, "
    "worker.polling.scheduler, worker.rules.watcher, dramatiq, apscheduler, uvicorn, httpx, time; "
    "print('ready', flush=True); time.sleep(600)"
)


def sample(process: psutil.Process, seconds: float, every: float = 0.5) -> dict[str, float]:
    """RSS (mean and max, including children) and CPU share over ``seconds``."""
    rss: list[float] = []
    cpu_start = _cpu(process)
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        rss.append(_rss(process))
        time.sleep(every)
    elapsed = time.monotonic() - started
    return {
        "rss_mb_mean": round(sum(rss) / len(rss), 1),
        "rss_mb_max": round(max(rss), 1),
        "cpu_percent": round((_cpu(process) - cpu_start) / elapsed * 100, 2),
        "seconds": round(elapsed, 1),
    }


def _tree(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def _rss(process: psutil.Process) -> float:
    return sum(p.memory_info().rss for p in _tree(process)) / 2**20


def _cpu(process: psutil.Process) -> float:
    total = 0.0
    for p in _tree(process):
        times = p.cpu_times()
        total += times.user + times.system
    return total


def baseline(seconds: float) -> dict[str, float]:
    """The same imports in an otherwise idle interpreter."""
    proc = subprocess.Popen([sys.executable, "-c", IMPORTS], env=clean_env({}), stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return sample(psutil.Process(proc.pid), seconds)
    finally:
        proc.terminate()
        proc.wait(10)


def run(idle_seconds: float = 60.0) -> dict[str, Any]:
    connection = unique()
    with (
        tempfile.TemporaryDirectory(prefix="ppw-bench-idle-") as tmp,
        children.sandbox("--seed", "1") as sandbox,
        children.sink() as sink,
    ):
        state_url = f"sqlite:///{Path(tmp) / 'state.db'}"
        store = open_store(state_url)
        connect(sandbox.url, store, connection)
        store.close()
        port = free_port()
        env = clean_env(
            {
                "PPW_PP_BASE_URL": sandbox.url,
                "PPW_PP_CLIENT_ID": "ppw-sandbox-client",
                "PPW_PP_CLIENT_SECRET": "ppw-sandbox-secret",
                "PPW_STATE_URL": state_url,
                "PPW_BROKER_URL": "memory://",
                "PPW_CONNECTION_ID": connection,
                "PPW_RULES_DIR": str(RULES_DIR),
                "PPW_HTTP_PORT": str(port),
                "PPW_HTTP_HOST": "127.0.0.1",
                "PPW_LOG_LEVEL": "WARNING",
                "PPW_SLACK_WEBHOOKS__BILLING": f"{sink.url}/hooks/billing",
                "PPW_SLACK_WEBHOOKS__PARTNERS": f"{sink.url}/hooks/partners",
            }
        )
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(ppw_command("run"), env=env, cwd=tmp, stdout=log, stderr=log)
            try:
                started = time.monotonic()
                ready = _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
                ready_seconds = time.monotonic() - started
                if not ready:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
                    raise RuntimeError(f"ppw run did not become ready: {' | '.join(tail)}")
                primed = _wait_primed(state_url, connection, proc)
                idle = sample(psutil.Process(proc.pid), idle_seconds)
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
    floor = baseline(min(idle_seconds, 10.0))
    return {
        "command": "ppw run",
        "rules_dir": str(RULES_DIR),
        "ready_seconds": round(ready_seconds, 1),
        "primed_resources": primed,
        "idle": idle,
        "imports_only": floor,
        "target_rss_mb": TARGET_RSS_MB,
    }


def _wait_primed(state_url: str, connection: str, proc: subprocess.Popen[bytes]) -> list[str]:
    """The resources the example rules watch, once each has a cursor (its first poll is done)."""
    from worker.polling import cursors
    from worker.rules.engine import rules_by_resource
    from worker.rules.watcher import RuleRegistry
    from worker.settings import Settings

    registry = RuleRegistry(settings=Settings(rules_dir=RULES_DIR))
    registry.load()
    watched = sorted(rules_by_resource(registry.engine))
    store = open_store(state_url)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            primed = [r for r in watched if cursors.load_cursor(store, connection, r) is not None]
            if len(primed) == len(watched):
                return primed
            time.sleep(0.5)
    finally:
        store.close()
    raise RuntimeError(f"ppw run did not prime {', '.join(watched)} within {READY_TIMEOUT:g}s")


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if client.get(url).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    return False


def main(argv: list[str]) -> int:
    print(json.dumps(run(float(argv[0]) if argv else 60.0), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
