"""The sandbox as an ASGI app, and a server that runs it on a real port in a background thread.

``create_app(config)`` builds a Starlette app with PracticePanther's OAuth endpoints, every
``/api/v2`` path of the swagger and the ``/_sandbox`` controls; its lifespan runs the churn
thread. :class:`SandboxServer` serves that app (:class:`~worker.serving.ThreadedServer`) on
``127.0.0.1`` (port 0 picks a free port) so tests, demos and benchmarks talk to it over real HTTP::

    with SandboxServer(SandboxConfig(seed=1)) as sandbox:
        httpx.get(f"{sandbox.url}/api/v2/matters", headers=...)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import TracebackType

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from worker.sandbox.api import api_routes
from worker.sandbox.churn import Churn
from worker.sandbox.config import SandboxConfig
from worker.sandbox.control import control_routes
from worker.sandbox.oauth import oauth_routes
from worker.sandbox.state import SandboxState
from worker.serving import ThreadedServer

__all__ = ["SandboxConfig", "SandboxServer", "create_app"]

STARTUP_TIMEOUT = 15.0


def _logged(request: Request, response: Response) -> Response:
    """Unrouted API and OAuth calls still belong in the request log a test reads."""
    if request.url.path.startswith(("/api/", "/OAuth/")):
        request.app.state.sandbox.log.record(
            request.method, request.url.path, request.url.query, response.status_code
        )
    return response


async def _not_found(request: Request, exc: Exception) -> Response:
    message = f"No HTTP resource was found that matches the request URI '{request.url.path}'."
    return _logged(request, JSONResponse({"message": message}, 404))


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    message = f"The requested resource does not support http method '{request.method}'."
    return _logged(request, JSONResponse({"message": message}, 405))


def create_app(config: SandboxConfig) -> Starlette:
    """A fresh sandbox (seeded, faults applied) as an ASGI app; churn runs while it is served."""
    state = SandboxState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        churn = Churn(state, config.churn_per_minute)
        churn.start()
        try:
            yield
        finally:
            churn.stop()

    app = Starlette(
        routes=[*oauth_routes(), *control_routes(), *api_routes()],
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _method_not_allowed},
    )
    app.state.sandbox = state
    return app


class SandboxServer:
    """uvicorn serving :func:`create_app` in a daemon thread on a real socket.

    Parameters
    ----------
    config:
        The sandbox to run (default: ``SandboxConfig()``, seed 1).
    host, port:
        Where to listen; port 0 picks a free port, readable from :attr:`url` after :meth:`start`.
    """

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SandboxConfig()
        self.host = host
        self.port = port
        self.url = ""
        self.app: Starlette | None = None
        self._server: ThreadedServer | None = None

    @property
    def state(self) -> SandboxState:
        """The running sandbox's state (for fixtures; tests should talk HTTP)."""
        if self.app is None:
            raise RuntimeError("the sandbox is not running")
        state: SandboxState = self.app.state.sandbox
        return state

    def start(self) -> SandboxServer:
        """Serve a fresh sandbox (seeded, churning) until :meth:`stop`; port 0 picks a free one."""
        if self._server is not None:
            return self
        self.app = create_app(self.config)
        server = ThreadedServer(
            self.app, self.host, self.port, name="ppw-sandbox", lifespan="on", log_level="warning"
        )
        try:
            server.start(STARTUP_TIMEOUT)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"the sandbox did not start on {self.host}:{self.port}: {exc}") from exc
        self._server, self.url = server, server.url
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(STARTUP_TIMEOUT)
        self._server = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SandboxServer(url={self.url!r}, config={self.config!r})"
