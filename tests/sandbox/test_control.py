"""The /_sandbox controls: reset, request log, mutate; seed determinism and churn."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from worker.practicepanther import resources
from worker.sandbox import SandboxServer, obtain_tokens


def _mutate(control: httpx.Client, body: Any) -> Any:
    response = control.post("/_sandbox/mutate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_reset_returns_to_the_seed(api: httpx.Client, control: httpx.Client) -> None:
    before = api.get("/matters").json()
    api.post("/matters", json={"name": "Temporary", "status": "Open"})
    api.delete("/matters", params={"id": before[0]["id"]})
    assert control.post("/_sandbox/reset").status_code == 200
    assert api.get("/matters").json() == before


def test_request_log_counts_what_a_client_did(
    api: httpx.Client, control: httpx.Client, shared_sandbox: SandboxServer
) -> None:
    assert control.delete("/_sandbox/requests").status_code == 200
    start = control.get("/_sandbox/requests").json()["next"]
    api.get("/matters", params={"$top": 2})
    api.get("/matters/not-there")
    config = shared_sandbox.config
    obtain_tokens(shared_sandbox.url, config.client_id, config.client_secret, config.redirect_uris[0])
    log = control.get("/_sandbox/requests", params={"since": start}).json()
    calls = [(r["method"], r["path"], r["status"]) for r in log["requests"]]
    assert calls == [
        ("GET", "/api/v2/matters", 200),
        ("GET", "/api/v2/matters/not-there", 404),
        ("GET", "/OAuth/Authorize", 302),
        ("POST", "/OAuth/Token", 200),
    ]
    assert log["requests"][0]["query"] == "%24top=2"
    assert log["token_grants"] == {"authorization_code": 1}
    assert log["by_status"] == {"200": 2, "404": 1, "302": 1}
    later = control.get("/_sandbox/requests", params={"since": log["next"]}).json()
    assert later["requests"] == [] and later["next"] == log["next"]
    control.delete("/_sandbox/requests")
    assert control.get("/_sandbox/requests").json()["count"] == 0


def test_request_log_never_holds_secrets(control: httpx.Client, shared_sandbox: SandboxServer) -> None:
    config = shared_sandbox.config
    tokens = obtain_tokens(
        shared_sandbox.url, config.client_id, config.client_secret, config.redirect_uris[0]
    )
    text = control.get("/_sandbox/requests").text
    for secret in (config.client_secret, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in text
    assert config.client_secret not in repr(config) and config.client_secret not in repr(shared_sandbox)


def test_mutate_create_update_delete(api: httpx.Client, control: httpx.Client) -> None:
    account = api.get("/accounts", params={"$top": 1}).json()[0]
    matter = _mutate(
        control,
        {
            "op": "create",
            "resource": "matters",
            "data": {
                "name": "UI matter",
                "status": "Open",
                "account_ref": {"id": account["id"]},
                "notes": "n",
            },
        },
    )
    assert api.get(f"/matters/{matter['id']}").json() == matter
    updated = _mutate(
        control, {"op": "update", "resource": "matters", "id": matter["id"], "data": {"status": "Closed"}}
    )
    assert (
        updated["status"] == "Closed"
        and updated["notes"] == "n"
        and updated["account_ref"] == matter["account_ref"]
    )
    assert updated["updated_at"] >= matter["updated_at"]
    deleted = _mutate(control, {"op": "delete", "resource": "matters", "id": matter["id"]})
    assert deleted["id"] == matter["id"]
    assert api.get(f"/matters/{matter['id']}").status_code == 404


def test_mutate_reaches_what_the_api_cannot_write(api: httpx.Client, control: httpx.Client) -> None:
    matter = api.get("/matters", params={"$top": 1}).json()[0]
    invoice = _mutate(
        control,
        {
            "op": "create",
            "resource": "invoices",
            "data": {
                "matter_ref": {"id": matter["id"]},
                "total": 500.0,
                "total_paid": 100.0,
                "invoice_type": "Sale",
            },
        },
    )
    assert invoice["total_outstanding"] == 400.0 and invoice["account_ref"] == matter["account_ref"]
    account = api.get("/accounts", params={"$top": 1}).json()[0]
    contact = _mutate(
        control,
        {
            "op": "create",
            "resource": "contacts",
            "data": {"first_name": "Side", "account_ref": {"id": account["id"]}},
        },
    )
    assert contact["account_ref"]["id"] == account["id"] and contact["is_primary_contact"] is False
    archived = _mutate(
        control, {"op": "update", "resource": "contacts", "id": contact["id"], "data": {"status": "Archived"}}
    )
    assert archived["status"] == "Archived"
    field = _mutate(
        control,
        {
            "op": "create",
            "resource": "custom_fields",
            "data": {"label": "Judge", "value_type": "TextBox", "scope": "matter"},
        },
    )
    assert "Judge" in {f["label"] for f in api.get("/customfields/matter").json()}
    assert "scope" not in field
    _mutate(
        control,
        {"op": "update", "resource": "custom_fields", "id": field["id"], "data": {"scope": "company"}},
    )
    assert "Judge" in {f["label"] for f in api.get("/customfields/company").json()}
    assert "Judge" not in {f["label"] for f in api.get("/customfields/matter").json()}


def test_mutate_backdate_is_a_late_commit(api: httpx.Client, control: httpx.Client) -> None:
    task = api.get("/tasks", params={"$top": 1}).json()[0]
    late = _mutate(
        control,
        {
            "op": "update",
            "resource": "tasks",
            "id": task["id"],
            "data": {"subject": "late"},
            "backdate_seconds": 300,
        },
    )
    stamp = datetime.fromisoformat(late["updated_at"]).replace(tzinfo=UTC)
    assert stamp < datetime.now(UTC) - timedelta(seconds=250)
    created = _mutate(
        control, {"op": "create", "resource": "tasks", "data": {"subject": "old"}, "backdate_seconds": 3600}
    )
    assert created["created_at"] == created["updated_at"] < late["updated_at"]


def test_mutate_bulk_update_and_batches(api: httpx.Client, control: httpx.Client) -> None:
    ids = [t["id"] for t in api.get("/tasks", params={"$top": 4}).json()]
    results = _mutate(
        control, {"op": "bulk_update", "resource": "tasks", "ids": ids, "data": {"priority": "Low"}}
    )
    assert [r["id"] for r in results] == ids
    assert len({r["updated_at"] for r in results}) == 1 and {r["priority"] for r in results} == {"Low"}
    touched = _mutate(control, {"op": "bulk_update", "resource": "matters", "count": 6})
    assert len(touched) == 6 and len({r["updated_at"] for r in touched}) == 1
    batch = _mutate(
        control,
        [
            {"op": "create", "resource": "notes", "data": {"subject": "one"}},
            {"op": "update", "resource": "tasks", "id": ids[0], "data": {"status": "Completed"}},
        ],
    )
    assert isinstance(batch, list) and batch[0]["subject"] == "one" and batch[1]["status"] == "Completed"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"op": "explode", "resource": "tasks"}, "op"),
        ({"op": "create", "resource": "spaceships", "data": {}}, "unknown resource"),
        ({"op": "create", "resource": "tasks", "data": {}}, "invalid"),
        ({"op": "bulk_update", "resource": "tasks"}, "count"),
        ([{"op": "create", "resource": "notes", "data": {"subject": "ok"}}, {"op": "nope"}], "ops[1]"),
    ],
)
def test_mutate_errors_are_400(control: httpx.Client, body: Any, fragment: str) -> None:
    response = control.post("/_sandbox/mutate", json=body)
    assert response.status_code == 400
    assert fragment.lower() in response.text.lower()


def _snapshot(server: SandboxServer) -> dict[str, Any]:
    config = server.config
    token = obtain_tokens(server.url, config.client_id, config.client_secret, config.redirect_uris[0])
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with httpx.Client(base_url=server.url, headers=headers) as api:
        return {
            path: api.get(path).json()
            for resource in resources.catalogue().values()
            for path in resource.list_paths.values()
        }


def test_the_same_seed_gives_identical_data(sandbox_factory: Callable[..., SandboxServer]) -> None:
    first, second, other = (_snapshot(sandbox_factory(seed=s)) for s in (3, 3, 4))
    assert first == second
    assert first != other
    assert all(first[path] for path in first), [p for p in first if not first[p]]


def test_no_seed_is_an_empty_account(sandbox_factory: Callable[..., SandboxServer]) -> None:
    data = _snapshot(sandbox_factory(seed=None))
    assert [u["display_name"] for u in data["/api/v2/users"]] == ["Alex Morgan"]
    assert all(records == [] for path, records in data.items() if path != "/api/v2/users")


def test_churn_makes_changes_a_poller_can_see(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(seed=1, churn_per_minute=1200)
    config = server.config
    token = obtain_tokens(server.url, config.client_id, config.client_secret, config.redirect_uris[0])
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    paths = ("/matters", "/tasks", "/timeentries", "/notes", "/payments", "/events", "/accounts")
    changed: set[str] = set()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with httpx.Client(base_url=f"{server.url}/api/v2", headers=headers) as api:
        deadline = time.monotonic() + 30
        while len(changed) < 3:
            assert time.monotonic() < deadline, f"churn changed only {changed}"
            changed |= {p for p in paths if api.get(p, params={"updated_since": started}).json()}
            time.sleep(0.1)


def test_unrouted_api_calls_are_logged_too(api: httpx.Client, control: httpx.Client) -> None:
    start = control.get("/_sandbox/requests").json()["next"]
    api.get("/no-such-resource")
    api.post("/payments", json={})
    log = control.get("/_sandbox/requests", params={"since": start}).json()["requests"]
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/api/v2/no-such-resource", 404),
        ("POST", "/api/v2/payments", 405),
    ]
