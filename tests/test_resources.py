"""The catalogue and PracticePanther's published swagger must agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.practicepanther import resources

SHARED_SWAGGER = Path(__file__).resolve().parents[2] / "shared" / "practicepanther" / "swagger-v2.json"


def test_packaged_swagger_matches_shared_copy() -> None:
    if not SHARED_SWAGGER.exists():
        pytest.skip("shared/ is not beside this checkout")
    assert json.loads(SHARED_SWAGGER.read_text()) == resources.swagger()


def test_every_swagger_path_belongs_to_one_resource() -> None:
    covered = {path for r in resources.catalogue().values() for _, path in r.operations}
    assert covered == set(resources.swagger()["paths"])


def test_operations_match_swagger_methods() -> None:
    spec = resources.swagger()["paths"]
    for resource in resources.catalogue().values():
        base = spec.get(resource.path, {})
        assert resource.can_create == ("post" in base), resource.name
        assert resource.can_update == ("put" in base), resource.name
        assert resource.can_delete == ("delete" in base), resource.name
        assert resource.can_get == (f"{resource.path}/{{id}}" in spec), resource.name


def test_fields_types_and_required_follow_definitions() -> None:
    definitions = resources.swagger()["definitions"]
    for resource in resources.catalogue().values():
        raw = definitions[resource.definition]
        assert set(resource.fields) == set(raw["properties"]), resource.name
        assert resource.required_on_create == tuple(raw.get("required", ())), resource.name


def test_known_facts() -> None:
    matters = resources.get("matters")
    assert matters.fields["status"].enum == ("Closed", "Pending", "Open", "Archived")
    assert matters.fields["account_ref"].is_reference
    assert matters.has_timestamps and matters.pollable
    contacts = resources.get("contacts")
    assert not contacts.has_timestamps and contacts.pollable and not contacts.can_create
    time_entries = resources.get("TimeEntries")
    assert time_entries.path == "/api/v2/timeentries"
    assert set(time_entries.required_on_create) == {"date", "hours", "matter_ref", "billed_by_user_ref"}
    assert resources.get("expenses").path == "/api/v2/Expenses"
    assert resources.get("payments").detail_definition == "Payment_Detail"
    assert set(resources.get("custom_fields").list_paths) == {"company", "matter", "contact"}
    assert "status" in resources.get("tasks").list_params


def test_unknown_resource_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="matters"):
        resources.get("matterz")
