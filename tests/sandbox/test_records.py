"""Create, read, full-replace PUT, delete; validation answers; references kept consistent."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")


def _first(api: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    records = api.get(path, params={"$top": 1, **params}).json()
    assert records, path
    record: dict[str, Any] = records[0]
    return record


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _matter(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    account = _first(api, "/accounts")
    body = {"name": "Smith v. Jones", "status": "Open", "account_ref": {"id": account["id"]}, **extra}
    return _ok(api.post("/matters", json=body))


def test_create_fills_server_owned_fields_and_get_returns_it(api: httpx.Client) -> None:
    matter = _matter(api, id="00000000-0000-0000-0000-000000000001", created_at="1999-01-01T00:00:00")
    assert matter["id"] != "00000000-0000-0000-0000-000000000001"
    assert TIMESTAMP.match(matter["created_at"]) and matter["created_at"] == matter["updated_at"]
    assert matter["created_at"] > "2026-01-01"
    assert isinstance(matter["number"], int)
    assert api.get(f"/matters/{matter['id']}").json() == matter


def test_display_names_are_computed_like_the_ui(api: httpx.Client) -> None:
    person = _ok(api.post("/accounts", json={"primary_contact": {"first_name": "Ana", "last_name": "Lima"}}))
    assert person["display_name"] == "Ana Lima"
    assert person["primary_contact"]["display_name"] == "Ana Lima"
    assert person["primary_contact"]["is_primary_contact"] is True
    assert person["primary_contact"]["account_ref"] == {"id": person["id"], "display_name": "Ana Lima"}
    company = _ok(
        api.post("/accounts", json={"company_name": "Lima Labs", "primary_contact": {"first_name": "Ana"}})
    )
    assert company["display_name"] == "Lima Labs"
    matter = _ok(
        api.post("/matters", json={"name": "Lease", "status": "Open", "account_ref": {"id": company["id"]}})
    )
    assert matter["display_name"] == "Lima Labs - Lease"
    assert matter["account_ref"] == {"id": company["id"], "display_name": "Lima Labs"}


def test_references_carry_display_strings_and_user_email(api: httpx.Client) -> None:
    matter = _matter(api)
    user = _first(api, "/users", **{"$filter": "first_name eq 'Marcus'"})
    entry = _ok(
        api.post(
            "/timeentries",
            json={
                "matter_ref": {"id": matter["id"], "display_name": "ignored"},
                "billed_by_user_ref": {"id": user["id"]},
                "date": "2026-04-04",
                "hours": "1.5",
            },
        )
    )
    assert entry["matter_ref"] == {"id": matter["id"], "display_name": matter["display_name"]}
    assert entry["billed_by_user_ref"] == {
        "id": user["id"],
        "display_name": "Marcus Lee",
        "email_address": user["email"],
    }
    assert entry["hours"] == 1.5 and entry["date"] == "2026-04-04T00:00:00"


def test_account_ref_follows_the_matter(api: httpx.Client) -> None:
    matter = _matter(api)
    other = _first(api, "/accounts", **{"$skip": 3})
    task = _ok(
        api.post(
            "/tasks",
            json={"subject": "Call", "matter_ref": {"id": matter["id"]}, "account_ref": {"id": other["id"]}},
        )
    )
    assert task["account_ref"]["id"] == matter["account_ref"]["id"]
    moved = {**matter, "account_ref": {"id": other["id"]}}
    _ok(api.put("/matters", params={"id": matter["id"]}, json=moved))
    again = api.get(f"/tasks/{task['id']}").json()
    assert again["account_ref"] == {"id": other["id"], "display_name": other["display_name"]}
    assert again["matter_ref"]["display_name"].startswith(other["display_name"])


def test_put_is_a_full_replace(api: httpx.Client) -> None:
    matter = _matter(api)
    task = _ok(
        api.post(
            "/tasks",
            json={
                "subject": "Draft",
                "matter_ref": {"id": matter["id"]},
                "notes": "keep?",
                "priority": "High",
                "tags": ["Billing"],
            },
        )
    )
    replaced = _ok(api.put("/tasks", params={"id": task["id"]}, json={"subject": "Draft v2"}))
    assert replaced["subject"] == "Draft v2"
    assert replaced["matter_ref"] is None and replaced["account_ref"] is None
    assert replaced["notes"] is None and replaced["priority"] is None and replaced["tags"] == []
    assert replaced["status"] == "NotCompleted"
    assert replaced["created_at"] == task["created_at"] and replaced["updated_at"] >= task["updated_at"]
    assert api.get(f"/tasks/{task['id']}").json() == replaced


def test_get_merge_put_keeps_everything(api: httpx.Client) -> None:
    task = _first(api, "/tasks", **{"$filter": "matter_ref ne null"})
    body = {k: v for k, v in task.items() if k not in ("id", "created_at", "updated_at")}
    body["status"] = "Completed"
    updated = _ok(api.put("/tasks", params={"id": task["id"]}, json=body))
    assert {k: v for k, v in updated.items() if k not in ("updated_at", "status")} == {
        k: v for k, v in task.items() if k not in ("updated_at", "status")
    }
    assert updated["status"] == "Completed"


def test_required_fields_answer_asp_net_model_state(api: httpx.Client) -> None:
    response = api.post("/timeentries", json={"hours": 1})
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "The request is invalid."
    assert set(body["modelState"]) == {"value.date", "value.matter_ref", "value.billed_by_user_ref"}
    assert all(isinstance(v, list) and v for v in body["modelState"].values())


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("/matters", {"name": "X", "status": "Sleeping"}, "value.status"),
        ("/matters", {"name": "X", "status": "Open", "number": "twelve"}, "value.number"),
        ("/matters", {"name": "X", "status": "Open", "open_date": "someday"}, "value.open_date"),
        ("/matters", {"name": "X", "status": "Open", "tags": "a,b"}, "value.tags"),
        ("/matters", {"name": "X", "status": "Open", "account_ref": {"id": "nope"}}, "value.account_ref.id"),
        (
            "/matters",
            {"name": "X", "status": "Open", "account_ref": {"id": "3f1c7a52-0000-4000-8000-000000000000"}},
            "value.account_ref.id",
        ),
        ("/tasks", {"subject": "X", "assigned_to_users": [{"id": "3f1c7a52-0000-4000-8000-000000000000"}]},
         "value.assigned_to_users[0].id"),
        ("/tasks", {"subject": ["X"]}, "value.subject"),
        ("/tasks", {"subject": "X", "priority": 3}, "value.priority"),
        ("/events", {"subject": "X", "is_all_day": "maybe", "start_date_time": "2026-01-01T10:00:00",
                     "end_date_time": "2026-01-01T11:00:00"}, "value.is_all_day"),
        ("/emails", {"subject": "X", "body_text": "y", "from": {"display_name": "n"}}, "value.from.address"),
    ],
)  # fmt: skip
def test_invalid_values_are_400_with_the_field_named(
    api: httpx.Client, path: str, body: dict[str, Any], key: str
) -> None:
    response = api.post(path, json=body)
    assert response.status_code == 400, response.text
    assert key in response.json()["modelState"], response.json()


def test_enum_values_are_matched_case_insensitively_and_stored_canonically(api: httpx.Client) -> None:
    task = _ok(api.post("/tasks", json={"subject": "X", "status": "inprogress", "priority": "high"}))
    assert (task["status"], task["priority"]) == ("InProgress", "High")


def test_a_task_never_has_a_null_status(api: httpx.Client) -> None:
    assert _ok(api.post("/tasks", json={"subject": "X", "status": None}))["status"] == "NotCompleted"


def test_bodies_that_are_not_json_objects_are_400(api: httpx.Client) -> None:
    assert (
        api.post("/tasks", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 400
    )
    assert api.post("/tasks", json=["a"]).status_code == 400
    assert "message" in api.post("/messages", json=[]).json()["modelState"]


def test_unknown_ids_are_404_and_put_delete_need_an_id(api: httpx.Client) -> None:
    unknown = "3f1c7a52-0000-4000-8000-000000000000"
    assert api.get(f"/matters/{unknown}").status_code == 404
    assert (
        api.put("/matters", params={"id": unknown}, json={"name": "x", "status": "Open"}).status_code == 404
    )
    assert api.delete("/matters", params={"id": unknown}).status_code == 404
    assert api.delete("/matters").status_code == 400
    assert api.get("/nothing-here").status_code == 404
    assert api.put("/payments", params={"id": unknown}, json={}).status_code == 405


def test_delete_removes_the_record_and_what_requires_it(api: httpx.Client) -> None:
    matter = _matter(api)
    user = _first(api, "/users")
    entry = _ok(
        api.post(
            "/timeentries",
            json={"matter_ref": {"id": matter["id"]}, "billed_by_user_ref": {"id": user["id"]},
                  "date": "2026-04-04T00:00:00", "hours": 1},
        )
    )  # fmt: skip
    note = _ok(api.post("/notes", json={"subject": "n", "matter_ref": {"id": matter["id"]}}))
    deleted = _ok(api.delete("/matters", params={"id": matter["id"]}))
    assert deleted["id"] == matter["id"]
    assert api.get(f"/matters/{matter['id']}").status_code == 404
    assert api.get(f"/timeentries/{entry['id']}").status_code == 404  # matter_ref is required there
    orphan = api.get(f"/notes/{note['id']}").json()  # optional on notes: the note stays
    assert orphan["matter_ref"] is None


def test_users_are_deactivated_not_removed(api: httpx.Client) -> None:
    user = _first(api, "/users", **{"$filter": "first_name eq 'Dana'"})
    _ok(api.delete("/users", params={"id": user["id"]}))
    assert api.get(f"/users/{user['id']}").json()["is_active"] is False


def test_account_contacts_live_in_contacts(api: httpx.Client) -> None:
    account = _ok(
        api.post(
            "/accounts",
            json={
                "company_name": "Contacts Inc",
                "primary_contact": {"first_name": "Pam", "last_name": "Beesly", "email": "pam@example.com"},
                "other_contacts": [{"first_name": "Jim", "last_name": "Halpert"}],
            },
        )
    )
    contacts = api.get("/contacts", params={"account_id": account["id"]}).json()
    assert {c["display_name"] for c in contacts} == {"Pam Beesly", "Jim Halpert"}
    assert all(c["account_ref"]["id"] == account["id"] for c in contacts)
    assert api.get("/contacts", params={"company_name": "contacts inc"}).json() == contacts
    primary = account["primary_contact"]
    body = {k: v for k, v in account.items() if k not in ("id", "created_at", "updated_at")}
    body["primary_contact"] = {**primary, "phone_mobile": "305-555-0000"}
    body["other_contacts"] = []
    updated = _ok(api.put("/accounts", params={"id": account["id"]}, json=body))
    assert updated["primary_contact"]["id"] == primary["id"]
    assert updated["primary_contact"]["phone_mobile"] == "305-555-0000"
    assert updated["other_contacts"] == []
    assert [c["display_name"] for c in api.get("/contacts", params={"account_id": account["id"]}).json()] == [
        "Pam Beesly"
    ]


def test_contacts_track_changes_without_timestamps(api: httpx.Client) -> None:
    account = _ok(api.post("/accounts", json={"primary_contact": {"first_name": "Early"}}))
    marker = account["updated_at"] + "Z"
    body = {k: v for k, v in account.items() if k not in ("id", "created_at", "updated_at")}
    body["primary_contact"] = {**account["primary_contact"], "last_name": "Bird"}
    _ok(api.put("/accounts", params={"id": account["id"]}, json=body))
    changed = api.get("/contacts", params={"updated_since": marker}).json()
    assert [c["display_name"] for c in changed] == ["Early Bird"]
    assert "updated_at" not in changed[0]


def test_messages_use_their_own_body_parameter(api: httpx.Client) -> None:
    contact = _first(api, "/contacts")
    message = _ok(
        api.post("/messages", json={"subject": "Hi", "body": "Hello", "contact": {"id": contact["id"]}})
    )
    assert message["contact"]["display_name"] == contact["display_name"]
    assert message["contact"]["account_ref"] == contact["account_ref"]
    bad = api.post("/messages", json={"type": "Pigeon"})
    assert "message.type" in bad.json()["modelState"]


def test_expense_amount_and_category(api: httpx.Client) -> None:
    matter = _matter(api)
    category = _first(api, "/ExpenseCategories")
    expense = _ok(
        api.post(
            "/Expenses",
            json={"matter_ref": {"id": matter["id"]}, "qty": 3, "price": 12.5,
                  "expense_category_ref": {"id": category["id"]}},
        )
    )  # fmt: skip
    assert expense["amount"] == 37.5
    assert expense["expense_category_ref"] == category


def test_files_store_metadata_and_small_content(api: httpx.Client) -> None:
    matter = _matter(api)
    uploaded = _ok(
        api.post(
            "/files",
            params={"file_name": "brief.txt", "matter_id": matter["id"]},
            content=b"hello brief",
            headers={"content-type": "text/plain"},
        )
    )
    assert (uploaded["size"], uploaded["content_type"], uploaded["file_name"]) == (
        11,
        "text/plain",
        "brief.txt",
    )
    assert uploaded["matter_ref"]["id"] == matter["id"]
    download = api.get(f"/files/download/{uploaded['id']}")
    assert download.status_code == 200 and download.content == b"hello brief"
    metadata_only = _ok(api.post("/files", json={"file_name": "scan.pdf"}))
    assert metadata_only["size"] == 0
    assert api.get(f"/files/download/{metadata_only['id']}").status_code == 404
    assert api.post("/files/box").status_code == 200


def test_custom_fields_and_tags_are_scoped(api: httpx.Client) -> None:
    company = {f["label"] for f in api.get("/customfields/company").json()}
    matter = {f["label"] for f in api.get("/customfields/matter").json()}
    contact = {f["label"] for f in api.get("/customfields/contact").json()}
    assert company == {"Industry"} and contact == {"Date of Birth", "Referral Source"}
    assert {"Case Number", "Court Date", "Referral Source", "Case Stage", "Statute of Limitations"} <= matter
    field = api.get("/customfields/matter").json()[0]
    assert api.get(f"/customfields/{field['id']}").json() == field
    _matter(api, tags=["Brand New Tag"])
    assert "Brand New Tag" in {t["name"] for t in api.get("/tags/matter").json()}
    assert "Brand New Tag" not in {t["name"] for t in api.get("/tags/account").json()}
