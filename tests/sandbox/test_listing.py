"""The swagger's own list parameters, their validation, and the page size limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from worker.sandbox import SandboxServer, obtain_tokens


def _ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in records}


def test_updated_since_and_created_since(api: httpx.Client, control: httpx.Client) -> None:
    everything = api.get("/matters").json()
    newest = max(m["updated_at"] for m in everything)
    assert _ids(api.get("/matters", params={"updated_since": newest}).json()) == {
        m["id"] for m in everything if m["updated_at"] == newest
    }
    matter = everything[0]
    touched = control.post(
        "/_sandbox/mutate",
        json={"op": "update", "resource": "matters", "id": matter["id"], "data": {"notes": "x"}},
    ).json()
    changed = api.get("/matters", params={"updated_since": touched["updated_at"] + "Z"}).json()
    assert _ids(changed) == {matter["id"]}
    assert api.get("/matters", params={"created_since": touched["updated_at"]}).json() == []
    oldest = min(m["created_at"] for m in everything)
    assert len(api.get("/matters", params={"created_since": oldest}).json()) == len(everything)


@pytest.mark.parametrize(
    ("path", "param", "read"),
    [
        ("/timeentries", "matter_id", lambda r: r["matter_ref"]["id"]),
        ("/timeentries", "account_id", lambda r: r["account_ref"]["id"]),
        ("/timeentries", "user_id", lambda r: r["billed_by_user_ref"]["id"]),
        ("/timeentries", "item_id", lambda r: r["item_ref"]["id"]),
        ("/Expenses", "billed_by_user_id", lambda r: r["billed_by_user_ref"]["id"]),
        ("/Expenses", "expense_category_id", lambda r: r["expense_category_ref"]["id"]),
        ("/payments", "bank_account_id", lambda r: r["bank_account"]["id"]),
        ("/tasks", "assigned_to_user_id", lambda r: r["assigned_to_users"][0]["id"]),
        ("/matters", "account_id", lambda r: r["account_ref"]["id"]),
        ("/relationships", "contact_id", lambda r: r["contact_ref"]["id"]),
        ("/relationships", "matter_id", lambda r: r["matter_ref"]["id"]),
        ("/notes", "matter_id", lambda r: r["matter_ref"]["id"]),
    ],
)
def test_id_parameters_select_by_reference(
    api: httpx.Client, path: str, param: str, read: Callable[[dict[str, Any]], str]
) -> None:
    everything = api.get(path).json()
    value = read(everything[0])
    selected = api.get(path, params={param: value}).json()
    assert selected
    assert len(selected) < len(everything) or param == "bank_account_id"
    assert _ids(selected) <= _ids(everything)
    if param != "assigned_to_user_id":
        assert all(read(r) == value for r in selected)
    else:
        assert all(value in {u["id"] for u in r["assigned_to_users"]} for r in selected)


def test_status_search_and_tags(api: httpx.Client) -> None:
    closed = api.get("/matters", params={"status": "Closed"}).json()
    assert closed and all(m["status"] == "Closed" for m in closed)
    assert api.get("/tasks", params={"status": "Completed"}).json()
    kind = closed[0]["name"]
    found = api.get("/matters", params={"search_text": kind.lower()}).json()
    assert found and all(kind.lower() in m["display_name"].lower() for m in found)
    tagged = api.get("/matters", params={"matter_tag": "Urgent"}).json()
    assert tagged and all("Urgent" in m["tags"] for m in tagged)
    vip = api.get("/accounts", params={"account_tag": "VIP"}).json()
    assert all("VIP" in a["tags"] for a in vip)
    assert _ids(api.get("/matters", params={"account_tag": "VIP"}).json()) == {
        m["id"] for m in api.get("/matters").json() if m["account_ref"]["id"] in _ids(vip)
    }


def test_date_ranges_are_inclusive_and_a_bare_date_covers_the_day(api: httpx.Client) -> None:
    entries = api.get("/timeentries").json()
    day = sorted(e["date"] for e in entries)[len(entries) // 2][:10]
    on_day = api.get("/timeentries", params={"date_from": day, "date_to": day}).json()
    assert on_day and {e["date"][:10] for e in on_day} == {day}
    assert len(on_day) == sum(1 for e in entries if e["date"][:10] == day)
    tasks = api.get("/tasks", params={"due_date_from": "2025-12-01", "due_date_to": "2025-12-31"}).json()
    assert tasks and all("2025-12-01" <= t["due_date"][:10] <= "2025-12-31" for t in tasks)
    events = api.get("/events", params={"date_from": "2025-12-01T00:00:00Z"}).json()
    assert all(e["start_date_time"] >= "2025-12-01" for e in events)


def test_users_by_email_and_files_by_creator(api: httpx.Client) -> None:
    me = api.get("/users/me").json()
    assert _ids(api.get("/users", params={"email_address": me["email"].upper()}).json()) == {me["id"]}
    assert api.get("/files", params={"created_by_user_id": me["id"]}).status_code == 200


@pytest.mark.parametrize(
    ("param", "value"),
    [("account_id", "not-a-guid"), ("updated_since", "last tuesday"), ("status", "Sleeping")],
)
def test_malformed_parameters_are_400(api: httpx.Client, param: str, value: str) -> None:
    response = api.get("/matters", params={param: value})
    assert response.status_code == 400
    assert param in response.json()["modelState"]


def test_unknown_parameters_are_ignored(api: httpx.Client) -> None:
    assert api.get("/matters", params={"colour": "blue"}).json() == api.get("/matters").json()


def test_page_size_is_capped(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(seed=1, max_page_size=7)
    config = server.config
    token = obtain_tokens(server.url, config.client_id, config.client_secret, config.redirect_uris[0])
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with httpx.Client(base_url=f"{server.url}/api/v2", headers=headers) as api:
        assert len(api.get("/timeentries").json()) == 7
        assert len(api.get("/timeentries", params={"$top": 100}).json()) == 7
        assert len(api.get("/timeentries", params={"$top": 3}).json()) == 3
        assert api.get("/timeentries/$count").text == "150"
        seen: list[str] = []
        while batch := api.get("/timeentries", params={"$top": 7, "$skip": len(seen)}).json():
            seen += [e["id"] for e in batch]
        assert len(seen) == len(set(seen)) == 150
