"""The detector is pure: records and snapshots in, events and snapshots out."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.events import event_id
from worker.polling.detector import Detector
from worker.polling.dictionaries import Dictionaries
from worker.polling.snapshots import (
    UNREADABLE,
    Snapshot,
    Snapshotter,
    SnapshotUnreadable,
    content_hash,
    slot,
)
from worker.practicepanther import customfields, resources
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


def snapshot_of(record: dict[str, Any], resource: resources.Resource = MATTERS) -> Snapshot:
    """A stored format-3 snapshot of ``record`` (encoded and decoded, as the poller reads it)."""
    return Snapshot.decode(Snapshotter(resource).take(record).encode())


def format2_of(
    record: dict[str, Any], resource: resources.Resource = MATTERS, keep: Collection[str] = ()
) -> Snapshot:
    """What versions before format 3 stored: the values rules compared (``keep``), digests of
    the rest packed in the catalogue's order (their writer, as it was, reduced to its output)."""
    snapper = Snapshotter(resource)
    normals = snapper.normals(record)
    values = {n: record[n] for n in normals if n in keep}
    extra = {n: slot(v) for n, v in normals.items() if n not in snapper.specs and n not in keep}
    slots = ["." if n not in normals else "=" if n in values else slot(normals[n]) for n in snapper.layout]
    packed = "".join(slots).rstrip(".")
    written = Snapshot(
        revision=snapper.revision(record),
        content=content_hash(normals),
        values=values,
        packed=snapper.tag + packed if packed else "",
        extra=extra,
        format=2,
    )
    return Snapshot.decode(written.dumps().encode())


def detect(record: dict[str, Any], previous: Snapshot | None, **kwargs: Any) -> Any:
    detector = Detector(kwargs.pop("resource", MATTERS), connection="c1")
    return detector.detect([record], {record["id"]: previous}, **kwargs)


def changes_of(event: Any) -> dict[str, tuple[Any, Any]]:
    return {name: (c.old if c.old_known else "?", c.new) for name, c in event.changes.items()}


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
    assert changes_of(event) == {"status": ("Open", "Closed"), "notes": ("short", "settled")}
    assert event.previous == matter()
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


@pytest.mark.parametrize("written", ["format 3", "format 2"])
def test_references_compare_by_id_only(written: str) -> None:
    before = (snapshot_of if written == "format 3" else format2_of)(matter())
    renamed = matter(
        account_ref={"id": "a1", "display_name": "Acme Corporation"},
        assigned_to_users=[{"id": "U1", "display_name": "Ann B."}, {"id": "u2"}],
        updated_at=T1,
    )
    assert detect(renamed, before).events == []
    moved = matter(account_ref={"id": "A2", "display_name": "Other"}, updated_at=T1)
    [event] = detect(moved, before).events
    assert set(event.changes) == {"account_ref"}
    change = event.changes["account_ref"]
    if written == "format 3":
        assert change.old == {"id": "A1", "display_name": "Acme Corp"}
    else:
        assert change.old_known is False
    assert change.new == {"id": "A2", "display_name": "Other"}


@pytest.mark.parametrize("written", ["format 3", "format 2"])
def test_collections_compare_as_sets(written: str) -> None:
    before = (snapshot_of if written == "format 3" else format2_of)(matter())
    reordered = matter(
        tags=["urgent", "litigation"],
        assigned_to_users=[{"id": "U2", "display_name": "Bob B."}, {"id": "U1"}],
        updated_at=T1,
    )
    assert detect(reordered, before).events == []
    [event] = detect(matter(tags=["litigation"], updated_at=T1), before).events
    assert set(event.changes) == {"tags"}
    emptied = detect(matter(tags=[], assigned_to_users=[], updated_at=T1), before).events
    assert set(emptied[0].changes) == {"tags", "assigned_to_users"}


@pytest.mark.parametrize("written", ["format 3", "format 2"])
def test_datetimes_compare_as_instants(written: str) -> None:
    before = (snapshot_of if written == "format 3" else format2_of)(matter(open_date="2026-03-01T00:00:00"))
    same = matter(open_date="2026-03-01T00:00:00Z", updated_at=T1)
    assert detect(same, before).events == []
    [event] = detect(matter(open_date="2026-03-02T00:00:00Z", updated_at=T1), before).events
    assert set(event.changes) == {"open_date"}


def test_numbers_compare_by_value() -> None:
    entry = {"id": "T1", "hours": 1.0, "rate": 200, "updated_at": T0}
    before = snapshot_of(entry, TIME_ENTRIES)
    same = {**entry, "hours": 1, "rate": 200.0, "updated_at": T1}
    assert detect(same, before, resource=TIME_ENTRIES).events == []
    [event] = detect({**same, "hours": 1.5}, before, resource=TIME_ENTRIES).events
    assert set(event.changes) == {"hours"}


