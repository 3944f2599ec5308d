"""Which resources have state, without scanning the keyspace (a SCAN on Redis walks every key of
the database: the console's overview, with 100,000 runs, paid that on every refresh)."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.polling import cursors
from worker.state.base import StateStore, key


def _status() -> cursors.PollStatus:
    return cursors.PollStatus(at=datetime.now(UTC).isoformat(), result="ok", events=0, last_success=None)


def _cursor() -> cursors.Cursor:
    now = datetime.now(UTC)
    return cursors.Cursor(position=now, primed_at=now, advanced_at=now)


def test_resources_with_a_cursor_or_a_status_are_known(store: StateStore, connection_id: str) -> None:
    assert cursors.known_resources(store, connection_id) == []
    with store.batch() as batch:
        cursors.write_cursor(batch, connection_id, "matters", _cursor())
    cursors.write_status(store, connection_id, "contacts", _status())  # a first poll that failed
    assert cursors.known_resources(store, connection_id) == ["contacts", "matters"]
    cursors.reset(store, connection_id, "contacts")
    assert cursors.known_resources(store, connection_id) == ["matters"]


def test_a_store_from_before_the_index_is_scanned_once(store: StateStore, connection_id: str) -> None:
    # as an older ppw wrote them: the keys alone, no index
    store.set(cursors.cursor_key(connection_id, "invoices"), _cursor().dumps())
    store.set(cursors.status_key(connection_id, "tasks"), _status().dumps())
    assert cursors.known_resources(store, connection_id) == ["invoices", "tasks"]
    assert sorted(store.hkeys(cursors.resources_key(connection_id))) == ["invoices", "tasks"]
    assert store.get(key(connection_id, "indexed", "resources")) is not None
    # from now on the index answers: a key written behind its back is not found by a scan
    store.set(cursors.status_key(connection_id, "notes"), _status().dumps())
    assert cursors.known_resources(store, connection_id) == ["invoices", "tasks"]
