"""``ppw poll once``, ``ppw status``, ``ppw held`` and ``ppw scheduler`` as an operator types them."""

from __future__ import annotations

import json
import re

from tests.polling.conftest import Harness, Invoke
from worker.eventstore import EventStore
from worker.polling import cursors, held


def test_poll_once_dry_run_then_for_real(ppw: Invoke, harness: Harness) -> None:
    harness.create("matters", 3)
    dry = ppw("poll", "once", "matters", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would prime 3 records" in dry.output
    assert cursors.load_cursor(harness.store, harness.connection, "matters") is None

    primed = ppw("poll", "once", "matters")
    assert primed.exit_code == 0, primed.output
    assert "primed 3 records" in primed.output
    assert cursors.load_cursor(harness.store, harness.connection, "matters") is not None

    [record] = harness.create("matters", name="Estate of Smith")
    first = harness.store.hlen(cursors.snapshot_key(harness.connection, "matters"))
    preview = ppw("poll", "once", "matters", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert f"created  matters {record['id']}" in preview.output
    assert "1 event(s) from" in preview.output and "would emit" in preview.output
    assert harness.store.hlen(cursors.snapshot_key(harness.connection, "matters")) == first

    as_json = ppw("poll", "once", "timeentries", "--dry-run", "--json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["resource"] == "time_entries" and data["outcome"] == "primed" and data["dry_run"]

    real = ppw("poll", "once", "matters")
    assert real.exit_code == 0, real.output
    assert f"created  matters {record['id']}" in real.output
    assert "`ppw run` dispatches these events" in real.output
    harness.update("matters", record["id"], status="Closed")
    update = ppw("poll", "once", "matters")
    assert f"updated  matters {record['id']}" in update.output
    # the true old value, though no rule compares matters
    assert re.search(rf"^    status: {record['status']} -> Closed$", update.output, re.MULTILINE), (
        update.output
    )
    pending = EventStore(harness.store, ttl=3600).pending(harness.connection)
    assert len(pending) == 2  # stored for dispatch (the embedded broker lives in `ppw run`)


def test_unknown_resource(ppw: Invoke) -> None:
    result = ppw("poll", "once", "widgets")
    assert result.exit_code == 1
    assert "unknown resource 'widgets'" in result.output


def test_status(ppw: Invoke, harness: Harness) -> None:
    harness.create("matters", 2)
    assert ppw("poll", "once", "matters").exit_code == 0
    result = ppw("status")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "primed" in lines["matters"]
    assert "(never polled)" in lines["tasks"]
    assert "(never polled)" in lines["contacts"]  # watched by a rule
    assert "embedded broker" in result.output
    data = json.loads(ppw("status", "--json").output)
    [matters] = [r for r in data["resources"] if r["resource"] == "matters"]
    assert matters["primed"] and matters["snapshots"] == 2 and matters["lag_seconds"] is not None
    assert data["held"] == []


def test_held_list_show_release_discard(ppw: Invoke, harness: Harness) -> None:
    assert ppw("poll", "once", "matters").exit_code == 0
    harness.create("matters", 7)
    flood = ppw("poll", "once", "matters")
    assert flood.exit_code == 0, flood.output
    assert "held as batch" in flood.output
    [batch] = held.list_held(harness.store, harness.connection)

    listing = ppw("held", "list")
    assert batch.id in listing.output and "7 events (7 created)" in listing.output
    assert "exceed the flood limit of 5" in listing.output
    shown = ppw("held", "show", batch.id)
    assert shown.output.count("created  matters") == 7
    status = ppw("status")
    assert "1 held batch(es)" in status.output

    released = ppw("held", "release", batch.id)
    assert released.exit_code == 0, released.output
    assert "7 event(s) sent to dispatch" in released.output
    assert len(EventStore(harness.store, ttl=3600).pending(harness.connection)) == 7
    assert ppw("held", "list").output.strip() == "no held batches"
    again = ppw("held", "release", batch.id)
    assert again.exit_code == 1 and "no held batch" in again.output

    harness.create("matters", 6)
    ppw("poll", "once", "matters")
    [second] = held.list_held(harness.store, harness.connection)
    refused = ppw("held", "discard", second.id, input="n\n")
    assert refused.exit_code == 1
    assert held.list_held(harness.store, harness.connection) != []
    dropped = ppw("held", "discard", second.id, "--yes")
    assert dropped.exit_code == 0 and "6 event(s) dropped" in dropped.output
    assert held.list_held(harness.store, harness.connection) == []


def test_scheduler_refuses_the_embedded_broker(ppw: Invoke) -> None:
    result = ppw("scheduler")
    assert result.exit_code == 2
    assert "ppw run" in result.output


def test_status_shows_state_size_by_kind(ppw: Invoke, harness: Harness) -> None:
    harness.create("matters", 2)
    assert ppw("poll", "once", "matters").exit_code == 0
    result = ppw("status")
    assert result.exit_code == 0, result.output
    assert re.search(r"^state: \d+ keys, [\d.]+ (B|KiB|MiB)$", result.output, re.MULTILINE), result.output
    assert re.search(r"^  snap\s+1\s+[\d.]+ (B|KiB)$", result.output, re.MULTILINE), result.output
    assert re.search(r"^  cursor\s+1\s", result.output, re.MULTILINE), result.output
    usage = json.loads(ppw("status", "--json").output)["state_usage"]
    assert usage["snap"]["keys"] == 1 and usage["snap"]["bytes"] > 0
    assert usage["cursor"]["keys"] == 1 and usage["pollstatus"]["keys"] >= 1
