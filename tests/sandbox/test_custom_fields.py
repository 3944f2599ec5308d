"""Custom fields over HTTP: the seeded definitions and values, and how bad values are refused."""

from __future__ import annotations

from typing import Any

import httpx

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
