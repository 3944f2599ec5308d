"""The poller against the sandbox over real HTTP, with state on SQLite and on Redis."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.polling.conftest import Harness, wait_for
from worker.polling import cursors, held
from worker.polling.own_writes import remember_own_record, remember_own_write
from worker.polling.poller import PollAborted, Poller, poll_lock_key


def modes(query_mode: str) -> dict[str, Any]:
    if query_mode == "updated_since":
        return {"use_updated_since": frozenset({"matters", "tasks"})}
    return {}


# priming ------------------------------------------------------------------------------------
def test_first_poll_primes_without_firing(harness: Harness) -> None:
    harness.create("matters", 250)
    seen: list[int] = []
    result = harness.poller().poll("matters", harness.emitted.extend, on_progress=seen.append)
    assert result.outcome == "primed"
    assert result.records == 250
    assert harness.emitted == []
    assert seen[-1] == 250 and len(seen) == 3  # progress after each page of 100
    assert harness.store.hlen(cursors.snapshot_key(harness.connection, "matters")) == 250
    cursor = cursors.load_cursor(harness.store, harness.connection, "matters")
    assert cursor is not None and cursor.position is not None
    second = harness.poll()
    assert second.outcome == "ok"
    assert second.events == []


def test_priming_an_empty_account(harness: Harness) -> None:
    assert harness.poll().outcome == "primed"
    [created] = harness.create("matters")
    result = harness.poll()
    assert [(e.type, e.record_id) for e in result.events] == [("created", created["id"])]


def test_backfill_fires_changes_since_the_configured_start(harness: Harness) -> None:
    old = harness.admin.mutate(
        [
            {
                "op": "create",
                "resource": "matters",
                "backdate_seconds": 7200,
                "data": {"name": "Old", "status": "Open", "account_ref": {"id": harness.account()}},
            }
        ]
    )[0]
    [recent] = harness.create("matters")
    since = datetime.now(UTC) - timedelta(hours=1)
    result = harness.poll(backfill_since={"matters": since})
    assert result.outcome == "ok"
    assert [(e.type, e.record_id) for e in harness.emitted] == [("created", recent["id"])]
    assert harness.store.hmget_bytes(cursors.snapshot_key(harness.connection, "matters"), [old["id"]]) != [
        None
    ]


# creates, updates, touches --------------------------------------------------------------------
def test_creates_updates_and_touches(harness: Harness, query_mode: str) -> None:
    options = modes(query_mode)
    [kept, changed, touched] = harness.create("matters", 3)
    harness.poll(**options)
    [new] = harness.create("matters", name="Brand new")
    harness.update("matters", changed["id"], status="Closed")
    harness.bulk_update("matters", [touched["id"]])  # saved without a change: only updated_at moves
    result = harness.poll(**options)
    by_record = {e.record_id: e for e in result.events}
    assert set(by_record) == {new["id"], changed["id"]}
    assert by_record[new["id"]].type == "created"
    update = by_record[changed["id"]]
    assert update.type == "updated"
    assert {k: (c.old, c.new) for k, c in update.changes.items()} == {"status": ("Open", "Closed")}
    assert update.record["status"] == "Closed"
    assert update.origin == "practicepanther"
    assert kept["id"] not in by_record
    # the overlap re-reads those changes on the next poll; nothing fires twice
    assert harness.poll(**options).events == []


def test_idle_poll_costs_one_request(harness: Harness, query_mode: str) -> None:
    options = modes(query_mode)
    harness.create("matters", 30)
    harness.poll(**options)
    requests = harness.requests_during(lambda: harness.poll(**options))
    assert len(requests) == 1
    assert requests[0]["method"] == "GET" and requests[0]["path"] == "/api/v2/matters"
    if query_mode == "updated_since":
        assert "updated_since=" in requests[0]["query"] and "filter" not in requests[0]["query"]
    else:
        assert "%24filter=updated_at+ge" in requests[0]["query"]


def test_many_records_sharing_one_timestamp_across_pages(harness: Harness, query_mode: str) -> None:
    options = modes(query_mode)
    records = harness.create("matters", 500)
    harness.poll(**options)
    harness.bulk_update("matters", [r["id"] for r in records], status="Pending")
    result = harness.poll(**options)
    assert len(result.events) == 500
    assert len({e.record_id for e in result.events}) == 500
    assert {e.changes["status"].new for e in result.events} == {"Pending"}
    assert len({e.record["updated_at"] for e in result.events}) == 1
    assert result.requests >= 5
    assert harness.poll(**options).events == []


def test_records_edited_between_pages(harness: Harness, query_mode: str) -> None:
    options = modes(query_mode)
    records = harness.create("matters", 300)
    harness.poll(**options)
    harness.bulk_update("matters", [r["id"] for r in records], status="Closed")
    harness.faults(page_mutation=10)  # before each later page, 10 records already read are edited
    first = harness.poll(**options)
    harness.faults(page_mutation=0)
    second = harness.poll(**options)
    events = first.events + second.events
    assert {e.record_id for e in first.events} == {r["id"] for r in records}
    assert len(first.events) == 300  # one event per record, whatever moved meanwhile
    assert len({e.id for e in events}) == len(events)
    assert second.events == []  # the fault only touched records: nothing more to fire
    if query_mode == "filter":
        assert first.rereads > 0  # the edits really did shift the listing under the reader


def test_several_revisions_in_one_poll_become_one_event(harness: Harness) -> None:
    [record] = harness.create("matters")
    harness.poll()
    harness.update("matters", record["id"], status="Pending")
    harness.update("matters", record["id"], status="Closed", name="Renamed")
    [event] = harness.poll().events
    assert event.changes["status"].old == "Open"
    assert event.changes["status"].new == "Closed"
    assert event.changes["name"].old == record["name"]
    assert event.changes["name"].new == "Renamed"


# failures ---------------------------------------------------------------------------------------
def test_server_errors_while_paging_are_retried(harness: Harness) -> None:
    records = harness.create("matters", 250)
    harness.poll()
    harness.bulk_update("matters", [r["id"] for r in records], status="Closed")
    harness.faults(rate_5xx=0.3)
    result = harness.poll()
    harness.faults(rate_5xx=0)
    assert len(result.events) == 250


def test_a_failed_poll_leaves_the_cursor_and_loses_nothing(harness: Harness) -> None:
    records = harness.create("matters", 250)
    harness.poll()
    before = harness.store.get(cursors.cursor_key(harness.connection, "matters"))
    harness.bulk_update("matters", [r["id"] for r in records], status="Closed")
    harness.faults(rate_5xx=1.0)
    with pytest.raises(Exception, match=r"500|502|503|server"):
        harness.poll()
    harness.faults(rate_5xx=0)
    assert harness.store.get(cursors.cursor_key(harness.connection, "matters")) == before
    status = cursors.load_status(harness.store, harness.connection, "matters")
    assert status is not None and status.result == "error" and status.error
    assert harness.emitted == []
    assert len(harness.poll().events) == 250


def test_emit_failing_half_way_re_emits_nothing_already_sent(harness: Harness) -> None:
    records = harness.create("matters", 120)
    harness.poll()
    harness.bulk_update("matters", [r["id"] for r in records], status="Closed")
    delivered: list[str] = []

    def flaky(events: list) -> None:
        if len(delivered) >= 50:
            raise ConnectionError("broker went away")
        delivered.extend(e.id for e in events)

    before = harness.store.get(cursors.cursor_key(harness.connection, "matters"))
    with pytest.raises(ConnectionError):
        harness.poller(emit_chunk=50).poll("matters", flaky)
    assert harness.store.get(cursors.cursor_key(harness.connection, "matters")) == before
    result = harness.poller(emit_chunk=50).poll(
        "matters", lambda events: delivered.extend(e.id for e in events)
    )
    assert len(result.events) == 70
    assert len(delivered) == len(set(delivered)) == 120


@pytest.mark.parametrize("skew", [-3600, 3600])
def test_server_clock_skew(harness: Harness, skew: int) -> None:
    """A PracticePanther clock an hour behind or ahead of this host changes nothing."""
    harness.faults(clock_skew=skew)
    [first] = harness.create("matters")
    harness.poll()
    for round_ in range(3):
        [created] = harness.create("matters", name=f"round {round_}")
        harness.update("matters", first["id"], name=f"renamed {round_}")
        events = harness.poll().events
        assert sorted((e.type, e.record_id) for e in events) == sorted(
            [("created", created["id"]), ("updated", first["id"])]
        )
    assert harness.poll().events == []


def test_clock_stepping_back_within_the_overlap(harness: Harness) -> None:
    harness.create("matters", 2)
    harness.poll()
    harness.create("matters")
    harness.poll()
    harness.faults(clock_skew=-60)  # NTP corrects the server clock by a minute (overlap: 2 minutes)
    [after] = harness.create("matters", name="after the correction")
    assert [e.record_id for e in harness.poll().events] == [after["id"]]


def test_late_commit_inside_the_overlap_is_caught(harness: Harness) -> None:
    harness.create("matters", 3)
    harness.poll()
    [late] = harness.admin.mutate(
        [
            {
                "op": "create",
                "resource": "matters",
                "backdate_seconds": 60,
                "data": {"name": "late", "status": "Open", "account_ref": {"id": harness.account()}},
            }
        ]
    )
    assert [e.record_id for e in harness.poll().events] == [late["id"]]


# sweeps: the overlap re-read every PPW_POLL_SWEEP_INTERVAL, not on every poll ------------------
def _backdated(harness: Harness, seconds: int, name: str) -> dict[str, Any]:
    [made] = harness.admin.mutate(
        [
            {
                "op": "create",
                "resource": "matters",
                "backdate_seconds": seconds,
                "data": {"name": name, "status": "Open", "account_ref": {"id": harness.account()}},
            }
        ]
    )
    return made


def test_between_sweeps_a_poll_reads_only_past_the_cursor(harness: Harness) -> None:
    harness.create("matters", 3)
    harness.poll(sweep_interval=3600)  # primes
    harness.poll(sweep_interval=3600)  # the first incremental poll sweeps
    burst = harness.create("matters", 40)
    result = harness.poll(sweep_interval=3600)
    assert {e.record_id for e in result.events} == {r["id"] for r in burst}
    after = harness.poll(sweep_interval=3600)
    # only the records at the cursor's own timestamp come back, not the whole burst
    assert after.events == [] and after.records < len(burst)
    swept = harness.poll(sweep_interval=0)
    assert swept.events == [] and swept.records >= len(burst)


def test_a_late_commit_is_caught_by_the_next_sweep(harness: Harness) -> None:
    harness.create("matters", 3)
    harness.poll(sweep_interval=3600)
    harness.poll(sweep_interval=3600)  # swept now; the next sweep is an hour away
    harness.create("matters")
    harness.poll(sweep_interval=3600)
    late = _backdated(harness, 60, "late")
    assert harness.poll(sweep_interval=3600).events == []  # behind the cursor: not read yet
    cursor = cursors.load_cursor(harness.store, harness.connection, "matters")
    assert cursor is not None and cursor.swept_at is not None
    assert [e.record_id for e in harness.poll(sweep_interval=0.001).events] == [late["id"]]


def test_a_sweep_reaches_back_from_where_the_previous_sweep_started(harness: Harness) -> None:
    options: dict[str, Any] = {"overlap": 1.0, "sweep_interval": 3600}
    harness.create("matters", 2)
    harness.poll(**options)
    harness.poll(**options)  # a sweep: it remembers the cursor it started from
    swept = cursors.load_cursor(harness.store, harness.connection, "matters")
    assert swept is not None and swept.swept_from is not None
    time.sleep(1.6)  # the cursor moves on by more than the overlap before the next sweep
    harness.create("matters")
    harness.poll(**options)
    moved = cursors.load_cursor(harness.store, harness.connection, "matters")
    assert moved is not None and moved.position is not None and swept.position is not None
    assert (moved.position - swept.position).total_seconds() > 1.0
    # committed late, stamped after the previous sweep's cursor but before the cursor minus the
    # overlap: a sweep reaching back from the cursor alone would never see it
    late = _backdated(harness, 1.3, "late after a long gap")
    found = harness.poll(overlap=1.0, sweep_interval=0.001)
    assert [e.record_id for e in found.events] == [late["id"]]


def test_while_the_server_clock_runs_ahead_every_poll_sweeps(harness: Harness) -> None:
    options: dict[str, Any] = {"sweep_interval": 3600}
    harness.create("matters", 2)
    harness.poll(**options)
    harness.poll(**options)
    harness.faults(clock_skew=600)
    harness.create("matters")
    harness.poll(**options)
    cursor = cursors.load_cursor(harness.store, harness.connection, "matters")
    assert cursor is not None and cursor.swept_at is None  # capped at our clock: sweep next time
    harness.faults(clock_skew=-60)  # corrected to behind ours
    [after] = harness.create("matters", name="after the correction")
    assert after["id"] in [e.record_id for e in harness.poll(**options).events]


# flood hold ---------------------------------------------------------------------------------
def test_flood_is_held_then_released(harness: Harness) -> None:
    harness.poll()
    harness.create("matters", 8)
    result = harness.poll(flood_limit=5)
    assert result.outcome == "held"
    assert harness.emitted == []
    assert result.held is not None
    [batch] = held.list_held(harness.store, harness.connection)
    assert batch.count == 8 and batch.resource == "matters" and batch.types == {"created": 8}
    assert harness.poll(flood_limit=5).events == []  # the cursor moved on; nothing re-detected
    released: list = []
    assert held.release(harness.store, harness.connection, batch.id, released.extend) == 8
    assert {e.type for e in released} == {"created"}
    assert held.list_held(harness.store, harness.connection) == []
    with pytest.raises(held.HeldBatchNotFound):
        held.release(harness.store, harness.connection, batch.id, released.extend)


def test_flood_discarded(harness: Harness) -> None:
    harness.poll()
    harness.create("matters", 4)
    result = harness.poll(flood_limit=3)
    assert result.held is not None
    assert held.discard(harness.store, harness.connection, result.held.id) == 4
    assert held.list_held(harness.store, harness.connection) == []
    assert harness.emitted == []


# loop guard ---------------------------------------------------------------------------------
def test_own_writes_are_marked(harness: Harness) -> None:
    [mine, theirs] = harness.create("matters", 2)
    harness.poll()
    written = harness.client.update("matters", mine["id"], {"status": "Closed"})
    remember_own_write(harness.store, harness.connection, "matters", mine["id"], written["updated_at"])
    harness.update("matters", theirs["id"], status="Closed")
    origins = {e.record_id: e.origin for e in harness.poll().events}
    assert origins == {mine["id"]: "ppw", theirs["id"]: "practicepanther"}


def test_own_writes_by_record_and_then_edited_by_a_person(harness: Harness) -> None:
    [record] = harness.create("matters")
    harness.poll()
    written = harness.client.update("matters", record["id"], {"status": "Pending"})
    remember_own_record(harness.store, harness.connection, "matters", written)
    [ours] = harness.poll().events
    assert ours.origin == "ppw"
    harness.update("matters", record["id"], status="Closed")
    [person] = harness.poll().events
    assert person.origin == "practicepanther"


# resources without updated_at ----------------------------------------------------------------
def test_contacts_are_detected_by_content(harness: Harness) -> None:
    [anna, bob] = harness.create("contacts", 2)
    assert harness.poll("contacts").outcome == "primed"
    harness.update("contacts", anna["id"], email="anna@example.com")
    [carl] = harness.create("contacts", first_name="Carl")
    result = harness.poll("contacts")
    by_record = {e.record_id: e for e in result.events}
    assert set(by_record) == {anna["id"], carl["id"]}
    assert by_record[anna["id"]].changes["email"].new == "anna@example.com"
    assert by_record[carl["id"]].type == "created"
    assert bob["id"] not in by_record
    assert harness.poll("contacts").events == []


# concurrency --------------------------------------------------------------------------------
def test_one_poll_in_flight_per_resource(harness: Harness) -> None:
    harness.poll()
    from worker.state.locks import Lease

    other = Lease(harness.store, poll_lock_key(harness.connection, "matters"), ttl=30)
    assert other.acquire()
    assert harness.poll().outcome == "busy"
    other.release()
    assert harness.poll().outcome == "ok"


class SlowPages:
    """The real client, each page served ``delay`` seconds late; notes the poll lock's time left."""

    def __init__(self, harness: Harness, delay: float) -> None:
        self.harness = harness
        self.delay = delay
        self.lock_ttls: list[float | None] = []

    def list_page(self, resource: str, **kwargs: object) -> list[dict]:
        self.lock_ttls.append(self.harness.store.ttl(poll_lock_key(self.harness.connection, resource)))
        threading.Event().wait(self.delay)
        return self.harness.client.list_page(resource, **kwargs)  # type: ignore[arg-type]


