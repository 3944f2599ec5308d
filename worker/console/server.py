"""Serving the console: on its own (``ppw console``) or beside the workers of ``ppw run``.

uvicorn in a daemon thread, as the health server does, bound to ``PPW_CONSOLE_HOST`` (loopback
by default) and ``PPW_CONSOLE_PORT``. Behind a reverse proxy on the same host (or a trusted proxy,
``PPW_CONSOLE_TRUSTED_PROXIES``), the app trusts its ``X-Forwarded-For`` and ``X-Forwarded-Proto``
(:class:`~worker.console.web.Forwarded`), so the audit and the rate limit see the real address and
HTTPS requests get a Secure cookie.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from worker.console.auth import check_config
from worker.console.ops import Ops
from worker.console.web import build_app
from worker.errors import PpwError
from worker.process.runtime import Runtime
from worker.settings import Settings

log = logging.getLogger(__name__)


class ConsoleDisabled(PpwError, RuntimeError):
    """``ppw console`` without ``PPW_CONSOLE_ENABLED=true``."""


class ConsoleServer:
    """Serves a console app from a daemon thread until :meth:`stop`."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        assert self._socket is not None
        host, port = self._socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self, timeout: float = 10.0) -> ConsoleServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            # X-Forwarded-For and -Proto are applied by the app (web.Forwarded), which keeps the
            # socket's peer: only that decides whether the trusted sign-in header is believed
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=3,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="ppw-console", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"console failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"console did not start within {timeout:g}s")
            time.sleep(0.01)
        return self

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start()
            self._error = exc

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None


def _warn_exposed(settings: Settings) -> None:
    try:
        loopback = ipaddress.ip_address(settings.console_host).is_loopback
    except ValueError:
        loopback = settings.console_host == "localhost"
    if not loopback:
        log.warning(
            "the console listens on %s, beyond this host: serve it behind a TLS reverse proxy "
            "and set PPW_CONSOLE_SECURE_COOKIES=true (docs/console.md)",
            settings.console_host,
        )


def start_console(
    settings: Settings, runtime: Runtime, *, live: bool, port: int | None = None
) -> ConsoleServer:
    """Check the console's settings and serve it over ``runtime`` (see :meth:`Ops.from_runtime`)."""
    check_config(settings)
    _warn_exposed(settings)
    app = build_app(Ops.from_runtime(settings, runtime, live=live))
    server = ConsoleServer(app, settings.console_host, settings.console_port if port is None else port)
    server.start()
    log.info("console on %s", server.url)
    return server


def attach(settings: Settings, runtime: Runtime) -> Callable[[], None] | None:
    """For ``ppw run``: serve the console over its runtime when enabled; returns how to stop it."""
    if not settings.console_enabled:
        return None
    server = start_console(settings, runtime, live=True)
    return server.stop


def serve(
    settings: Settings,
    *,
    port: int | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """``ppw console``: the console alone, over the configured state store and broker."""
    if not settings.console_enabled:
        raise ConsoleDisabled("the console is off: set PPW_CONSOLE_ENABLED=true (docs/console.md)")
    check_config(settings)
    from worker.observability import configure_logging

    configure_logging(settings)
    stop = stop or threading.Event()
    with Runtime.create(settings, watch_rules=True) as runtime:
        server = start_console(settings, runtime, live=False, port=port)
        say(f"ppw console on {server.url}; Ctrl-C to stop")
        previous = {}
        if threading.current_thread() is threading.main_thread():

            def handler(signum: int, frame: FrameType | None) -> None:
                stop.set()

            previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            stop.wait()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            server.stop()
