"""Deleted records, found by reconciling listings with snapshots: the sandbox over HTTP, both backends.

A deletion fires once, with the record as last seen; a record the listing misses but its GET
finds stays tracked; an outage answering empty lists fires nothing; a mass disappearance is held;
a reconcile that fails part-way removes nothing; ``$select`` refused falls back to whole pages and
is remembered; the scheduler keeps the cadence across restarts; ``ppw poll reconcile`` prints it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from typer.testing import Result

from tests.polling.conftest import Harness
from worker.polling import cursors, held
from worker.polling.reconcile import (
    ReconcileOptions,
    Reconciler,
    ReconcileResult,
    ReconcileStatus,
    load_status,
    lock_key,
)
from worker.polling.scheduler import PollScheduler
from worker.practicepanther.errors import ServerError
from worker.settings import Settings
from worker.state import StateStore

OPTIONS = ReconcileOptions(page_size=7, flood_limit=10, lease=30.0, timeout=60.0)


def _reconciler(harness: Harness, source: Any = None, **options: Any) -> Reconciler:
    return Reconciler(
        source or harness.client,
        harness.store,
        connection=harness.connection,
        options=replace(OPTIONS, **options),
    )


def _reconcile(harness: Harness, source: Any = None, **options: Any) -> ReconcileResult:
    return _reconciler(harness, source, **options).reconcile("matters", harness.emitted.extend)


def _delete(harness: Harness, resource: str, ids: list[str]) -> None:
    harness.admin.mutate([{"op": "delete", "resource": resource, "id": rid} for rid in ids])


def _tracked(harness: Harness, resource: str = "matters") -> set[str]:
    return set(harness.store.hkeys(cursors.snapshot_key(harness.connection, resource)))


def _query(request: dict[str, Any]) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(request["query"]).items()}


def _primed(harness: Harness, count: int) -> list[dict[str, Any]]:
    records = harness.create("matters", count)
    assert harness.poll().outcome == "primed"
    return records


def test_a_deletion_fires_once_with_the_record_as_last_seen(harness: Harness) -> None:
    records = _primed(harness, 20)
    renamed = harness.update("matters", records[3]["id"], name="Estate of Smith")
    harness.poll()
    gone = [records[3]["id"], records[11]["id"]]
    _delete(harness, "matters", gone)

    requests = harness.requests_during(lambda: _reconcile(harness))
    result = load_status(harness.store, harness.connection, "matters")
    assert result is not None and (result.result, result.deleted, result.tracked) == ("ok", 2, 20)

    deleted = [e for e in harness.emitted if e.type == "deleted"]
    assert sorted(e.record_id for e in deleted) == sorted(gone)
    smith = next(e for e in deleted if e.record_id == records[3]["id"])
    assert smith.record["name"] == "Estate of Smith" == smith.previous["name"]  # type: ignore[index]
    assert smith.record["updated_at"][:19] == renamed["updated_at"][:19]
    assert _tracked(harness) == {r["id"] for r in records} - set(gone)

    lists = [r for r in requests if r["method"] == "GET" and r["path"].endswith("/matters")]
    assert lists and all(_query(r).get("$select") == "id" for r in lists)  # ids only
    assert len(lists) == 3  # 20 ids, 7 a page
    gets = [r for r in requests if r["method"] == "GET" and not r["path"].endswith("/matters")]
    assert len(gets) == 2  # each missing record confirmed by its own GET

    again = _reconcile(harness)
    assert again.events == [] and again.missing == 0
    assert len([e for e in harness.emitted if e.type == "deleted"]) == 2


def test_the_same_deletion_found_twice_makes_the_same_event(harness: Harness) -> None:
    """A crash after emitting and before the snapshots went: the re-run's event id is the same."""
    records = _primed(harness, 4)
    _delete(harness, "matters", [records[0]["id"]])
    first = _reconciler(harness).reconcile("matters", dry_run=True)
    second = _reconcile(harness)
    assert [e.id for e in first.events] == [e.id for e in second.events]
    assert first.events[0].type == "deleted"


