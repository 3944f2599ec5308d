"""The client against the sandbox over HTTP: CRUD, paging, typed errors, retries under storms."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from tenacity import RetryCallState

from tests.fixtures.client import SandboxAdmin, connect, sandbox_settings
from worker.practicepanther import client as client_module
from worker.practicepanther.client import PracticePantherClient
from worker.practicepanther.errors import (
    InvalidRequest,
    NotFound,
    PracticePantherError,
    RateLimited,
    ServerError,
    TransportError,
)
from worker.practicepanther.odata import eq, parse_timestamp, startswith
from worker.practicepanther.retry import IDEMPOTENT_METHODS, RetryPolicy, retryable
from worker.practicepanther.tokens import TokenSet
from worker.settings import Settings
from worker.state import StateStore


class Calls:
    """An ``on_response`` hook recording every HTTP exchange the client made."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, method: str, route: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        with self._lock:
            self.calls.append((method, route, status))

    def statuses(self) -> list[int]:
        return [status for _m, _r, status in self.calls]


def _client(settings: Settings, store: StateStore, **kwargs: Any) -> tuple[PracticePantherClient, Calls]:
    calls = Calls()
    client = PracticePantherClient(
        settings,
        store,
        on_response=calls,
        retry_wait=0.01,
        retry_wait_max=0.05,
        retry_after_max=0.02,
        **kwargs,
    )
    return client, calls


@pytest.fixture
def matter(pp_client: PracticePantherClient) -> dict[str, Any]:
    account = pp_client.create("accounts", {"display_name": "O'Brien Holdings", "company_name": "O'Brien"})
    name = f"O'Brien v. State {pp_client.connection}"
    return pp_client.create("matters", {"name": name, "status": "Open", "account_ref": {"id": account["id"]}})


def test_crud_round_trip(pp_client: PracticePantherClient, matter: dict[str, Any]) -> None:
    created = pp_client.create(
        "tasks", {"subject": "Draft closing letter", "matter_ref": {"id": matter["id"]}, "priority": "High"}
    )
    assert created["id"] and created["status"] == "NotCompleted"  # never null, it breaks the web UI
    fetched = pp_client.get("tasks", created["id"])
    assert fetched["subject"] == "Draft closing letter"
    assert fetched["matter_ref"]["id"] == matter["id"]

    pp_client.delete("tasks", created["id"])
    with pytest.raises(NotFound) as caught:
        pp_client.get("tasks", created["id"])
    assert caught.value.status == 404 and caught.value.path.endswith(created["id"])
    assert not caught.value.transient


def test_partial_update_keeps_untouched_fields(
    pp_client: PracticePantherClient, matter: dict[str, Any]
) -> None:
    task = pp_client.create(
        "tasks",
        {
            "subject": "Call client",
            "notes": "ask about the deed",
            "priority": "Low",
            "matter_ref": {"id": matter["id"]},
            "account_ref": matter["account_ref"],
            "tags": ["urgent"],
        },
    )
    updated = pp_client.update("tasks", task["id"], {"priority": "High"})

    fresh = pp_client.get("tasks", task["id"])
    for record in (updated, fresh):
        assert record["priority"] == "High"
        assert record["subject"] == "Call client"
        assert record["notes"] == "ask about the deed"
        assert record["matter_ref"]["id"] == matter["id"]
        assert record["account_ref"]["id"] == matter["account_ref"]["id"]
        assert record["tags"] == ["urgent"]


def test_records_carry_aware_utc_timestamps(pp_client: PracticePantherClient, matter: dict[str, Any]) -> None:
    fetched = pp_client.get("matters", matter["id"])
    for name in ("created_at", "updated_at"):
        assert fetched[name].endswith("Z")
        parsed = parse_timestamp(fetched[name])
        assert parsed is not None and parsed.tzinfo is not None


def test_filter_with_quotes_and_count(pp_client: PracticePantherClient, matter: dict[str, Any]) -> None:
    found = pp_client.list_page("matters", filter=eq("name", matter["name"]))
    assert [m["id"] for m in found] == [matter["id"]]
    assert pp_client.count("matters", filter=eq("name", matter["name"])) == 1


