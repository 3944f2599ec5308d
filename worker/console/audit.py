"""The console's audit trail: every operator action, who did it, when, from where, and how it went.

Kept in the state store (sorted set ``ppw:<connection>:console-audit``, scored by time, each
member one JSON entry) without expiry, trimmed at each entry to the newest :data:`KEEP` entries
and to those younger than ``PPW_AUDIT_RETENTION_DAYS`` (the trail only grows when an entry is
written, so that bounds it), and logged at INFO (``ppw.console.audit``) so a log pipeline keeps
its own copy.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass

from worker.state.base import StateStore, key

log = logging.getLogger("ppw.console.audit")

KEEP = 10_000
#: the default age past which an entry is dropped (``PPW_AUDIT_RETENTION_DAYS``)
RETENTION = 365 * 86400.0


@dataclass(frozen=True)
class AuditEntry:
    at: float
    user: str
    role: str
    action: str
    target: str
    address: str
    outcome: str
    detail: str = ""
    #: how the user signed in: ``password``, or ``proxy`` (the trusted header of an SSO proxy)
    via: str = "password"


class AuditLog:
    def __init__(self, store: StateStore, connection: str, retention: float = RETENTION) -> None:
        self.store = store
        self.connection = connection
        self.retention = retention

    @property
    def _key(self) -> str:
        return key(self.connection, "console-audit")

    def record(self, entry: AuditEntry) -> None:
        member = json.dumps({**asdict(entry), "n": secrets.token_hex(4)}, sort_keys=True)
        self.store.zadd(self._key, {member: entry.at})
        log.info(
            "console %s of %s by %s (%s%s) from %s: %s%s",
            entry.action,
            entry.target,
            entry.user,
            entry.role,
            ", via proxy" if entry.via == "proxy" else "",
            entry.address,
            entry.outcome,
            f" ({entry.detail})" if entry.detail else "",
        )
        self.prune()

    def prune(self, now: float | None = None) -> int:
        """Drop the entries older than the retention and those past the newest :data:`KEEP`."""
        cutoff = (time.time() if now is None else now) - self.retention
        drop = [m for m, _ in self.store.zrange_by_score(self._key, maximum=cutoff)]
        if drop:
            self.store.zrem(self._key, *drop)
        if self.store.zcard(self._key) > KEEP:
            oldest = self.store.zrange_by_score(self._key, limit=self.store.zcard(self._key) - KEEP)
            self.store.zrem(self._key, *(m for m, _ in oldest))
            drop += [m for m, _ in oldest]
        return len(drop)

    def recent(self, limit: int = 100, before: float | None = None) -> list[AuditEntry]:
        """Newest first, older than ``before`` (a page's last ``at``)."""
        maximum = before - 1e-6 if before is not None else float("inf")
        rows = self.store.zrange_by_score(self._key, maximum=maximum, limit=limit, descending=True)
        entries = []
        for member, _ in rows:
            data = json.loads(member)
            data.pop("n", None)
            known = {k: v for k, v in data.items() if k in AuditEntry.__dataclass_fields__}
            entries.append(AuditEntry(**known))
        return entries