def test_a_mass_deletion_is_held_for_an_operator(harness: Harness) -> None:
    records = _primed(harness, 30)
    gone = [r["id"] for r in records[:20]]
    _delete(harness, "matters", gone)
    result = _reconcile(harness)
    assert result.outcome == "held" and result.held is not None and harness.emitted == []
    [batch] = held.list_held(harness.store, harness.connection)
    assert batch.kind == "deleted" and batch.count == 20 and "missing from the listing" in batch.reason
    assert _tracked(harness) == {r["id"] for r in records[20:]}
    released = held.release(harness.store, harness.connection, batch.id, harness.emitted.extend)
    assert released == 20 and sorted(e.record_id for e in harness.emitted) == sorted(gone)
    assert {e.type for e in harness.emitted} == {"deleted"}


def test_an_empty_listing_outage_fires_nothing(harness: Harness) -> None:
    records = _primed(harness, 25)
    harness.faults(empty_listings="matters")
    small = _reconcile(harness, flood_limit=100)  # few enough to ask each record
    assert (small.outcome, small.listed, small.missing, small.events) == ("ok", 0, 25, [])
    flood = _reconcile(harness, flood_limit=10)  # too many: a sample is asked, and still answers
    assert (flood.outcome, flood.events, flood.held) == ("suspect", [], None)
    harness.faults(empty_listings="")
    assert _tracked(harness) == {r["id"] for r in records}
    assert harness.emitted == [] and held.list_held(harness.store, harness.connection) == []
    status = load_status(harness.store, harness.connection, "matters")
    assert status is not None and status.result == "suspect" and status.last_success is not None


def test_a_refused_select_lists_whole_records_and_is_remembered(harness: Harness) -> None:
    records = _primed(harness, 9)
    _delete(harness, "matters", [records[0]["id"]])
    harness.faults(refuse_select=1)
    requests = harness.requests_during(lambda: _reconcile(harness))
    lists = [r for r in requests if r["path"].endswith("/matters")]
    assert [r["status"] for r in lists[:2]] == [400, 200] and "$select" not in _query(lists[1])
    assert len(harness.emitted) == 1
    status = load_status(harness.store, harness.connection, "matters")
    assert status is not None and status.select_refused

    requests = harness.requests_during(lambda: _reconcile(harness))
    assert all("$select" not in _query(r) for r in requests)  # not asked again


class _FailingGets:
    """The real client, except that GETs of single records fail after the first ``good``."""

    def __init__(self, client: Any, good: int) -> None:
        self.client = client
        self.good = good

    def list_page(self, resource: str, **kwargs: Any) -> list[dict[str, Any]]:
        return list(self.client.list_page(resource, **kwargs))

    def get(self, resource: str, record_id: str) -> dict[str, Any]:
        if self.good <= 0:
            raise ServerError("PracticePanther is down", method="GET", path="/api/v2/matters/x", status=503)
        self.good -= 1
        return dict(self.client.get(resource, record_id))


def test_a_reconcile_failing_part_way_removes_nothing(harness: Harness) -> None:
    records = _primed(harness, 10)
    gone = [r["id"] for r in records[:4]]
    _delete(harness, "matters", gone)
    with pytest.raises(ServerError):
        _reconcile(harness, _FailingGets(harness.client, good=2))
    assert harness.emitted == [] and _tracked(harness) == {r["id"] for r in records}
    status = load_status(harness.store, harness.connection, "matters")
    assert status is not None and status.result == "error" and "down" in (status.error or "")
    assert harness.store.get(lock_key(harness.connection, "matters")) is None  # lease released

    assert len(_reconcile(harness).events) == 4  # the next one finds them all


def test_not_before_priming_and_not_twice_at_once(harness: Harness) -> None:
    assert _reconcile(harness).outcome == "unprimed"
    _primed(harness, 3)
    assert harness.store.acquire_lease(lock_key(harness.connection, "matters"), "other", 30)
    assert _reconcile(harness).outcome == "busy"