def test_the_poll_lock_is_a_short_lease_kept_while_the_poll_runs(harness: Harness) -> None:
    harness.poll()
    harness.create("matters", 12)
    source = SlowPages(harness, delay=0.25)
    options = replace(harness.options, page_size=3, lease=0.3, timeout=30.0)
    poller = Poller(source, harness.store, connection=harness.connection, options=options)
    result = poller.poll("matters", harness.emitted.extend)  # about 1 s: three times the lease
    assert result.outcome == "ok" and len(result.events) == 12
    # a dead holder would block the next poll for the lease (0.3 s), not for the timeout (30 s)
    assert all(t is not None and 0 < t <= 0.3 for t in source.lock_ttls), source.lock_ttls
    assert harness.store.get(poll_lock_key(harness.connection, "matters")) is None


def test_a_poll_past_its_timeout_stops_and_commits_nothing(harness: Harness) -> None:
    harness.poll()
    harness.create("matters", 12)
    before = harness.store.get(cursors.cursor_key(harness.connection, "matters"))
    options = replace(harness.options, page_size=3, lease=0.3, timeout=0.4)
    poller = Poller(
        SlowPages(harness, delay=0.25), harness.store, connection=harness.connection, options=options
    )
    with pytest.raises(PollAborted, match="PPW_POLL_TIMEOUT"):
        poller.poll("matters", harness.emitted.extend)
    assert harness.store.get(cursors.cursor_key(harness.connection, "matters")) == before
    assert harness.store.get(poll_lock_key(harness.connection, "matters")) is None  # given back
    assert len(harness.poll().events) == 12  # the next poll finds every change


