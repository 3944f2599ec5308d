"""Serving the console: on its own (``ppw console``) or beside the workers of ``ppw run``.

uvicorn in a daemon thread (:class:`~worker.serving.ThreadedServer`, as the health server),
bound to ``PPW_CONSOLE_HOST`` (loopback by default) and ``PPW_CONSOLE_PORT``. Behind a reverse
proxy on the same host (or a trusted proxy, ``PPW_CONSOLE_TRUSTED_PROXIES``), the app trusts its
``X-Forwarded-For`` and ``X-Forwarded-Proto`` (:class:`~worker.console.web.Forwarded`), so the
audit and the rate limit see the real address and HTTPS requests get a Secure cookie.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from starlette.applications import Starlette

from worker.console.auth import check_config
from worker.console.ops import Ops
from worker.console.web import build_app
from worker.errors import PpwError
from worker.process.runtime import Runtime
from worker.serving import ThreadedServer
from worker.settings import Settings

log = logging.getLogger(__name__)


class ConsoleDisabled(PpwError, RuntimeError):
    """``ppw console`` without ``PPW_CONSOLE_ENABLED=true``."""


class ConsoleServer(ThreadedServer):
    """Serves a console app from a daemon thread until :meth:`stop`."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        super().__init__(
            app,
            host,
            port,
            name="ppw-console",
            lifespan="off",
            # X-Forwarded-For and -Proto are applied by the app (web.Forwarded), which keeps the
            # socket's peer: only that decides whether the trusted sign-in header is believed
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=3,
        )


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
