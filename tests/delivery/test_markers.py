"""The marker modes ``single`` and ``restart`` keep for a waiting run (which run of a rule waits
for a record) is small: a digest field in one of a few thousand small hashes, not the names in one
big hash; markers written before that change still count until their runs move on."""

from __future__ import annotations

from datetime import timedelta

import time_machine

from tests.delivery.conftest import Firm
from worker.delivery.timers import MARK_BUCKETS, Timers


def _markers(firm: Firm) -> dict[str, dict[str, str]]:
    prefix = f"ppw:{firm.connection}:rule-waiting"
    return {k: firm.store.hgetall(k) for k in firm.store.scan(prefix) if firm.store.hgetall(k)}


def test_a_waiting_run_of_mode_restart_has_one_small_marker(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    firm.reload(mode="restart")
    record = firm.matter()
    first = firm.start(record, revision="1")
    firm.run(first)
    [(bucket, fields)] = _markers(firm).items()
    assert int(bucket.rsplit(":", 1)[1], 16) < MARK_BUCKETS
    assert [(len(field), run) for field, run in fields.items()] == [(12, first)]
    other = firm.start(firm.matter("Another"), revision="1")
    firm.run(other)
    assert sorted(run for fields in _markers(firm).values() for run in fields.values()) == sorted(
        [first, other]
    )

    second = firm.start(record, revision="2")
    assert firm.run(second).status == "waiting"
    assert firm.app.history.get(firm.connection, first).status == "cancelled"
    assert sorted(run for f in _markers(firm).values() for run in f.values()) == sorted([second, other])
    clock.shift(timedelta(days=3, seconds=1))
    assert firm.run(second).status == "succeeded" and firm.run(other).status == "succeeded"
    assert _markers(firm) == {}


def test_a_marker_written_before_the_upgrade_still_counts(
    firm: Firm, clock: time_machine.Coordinates
) -> None:
    firm.reload(mode="single")
    record = firm.matter()
    first = firm.start(record, revision="1")
    firm.run(first)
    [(bucket, fields)] = _markers(firm).items()
    legacy = f"ppw:{firm.connection}:rule-waiting"
    with firm.store.batch() as batch:  # as an earlier version stored it
        batch.hdel(bucket, *fields)
        batch.hset(legacy, {"\x1f".join(("follow-up", "matters", record["id"])): first})
    firm.app.timers = Timers(firm.store)  # a process started after the upgrade

    second = firm.start(record, revision="2")
    skipped = firm.run(second)
    assert skipped.status == "skipped" and "waiting" in (skipped.run.reason if skipped.run else "")
    clock.shift(timedelta(days=3, seconds=1))
    assert firm.run(first).status == "succeeded"
    assert firm.store.hgetall(legacy) == {} and _markers(firm) == {}
    third = firm.start(record, revision="3")
    assert firm.run(third).status == "waiting"  # nothing waits any more: the rule runs again