def test_every_changed_field_reports_its_exact_old_value() -> None:
    long_notes = "x" * 5000
    before = snapshot_of(matter(notes=long_notes))
    [event] = detect(matter(notes=long_notes + "!", updated_at=T1), before).events
    assert changes_of(event) == {"notes": (long_notes, long_notes + "!")}
    # every field is compared, whatever its value: short, empty, null, boolean-like
    for edit in ({"status": "Closed"}, {"name": ""}, {"notes": None}, {"tags": []}, {"rate": "Hourly"}):
        [event] = detect(matter(**{"notes": long_notes, "updated_at": T1, **edit}), before).events
        [name] = edit
        assert changes_of(event) == {name: (matter(notes=long_notes).get(name), edit[name])}
    # previous is the whole old record, references with their display names
    assert event.previous == matter(notes=long_notes)


def test_a_null_old_value_is_a_fact_and_an_unknown_one_says_so() -> None:
    [event] = detect(matter(notes="set", updated_at=T1), snapshot_of(matter(notes=None))).events
    assert (event.changes["notes"].old, event.changes["notes"].old_known) == (None, True)
    [event] = detect(matter(notes="set", updated_at=T1), format2_of(matter(notes=None))).events
    assert event.changes["notes"].old_known is False


def test_references_and_lists_report_old_values_with_their_names() -> None:
    before = snapshot_of(matter())
    edited = matter(
        status="Closed",
        name="Renamed",
        assigned_to_users=[{"id": "U3", "display_name": "Cy"}],
        account_ref={"id": "A2", "display_name": "Beta LLC"},
        updated_at=T1,
    )
    [event] = detect(edited, before).events
    assert changes_of(event) == {
        "status": ("Open", "Closed"),
        "name": ("Acme v. Widget", "Renamed"),
        "assigned_to_users": (matter()["assigned_to_users"], [{"id": "U3", "display_name": "Cy"}]),
        "account_ref": ({"id": "A1", "display_name": "Acme Corp"}, {"id": "A2", "display_name": "Beta LLC"}),
    }


def test_restore_gives_back_the_whole_record() -> None:
    snapper = Snapshotter(MATTERS)
    for record in (matter(), matter(updated_at="2026-04-01T10:05:00.123"), matter(extra_field={"a": [1]})):
        stored = Snapshot.decode(snapper.take(record).encode())
        assert snapper.restore(stored, ID) == record
    contacts = Snapshotter(CONTACTS)
    contact = {"id": "C1", "first_name": "Ann", "email": None}
    assert contacts.restore(Snapshot.decode(contacts.take(contact).encode()), "C1") == contact
    assert snapper.restore(format2_of(matter())) is None  # older formats do not hold it


def test_snapshot_round_trips() -> None:
    snap = Snapshotter(MATTERS).take(matter(notes="z" * 1000, extra_field={"a": 1}))
    loaded = Snapshot.decode(snap.encode())
    assert (loaded.revision, loaded.payload, loaded.codec) == (snap.revision, snap.payload, snap.codec)
    assert loaded.content is None  # a resource with revisions does not store the content hash
    contact = Snapshotter(CONTACTS).take({"id": "C1", "first_name": "Ann"})
    assert Snapshot.decode(contact.encode()).content == contact.content


