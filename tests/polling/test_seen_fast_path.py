"""A re-read revision is recognised from ``updated_at`` alone, and nothing else changes.

Every poll re-reads the records changed within the overlap, so most records a poll reads were
seen at this revision. The detector skips those without building a snapshot; these tests pin
that it does skip them, and that the outcome is what the full comparison gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.polling.detector import Detection, Detector
from worker.polling.snapshots import Snapshot, Snapshotter
from worker.practicepanther import resources

MATTERS = resources.get("matters")
CONTACTS = resources.get("contacts")
T0 = "2026-04-01T10:00:00Z"
T1 = "2026-04-01T10:05:00Z"
ID = "5c1b7a54-1f4e-4a8e-9f0a-000000000001"
NOW = datetime(2026, 4, 1, 11, tzinfo=UTC)


def matter(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": ID,
        "account_ref": {"id": "A1", "display_name": "Acme Corp"},
        "name": "Acme v. Widget",
        "status": "Open",
        "open_date": "2026-03-01T00:00:00Z",
        "tags": ["litigation"],
        "created_at": T0,
        "updated_at": T0,
    }
    record.update(overrides)
    return record


def contact(**overrides: Any) -> dict[str, Any]:
    return {"id": "C1", "first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", **overrides}


class CountingSnapshotter(Snapshotter):
    """A snapshotter that counts the snapshots it builds (the work the fast path saves)."""

    taken = 0

    def take(self, record: Any) -> Snapshot:
        self.taken += 1
        return super().take(record)


def detector(resource: resources.Resource = MATTERS) -> Detector:
    return Detector(resource, connection="c1", snapshotter=CountingSnapshotter(resource))


def taken(found: Detector) -> int:
    assert isinstance(found.snapshotter, CountingSnapshotter)
    return found.snapshotter.taken


def snapshot(record: dict[str, Any], resource: resources.Resource = MATTERS) -> Snapshot:
    """As stored and loaded again, which is how a poll gets its snapshots."""
    return Snapshot.decode(Snapshotter(resource).take(record).encode())


def run(
    found: Detector, records: list[dict[str, Any]], previous: dict[str, Snapshot | None], **kw: Any
) -> Detection:
    return found.detect(records, previous, detected_at=NOW, **kw)


@pytest.mark.parametrize("primed", [True, False], ids=["primed", "priming"])
def test_a_seen_revision_is_skipped_without_a_snapshot(primed: bool) -> None:
    found = detector()
    # even with other content: a revision processed before never fires again
    result = run(found, [matter(status="Closed")], {ID: snapshot(matter())}, primed=primed)
    assert (result.events, result.snapshots, result.unchanged) == ([], {}, 1)
    assert taken(found) == 0


def test_an_older_revision_re_read_is_skipped_without_a_snapshot() -> None:
    found = detector()
    newer = snapshot(matter(status="Closed", updated_at=T1))
    result = run(found, [matter(status="Open", updated_at=T0)], {ID: newer})
    assert (result.events, result.snapshots, result.unchanged) == ([], {}, 1)
    assert taken(found) == 0


@pytest.mark.parametrize(
    "spelling",
    [
        "2026-04-01T10:00:00",
        "2026-04-01T10:00:00.000",
        "2026-04-01T12:00:00+02:00",
        "2026-04-01T10:00:00.0000000Z",
    ],
)
def test_the_same_instant_spelled_otherwise_is_the_same_revision(spelling: str) -> None:
    found = detector()
    assert found.snapshotter.revision(matter(updated_at=spelling)) == snapshot(matter()).revision
    result = run(found, [matter(updated_at=spelling)], {ID: snapshot(matter())})
    assert (result.events, result.snapshots, result.unchanged) == ([], {}, 1)
    assert taken(found) == 0


def test_a_newer_revision_still_fires_the_right_event() -> None:
    found = detector()
    before = snapshot(matter())
    result = run(found, [matter(status="Closed", updated_at=T1)], {ID: before})
    [event] = result.events
    assert event.type == "updated"
    assert event.revision == "2026-04-01T10:05:00.000000Z"
    assert {n: (c.old, c.new) for n, c in event.changes.items()} == {"status": ("Open", "Closed")}
    assert event.previous == matter()
    expected = Snapshotter(MATTERS).take(matter(status="Closed", updated_at=T1))
    assert result.snapshots[ID] == expected
    assert result.unchanged == 0


def test_a_newer_revision_without_a_content_change_moves_the_snapshot() -> None:
    found = detector()
    result = run(found, [matter(updated_at=T1)], {ID: snapshot(matter())})
    assert result.events == []
    assert result.snapshots[ID].revision == "2026-04-01T10:05:00.000000Z"
    assert result.unchanged == 0


@pytest.mark.parametrize(
    "updated_at", [None, "", "not a time", 17], ids=["null", "empty", "garbage", "number"]
)
def test_without_a_readable_updated_at_the_content_decides(updated_at: Any) -> None:
    found = detector()
    same = run(found, [matter(updated_at=updated_at)], {ID: snapshot(matter())})
    assert (same.events, same.snapshots, same.unchanged) == ([], {}, 1)
    [event] = run(found, [matter(status="Closed", updated_at=updated_at)], {ID: snapshot(matter())}).events
    assert event.type == "updated" and set(event.changes) == {"status"}
    assert taken(found) == 2  # the full comparison ran both times


def test_a_snapshot_without_a_revision_is_compared_by_content() -> None:
    found = detector()
    old = snapshot(matter())
    revisionless = Snapshot.decode(
        replace(old, revision=None, content=found.snapshotter.content_of(old)).encode()
    )
    result = run(found, [matter(updated_at=T1)], {ID: revisionless})
    assert (result.events, result.snapshots, result.unchanged) == ([], {}, 1)
    assert taken(found) == 1


def test_content_hash_resources_keep_the_full_comparison() -> None:
    found = detector(CONTACTS)
    before = snapshot(contact(), CONTACTS)
    assert before.revision is None
    same = run(found, [contact()], {"C1": before})
    assert (same.events, same.snapshots, same.unchanged) == ([], {}, 1)
    [event] = run(found, [contact(email="ann@lee.law")], {"C1": before}).events
    assert event.changes["email"].old == "ann@example.com"
    assert set(event.changes) == {"email"}
    assert taken(found) == 2


def test_unchanged_counts_every_record_seen_either_way() -> None:
    found = detector()
    records = [
        matter(id="seen"),  # same revision: fast path
        matter(id="older", updated_at=T0),  # older revision: fast path
        matter(id="no-stamp", updated_at=None),  # same content, no revision: full comparison
        matter(id="touched", updated_at=T1),  # newer revision, same content: a new snapshot
        matter(id="edited", status="Closed", updated_at=T1),  # an event
        matter(id="new"),  # a created event
    ]
    previous: dict[str, Snapshot | None] = {
        "seen": snapshot(matter(id="seen")),
        "older": snapshot(matter(id="older", updated_at=T1)),
        "no-stamp": snapshot(matter(id="no-stamp")),
        "touched": snapshot(matter(id="touched")),
        "edited": snapshot(matter(id="edited")),
        "new": None,
    }
    result = run(found, records, previous)
    assert result.unchanged == 3
    assert sorted(result.snapshots) == ["edited", "new", "touched"]
    assert sorted((e.record_id, e.type) for e in result.events) == [("edited", "updated"), ("new", "created")]
    assert taken(found) == 4  # all but the two the revision alone settled


def records_and_snapshots() -> Iterator[tuple[list[dict[str, Any]], dict[str, Snapshot | None]]]:
    """Polls mixing every case, for comparing against the detector without the fast path."""
    stamps = [T0, T1, None, "garbage", "2026-04-01T10:05:00", "2026-04-01T09:00:00+00:00"]
    for shift in range(len(stamps)):
        records = [matter(id="new", updated_at=stamps[shift])]
        previous: dict[str, Snapshot | None] = {"new": None}
        for index, (stamp, old_stamp) in enumerate(zip(stamps, stamps[shift:] + stamps[:shift], strict=True)):
            rid = f"r{index}"
            records.append(matter(id=rid, status="Closed" if index % 2 else "Open", updated_at=stamp))
            previous[rid] = snapshot(matter(id=rid, updated_at=old_stamp))
        yield records, previous


class WithoutFastPath(Detector):
    """The detector as it was before the fast path: every record is snapshotted first."""

    def _seen_revision(self, old: Snapshot, record: Any) -> bool:
        return False


@pytest.mark.parametrize("primed", [True, False], ids=["primed", "priming"])
def test_the_outcome_is_the_full_comparisons(primed: bool) -> None:
    for records, previous in records_and_snapshots():
        fast = Detector(MATTERS, connection="c1")
        full = WithoutFastPath(MATTERS, connection="c1")
        kw: dict[str, Any] = {"primed": primed, "backfill_since": datetime(2026, 4, 1, tzinfo=UTC)}
        got, expected = run(fast, records, previous, **kw), run(full, records, previous, **kw)
        assert got.unchanged == expected.unchanged
        assert got.snapshots == expected.snapshots
        assert [e.model_dump() for e in got.events] == [e.model_dump() for e in expected.events]