def test_validation_errors_are_typed(pp_client: PracticePantherClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        pp_client.create("tasks", {"notes": "no subject"})
    error = caught.value
    assert error.status == 400 and error.method == "POST" and error.path == "/api/v2/tasks"
    assert error.model_state and any("subject" in k for k in error.model_state)
    assert not error.transient


def test_paging_over_more_than_a_thousand_records_returns_each_once(
    pp_client: PracticePantherClient, sandbox_admin: SandboxAdmin
) -> None:
    tag = "paging-" + pp_client.connection
    created = sandbox_admin.mutate(
        [{"op": "create", "resource": "notes", "data": {"subject": f"{tag} {i}"}} for i in range(1050)]
    )
    expected = {record["id"] for record in created}
    mark = sandbox_admin.mark()

    mine = startswith("subject", f"{tag} ")
    seen = [n["id"] for n in pp_client.list("notes", filter=mine, page_size=100)]

    assert len(seen) == len(expected) == 1050
    assert set(seen) == expected
    assert sandbox_admin.requests(mark)["count"] == 11  # ten full pages and one short page
    assert pp_client.count("notes", filter=mine) == 1050
    limited = list(pp_client.list("notes", filter=mine, page_size=100, limit=150))
    assert len(limited) == 150


def test_429_storm_is_ridden_out(
    pp_settings: Settings,
    pp_client: PracticePantherClient,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
) -> None:
    client, calls = _client(pp_settings.model_copy(update={"max_retries": 10}), redis_store)
    sandbox_admin.faults(rate_429=0.3, retry_after=1)
    mark = sandbox_admin.mark()

    for _ in range(12):
        assert client.me()["id"]

    statuses = Counter(calls.statuses())
    assert statuses[200] == 12 and statuses[429] > 0
    log = sandbox_admin.requests(mark)
    assert log["count"] == len(calls.calls)  # every attempt accounted for, none hidden
    assert log["by_status"] == {str(k): v for k, v in statuses.items()}
    client.close()


def test_5xx_storm_is_ridden_out_for_reads(
    pp_settings: Settings,
    pp_client: PracticePantherClient,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
) -> None:
    client, calls = _client(pp_settings.model_copy(update={"max_retries": 10}), redis_store)
    sandbox_admin.faults(rate_5xx=0.3)
    mark = sandbox_admin.mark()

    for _ in range(12):
        client.list_page("matters", top=5)

    statuses = Counter(calls.statuses())
    assert statuses[200] == 12 and sum(v for k, v in statuses.items() if k >= 500) > 0
    assert sandbox_admin.requests(mark)["count"] == len(calls.calls)
    client.close()


def test_retries_stop_at_max_retries(
    pp_settings: Settings,
    pp_client: PracticePantherClient,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
) -> None:
    client, calls = _client(pp_settings.model_copy(update={"max_retries": 3}), redis_store)
    sandbox_admin.faults(rate_429=1.0, retry_after=7)
    mark = sandbox_admin.mark()

    with pytest.raises(RateLimited) as caught:
        client.me()

    assert caught.value.retry_after == 7  # reported as sent; waited only retry_after_max
    assert caught.value.transient
    assert calls.statuses() == [429, 429, 429, 429]
    assert sandbox_admin.requests(mark)["count"] == 4
    client.close()


def test_creates_are_retried_only_when_nothing_can_have_landed(
    pp_settings: Settings,
    pp_client: PracticePantherClient,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
) -> None:
    client, calls = _client(pp_settings.model_copy(update={"max_retries": 6}), redis_store)
    sandbox_admin.faults(rate_5xx=1.0)
    for i in range(6):
        calls.calls.clear()
        with pytest.raises(PracticePantherError) as caught:
            client.create("notes", {"subject": f"storm {i}"})
        statuses = calls.statuses()
        # Retried after a 503 (not processed), never after a 500/502 (may have been).
        assert all(s == 503 for s in statuses[:-1]), statuses
        assert statuses[-1] != 503 or len(statuses) == 7, statuses
        assert caught.value.status == statuses[-1]
    client.close()


def test_transport_errors_name_the_request_and_are_retried(
    pp_settings: Settings, redis_store: StateStore
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = pp_settings.model_copy(update={"pp_base_url": dead, "max_retries": 2})
    client, calls = _client(settings, redis_store)
    far = datetime(2999, 1, 1, tzinfo=UTC)
    client.oauth.tokens.save(
        TokenSet(access_token=SecretStr("a"), refresh_token=SecretStr("r"), expires_at=far)
    )
    with pytest.raises(TransportError) as caught:
        client.list_page("matters", filter=eq("name", "Secret Client Name"))
    error = caught.value
    assert error.transient and not error.request_sent and not error.may_have_applied
    assert error.method == "GET" and error.path == "/api/v2/matters"
    assert "Secret Client Name" not in str(error)
    assert calls.statuses() == [0, 0, 0]
    client.close()


def test_errors_never_contain_the_token(pp_client: PracticePantherClient) -> None:
    token = pp_client.oauth.access_token()
    with pytest.raises(NotFound) as caught:
        pp_client.get("matters", "00000000-0000-0000-0000-000000000000")
    for text in (str(caught.value), repr(caught.value), repr(pp_client), repr(pp_client.oauth)):
        assert token not in text


def test_module_level_hooks_see_every_exchange(pp_client: PracticePantherClient) -> None:
    calls = Calls()
    client_module.response_hooks.append(calls)
    try:
        record = pp_client.me()
        with pytest.raises(NotFound):
            pp_client.get("matters", "00000000-0000-0000-0000-000000000000")
    finally:
        client_module.response_hooks.remove(calls)
    assert record["id"]
    assert calls.calls == [("GET", "/api/v2/users/me", 200), ("GET", "/api/v2/matters/{id}", 404)]


def test_unknown_variant_and_unsupported_operations_are_explained(pp_client: PracticePantherClient) -> None:
    with pytest.raises(ValueError, match="company"):
        pp_client.list_page("custom_fields")
    assert isinstance(pp_client.list_page("custom_fields", variant="matter"), list)
    with pytest.raises(ValueError, match="does not allow"):
        pp_client.create("invoices", {})


def test_idempotent_methods() -> None:
    assert "POST" not in IDEMPOTENT_METHODS and {"GET", "PUT", "DELETE"} <= IDEMPOTENT_METHODS


def test_retry_waits_honour_retry_after_within_the_cap() -> None:
    policy = RetryPolicy(3, initial=0.5, maximum=4.0, retry_after_cap=10.0)

    def wait_after(error: BaseException, attempt: int = 1) -> float:
        state = RetryCallState(policy.for_method("GET"), None, (), {})
        state.attempt_number = attempt
        state.set_exception((type(error), error, None))
        return policy.wait(state)

    assert 3.0 <= wait_after(RateLimited("slow down", retry_after=3)) <= 3.3
    assert 10.0 <= wait_after(RateLimited("slow down", retry_after=3600)) <= 11.0
    backoffs = [wait_after(ServerError("boom", status=502), attempt) for attempt in (1, 2, 3, 6)]
    assert 0.5 <= backoffs[0] <= 1.0 and 1.0 <= backoffs[1] <= 1.5 and 2.0 <= backoffs[2] <= 2.5
    assert backoffs[3] <= 4.0


@pytest.mark.parametrize(
    ("method", "error", "expected"),
    [
        ("GET", ServerError("x", status=500), True),
        ("POST", ServerError("x", status=500), False),
        ("POST", ServerError("x", status=503), True),
        ("POST", RateLimited("x"), True),
        ("POST", TransportError("x", request_sent=False), True),
        ("POST", TransportError("x", request_sent=True), False),
        ("PUT", TransportError("x", request_sent=True), True),
        ("GET", NotFound("x"), False),
        ("GET", ValueError("not ours"), False),
    ],
)
def test_what_is_retried(method: str, error: BaseException, expected: bool) -> None:
    assert retryable(method, error) is expected


def test_paging_survives_a_server_that_caps_pages_below_page_size(
    sandbox_factory: Any, redis_url: str, redis_store: StateStore, connection_id: str
) -> None:
    server = sandbox_factory(seed=None, max_page_size=100)
    settings = sandbox_settings(server, redis_url, connection_id)
    connect(settings, redis_store)
    admin = SandboxAdmin(server.url)
    admin.mutate([{"op": "create", "resource": "notes", "data": {"subject": f"n{i}"}} for i in range(250)])
    with PracticePantherClient(settings, redis_store) as client:
        seen = [n["id"] for n in client.list("notes", page_size=200)]
        few = [n["id"] for n in client.list("notes", filter=eq("subject", "n7"), page_size=200)]
    assert len(seen) == len(set(seen)) == 250
    assert len(few) == 1
    admin.http.close()


def test_swagger_parameters_take_python_values(
    pp_client: PracticePantherClient, matter: dict[str, Any]
) -> None:
    def ids(since: datetime) -> list[str]:
        return [m["id"] for m in pp_client.list("matters", params={"updated_since": since, "status": "Open"})]

    assert matter["id"] in ids(datetime(2000, 1, 1))  # naive: taken as UTC, sent with Z
    assert ids(datetime(2999, 1, 1, tzinfo=UTC)) == []
