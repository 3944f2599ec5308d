"""The detector is pure: records and snapshots in, events and snapshots out."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.events import event_id
from worker.polling.detector import Detector
from worker.polling.snapshots import Snapshot, Snapshotter
from worker.practicepanther import resources
from worker.sandbox import SandboxConfig
from worker.sandbox.state import SandboxState

MATTERS = resources.get("matters")
CONTACTS = resources.get("contacts")
TIME_ENTRIES = resources.get("time_entries")
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


def snapshot_of(
    record: dict[str, Any], resource: resources.Resource = MATTERS, keep: Collection[str] = ()
) -> Snapshot:
    return Snapshotter(resource, keep=keep).take(record)


def detect(record: dict[str, Any], previous: Snapshot | None, **kwargs: Any) -> Any:
    detector = Detector(kwargs.pop("resource", MATTERS), connection="c1", keep=kwargs.pop("keep", ()))
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
    before = snapshot_of(matter(), keep={"status"})
    found = detect(matter(status="Closed", notes="settled", updated_at=T1), before, keep={"status"})
    [event] = found.events
    assert event.type == "updated"
    # status is kept (a rule compares it): its old value is known; notes only as a digest
    assert {name: (c.old, c.new) for name, c in event.changes.items()} == {
        "status": ("Open", "Closed"),
        "notes": (None, "settled"),
    }
    assert event.previous == {"status": "Open"}
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


@pytest.mark.parametrize("keep", [set(), {"account_ref", "assigned_to_users"}], ids=["digest", "kept"])
def test_references_compare_by_id_only(keep: set[str]) -> None:
    before = snapshot_of(matter(), keep=keep)
    renamed = matter(
        account_ref={"id": "a1", "display_name": "Acme Corporation"},
        assigned_to_users=[{"id": "U1", "display_name": "Ann B."}, {"id": "u2"}],
        updated_at=T1,
    )
    assert detect(renamed, before, keep=keep).events == []
    moved = matter(account_ref={"id": "A2", "display_name": "Other"}, updated_at=T1)
    [event] = detect(moved, before, keep=keep).events
    assert set(event.changes) == {"account_ref"}
    change = event.changes["account_ref"]
    assert change.old == ({"id": "A1", "display_name": "Acme Corp"} if keep else None)
    assert change.new == {"id": "A2", "display_name": "Other"}


@pytest.mark.parametrize("keep", [set(), {"tags", "assigned_to_users"}], ids=["digest", "kept"])
def test_collections_compare_as_sets(keep: set[str]) -> None:
    before = snapshot_of(matter(), keep=keep)
    reordered = matter(
        tags=["urgent", "litigation"],
        assigned_to_users=[{"id": "U2", "display_name": "Bob B."}, {"id": "U1"}],
        updated_at=T1,
    )
    assert detect(reordered, before, keep=keep).events == []
    [event] = detect(matter(tags=["litigation"], updated_at=T1), before, keep=keep).events
    assert set(event.changes) == {"tags"}
    emptied = detect(matter(tags=[], assigned_to_users=[], updated_at=T1), before, keep=keep).events
    assert set(emptied[0].changes) == {"tags", "assigned_to_users"}


@pytest.mark.parametrize("keep", [set(), {"open_date"}], ids=["digest", "kept"])
def test_datetimes_compare_as_instants(keep: set[str]) -> None:
    before = snapshot_of(matter(open_date="2026-03-01T00:00:00"), keep=keep)
    same = matter(open_date="2026-03-01T00:00:00Z", updated_at=T1)
    assert detect(same, before, keep=keep).events == []
    [event] = detect(matter(open_date="2026-03-02T00:00:00Z", updated_at=T1), before, keep=keep).events
    assert set(event.changes) == {"open_date"}


def test_numbers_compare_by_value() -> None:
    entry = {"id": "T1", "hours": 1.0, "rate": 200, "updated_at": T0}
    before = snapshot_of(entry, TIME_ENTRIES)
    same = {**entry, "hours": 1, "rate": 200.0, "updated_at": T1}
    assert detect(same, before, resource=TIME_ENTRIES).events == []
    [event] = detect({**same, "hours": 1.5}, before, resource=TIME_ENTRIES).events
    assert set(event.changes) == {"hours"}


def test_fields_no_rule_compares_are_digests_and_changes_are_still_detected() -> None:
    long_notes = "x" * 5000
    before = snapshot_of(matter(notes=long_notes))
    assert before.values == {}
    text = before.dumps()
    assert len(text) < 200
    assert "Acme" not in text and "notes" not in text and "status" not in text
    [event] = detect(matter(notes=long_notes + "!", updated_at=T1), before).events
    assert event.changes["notes"].old is None
    assert event.changes["notes"].new == long_notes + "!"
    # every field is compared, whatever its value: short, empty, null, boolean-like
    for edit in ({"status": "Closed"}, {"name": ""}, {"notes": None}, {"tags": []}, {"rate": "Hourly"}):
        [event] = detect(matter(**{"notes": long_notes, "updated_at": T1, **edit}), before).events
        [name] = edit
        assert set(event.changes) == {name}
        assert event.changes[name].old is None
        assert event.changes[name].new == edit[name]
    assert event.previous == {}


def test_kept_fields_report_old_values_and_the_others_none() -> None:
    keep = {"status", "assigned_to_users"}
    before = snapshot_of(matter(), keep=keep)
    assert set(before.values) == keep
    edited = matter(
        status="Closed", name="Renamed", assigned_to_users=[{"id": "U3", "display_name": "Cy"}], updated_at=T1
    )
    [event] = detect(edited, before, keep=keep).events
    assert {name: c.old for name, c in event.changes.items()} == {
        "status": "Open",
        "assigned_to_users": [{"id": "U1", "display_name": "Ann"}, {"id": "U2", "display_name": "Bob"}],
        "name": None,
    }
    assert event.changes["name"].new == "Renamed"


def test_rules_changing_what_is_kept_do_not_lose_changes() -> None:
    kept_before = snapshot_of(matter(), keep={"status"})
    digested_before = snapshot_of(matter())
    closed = matter(status="Closed", updated_at=T1)
    # a rule comparing status was removed: the kept value still serves
    [event] = detect(closed, kept_before).events
    assert event.changes["status"].old == "Open"
    # a rule comparing status was added: the snapshot has its digest only
    [event] = detect(closed, digested_before, keep={"status"}).events
    assert event.changes["status"].old is None
    assert event.changes["status"].new == "Closed"


def test_fields_rules_compare_keep_full_values() -> None:
    long_notes = "y" * 5000
    snapper = Snapshotter(MATTERS, keep={"notes"})
    before = snapper.take(matter(notes=long_notes))
    assert before.values["notes"] == long_notes
    detector = Detector(MATTERS, connection="c1", keep={"notes"})
    [event] = detector.detect([matter(notes="new", updated_at=T1)], {ID: before}).events
    assert event.changes["notes"].old == long_notes


@pytest.mark.parametrize("keep", [set(), {"notes", "account_ref"}], ids=["digest", "kept"])
def test_snapshot_round_trips(keep: set[str]) -> None:
    snap = snapshot_of(matter(notes="z" * 1000, extra_field={"a": 1}), keep=keep)
    assert Snapshot.loads(snap.dumps()) == snap
    contact = snapshot_of({"id": "C1", "first_name": "Ann"}, CONTACTS)
    assert Snapshot.loads(contact.dumps()) == contact


@pytest.fixture(scope="module")
def seeded() -> SandboxState:
    """The sandbox's seeded firm: records shaped and filled as PracticePanther's are."""
    return SandboxState(SandboxConfig(seed=1))


@pytest.mark.parametrize("name", ["time_entries", "matters", "tasks", "contacts"])
def test_snapshots_of_realistic_records_are_small(seeded: SandboxState, name: str) -> None:
    resource = resources.get(name)
    records = [seeded.records.render(name, row) for row in seeded.db.rows(name)]
    assert records
    sizes = [len(Snapshotter(resource).take(r).dumps().encode()) for r in records]
    assert max(sizes) < 200, (name, max(sizes))
    whole = sorted(len(json.dumps(r)) for r in records)
    assert max(sizes) * 3 < whole[len(whole) // 2]  # a fraction of the record itself
    # fields a rule compares cost what their values cost, no more
    keep = {"status", "matter_ref", "hours", "subject", "email"} & set(resource.fields)
    plain, kept = Snapshotter(resource), Snapshotter(resource, keep=keep)
    for record in records:
        with_values = kept.take(record)
        values = json.dumps(with_values.values, separators=(",", ":"), ensure_ascii=False)
        assert len(with_values.dumps()) <= len(plain.take(record).dumps()) + len(',"v":') + len(values)


def test_seeded_records_compare_after_a_round_trip(seeded: SandboxState) -> None:
    snapper = Snapshotter(TIME_ENTRIES)
    for row in seeded.db.rows("time_entries"):
        record = seeded.records.render("time_entries", row)
        before = Snapshot.loads(snapper.take(record).dumps())
        assert snapper.changes(before, dict(record)) == {}
        edited = {**record, "hours": (record["hours"] or 0) + 0.1, "is_billed": not record["is_billed"]}
        assert set(snapper.changes(before, edited)) == {"hours", "is_billed"}


# Written by the first snapshot format (every short value by name, hex digests of long ones), as
# deployments upgrading from it have them stored.
FIRST_FORMAT_MATTER = (
    '{"r":"2026-04-01T10:00:00.000000Z","h":"a677fbe3a368abfe7a942d98634de4b5",'
    '"v":{"account_ref":{"id":"A1","display_name":"Acme Corp"},"display_name":"00012-Acme v. Widget",'
    '"name":"Acme v. Widget","tags":["litigation","urgent"],"status":"Open",'
    '"assigned_to_users":[{"id":"U1","display_name":"Ann"}]},"d":{"notes":"66260eb1233f3aab"}}'
)
FIRST_FORMAT_CONTACT = (
    '{"r":null,"h":"bf6806281ab7fe1383e1ab5e6c58daab",'
    '"v":{"first_name":"Ann","last_name":"Lee","email":"ann@example.com"}}'
)


def first_format_matter(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"notes": "n" * 300, "assigned_to_users": [{"id": "U1", "display_name": "Ann"}]}
    return matter(**{**fields, **overrides})


def test_first_format_snapshots_still_load_and_compare() -> None:
    old = Snapshot.loads(FIRST_FORMAT_MATTER)
    assert old.revision == "2026-04-01T10:00:00.000000Z"
    assert old.values["status"] == "Open"
    # the content hash is comparable with new ones: same content, same hash
    assert old.content == snapshot_of(first_format_matter()).content
    assert detect(first_format_matter(updated_at=T1), old).events == []  # a touch
    assert detect(first_format_matter(updated_at=T0, status="Closed"), old).events == []  # seen
    # short values were kept by name: their old values are reported
    [event] = detect(first_format_matter(status="Closed", updated_at=T1), old).events
    assert {n: (c.old, c.new) for n, c in event.changes.items()} == {"status": ("Open", "Closed")}
    assert event.previous is not None and event.previous["name"] == "Acme v. Widget"
    # long ones were digests: still detected, old None
    [event] = detect(first_format_matter(notes="n" * 301, updated_at=T1), old).events
    assert {n: (c.old, c.new) for n, c in event.changes.items()} == {"notes": (None, "n" * 301)}
    # the snapshot that replaces it is in the new format
    found = detect(first_format_matter(status="Closed", updated_at=T1), old)
    assert json.loads(found.snapshots[ID].dumps())["f"] == 2


def test_first_format_content_hashes_still_identify_unchanged_records() -> None:
    old = Snapshot.loads(FIRST_FORMAT_CONTACT)
    contact = {"id": "C1", "first_name": "Ann", "last_name": "Lee", "email": "ann@example.com"}
    assert old.revision is None
    found = detect(contact, old, resource=CONTACTS)
    assert found.events == [] and found.snapshots == {}  # seen: nothing to store again
    [event] = detect({**contact, "email": "ann@lee.law"}, old, resource=CONTACTS).events
    assert event.changes["email"].old == "ann@example.com"


@pytest.mark.parametrize("damage", ["other layout", "cut short", "too long"])
def test_a_snapshot_packed_for_another_catalogue_loses_no_change(damage: str) -> None:
    """After an upgrade that changes a resource's fields, old positions cannot be trusted."""
    current = snapshot_of(matter(), keep={"status"})
    tag, slots = current.packed[:4], current.packed[4:]
    packed = {
        "other layout": "zzzz" + slots,
        "cut short": tag + slots + "AbC",
        "too long": tag + slots + "." * 40,
    }[damage]
    foreign = replace(current, packed=packed)
    assert detect(matter(updated_at=T1), foreign, keep={"status"}).events == []  # same content
    [event] = detect(matter(status="Closed", updated_at=T1), foreign, keep={"status"}).events
    assert event.changes["status"].old == "Open"
    [event] = detect(matter(name="Renamed", updated_at=T1), foreign, keep={"status"}).events
    # which digest is whose is unknown: every field not kept is reported, none is missed
    assert {"name", "notes", "tags"} <= set(event.changes) and "status" not in event.changes
    assert all(change.old is None for change in event.changes.values())