def test_content_hash_resources_reconcile_too(harness: Harness) -> None:
    """Contacts carry no updated_at: listed without $orderby, deleted events still carry the record."""
    people = harness.create("contacts", 5)
    assert harness.poll("contacts").outcome == "primed"
    _delete(harness, "contacts", [people[2]["id"]])
    result = _reconciler(harness).reconcile("contacts", harness.emitted.extend)
    [event] = result.events
    assert event.record_id == people[2]["id"] and event.record["first_name"] == people[2]["first_name"]


# the scheduler's cadence ------------------------------------------------------------------------
class _Submitted:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.done = threading.Event()

    def __call__(self, _connection: str, resource: str) -> None:
        self.calls.append(resource)
        self.done.set()


def _scheduler(store: StateStore, connection: str, submitted: _Submitted, interval: float) -> PollScheduler:
    return PollScheduler(
        store,
        lambda _c, _r: None,
        lambda: ["matters"],
        connection=connection,
        interval=3600,
        jitter=0.0,
        leader_ttl=1.0,
        reconcile=submitted,
        reconcile_interval=lambda _name: interval,
    )


def _status(store: StateStore, connection: str, result: str, ago: float) -> None:
    at = (datetime.now(UTC) - timedelta(seconds=ago)).isoformat()
    store.set(
        cursors.reconcile_status_key(connection, "matters"), ReconcileStatus(at=at, result=result).dumps()
    )


def test_the_scheduler_reconciles_when_due_counted_from_the_last_one(harness: Harness) -> None:
    store, conn = harness.store, harness.connection
    submitted = _Submitted()
    scheduler = _scheduler(store, conn, submitted, interval=86400)
    scheduler.heartbeat()  # leads, and has the job
    assert f"reconcile:{conn}:matters" in {j.id for j in scheduler._scheduler.get_jobs()}
    assert not scheduler.reconcile_tick("matters")  # not primed: nothing tracked yet
    _primed(harness, 2)
    assert not scheduler.reconcile_tick("matters")  # priming just listed everything
    cursor = cursors.load_cursor(store, conn, "matters")
    assert cursor is not None
    with store.batch() as batch:
        cursors.write_cursor(
            batch, conn, "matters", replace(cursor, primed_at=cursor.primed_at - timedelta(days=1))
        )
    assert scheduler.reconcile_tick("matters") and submitted.calls == ["matters"]
    assert not scheduler.reconcile_tick("matters")  # still queued (the marker)
    store.delete(f"ppw:{conn}:reconcileq:matters")
    _status(store, conn, "ok", ago=3600)  # a restart an hour after the last one: not due
    assert not scheduler.reconcile_tick("matters")
    _status(store, conn, "error", ago=3700)  # a failed one is tried again within the hour
    assert scheduler.reconcile_tick("matters")
    store.delete(f"ppw:{conn}:reconcileq:matters")
    _status(store, conn, "ok", ago=86401)
    assert scheduler.reconcile_tick("matters") and submitted.calls == ["matters"] * 3
    scheduler.shutdown()


def test_per_resource_interval_settings() -> None:
    settings = Settings(reconcile_interval=86400, reconcile_intervals={"TimeEntries": 3600, "tasks": 0})
    options = ReconcileOptions.from_settings(settings)
    assert options.interval_for("time_entries") == 3600
    assert options.interval_for("tasks") == 0
    assert options.interval_for("matters") == 86400


# the CLI -----------------------------------------------------------------------------------------
def test_ppw_poll_reconcile(ppw: Callable[..., Result], harness: Harness) -> None:
    assert "not primed yet" in ppw("poll", "reconcile", "matters").output
    records = _primed(harness, 5)
    _delete(harness, "matters", [records[1]["id"]])

    dry = ppw("poll", "reconcile", "Matters", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"deleted  matters {records[1]['id']}" in dry.output and "1 deletion(s) would emit" in dry.output
    assert len(_tracked(harness)) == 5

    real = ppw("poll", "reconcile", "matters", "--json")
    assert real.exit_code == 0, real.output
    data = json.loads(real.output)
    assert data["outcome"] == "ok" and data["missing"] == 1 and len(data["events"]) == 1
    assert len(_tracked(harness)) == 4

    status = ppw("status")
    assert "last reconcile" in status.output and "ok, 1 deleted" in status.output
