"""What the fault suite breaks things with: real worker processes, a private Redis, a TCP proxy.

- :class:`PpwProcess` runs ``ppw run`` or ``ppw worker`` as a child process, exactly as an
  operator starts it (only ``PPW_*`` environment, its own working directory), and can SIGKILL it.
- :class:`HealthWatch` polls the process's ``/readyz`` in the background and keeps every answer,
  so a test can assert that the problem was reported *while it lasted*.
- :class:`PrivateRedis` is a ``redis-server`` of the test's own (free port, AOF on, data in a
  temporary directory) that can be stopped and started again; the shared Redis on 6379 is never
  touched that way.
- :class:`TcpProxy` sits in front of a service (RabbitMQ) and can drop every connection and
  refuse new ones, then come back: an outage of a service that cannot be restarted here.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


# the worker process --------------------------------------------------------------------------------
class PpwProcess:
    """``python -m worker <command>`` with ``env`` (plus nothing else ``PPW_*``) in ``workdir``."""

    def __init__(self, command: str, env: dict[str, str], workdir: Path, *, name: str = "ppw") -> None:
        self.command = command
        self.port = int(env.get("PPW_HTTP_PORT") or free_port())
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PPW_", "SENTRY_"))}
        self.env = {**base, **env, "PPW_HTTP_PORT": str(self.port), "PPW_HTTP_HOST": "127.0.0.1"}
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.workdir = workdir
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, timeout: float = STARTUP_TIMEOUT) -> PpwProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker", self.command],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        eventually(self._answers, timeout, f"`ppw {self.command}` to serve /healthz\n{self.log()}")
        if wait_ready:
            eventually(lambda: self.ready()[0] == 200, timeout, f"`ppw {self.command}` to be ready")
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"`ppw {self.command}` exited with {self.process.returncode}:\n{self.log()}")
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def ready(self) -> tuple[int | None, dict[str, Any]]:
        """``/readyz``: (status, body); (None, {}) when the process does not answer."""
        try:
            response = self.http.get("/readyz")
        except httpx.TransportError:
            return None, {}
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no graceful anything (a crash, an OOM kill, a pulled plug)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def close(self) -> None:
        self.stop()
        self.http.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Sample:
    at: float
    status: int | None
    failing: dict[str, str]
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class HealthWatch:
    """Polls ``/readyz`` of a process every ``every`` seconds until stopped, keeping each answer."""

    process: PpwProcess
    every: float = 0.2
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> HealthWatch:
        self._thread = threading.Thread(target=self._run, name="health-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                status, body = self.process.ready()
            except RuntimeError:  # the process's client was closed: the test is over
                return
            checks = body.get("checks") or {}
            details = {name: str(check.get("detail", "")) for name, check in checks.items()}
            failing = {name: details[name] for name, check in checks.items() if not check.get("ok")}
            self.samples.append(Sample(time.time(), status, failing, details))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]

    def reported(self, check: str, start: float, end: float) -> list[Sample]:
        """Answers between ``start`` and ``end`` that were 503 with ``check`` failing."""
        return [s for s in self.between(start, end) if s.status == 503 and check in s.failing]

    def wait_for(self, check: str, timeout: float) -> Sample:
        since = time.time()

        def found() -> Sample | None:
            hits = self.reported(check, since, time.time() + 1)
            return hits[0] if hits else None

        result: Sample = eventually(found, timeout, f"/readyz to report the {check} check failing")
        return result

    def wait_healthy(self, timeout: float) -> Sample:
        since = time.time()

        def found() -> Sample | None:
            hits = [s for s in self.between(since, time.time() + 1) if s.status == 200]
            return hits[0] if hits else None

        result: Sample = eventually(found, timeout, "/readyz to answer 200 again")
        return result


# a private Redis ------------------------------------------------------------------------------------
class PrivateRedis:
    """``redis-server`` on a free port with AOF (``appendfsync always``) in ``directory``; ``args``
    are added to (and override) that configuration."""

    def __init__(self, directory: Path, *args: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.directory = directory
        self.args = args
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
                "--logfile", str(self.directory / "redis.log"), *self.args]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(self._answers, 15, f"the private redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: Redis fsyncs the AOF and exits), as ``systemctl restart`` does."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        self.process = None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


# a TCP proxy that can fail ----------------------------------------------------------------------------
class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; :meth:`drop` cuts every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._stop.clear()
        thread = threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            a.setblocking(False)
            b.setblocking(False)
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while not self._stop.is_set():
                for key, _ in selector.select(0.1):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.setblocking(True)
                    key.data.sendall(data)
                    key.data.setblocking(False)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.difference_update((a, b))

    def drop(self) -> None:
        """The service "goes away": open connections are reset and new ones refused."""
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self._sockets.clear()
        for thread in self._threads:
            thread.join(2)
        self._threads.clear()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.drop()


def read_json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                out.append(value)
    return out
