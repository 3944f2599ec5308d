"""An ASGI app served by uvicorn from a daemon thread on a socket bound before it starts.

The health server (``/healthz``, ``/metrics``, ``/hooks``), the console and the sandbox each
serve one beside the process's own work. Binding first is what makes a taken port an
``OSError`` at once instead of a log line in a thread; waiting for ``started`` is what lets a
caller use :attr:`ThreadedServer.url` as soon as :meth:`~ThreadedServer.start` returns; and an
exception in the thread is kept and raised by ``start`` so a server never dies silently.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self

import uvicorn

#: uvicorn's settings for every server here: logging is the process's, not uvicorn's.
BASE_CONFIG: dict[str, Any] = {"log_config": None, "access_log": False}


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0 picks a free port), inheritable by a re-exec."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it every keep-alive call waits ~40 ms
        # (Nagle against delayed ACKs).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def socket_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket, a wildcard address read as loopback."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ThreadedServer:
    """Serves ``app`` on ``host:port`` from a daemon thread named ``name`` until :meth:`stop`.

    ``config`` is passed to :class:`uvicorn.Config` over :data:`BASE_CONFIG` (``lifespan``,
    ``proxy_headers``, ``timeout_graceful_shutdown`` ...).
    """

    def __init__(self, app: Any, host: str, port: int, *, name: str, **config: Any) -> None:
        self.app, self.host, self.port, self.name = app, host, port, name
        self.config = {**BASE_CONFIG, **config}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (the real port when started with port 0)."""
        if self._socket is None:
            raise RuntimeError(f"{self.name} is not started")
        return socket_url(self._socket)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, timeout: float = 10.0) -> Self:
        """Bind (raising ``OSError`` at once if the port is taken) and serve until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._socket = bind(self.host, self.port)
        self._error = None
        self._server = uvicorn.Server(uvicorn.Config(self.app, **self.config))
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                error = self._error
                self.stop()
                raise RuntimeError(f"{self.name} failed to start: {error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} did not start within {timeout:g}s")
            time.sleep(0.01)
        return self

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start(); the thread must not die silently
            self._error = exc

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
