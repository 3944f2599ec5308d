"""Everything one running sandbox holds: its data, clock, tokens, faults and request log."""

from __future__ import annotations

import math
from typing import Any

from worker.practicepanther import resources
from worker.sandbox.clock import Clock
from worker.sandbox.config import SandboxConfig
from worker.sandbox.faults import PERSISTENT, FaultError, Faults, parse_bulk_update
from worker.sandbox.oauth import AuthorizationServer, Client
from worker.sandbox.records import Records
from worker.sandbox.requestlog import RequestLog
from worker.sandbox.seed import seed_database
from worker.sandbox.store import Database, Row


class SandboxState:
    """The live parts of one sandbox, shared by the HTTP handlers and the churn thread."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.clock = Clock()
        self.db = Database()
        self.records = Records(self.db, self.clock)
        self.auth = AuthorizationServer(
            Client(config.client_id, config.client_secret, tuple(config.redirect_uris)),
            config.token_lifetime,
        )
        self.faults = Faults(config.seed)
        self.log = RequestLog()
        self.reset()
        self.apply_faults(config.faults)

    def reset(self) -> None:
        """Back to the seed data (tokens, faults and the request log are kept)."""
        with self.db.lock:
            self.db.clear()
            self.records.renderer.forget()
            seed_database(self.records, self.config.seed)

    def apply_faults(self, faults: dict[str, Any]) -> dict[str, Any]:
        """Set persistent faults and fire triggers; returns what the triggers did.

        Every value is checked before any is applied, so a bad request changes nothing.
        """
        bulk: tuple[str, int] | None = None
        for name, value in faults.items():
            if name == "bulk_update":
                bulk = parse_bulk_update(value)
                resource = resources.resolve_name(bulk[0])
                if resource is None:
                    raise FaultError(f"bulk_update: unknown resource {bulk[0]!r}")
                bulk = (resource, bulk[1])
            elif name != "expire_tokens":
                Faults.check(name, value)
        done: dict[str, Any] = {}
        for name, value in faults.items():
            if name in PERSISTENT:
                self.faults.set(name, value)
                if name == "clock_skew":
                    self.clock.set_skew(float(value))
            elif name == "expire_tokens" and _truthy(value):
                done["expire_tokens"] = self.auth.expire_access_tokens()
        if bulk is not None:
            done["bulk_update"] = [row.id for row in self.bulk_touch(*bulk)]
        return done

    def bulk_touch(self, resource: str, count: int) -> list[Row]:
        """Give ``count`` records of ``resource`` one identical ``updated_at`` (a bulk edit)."""
        with self.db.lock:
            rows = self.faults.choose(self.db.rows(resource), count)
            self.records.touch(resource, rows, self.clock.now())
            return rows

    def between_pages(self, resource: str, earlier: list[Row]) -> bool:
        """The ``page_mutation`` fault: modify records earlier pages returned, so they move."""
        setting = self.faults.snapshot()["page_mutation"]
        if setting <= 0 or not earlier:
            return False
        count = int(setting) if setting >= 1 else max(1, math.ceil(setting * len(earlier)))
        with self.db.lock:
            chosen = self.faults.choose(earlier, count)
            self.records.touch(resource, chosen, self.clock.now())
        return bool(chosen)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)
