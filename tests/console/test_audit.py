"""The console's audit trail keeps entries for PPW_AUDIT_RETENTION_DAYS (both backends)."""

from __future__ import annotations

import time

from worker.console.audit import AuditEntry, AuditLog
from worker.settings import Settings
from worker.state.base import StateStore

DAY = 86400.0


def _entry(at: float, action: str) -> AuditEntry:
    return AuditEntry(
        at=at, user="olga", role="operator", action=action, target="run x", address="127.0.0.1", outcome="ok"
    )


def test_entries_past_the_retention_are_dropped(store: StateStore, connection_id: str) -> None:
    assert Settings().audit_retention_days == 365
    audit = AuditLog(store, connection_id, retention=30 * DAY)
    now = time.time()
    store.zadd(audit._key, {'{"stale": 1}': now - 31 * DAY})  # written before the retention shrank
    audit.record(_entry(now - 29 * DAY, "replay"))
    audit.record(_entry(now, "cancel"))
    assert [e.action for e in audit.recent()] == ["cancel", "replay"]
    assert store.zcard(audit._key) == 2
    assert audit.prune(now=now + 2 * DAY) == 1  # the replay is now 31 days old
    assert [e.action for e in audit.recent()] == ["cancel"]
