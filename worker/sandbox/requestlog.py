"""A log of the calls clients made, so tests can count what a client really did.

Every ``/api/v2`` and ``/OAuth`` request is recorded with its method, path, query string,
status and time; token requests also record their ``grant_type``. Entries carry an ever-growing
``index`` so a test can read only what happened after a point (``?since=``). The log keeps the
most recent ``MAX_ENTRIES``; secrets are never recorded (no headers, no bodies, and the
authorization code in a redirect is not part of the request).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

MAX_ENTRIES = 100_000


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=MAX_ENTRIES)
        self._next = 0

    def record(self, method: str, path: str, query: str, status: int, grant_type: str | None = None) -> None:
        with self._lock:
            entry: dict[str, Any] = {
                "index": self._next,
                "method": method,
                "path": path,
                "query": query,
                "status": status,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
            if grant_type is not None:
                entry["grant_type"] = grant_type
            self._entries.append(entry)
            self._next += 1

    def since(self, index: int = 0) -> dict[str, Any]:
        """Entries with ``index >= since`` plus counts over them (statuses, token grants)."""
        with self._lock:
            entries = [dict(e) for e in self._entries if e["index"] >= index]
            next_index = self._next
        grants = Counter(e["grant_type"] for e in entries if "grant_type" in e)
        statuses = Counter(str(e["status"]) for e in entries)
        return {
            "requests": entries,
            "next": next_index,
            "count": len(entries),
            "by_status": dict(statuses),
            "token_grants": dict(grants),
        }

    def clear(self) -> None:
        """Forget the entries; indexes keep growing so ``since`` stays meaningful."""
        with self._lock:
            self._entries.clear()