@pytest.mark.parametrize("damage", ["cut short", "bad format", "garbage payload"])
def test_an_unreadable_snapshot_is_loud_and_loses_no_change(
    damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = Snapshotter(MATTERS).take(matter()).encode()
    broken = {"cut short": raw[:5], "bad format": b"\x07" + raw[1:], "garbage payload": raw[:10] + b"zz"}
    try:
        old = Snapshot.decode(broken[damage])
    except SnapshotUnreadable:
        old = UNREADABLE  # what cursors.load_snapshots reads it as (after logging it)
    with caplog.at_level(logging.ERROR):
        [event] = detect(matter(status="Closed", updated_at=T1), old).events
    assert event.type == "updated"
    assert event.changes["status"].new == "Closed" and event.changes["status"].old_known is False
    if damage == "garbage payload":
        assert "corrupt" in caplog.text


def test_a_missing_dictionary_is_loud_and_loses_no_change(caplog: pytest.LogCaptureFixture) -> None:
    records = realistic_matters(300)
    trained = Snapshotter(MATTERS)
    assert trained.train(records) is not None
    before = Snapshot.decode(trained.take(records[0]).encode())
    assert before.dictionary == trained.dictionaries.current
    stranger = Detector(
        MATTERS, connection="c1", snapshotter=Snapshotter(MATTERS, dictionaries=Dictionaries())
    )
    edited = {**records[0], "status": "Closed", "updated_at": "2030-01-01T00:00:00.000"}
    with caplog.at_level(logging.ERROR):
        [event] = stranger.detect([edited], {records[0]["id"]: before}).events
    assert "dictionary" in caplog.text and str(before.dictionary) in caplog.text
    assert event.changes["status"].old_known is False
    # the trained one reads it exactly
    [event] = (
        Detector(MATTERS, connection="c1", snapshotter=trained)
        .detect([edited], {edited["id"]: before})
        .events
    )
    assert changes_of(event) == {"status": (records[0]["status"], "Closed")}


@pytest.fixture(scope="module")
def seeded() -> SandboxState:
    """The sandbox's seeded firm: records shaped and filled as PracticePanther's are."""
    return SandboxState(SandboxConfig(seed=1))


def realistic_matters(count: int) -> list[dict[str, Any]]:
    from benchmarks.bulk_listing import make_records

    return make_records("matters", count)


@pytest.fixture(scope="module")
def matters_2000() -> list[dict[str, Any]]:
    return realistic_matters(2000)


def test_whole_realistic_records_compress_small_with_a_dictionary(matters_2000: list[dict[str, Any]]) -> None:
    """The benchmark's matters (2 KB of JSON, six custom fields): ~150 bytes with a dictionary
    trained on other records of the account (docs/benchmarks.md has the full-size figures)."""
    snapper = Snapshotter(MATTERS)
    train, check = matters_2000[:1000], matters_2000[1000:]
    plain = sorted(len(snapper.take(r).encode()) for r in check)
    assert snapper.train(train) is not None
    sizes = sorted(len(snapper.take(r).encode()) for r in check)
    whole = sorted(len(json.dumps(r, separators=(",", ":"))) for r in check)
    assert sizes[len(sizes) // 2] < 170, sizes[len(sizes) // 2]
    assert sizes[len(sizes) // 2] * 10 < whole[len(whole) // 2]
    assert sizes[-1] < plain[0]
    for record in check[:50]:
        assert snapper.restore(Snapshot.decode(snapper.take(record).encode()), record["id"]) == record


def test_random_edits_of_every_kind_of_field_report_true_old_values(
    matters_2000: list[dict[str, Any]],
) -> None:
    """Scalars, references, lists, custom_field_values: each change shows the value it had."""
    rng = random.Random(16)
    snapper = Snapshotter(MATTERS)
    snapper.train(matters_2000[:500])
    detector = Detector(MATTERS, connection="c1", snapshotter=snapper)
    current = {r["id"]: r for r in matters_2000[:200]}
    stored = {rid: Snapshot.decode(snapper.take(r).encode()) for rid, r in current.items()}
    accounts = [r["account_ref"] for r in matters_2000]
    for step in range(400):
        rid = rng.choice(list(current))
        old = current[rid]
        new = _random_edit(rng, old, accounts, step)
        [event] = detector.detect([new], {rid: stored[rid]}).events
        expected = {
            k: (old.get(k), new.get(k)) for k in {*old, *new} - {"updated_at"} if old.get(k) != new.get(k)
        }
        expected.update(customfields.expand_changes("matters", old, new))
        assert changes_of(event) == expected
        assert event.previous == old
        stored[rid] = Snapshot.decode(detector.detect([new], {rid: stored[rid]}).snapshots[rid].encode())
        current[rid] = new


def _random_edit(rng: random.Random, old: dict[str, Any], accounts: list[Any], step: int) -> dict[str, Any]:
    new = json.loads(json.dumps(old))
    new["updated_at"] = f"2030-01-01T00:{step // 60:02d}:{step % 60:02d}.{step % 1000:03d}"
    kind = rng.choice(["status", "notes", "account", "users", "tags", "custom", "date", "custom_contact"])
    if kind == "status":
        new["status"] = rng.choice(
            [s for s in ("Open", "Pending", "Closed", "Archived") if s != old["status"]]
        )
    elif kind == "notes":
        new["notes"] = None if old["notes"] else f"note {step}"
    elif kind == "account":
        new["account_ref"] = rng.choice([a for a in accounts if a["id"] != old["account_ref"]["id"]])
    elif kind == "users":
        new["assigned_to_users"] = [*old["assigned_to_users"][:1], {"id": f"u{step}", "display_name": "New"}]
    elif kind == "tags":
        new["tags"] = [] if old["tags"] else ["Urgent"]
    elif kind == "date":
        new["close_date"] = None if old["close_date"] else "2027-02-01T00:00:00"
    else:
        index = 0 if kind == "custom" else 5
        value = new["custom_field_values"][index]
        if kind == "custom":
            value["value_string"] = f"Stage {step}"
        else:
            value["contact_ref"] = {"id": f"c{step}", "display_name": f"Counsel {step}"}
    return new


def test_seeded_records_compare_after_a_round_trip(seeded: SandboxState) -> None:
    snapper = Snapshotter(TIME_ENTRIES)
    for row in seeded.db.rows("time_entries"):
        record = seeded.records.render("time_entries", row)
        before = Snapshot.decode(snapper.take(record).encode())
        assert snapper.changes(before, dict(record)) == {}
        edited = {**record, "hours": (record["hours"] or 0) + 0.1, "is_billed": not record["is_billed"]}
        changed = snapper.changes(before, edited)
        assert {n: (c.old, c.new) for n, c in changed.items()} == {
            "hours": (record["hours"], edited["hours"]),
            "is_billed": (record["is_billed"], edited["is_billed"]),
        }


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
    snapper = Snapshotter(MATTERS)
    assert old.content == content_hash(snapper.normals(first_format_matter()))
    assert detect(first_format_matter(updated_at=T1), old).events == []  # a touch
    assert detect(first_format_matter(updated_at=T0, status="Closed"), old).events == []  # seen
    # short values were kept by name: their old values are reported
    [event] = detect(first_format_matter(status="Closed", updated_at=T1), old).events
    assert changes_of(event) == {"status": ("Open", "Closed")}
    assert event.previous is not None and event.previous["name"] == "Acme v. Widget"
    # long ones were digests: still detected, the old value unknown (never a null)
    found = detect(first_format_matter(notes="n" * 301, updated_at=T1), old)
    [event] = found.events
    assert changes_of(event) == {"notes": ("?", "n" * 301)}
    # the snapshot that replaces it is format 3: the next change is exact
    after = Snapshot.decode(found.snapshots[ID].encode())
    assert after.holds_record and found.snapshots[ID].encode()[0] == 3
    [event] = detect(first_format_matter(notes="m", updated_at=T2), after).events
    assert changes_of(event) == {"notes": ("n" * 301, "m")}


def test_first_format_content_hashes_still_identify_unchanged_records() -> None:
    old = Snapshot.loads(FIRST_FORMAT_CONTACT)
    contact = {"id": "C1", "first_name": "Ann", "last_name": "Lee", "email": "ann@example.com"}
    assert old.revision is None
    found = detect(contact, old, resource=CONTACTS)
    assert found.events == [] and found.snapshots == {}  # seen: nothing to store again
    [event] = detect({**contact, "email": "ann@lee.law"}, old, resource=CONTACTS).events
    assert event.changes["email"].old == "ann@example.com"


def test_format_2_snapshots_upgrade_old_unknown_once_then_exact() -> None:
    old = format2_of(matter(), keep={"status"})
    assert old.format == 2 and not old.holds_record
    assert detect(matter(updated_at=T1), old).events == []  # a touch, told by the digests
    found = detect(matter(status="Closed", name="Renamed", updated_at=T1), old)
    [event] = found.events
    assert changes_of(event) == {"status": ("Open", "Closed"), "name": ("?", "Renamed")}
    assert event.previous == {"status": "Open"}  # what it kept, nothing that reads as null
    after = Snapshot.decode(found.snapshots[ID].encode())
    [event] = detect(matter(status="Open", name="Again", updated_at=T2), after).events
    assert changes_of(event) == {"status": ("Closed", "Open"), "name": ("Renamed", "Again")}


@pytest.mark.parametrize("damage", ["other layout", "cut short", "too long"])
def test_a_snapshot_packed_for_another_catalogue_loses_no_change(damage: str) -> None:
    """After an upgrade that changes a resource's fields, old positions cannot be trusted."""
    current = format2_of(matter(), keep={"status"})
    tag, slots = current.packed[:4], current.packed[4:]
    packed = {
        "other layout": "zzzz" + slots,
        "cut short": tag + slots + "AbC",
        "too long": tag + slots + "." * 40,
    }[damage]
    foreign = replace(current, packed=packed)
    assert detect(matter(updated_at=T1), foreign).events == []  # same content
    [event] = detect(matter(status="Closed", updated_at=T1), foreign).events
    assert event.changes["status"].old == "Open"
    [event] = detect(matter(name="Renamed", updated_at=T1), foreign).events
    # which digest is whose is unknown: every field not kept is reported, none is missed
    assert {"name", "notes", "tags"} <= set(event.changes) and "status" not in event.changes
    assert all(not change.old_known for change in event.changes.values())


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
    [event] = detect({**contact, "last_name": "Lee-Hart"}, before, resource=CONTACTS).events
    assert changes_of(event) == {"last_name": ("Lee", "Lee-Hart")}


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
    assert detect(matter(extra_field="a", updated_at=T1), before).events == []
    [event] = detect(matter(extra_field="b", updated_at=T1), before).events
    assert changes_of(event) == {"extra_field": ("a", "b")}
    [event] = detect(matter(extra_field="a", other_extra=1, updated_at=T1), before).events
    assert changes_of(event) == {"other_extra": (None, 1)}


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
