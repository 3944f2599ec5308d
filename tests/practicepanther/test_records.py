"""Record shaping: timestamps normalised per the swagger, merges that never drop a field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from worker.practicepanther import records


def test_normalize_rewrites_declared_datetimes_only() -> None:
    task = {
        "id": "1",
        "subject": "2026-04-04T00:00:00",  # a string field that merely looks like a date
        "due_date": "2026-04-04T00:00:00",
        "created_at": "2018-05-18T16:31:19.733",
        "updated_at": "2026-04-04T02:00:00+02:00",
        "matter_ref": {"id": "m", "display_name": "M"},
    }
    out = records.normalize(task, "Task")
    assert out["subject"] == "2026-04-04T00:00:00"
    assert out["due_date"] == "2026-04-04T00:00:00Z"
    assert out["created_at"] == "2018-05-18T16:31:19.733000Z"
    assert out["updated_at"] == "2026-04-04T00:00:00Z"
    assert out["matter_ref"] == {"id": "m", "display_name": "M"}
    assert task["due_date"] == "2026-04-04T00:00:00"  # input untouched


def test_normalize_leaves_unparseable_values() -> None:
    assert records.normalize({"due_date": "soon", "updated_at": None}, "Task") == {
        "due_date": "soon",
        "updated_at": None,
    }


def test_merge_keeps_untouched_fields_and_replaces_references() -> None:
    current = {
        "id": "t",
        "subject": "Old",
        "notes": "keep me",
        "matter_ref": {"id": "m1", "display_name": "Matter one"},
        "tags": ["a", "b"],
        "custom": {"x": 1, "y": 2},
    }
    merged = records.merge(
        current,
        {"subject": "New", "matter_ref": {"id": "m2"}, "tags": ["c"], "custom": {"y": 3}},
    )
    assert merged == {
        "id": "t",
        "subject": "New",
        "notes": "keep me",
        "matter_ref": {"id": "m2"},
        "tags": ["c"],
        "custom": {"x": 1, "y": 3},
    }
    assert current["subject"] == "Old"


def test_writable_drops_read_only_fields() -> None:
    assert records.writable({"id": 1, "created_at": 2, "updated_at": 3, "subject": "s"}) == {"subject": "s"}


def test_dumps_sends_datetimes_as_utc() -> None:
    body = json.loads(records.dumps({"due_date": datetime(2026, 4, 6, 9, 30)}))
    assert body == {"due_date": "2026-04-06T09:30:00Z"}
    assert json.loads(records.dumps({"d": datetime(2026, 4, 6, tzinfo=UTC).date()})) == {
        "d": "2026-04-06T00:00:00Z"
    }
