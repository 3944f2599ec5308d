"""The detector is pure: records and snapshots in, events and snapshots out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.events import event_id
from worker.polling.detector import Detector
from worker.polling.snapshots import Snapshot, Snapshotter
from worker.practicepanther import resources

MATTERS = resources.get("matters")
CONTACTS = resources.get("contacts")
T0 = "2026-04-01T10:00:00Z"
T1 = "2026-04-01T10:05:00Z"
T2 = "2026-04-01T10:06:00.250000Z"
ID = "5c1b7a54-1f4e-4a8e-9f0a-000000000001"


def matter(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": ID,
        "account_ref": {"id": "A1", "display_name": "Acme Corp"},
        "display_name": "00012-Acme v. Widget",
        "name": "Acme v. Widget",
        "status": "Open",
        "notes": "short",
        "tags": ["litigation", "urgent"],
        "assigned_to_users": [{"id": "U1", "display_name": "Ann"}, {"id": "U2", "display_name": "Bob"}],
        "created_at": T0,
        "updated_at": T0,
    }
    record.update(overrides)
    return record


def snapshot_of(record: dict[str, Any], resource: resources.Resource = MATTERS) -> Snapshot:
    return Snapshotter(resource).take(record)


def detect(record: dict[str, Any], previous: Snapshot | None, **kwargs: Any) -> Any:
    detector = Detector(kwargs.pop("resource", MATTERS), connection="c1")
    return detector.detect([record], {record["id"]: previous}, **kwargs)


def test_new_record_after_priming_is_created() -> None:
    found = detect(matter(), None)
    [event] = found.events
    assert event.type == "created"
    assert event.resource == "matters"
    assert event.record_id == ID
    assert event.record["name"] == "Acme v. Widget"
    assert event.changes == {}
    assert event.origin == "practicepanther"
    assert ID in found.snapshots


def test_priming_fires_nothing_but_snapshots_everything() -> None:
    detector = Detector(MATTERS, connection="c1")
    records = [matter(id=f"id-{i}") for i in range(5)]
    found = detector.detect(records, {}, primed=False)
    assert found.events == []
    assert set(found.snapshots) == {f"id-{i}" for i in range(5)}


def test_update_reports_changed_fields_with_old_and_new() -> None:
    before = snapshot_of(matter())
    found = detect(matter(status="Closed", notes="settled", updated_at=T1), before)
    [event] = found.events
    assert event.type == "updated"
    assert {name: (c.old, c.new) for name, c in event.changes.items()} == {
        "status": ("Open", "Closed"),
        "notes": ("short", "settled"),
    }
    assert event.previous is not None and event.previous["status"] == "Open"
    assert event.revision == "2026-04-01T10:05:00.000000Z"


def test_touch_without_content_change_fires_nothing_but_moves_the_revision() -> None:
    before = snapshot_of(matter())
    found = detect(matter(updated_at=T1), before)
    assert found.events == []
    assert found.snapshots[ID].revision == "2026-04-01T10:05:00.000000Z"


def test_same_revision_seen_before_is_skipped_even_if_content_differs() -> None:
    before = snapshot_of(matter(updated_at=T1))
    found = detect(matter(status="Closed", updated_at=T1), before)
    assert found.events == []
    assert found.snapshots == {}
    assert found.unchanged == 1


def test_older_revision_than_snapshot_is_ignored() -> None:
    before = snapshot_of(matter(status="Closed", updated_at=T2))
    assert detect(matter(updated_at=T1), before).events == []


def test_references_compare_by_id_only() -> None:
    before = snapshot_of(matter())
    renamed = matter(account_ref={"id": "a1", "display_name": "Acme Corporation"}, updated_at=T1)
    assert detect(renamed, before).events == []
    moved = matter(account_ref={"id": "A2", "display_name": "Other"}, updated_at=T1)
    [event] = detect(moved, before).events
    change = event.changes["account_ref"]
    assert change.old == {"id": "A1", "display_name": "Acme Corp"}
    assert change.new == {"id": "A2", "display_name": "Other"}


def test_collections_compare_as_sets() -> None:
    before = snapshot_of(matter())
    reordered = matter(
        tags=["urgent", "litigation"],
        assigned_to_users=[{"id": "U2", "display_name": "Bob B."}, {"id": "U1"}],
        updated_at=T1,
    )
    assert detect(reordered, before).events == []
    [event] = detect(matter(tags=["litigation"], updated_at=T1), before).events
    assert set(event.changes) == {"tags"}


def test_datetimes_compare_as_instants() -> None:
    before = snapshot_of(matter(open_date="2026-03-01T00:00:00"))
    same = matter(open_date="2026-03-01T00:00:00Z", updated_at=T1)
    assert detect(same, before).events == []


def test_long_values_are_kept_as_digests_and_still_detected() -> None:
    long_notes = "x" * 5000
    before = snapshot_of(matter(notes=long_notes))
    assert "notes" in before.digests
    assert "notes" not in before.values
    assert len(before.dumps()) < 1000
    [event] = detect(matter(notes=long_notes + "!", updated_at=T1), before).events
    assert event.changes["notes"].old is None
    assert event.changes["notes"].new == long_notes + "!"


def test_fields_rules_compare_keep_full_values() -> None:
    long_notes = "y" * 5000
    snapper = Snapshotter(MATTERS, keep={"notes"})
    before = snapper.take(matter(notes=long_notes))
    assert before.values["notes"] == long_notes
    detector = Detector(MATTERS, connection="c1", keep={"notes"})
    [event] = detector.detect([matter(notes="new", updated_at=T1)], {ID: before}).events
    assert event.changes["notes"].old == long_notes


def test_snapshot_round_trips() -> None:
    snap = snapshot_of(matter(notes="z" * 1000))
    assert Snapshot.loads(snap.dumps()) == snap


def test_several_revisions_in_one_poll_become_one_event() -> None:
    detector = Detector(MATTERS, connection="c1")
    before = snapshot_of(matter())
    revisions = [
        matter(status="Pending", updated_at=T1),
        matter(status="Closed", updated_at=T2),
        matter(status="Pending", updated_at=T1),  # an older copy read again on a later page
    ]
    [event] = detector.detect(revisions, {ID: before}).events
    assert event.changes["status"].old == "Open"
    assert event.changes["status"].new == "Closed"
    assert event.revision == "2026-04-01T10:06:00.250000Z"


def test_created_then_edited_in_one_poll_is_one_created_event() -> None:
    detector = Detector(MATTERS, connection="c1")
    found = detector.detect([matter(), matter(status="Closed", updated_at=T1)], {})
    [event] = found.events
    assert event.type == "created"
    assert event.record["status"] == "Closed"


def test_event_ids_are_deterministic_and_distinct_per_revision() -> None:
    before = snapshot_of(matter())
    first = detect(matter(status="Closed", updated_at=T1), before).events[0]
    again = detect(matter(status="Closed", updated_at=T1), before).events[0]
    later = detect(matter(status="Pending", updated_at=T2), before).events[0]
    assert first.id == again.id
    assert first.id != later.id
    assert first.id == event_id("c1", "matters", ID, "updated:2026-04-01T10:05:00.000000Z")


def test_resources_without_updated_at_use_content_hashes() -> None:
    contact = {"id": "C1", "first_name": "Ann", "last_name": "Lee", "email": "ann@example.com"}
    before = snapshot_of(contact, CONTACTS)
    assert before.revision is None
    assert detect(dict(contact), before, resource=CONTACTS).events == []
    [event] = detect({**contact, "email": "ann@lee.law"}, before, resource=CONTACTS).events
    assert event.type == "updated"
    assert event.revision == snapshot_of({**contact, "email": "ann@lee.law"}, CONTACTS).content
    assert event.changes["email"].old == "ann@example.com"


def test_backfill_fires_changes_since_the_start_only() -> None:
    detector = Detector(MATTERS, connection="c1")
    since = datetime(2026, 4, 1, 10, 4, tzinfo=UTC)
    old = matter(id="old", created_at=T0, updated_at=T0)
    edited = matter(id="edited", created_at=T0, updated_at=T1)
    new = matter(id="new", created_at=T2, updated_at=T2)
    found = detector.detect([old, edited, new], {}, primed=False, backfill_since=since)
    assert {(e.record_id, e.type) for e in found.events} == {("edited", "updated"), ("new", "created")}
    assert set(found.snapshots) == {"old", "edited", "new"}


def test_unknown_fields_from_the_service_are_compared_too() -> None:
    before = snapshot_of(matter(extra_field="a"))
    [event] = detect(matter(extra_field="b", updated_at=T1), before).events
    assert set(event.changes) == {"extra_field"}


def test_records_without_id_are_ignored() -> None:
    detector = Detector(MATTERS, connection="c1")
    assert detector.detect([{"name": "no id", "updated_at": T0}], {}).events == []