def test_several_revisions_in_one_poll_become_one_event() -> None:
    detector = Detector(MATTERS, connection="c1", keep={"status"})
    before = snapshot_of(matter(), keep={"status"})
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
    before = snapshot_of(contact, CONTACTS, keep={"email"})
    assert before.revision is None
    assert detect(dict(contact), before, resource=CONTACTS).events == []
    [event] = detect({**contact, "email": "ann@lee.law"}, before, resource=CONTACTS).events
    assert event.type == "updated"
    assert event.revision == snapshot_of({**contact, "email": "ann@lee.law"}, CONTACTS).content
    assert event.changes["email"].old == "ann@example.com"
    [event] = detect({**contact, "last_name": "Lee-Hart"}, before, resource=CONTACTS).events
    assert {n: (c.old, c.new) for n, c in event.changes.items()} == {"last_name": (None, "Lee-Hart")}


def test_backfill_fires_changes_since_the_start_only() -> None:
    detector = Detector(MATTERS, connection="c1")
    since = datetime(2026, 4, 1, 10, 4, tzinfo=UTC)
    old = matter(id="old", created_at=T0, updated_at=T0)
    edited = matter(id="edited", created_at=T0, updated_at=T1)
    new = matter(id="new", created_at=T2, updated_at=T2)
    found = detector.detect([old, edited, new], {}, primed=False, backfill_since=since)
    assert {(e.record_id, e.type) for e in found.events} == {("edited", "updated"), ("new", "created")}
    assert set(found.snapshots) == {"old", "edited", "new"}