def test_dry_run_writes_nothing(harness: Harness) -> None:
    harness.poll()
    harness.create("matters", 2)
    before = harness.store.get(cursors.cursor_key(harness.connection, "matters"))
    result = harness.poller().poll("matters", dry_run=True)
    assert len(result.events) == 2 and result.dry_run
    assert harness.store.get(cursors.cursor_key(harness.connection, "matters")) == before
    assert len(harness.poll().events) == 2


def test_unpollable_resource(harness: Harness) -> None:
    with pytest.raises(ValueError, match="cannot be polled"):
        Poller(harness.client, harness.store, connection=harness.connection).poll("tags", dry_run=True)


class EditingBetweenPages:
    """The real client, plus a person editing a record right after the first page was served."""

    def __init__(self, harness: Harness, record_id: str) -> None:
        self.harness = harness
        self.record_id = record_id
        self.pages = 0

    def list_page(self, resource: str, **kwargs: object) -> list[dict]:
        page = self.harness.client.list_page(resource, **kwargs)  # type: ignore[arg-type]
        self.pages += 1
        if self.pages == 1:
            self.harness.update("matters", self.record_id, status="Archived")
        return page


def test_content_edited_between_pages(harness: Harness, query_mode: str) -> None:
    options = modes(query_mode)
    records = harness.create("matters", 150)
    harness.poll(**options)
    harness.bulk_update("matters", [r["id"] for r in records], status="Closed")
    first_id = records[0]["id"]
    source = EditingBetweenPages(harness, first_id)
    poller = Poller(
        source, harness.store, connection=harness.connection, options=harness.poller(**options).options
    )
    events = poller.poll("matters", harness.emitted.extend).events
    events += harness.poll(**options).events
    mine = [e for e in events if e.record_id == first_id]
    assert len({e.record_id for e in events}) == 150
    assert mine[-1].record["status"] == "Archived"
    assert len(mine) == (1 if query_mode == "filter" else 2)  # same poll, or caught by the next one


