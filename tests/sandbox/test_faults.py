"""Faults: each one, set at run time through /_sandbox/faults or at start through the config."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from worker.sandbox import SandboxServer, obtain_tokens


def _faults(control: httpx.Client, **faults: object) -> dict[str, object]:
    response = control.post("/_sandbox/faults", json=faults)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_faults_start_cleared_and_show_what_is_set(control: httpx.Client) -> None:
    assert control.get("/_sandbox/faults").json() == {
        "rate_429": 0.0,
        "retry_after": 1.0,
        "rate_5xx": 0.0,
        "latency": 0.0,
        "clock_skew": 0.0,
        "page_mutation": 0.0,
        "refuse_select": False,
        "empty_listings": "",
    }
    _faults(control, rate_429=0.25, latency="0.01")
    current = control.get("/_sandbox/faults").json()
    assert current["rate_429"] == 0.25 and current["latency"] == 0.01


def test_rate_429_answers_with_retry_after(api: httpx.Client, control: httpx.Client) -> None:
    _faults(control, rate_429=1, retry_after=7)
    response = api.get("/matters")
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert control.get("/_sandbox/info").status_code == 200  # controls are never faulted
    _faults(control, rate_429=0.5)
    statuses = {api.get("/users/me").status_code for _ in range(40)}
    assert statuses == {200, 429}


def test_rate_5xx_answers_server_errors(api: httpx.Client, control: httpx.Client) -> None:
    _faults(control, rate_5xx=1)
    statuses = {api.get("/matters").status_code for _ in range(20)}
    assert statuses and statuses <= {500, 502, 503}
    _faults(control, rate_5xx=0)
    assert api.get("/matters").status_code == 200


def test_latency_delays_every_api_call(api: httpx.Client, control: httpx.Client) -> None:
    _faults(control, latency=0.3)
    started = time.monotonic()
    assert api.get("/users/me").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_expire_tokens_expires_access_but_not_refresh_tokens(
    sandbox_factory: Callable[..., SandboxServer],
) -> None:
    server = sandbox_factory(seed=None)
    config = server.config
    tokens = obtain_tokens(server.url, config.client_id, config.client_secret, config.redirect_uris[0])
    with httpx.Client(base_url=server.url) as http:
        me = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert http.get("/api/v2/users/me", headers=me).status_code == 200
        triggered = http.post("/_sandbox/faults", json={"expire_tokens": True}).json()["triggered"]
        assert triggered == {"expire_tokens": 1}
        assert http.get("/api/v2/users/me", headers=me).status_code == 401
        refreshed = http.post(
            "/OAuth/Token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": config.client_id,
                "client_secret": config.client_secret,
            },
        ).json()
        fresh = {"Authorization": f"Bearer {refreshed['access_token']}"}
        assert http.get("/api/v2/users/me", headers=fresh).status_code == 200


def test_clock_skew_moves_the_timestamps_the_server_writes(api: httpx.Client, control: httpx.Client) -> None:
    _faults(control, clock_skew=3600)
    task = api.post("/tasks", json={"subject": "from the future"}).json()
    written = datetime.fromisoformat(task["created_at"]).replace(tzinfo=UTC)
    assert written > datetime.now(UTC) + timedelta(minutes=30)
    _faults(control, clock_skew=-3600)
    task = api.post("/tasks", json={"subject": "from the past"}).json()
    assert datetime.fromisoformat(task["created_at"]).replace(tzinfo=UTC) < datetime.now(UTC) - timedelta(
        minutes=30
    )


def test_bulk_update_gives_records_one_updated_at(api: httpx.Client, control: httpx.Client) -> None:
    ids = _faults(control, bulk_update={"resource": "tasks", "count": 5})["triggered"]["bulk_update"]  # type: ignore[index]
    assert len(ids) == 5
    stamps = {api.get(f"/tasks/{i}").json()["updated_at"] for i in ids}
    assert len(stamps) == 1
    more = _faults(control, bulk_update="time_entries:3")["triggered"]["bulk_update"]  # type: ignore[index]
    assert len({api.get(f"/timeentries/{i}").json()["updated_at"] for i in more}) == 1


def _page_through(api: httpx.Client, size: int) -> list[str]:
    seen: list[str] = []
    while True:
        params: dict[str, str | int] = {"$orderby": "updated_at", "$top": size, "$skip": len(seen)}
        batch = api.get("/timeentries", params=params).json()
        seen += [e["id"] for e in batch]
        if len(batch) < size:
            return seen


def test_page_mutation_moves_records_between_pages(api: httpx.Client, control: httpx.Client) -> None:
    total = int(api.get("/timeentries/$count").text)
    assert len(set(_page_through(api, 20))) == total
    _faults(control, page_mutation=3)
    seen = _page_through(api, 20)
    assert len(set(seen)) < total  # offset paging over a moving result set misses records
    assert int(api.get("/timeentries/$count").text) == total
    _faults(control, page_mutation=0.1)
    before = {e["id"]: e["updated_at"] for e in api.get("/timeentries").json()}
    api.get("/timeentries", params={"$top": 10, "$skip": 10, "$orderby": "updated_at"})
    after = {e["id"]: e["updated_at"] for e in api.get("/timeentries").json()}
    assert sum(before[i] != after[i] for i in before) == 1  # 10 % of the 10 records page 1 held


def test_unknown_or_bad_faults_are_400(control: httpx.Client) -> None:
    response = control.post("/_sandbox/faults", json={"rate_teapot": 1})
    assert response.status_code == 400 and "rate_429" in response.json()["message"]
    assert control.post("/_sandbox/faults", json={"rate_429": "lots"}).status_code == 400
    assert control.post("/_sandbox/faults", json={"rate_429": 2}).status_code == 400
    assert control.post("/_sandbox/faults", json={"bulk_update": "matters:none"}).status_code == 400
    assert control.post("/_sandbox/faults", json=[1]).status_code == 400


def test_faults_can_be_set_at_start(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(seed=None, faults={"rate_429": 1, "retry_after": 3})
    config = server.config
    tokens = obtain_tokens(server.url, config.client_id, config.client_secret, config.redirect_uris[0])
    response = httpx.get(
        f"{server.url}/api/v2/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "3"


def test_a_bad_fault_request_changes_nothing(control: httpx.Client) -> None:
    response = control.post("/_sandbox/faults", json={"latency": 0.5, "rate_5xx": 7})
    assert response.status_code == 400
    assert control.get("/_sandbox/faults").json()["latency"] == 0.0
    assert control.post("/_sandbox/faults", json={"bulk_update": "spaceships:2"}).status_code == 400