@pytest.mark.parametrize("keep", [set(), {"extra_field"}], ids=["digest", "kept"])
def test_unknown_fields_from_the_service_are_compared_too(keep: set[str]) -> None:
    before = snapshot_of(matter(extra_field="a"), keep=keep)
    assert detect(matter(extra_field="a", updated_at=T1), before, keep=keep).events == []
    [event] = detect(matter(extra_field="b", updated_at=T1), before, keep=keep).events
    assert {n: (c.old, c.new) for n, c in event.changes.items()} == {
        "extra_field": ("a" if keep else None, "b")
    }
    [event] = detect(matter(extra_field="a", other_extra=1, updated_at=T1), before, keep=keep).events
    assert set(event.changes) == {"other_extra"}


def test_fields_missing_from_a_record_are_told_apart_from_null_ones() -> None:
    sparse = {"id": ID, "name": "Acme v. Widget", "updated_at": T0}
    before = snapshot_of(sparse)
    assert detect({**sparse, "updated_at": T1}, before).events == []
    assert detect({**sparse, "status": None, "updated_at": T1}, before).events == []
    [event] = detect({**sparse, "status": "Open", "updated_at": T1}, before).events
    assert {n: (c.old, c.new) for n, c in event.changes.items()} == {"status": (None, "Open")}


def test_records_without_id_are_ignored() -> None:
    detector = Detector(MATTERS, connection="c1")
    assert detector.detect([{"name": "no id", "updated_at": T0}], {}).events == []
