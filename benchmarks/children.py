"""Long-running helper processes of a benchmark: the sandbox (``ppw sandbox``) and the HTTP sink.

They run in their own interpreters so that simulating PracticePanther and receiving webhooks do
not compete with the worker being measured for the same GIL. Each is started on a free port,
waited for until it answers, and stopped (SIGTERM, then SIGKILL) by its own pid.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks.services import free_port
from benchmarks.worker_process import clean_env, ppw_command

STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Child:
    process: subprocess.Popen[bytes]
    url: str


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with {process.returncode} before answering")
            try:
                client.get(url)
                return
            except httpx.TransportError:
                time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {STARTUP_TIMEOUT:g}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def child(command: list[str], probe_path: str, env: dict[str, str] | None = None) -> Iterator[Child]:
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in command]
    process = subprocess.Popen(
        argv, env=clean_env(env or {}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, url + probe_path)
        yield Child(process, url)
    finally:
        _stop(process)


@contextmanager
def sandbox(*extra: str) -> Iterator[Child]:
    """``ppw sandbox --empty`` on a free port (no seed data beyond the API user)."""
    command = ppw_command("sandbox", "--port", "{port}", "--log-level", "warning", *extra)
    with child(command, "/_sandbox/info") as running:
        yield running


@contextmanager
def sink() -> Iterator[Child]:
    with child([sys.executable, "-m", "benchmarks.sink", "{port}"], "/_count") as running:
        yield running


def sink_count(url: str, client: httpx.Client | None = None) -> dict[str, Any]:
    """What the sink received. Pass a ``client`` when asking often: a new one costs an SSL context."""
    if client is None:
        with httpx.Client(timeout=10) as own:
            return sink_count(url, own)
    result: dict[str, Any] = client.get(url + "/_count", timeout=10).json()
    return result