# a process killed half-way ------------------------------------------------------------------------
def _poll_and_die(settings: object, store_url: str, connection: str, out: str, options: object) -> None:
    """Poll in a child process whose "broker" dies (the process is killed) during the second chunk."""
    import os

    from worker.practicepanther.client import PracticePantherClient
    from worker.state import open_store

    store = open_store(store_url)
    client = PracticePantherClient(settings, store)  # type: ignore[arg-type]
    chunks = 0

    def emit(events: list) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 2:
            os._exit(17)  # killed mid-emit: nothing of this chunk was sent
        with open(out, "a") as sink:
            sink.writelines(e.id + "\n" for e in events)

    Poller(client, store, connection=connection, options=options).poll("matters", emit)  # type: ignore[arg-type]


def test_poll_killed_half_way_loses_and_repeats_nothing(harness: Harness, tmp_path: Path) -> None:
    import multiprocessing

    records = harness.create("matters", 120)
    harness.poll()
    harness.bulk_update("matters", [r["id"] for r in records], status="Closed")
    out = tmp_path / "emitted.txt"
    options = harness.poller(emit_chunk=50, lease=1.0).options
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(
        target=_poll_and_die,
        args=(harness.settings, harness.store.url, harness.connection, str(out), options),
    )
    child.start()
    child.join(60)
    assert child.exitcode == 17
    sent = out.read_text().split()
    assert len(sent) == 50
    # its poll lock outlives it by at most the lease (PPW_POLL_LEASE), whatever the poll timeout
    assert harness.poll(lease=1.0).outcome == "busy"
    wait_for(lambda: harness.store.get(poll_lock_key(harness.connection, "matters")) is None, timeout=5)
    result = harness.poll(lease=1.0)
    sent += [e.id for e in result.events]
    assert len(sent) == len(set(sent)) == 120
    assert len(result.events) == 70


class IgnoringOrderby:
    """A service that silently ignores $orderby (it answers in its own order)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def list_page(self, resource: str, **kwargs: Any) -> list[dict[str, Any]]:
        kwargs.pop("orderby", None)
        return self.harness.client.list_page(resource, **kwargs)


def test_a_service_ignoring_orderby_is_detected_not_trusted(harness: Harness) -> None:
    from worker.polling.paging import PagingError

    records = harness.create("matters", 3)
    harness.poll()
    for record in reversed(records):
        harness.update("matters", record["id"], status="Closed")
    before = harness.store.get(cursors.cursor_key(harness.connection, "matters"))
    poller = Poller(IgnoringOrderby(harness), harness.store, connection=harness.connection)
    with pytest.raises(PagingError, match="PPW_POLL_USE_UPDATED_SINCE"):
        poller.poll("matters", harness.emitted.extend)
    assert harness.store.get(cursors.cursor_key(harness.connection, "matters")) == before
    assert harness.emitted == []
