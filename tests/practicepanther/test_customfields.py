"""Custom fields: typed reads per value_type, encoding with validation, the changes expansion,
merging by field id, the export file and the state store cache (real Redis), fetched from the
sandbox over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from worker.practicepanther import customfields
from worker.practicepanther.client import PracticePantherClient
from worker.practicepanther.customfields import CustomField, CustomFieldError, DefinitionCache, Definitions
from worker.state.base import StateStore

STAGE = CustomField("f-stage", "Case Stage", "DropDownList", ("Intake", "Discovery", "Settlement", "Closed"))
SOL = CustomField("f-sol", "Statute of Limitations", "Date")
REFERRAL = CustomField("f-ref", "Referral Source", "TextBox")
CONTINGENCY = CustomField("f-pct", "Contingency %", "Number")
CONFLICT = CustomField("f-conflict", "Conflict Check", "Checkbox")
OPPOSING = CustomField("f-opp", "Opposing Counsel", "Contact")
FEE = CustomField("f-fee", "Retainer", "Currency")
HEARING = CustomField("f-hearing", "Hearing", "DateTime")
NOTES = CustomField("f-notes", "Case Notes", "TextEditor")
ALL = (STAGE, SOL, REFERRAL, CONTINGENCY, CONFLICT, OPPOSING, FEE, HEARING, NOTES)
DEFINITIONS = Definitions({"matter": ALL}, {"matter": "2026-04-01T00:00:00Z"})


def entry(field: CustomField, raw: Any, *, with_type: bool = True) -> dict[str, Any]:
    ref: dict[str, Any] = {"id": field.id, "label": field.label}
    if with_type:
        ref["value_type"] = field.value_type
    slots = dict.fromkeys(customfields.ALL_SLOTS)
    slots[field.slot] = raw
    return {"custom_field_ref": ref, **slots}


def matter(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"id": "m-1", "name": "Whitman v. Garner", "custom_field_values": list(entries)}


@pytest.mark.parametrize(
    ("field", "raw", "typed"),
    [
        (STAGE, "Settlement", "Settlement"),
        (REFERRAL, "Web", "Web"),
        (NOTES, "<p>call back</p>", "<p>call back</p>"),
        (CONTINGENCY, 33.3, 33.3),
        (CONTINGENCY, "25", 25.0),
        (FEE, 1500, 1500),
        (SOL, "2027-03-01T00:00:00", datetime(2027, 3, 1, tzinfo=UTC)),
        (HEARING, "2026-05-04T14:30:00", datetime(2026, 5, 4, 14, 30, tzinfo=UTC)),
        (HEARING, "2026-05-04T10:30:00-04:00", datetime(2026, 5, 4, 14, 30, tzinfo=UTC)),
        (CONFLICT, True, True),
        (CONFLICT, "false", False),
        (OPPOSING, {"id": "c-9", "display_name": "Jane Roe"}, {"id": "c-9", "display_name": "Jane Roe"}),
        (STAGE, None, None),
    ],
    ids=lambda v: str(v)[:24],
)
def test_every_value_type_reads_typed(field: CustomField, raw: Any, typed: Any) -> None:
    value = customfields.read(field.value_type, raw)
    assert value == typed
    if isinstance(typed, datetime):
        assert value.tzinfo is not None  # aware: PracticePanther's naive values are UTC


def test_values_by_label_reads_the_slot_of_the_type_even_without_a_type_on_the_ref() -> None:
    record = matter(entry(STAGE, "Intake"), entry(CONTINGENCY, 40, with_type=False))
    assert customfields.typed_values("matters", record) == {"Case Stage": "Intake", "Contingency %": 40}
    assert customfields.typed_values("matters", record, DEFINITIONS)["Contingency %"] == 40
    assert customfields.typed_values("tasks", record) == {}
    account = {"company_custom_field_values": [entry(REFERRAL, "Web")]}
    assert customfields.typed_values("accounts", account) == {"Referral Source": "Web"}


def test_expand_changes_names_each_changed_field_by_label_with_raw_values() -> None:
    old = matter(entry(STAGE, "Discovery"), entry(SOL, "2027-03-01T00:00:00"), entry(REFERRAL, "Web"))
    new = matter(
        entry(STAGE, "Settlement"),
        entry(SOL, "2027-03-01T00:00:00"),
        entry(CONFLICT, True),
    )
    changes = customfields.expand_changes("matters", old, new)
    assert changes == {
        "custom.Case Stage": ("Discovery", "Settlement"),
        "custom.Conflict Check": (None, True),
        "custom.Referral Source": ("Web", None),
    }
    json.dumps(changes)  # events store them: JSON as they came


def test_expand_changes_of_a_renamed_field_is_one_field_under_its_new_label() -> None:
    renamed = CustomField(STAGE.id, "Stage", STAGE.value_type, STAGE.options)
    old = matter(entry(STAGE, "Intake"))
    new = matter(entry(renamed, "Discovery"))
    assert customfields.expand_changes("matters", old, new) == {"custom.Stage": ("Intake", "Discovery")}
    same = customfields.expand_changes("matters", old, matter(entry(renamed, "Intake")))
    assert same == {}
    # with definitions, the current label names the field whatever the record's refs say
    current = Definitions({"matter": (renamed,)})
    assert customfields.expand_changes("matters", old, matter(entry(STAGE, "Closed")), current) == {
        "custom.Stage": ("Intake", "Closed")
    }


def test_expand_changes_of_records_without_custom_fields_is_empty() -> None:
    assert customfields.expand_changes("tasks", {"a": 1}, {"a": 2}) == {}
    assert customfields.expand_changes("matters", matter(), matter()) == {}
    assert customfields.expand_changes("matters", None, matter(entry(STAGE, "Intake"))) == {
        "custom.Case Stage": (None, "Intake")
    }


@pytest.mark.parametrize(
    ("field", "value", "slot", "sent"),
    [
        (STAGE, "Settlement", "value_string", "Settlement"),
        (REFERRAL, 42, "value_string", "42"),
        (CONTINGENCY, "33.5", "value_number", 33.5),
        (CONTINGENCY, 40, "value_number", 40),
        (FEE, "1,500", "value_number", 1500),
        (SOL, date(2027, 3, 1), "value_date_time", "2027-03-01T00:00:00Z"),
        (SOL, "2027-03-01", "value_date_time", "2027-03-01T00:00:00Z"),
        (HEARING, "2026-05-04T10:30:00-04:00", "value_date_time", "2026-05-04T14:30:00Z"),
        (CONFLICT, "yes", "value_boolean", True),
        (CONFLICT, False, "value_boolean", False),
        (OPPOSING, "c-9", "contact_ref", {"id": "c-9"}),
        (OPPOSING, {"id": "c-9", "display_name": "x"}, "contact_ref", {"id": "c-9"}),
        (STAGE, None, "value_string", None),
    ],
    ids=lambda v: str(v)[:24],
)
def test_encode_puts_the_value_in_its_slot(field: CustomField, value: Any, slot: str, sent: Any) -> None:
    assert customfields.encode(field, value) == {"custom_field_ref": {"id": field.id}, slot: sent}


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        (STAGE, "Setlement", "did you mean 'Settlement'?"),
        (STAGE, "Appeal", "expected one of 'Closed', 'Discovery', 'Intake', 'Settlement'"),
        (CONTINGENCY, "a third", "expected a number"),
        (CONTINGENCY, True, "expected a number"),
        (SOL, "next spring", "expected a date"),
        (CONFLICT, "maybe", "expected true or false"),
        (OPPOSING, 7, "expected a contact reference"),
    ],
)
def test_encode_refuses_what_the_field_cannot_hold(field: CustomField, value: Any, hint: str) -> None:
    with pytest.raises(CustomFieldError) as caught:
        customfields.encode(field, value)
    assert repr(field.label) in str(caught.value) and field.value_type in str(caught.value)
    assert caught.value.hint is not None and caught.value.hint.startswith(hint)
    assert not caught.value.transient


def test_find_suggests_a_near_label() -> None:
    with pytest.raises(CustomFieldError, match="no custom field 'Case Stge' on matters") as caught:
        DEFINITIONS.find("matters", "Case Stge")
    assert caught.value.hint == "did you mean 'Case Stage'?"
    with pytest.raises(CustomFieldError, match="tasks have no custom fields"):
        DEFINITIONS.find("tasks", "Case Stage")


def test_merge_entries_replaces_by_field_id_and_keeps_the_others() -> None:
    current = [entry(STAGE, "Intake"), entry(REFERRAL, "Web")]
    merged = customfields.merge_entries(
        current, [customfields.encode(STAGE, "Settlement"), customfields.encode(CONFLICT, True)]
    )
    assert [e["custom_field_ref"]["id"] for e in merged] == [STAGE.id, REFERRAL.id, CONFLICT.id]
    assert merged[0]["value_string"] == "Settlement"
    assert merged[1] == current[1]


def test_export_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "custom-fields.json"
    DEFINITIONS.dump(path)
    loaded = Definitions.load(path)
    assert loaded == DEFINITIONS
    assert loaded.find("matters", "Case Stage").options == STAGE.options
    assert not loaded.known("contacts")  # never fetched: unknown, not empty


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "expected an object with 'scopes'"),
        ('{"scopes": {"matters": {"fields": []}}}', "unknown scope 'matters'"),
        ('{"scopes": {"matter": {"fields": 3}}}', "scopes.matter.fields must be a list"),
    ],
)
def test_a_bad_export_file_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CustomFieldError, match=message) as caught:
        Definitions.load(path)
    assert str(path) in str(caught.value)
    with pytest.raises(CustomFieldError, match="no such file"):
        Definitions.load(tmp_path / "missing.json")


def test_cache_keeps_definitions_per_connection_and_scope(store: StateStore, connection_id: str) -> None:
    cache = DefinitionCache(store, connection_id)
    assert cache.load() == Definitions()
    cache.save(DEFINITIONS)
    assert cache.load() == DEFINITIONS
    assert DefinitionCache(store, connection_id + "-other").load() == Definitions()


def test_refresh_reads_every_scope_from_the_sandbox_and_caches_it(
    pp_client: PracticePantherClient, redis_store: StateStore, connection_id: str
) -> None:
    fetched = customfields.refresh(pp_client, redis_store, connection_id)
    assert set(fetched.scopes) == {"matter", "contact", "company"}
    assert all(fetched.fetched_at[scope] for scope in fetched.scopes)
    for field in fetched.fields("matters"):
        assert field.id and field.label and field.value_type in customfields.SLOTS
        if field.value_type == "DropDownList":
            assert field.options
    assert DefinitionCache(redis_store, connection_id).load() == fetched
