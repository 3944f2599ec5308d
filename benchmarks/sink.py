"""A local HTTP sink: the webhook receiver at the end of the end-to-end benchmark.

Runs in its own process (``python -m benchmarks.sink <port>``) so serving it costs the worker
nothing. Every ``POST``/``PUT`` answers 200 and is counted by its ``Idempotency-Key`` header, so
the harness can tell deliveries from duplicates (a duplicate would be a rule firing twice).
``GET /_count`` answers ``{"received": n, "distinct": d, "first": t0, "last": t1}`` (Unix times).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0
        self.keys: set[str] = set()
        self.first: float | None = None
        self.last: float | None = None

    def hit(self, key: str | None) -> None:
        now = time.time()
        with self.lock:
            self.received += 1
            self.keys.add(key or f"none-{self.received}")
            self.first = self.first or now
            self.last = now

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {
                "received": self.received,
                "distinct": len(self.keys),
                "first": self.first,
                "last": self.last,
            }


def serve(port: int) -> None:
    state = _State()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.hit(self.headers.get("Idempotency-Key"))
            self._reply(b'{"ok":true}')

        do_PUT = do_POST

        def do_GET(self) -> None:
            self._reply(json.dumps(state.summary()).encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

        def server_bind(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().server_bind()

    server = Server(("127.0.0.1", port), Handler)
    print(f"sink listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever(0.1)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
