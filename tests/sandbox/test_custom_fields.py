"""Custom fields over HTTP: the seeded definitions and values, and how bad values are refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from worker.practicepanther import customfields

SEEDED_MATTER_FIELDS = {
    "Case Number": "TextBox",
    "Court Date": "Date",
    "Referral Source": "DropDownList",
    "Case Stage": "DropDownList",
    "Statute of Limitations": "Date",
    "Contingency %": "Number",
    "Conflict Check": "Checkbox",
    "Opposing Counsel": "Contact",
}
STAGES = ["Intake", "Investigation", "Discovery", "Negotiation", "Settlement", "Trial", "Closed"]


def _definitions(api: httpx.Client, scope: str) -> dict[str, dict[str, Any]]:
    return {f["label"]: f for f in api.get(f"/customfields/{scope}").json()}


def test_the_seed_defines_realistic_matter_and_contact_fields(api: httpx.Client) -> None:
    matter = _definitions(api, "matter")
    assert {label: f["value_type"] for label, f in matter.items()} == SEEDED_MATTER_FIELDS
    options = customfields.CustomField.from_api(matter["Case Stage"]).options
    assert list(options) == STAGES
    contact = _definitions(api, "contact")
    assert contact["Referral Source"]["value_type"] == "TextBox"


def test_seeded_values_sit_in_the_slot_of_their_type(api: httpx.Client) -> None:
    matters = api.get("/matters").json()
    seen: set[str] = set()
    for matter in matters:
        for entry in matter["custom_field_values"]:
            ref = entry["custom_field_ref"]
            slot = customfields.SLOTS[ref["value_type"]]
            filled = {s for s in customfields.ALL_SLOTS if entry[s] is not None}
            assert filled == {slot}, entry
            seen.add(ref["label"])
        typed = customfields.typed_values("matters", matter)
        assert typed.get("Case Stage") in (None, *STAGES)
        if matter["status"] in ("Closed", "Archived"):
            assert typed["Case Stage"] == "Closed"
    assert seen == set(SEEDED_MATTER_FIELDS) - {"Court Date", "Referral Source"}
    opposing = [
        e["contact_ref"]
        for m in matters
        for e in m["custom_field_values"]
        if e["custom_field_ref"]["label"] == "Opposing Counsel"
    ]
    assert opposing and all(ref["display_name"] for ref in opposing)
    contacts = api.get("/contacts").json()
    assert any(customfields.typed_values("contacts", c).get("Referral Source") for c in contacts)


def _seeded_matter(api: httpx.Client) -> dict[str, Any]:
    matter: dict[str, Any] = api.get("/matters", params={"$top": 1}).json()[0]
    return matter


def _field_id(api: httpx.Client, scope: str, label: str) -> str:
    return str(_definitions(api, scope)[label]["id"])


def _put_values(api: httpx.Client, matter: dict[str, Any], values: list[dict[str, Any]]) -> httpx.Response:
    body = {k: v for k, v in matter.items() if k not in ("id", "created_at", "updated_at")}
    return api.put("/matters", params={"id": matter["id"]}, json={**body, "custom_field_values": values})


BAD_VALUES = [
    pytest.param(
        lambda api: {"custom_field_ref": {"id": "6a1f0c3e-0000-4000-8000-000000000000"}, "value_string": "x"},
        "value.custom_field_values[0].custom_field_ref.id",
        "does not exist",
        id="unknown field",
    ),
    pytest.param(
        lambda api: {
            "custom_field_ref": {"id": _field_id(api, "contact", "Referral Source")},
            "value_string": "x",
        },
        "value.custom_field_values[0].custom_field_ref.id",
        "is not a matter custom field",
        id="field of another scope",
    ),
    pytest.param(
        lambda api: {
            "custom_field_ref": {"id": _field_id(api, "matter", "Case Stage")},
            "value_string": "Appeal",
        },
        "value.custom_field_values[0].value_string",
        "'Appeal' is not an option of the custom field 'Case Stage'",
        id="dropdown value not an option",
    ),
    pytest.param(
        lambda api: {
            "custom_field_ref": {"id": _field_id(api, "matter", "Contingency %")},
            "value_string": "40",
        },
        "value.custom_field_values[0].value_string",
        "its value goes in value_number",
        id="number in the text slot",
    ),
    pytest.param(
        lambda api: {
            "custom_field_ref": {"id": _field_id(api, "matter", "Conflict Check")},
            "value_number": 1,
        },
        "value.custom_field_values[0].value_number",
        "its value goes in value_boolean",
        id="checkbox in the number slot",
    ),
    pytest.param(
        lambda api: {
            "custom_field_ref": {"id": _field_id(api, "matter", "Statute of Limitations")},
            "value_string": "2027-01-01",
        },
        "value.custom_field_values[0].value_string",
        "its value goes in value_date_time",
        id="date in the text slot",
    ),
]


@pytest.mark.parametrize(("entry", "path", "message"), BAD_VALUES)
def test_bad_custom_values_are_refused_with_model_state(
    api: httpx.Client, entry: Any, path: str, message: str
) -> None:
    matter = _seeded_matter(api)
    for response in (
        _put_values(api, matter, [entry(api)]),
        api.post(
            "/matters",
            json={
                "name": "New matter",
                "status": "Open",
                "account_ref": {"id": matter["account_ref"]["id"]},
                "custom_field_values": [entry(api)],
            },
        ),
    ):
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["message"] == "The request is invalid."
        assert path in body["modelState"]
        assert all(k.startswith("value.custom_field_values[0].") for k in body["modelState"]), body
        assert message in body["modelState"][path][0]
    assert api.get(f"/matters/{matter['id']}").json() == matter  # the refused PUT changed nothing


def test_good_custom_values_of_every_type_are_stored(api: httpx.Client) -> None:
    matter = _seeded_matter(api)
    counsel = api.get("/contacts", params={"$top": 1}).json()[0]
    values = [
        {"custom_field_ref": {"id": _field_id(api, "matter", "Case Stage")}, "value_string": "Settlement"},
        {"custom_field_ref": {"id": _field_id(api, "matter", "Statute of Limitations")},
         "value_date_time": "2027-03-01"},
        {"custom_field_ref": {"id": _field_id(api, "matter", "Contingency %")}, "value_number": "33.3"},
        {"custom_field_ref": {"id": _field_id(api, "matter", "Conflict Check")}, "value_boolean": True},
        {"custom_field_ref": {"id": _field_id(api, "matter", "Opposing Counsel")},
         "contact_ref": {"id": counsel["id"]}},
    ]  # fmt: skip
    response = _put_values(api, matter, values)
    assert response.status_code == 200, response.text
    typed = customfields.typed_values("matters", response.json())
    assert typed["Case Stage"] == "Settlement" and typed["Contingency %"] == 33.3
    assert typed["Conflict Check"] is True and typed["Statute of Limitations"].year == 2027
    assert typed["Opposing Counsel"]["id"] == counsel["id"]
