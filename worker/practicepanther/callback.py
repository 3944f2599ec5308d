"""The local HTTP listener that receives PracticePanther's OAuth redirect during ``ppw auth login``.

It listens on the redirect URI's host and port, hands the first request to the redirect path to
the login flow, and keeps the browser waiting until the flow decides what to show, so the page
tells the truth ("connected as ..." or why it was refused) instead of a premature "done".
"""

from __future__ import annotations

import html
import queue
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from worker.practicepanther.errors import LoginError

__all__ = ["Callback", "CallbackListener", "page"]

#: How long the browser's request is held open while the code is exchanged.
RESPONSE_WAIT = 60.0


@dataclass(frozen=True)
class Callback:
    """The query of the redirect: a ``code`` and ``state``, or an OAuth ``error``."""

    code: str | None
    state: str | None
    error: str | None
    error_description: str | None


@dataclass
class _Pending:
    callback: Callback
    reply: queue.Queue[tuple[int, str]]


def page(title: str, message: str) -> str:
    """A minimal, self-contained HTML page for the browser tab the login ends in."""
    title, message = html.escape(title), html.escape(message)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ppw: {title}</title></head>"
        "<body style='font-family: sans-serif; max-width: 40em; margin: 3em auto'>"
        f"<h1>{title}</h1><p>{message}</p></body></html>"
    )


class CallbackListener:
    """Listen on ``host:port`` for a GET of ``path``; use as a context manager.

    Raises :class:`LoginError` on entry when the port cannot be bound.
    """

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.path = path or "/"
        self._callbacks: queue.Queue[_Pending] = queue.Queue()
        self._current: _Pending | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CallbackListener:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != listener.path:
                    self._send(404, page("Not found", "This address only receives the ppw login."))
                    return
                query = parse_qs(parts.query)

                def first(name: str) -> str | None:
                    values = query.get(name)
                    return values[0] if values else None

                pending = _Pending(
                    Callback(first("code"), first("state"), first("error"), first("error_description")),
                    queue.Queue(maxsize=1),
                )
                listener._callbacks.put(pending)
                try:
                    status, body = pending.reply.get(timeout=RESPONSE_WAIT)
                except queue.Empty:
                    status, body = 504, page("Login timed out", "ppw did not finish; see the terminal.")
                self._send(status, body)

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                """Silent: the request line carries the one-time authorization code."""

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise LoginError(
                f"cannot listen on {self.host}:{self.port} for the login redirect ({exc.strerror}); "
                "stop whatever uses that port or change PPW_PP_REDIRECT_URI (and its registration)"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ppw-login", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._current is not None:
            self.respond(500, page("Login failed", "ppw stopped; see the terminal."))
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def bound_port(self) -> int:
        """The port actually listened on (differs from ``port`` only when that was 0)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    def wait(self, timeout: float) -> Callback:
        """The next redirect; :meth:`respond` must follow. Raises :class:`LoginError` on timeout."""
        try:
            self._current = self._callbacks.get(timeout=timeout)
        except queue.Empty:
            raise LoginError(
                f"no redirect from PracticePanther arrived within {timeout:g} s; "
                "open the printed URL in a browser (or raise --timeout) and try again"
            ) from None
        return self._current.callback

    def respond(self, status: int, body: str) -> None:
        """Answer the browser waiting on the last redirect."""
        if self._current is not None:
            self._current.reply.put((status, body))
            self._current = None
