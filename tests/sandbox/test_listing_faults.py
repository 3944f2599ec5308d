"""The listing faults (refuse_select, empty_listings) and $select=id on a large table."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import pytest

from worker.sandbox import SandboxServer, obtain_tokens


def _faults(control: httpx.Client, **faults: object) -> dict[str, object]:
    response = control.post("/_sandbox/faults", json=faults)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_refuse_select_answers_400_for_select_only(api: httpx.Client, control: httpx.Client) -> None:
    assert api.get("/matters", params={"$select": "id"}).status_code == 200
    assert _faults(control, refuse_select=True)["refuse_select"] is True
    for path in ("/matters", "/matters/$count", "/customfields/matter"):
        refused = api.get(path, params={"$select": "id"})
        assert refused.status_code == 400, path
        message = refused.json()["message"]
        assert message.startswith("The query specified in the URI is not valid.")
        assert "$select is not supported" in message
    assert api.get("/matters", params={"$top": 2}).status_code == 200  # other queries still work
    assert _faults(control, refuse_select=0)["refuse_select"] is False
    assert api.get("/matters", params={"$select": "id"}).status_code == 200


def test_empty_listings_hide_lists_but_not_records(api: httpx.Client, control: httpx.Client) -> None:
    matter = api.get("/matters", params={"$top": 1}).json()[0]
    tasks = len(api.get("/tasks").json())
    assert _faults(control, empty_listings="matters, TimeEntries")["empty_listings"] == "matters,time_entries"
    assert api.get("/matters").json() == []
    assert api.get("/matters", params={"$filter": "status eq 'Open'"}).json() == []
    assert api.get("/matters/$count").text == "0"
    assert api.get("/timeentries").json() == []
    assert api.get(f"/matters/{matter['id']}").json() == matter  # get by id still works
    assert len(api.get("/tasks").json()) == tasks  # resources not named are untouched
    _faults(control, empty_listings="*")
    assert api.get("/tasks").json() == [] and api.get("/customfields/matter").json() == []
    _faults(control, empty_listings="")
    assert len(api.get("/tasks").json()) == tasks and api.get("/matters").json()


@pytest.mark.parametrize(
    ("faults", "fragment"),
    [
        ({"refuse_select": "maybe"}, "true or false"),
        ({"refuse_select": 0.5}, "true or false"),
        ({"empty_listings": "matters,widgets"}, "unknown resource 'widgets'"),
    ],
)
def test_bad_listing_fault_values_are_refused(
    control: httpx.Client, faults: dict[str, object], fragment: str
) -> None:
    before = control.get("/_sandbox/faults").json()
    response = control.post("/_sandbox/faults", json=faults)
    assert response.status_code == 400 and fragment in response.json()["message"]
    assert control.get("/_sandbox/faults").json() == before


def test_listing_faults_can_be_set_at_start(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(seed=1, faults={"empty_listings": "notes", "refuse_select": "1"})
    with httpx.Client(base_url=server.url) as http:
        assert {k: http.get("/_sandbox/faults").json()[k] for k in ("empty_listings", "refuse_select")} == {
            "empty_listings": "notes",
            "refuse_select": True,
        }


def test_select_id_returns_only_ids_and_is_cheap_on_100k_records(
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    server = sandbox_factory(seed=None, max_page_size=2500)
    db, start = server.state.db, datetime(2025, 1, 1)
    with db.lock:
        for i in range(100_000):
            db.insert("tasks", str(uuid.UUID(int=i)), {"subject": f"t{i}"}, start + timedelta(seconds=i))
    config = server.config
    token = obtain_tokens(server.url, config.client_id, config.client_secret, config.redirect_uris[0])
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    with httpx.Client(base_url=f"{server.url}/api/v2", headers=headers, timeout=30) as api:
        started = time.monotonic()
        pages = [
            api.get("/tasks", params={"$select": "id", "$top": 2500, "$skip": s}).json()
            for s in (0, 50_000, 97_500)
        ]
        elapsed = time.monotonic() - started
    assert all(record == {"id": record["id"]} for page in pages for record in page)
    assert [page[0]["id"] for page in pages] == [str(uuid.UUID(int=i)) for i in (0, 50_000, 97_500)]
    assert all(len(page) == 2500 for page in pages)
    assert elapsed < 3.0, f"three $select=id pages of a 100k table took {elapsed:.2f}s"
