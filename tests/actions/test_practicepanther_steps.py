"""PracticePanther steps against the sandbox over HTTP: idempotent creates, merge updates, finds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.actions.helpers import event, execute
from tests.fixtures.client import SandboxAdmin
from worker.actions import markers
from worker.actions.base import step_key
from worker.actions.errors import StepError
from worker.actions.services import Services
from worker.polling.own_writes import is_own_write
from worker.practicepanther import resources
from worker.practicepanther.client import PracticePantherClient
from worker.state.base import StateStore


@pytest.fixture
def services(pp_client: PracticePantherClient, redis_store: StateStore) -> Iterator[Services]:
    svc = Services(pp_client.settings, redis_store, pp_factory=lambda _connection: pp_client)
    yield svc
    svc.close()


@pytest.fixture
def matter(pp_client: PracticePantherClient) -> dict[str, Any]:
    return next(iter(pp_client.list("matters", limit=1)))


def _tasks_with(pp_client: PracticePantherClient, mark: str) -> list[dict[str, Any]]:
    return list(pp_client.list("tasks", filter=markers.lookup_filter("notes", mark)))


def test_marker_field_is_chosen_per_resource() -> None:
    assert markers.marker_field(resources.get("tasks")) == "notes"
    assert markers.marker_field(resources.get("time_entries")) == "private_notes"
    assert markers.marker_field(resources.get("notes")) == "note"
    assert markers.marker_field(resources.get("events")) == "notes"


def test_create_marks_the_record_and_remembers_the_write(
    services: Services, pp_client: PracticePantherClient, matter: dict[str, Any], connection_id: str
) -> None:
    ev = event(connection_id, matter["id"])
    data = {"subject": "Send closing letter", "matter_ref": {"id": matter["id"]}, "notes": "by ppw"}
    result = execute(
        services,
        "practicepanther.create",
        {"resource": "tasks", "data": data},
        connection=connection_id,
        ev=ev,
    )
    created = result.output
    mark = markers.marker(step_key(ev.id, "rule-a", "s1"))
    assert created["id"] and created["subject"] == "Send closing letter"
    assert created["notes"] == f"by ppw\n\n{mark}"
    assert created["status"] == "NotCompleted"
    assert result.response["created"] is True
    stored = pp_client.get("tasks", created["id"])
    assert is_own_write(services.store, connection_id, "tasks", created["id"], stored["updated_at"])


def test_retry_after_an_uncertain_attempt_finds_the_record_instead_of_creating_again(
    services: Services,
    pp_client: PracticePantherClient,
    matter: dict[str, Any],
    connection_id: str,
    sandbox_admin: SandboxAdmin,
) -> None:
    ev = event(connection_id, matter["id"])
    params = {"resource": "tasks", "data": {"subject": "Once only", "matter_ref": {"id": matter["id"]}}}
    first = execute(services, "practicepanther.create", params, connection=connection_id, ev=ev)
    mark = markers.marker(step_key(ev.id, "rule-a", "s1"))

    since = sandbox_admin.mark()
    again = execute(
        services, "practicepanther.create", params, connection=connection_id, ev=ev, uncertain=True
    )
    assert again.output["id"] == first.output["id"]
    assert again.response["created"] is False
    calls = sandbox_admin.requests(since)["requests"]
    assert [c["method"] for c in calls if c["path"].startswith("/api/")] == ["GET"]
    assert len(_tasks_with(pp_client, mark)) == 1

    # an uncertain attempt that had not reached PracticePanther creates the record
    other = execute(
        services,
        "practicepanther.create",
        params,
        connection=connection_id,
        ev=ev,
        step_id="s2",
        uncertain=True,
    )
    assert other.response["created"] is True and other.output["id"] != first.output["id"]


def test_shorthand_and_validation_error_is_permanent(services: Services, connection_id: str) -> None:
    with pytest.raises(StepError) as caught:
        execute(
            services,
            "practicepanther.create",
            {"resource": "time_entries", "data": {"description": "no matter, no hours"}},
            connection=connection_id,
        )
    assert not caught.value.transient


def test_update_merges_and_keeps_other_fields(
    services: Services, pp_client: PracticePantherClient, matter: dict[str, Any], connection_id: str
) -> None:
    task = pp_client.create(
        "tasks", {"subject": "Draft", "matter_ref": {"id": matter["id"]}, "priority": "High"}
    )
    result = execute(
        services,
        "practicepanther.update",
        {"resource": "tasks", "id": task["id"], "data": {"status": "Completed"}},
        connection=connection_id,
    )
    after = pp_client.get("tasks", task["id"])
    assert after["status"] == "Completed" and after["priority"] == "High"
    assert after["matter_ref"]["id"] == matter["id"]
    assert result.output["id"] == task["id"]
    assert is_own_write(services.store, connection_id, "tasks", task["id"], after["updated_at"])


def test_find_first_all_and_not_found(services: Services, matter: dict[str, Any], connection_id: str) -> None:
    first = execute(
        services,
        "practicepanther.find",
        {"resource": "matters", "filter": f"id eq {matter['id']}"},
        connection=connection_id,
    )
    assert first.output["id"] == matter["id"]
    every = execute(
        services,
        "practicepanther.find",
        {"resource": "matters", "result": "all", "limit": 3, "orderby": "name"},
        connection=connection_id,
    )
    assert every.output["count"] == 3 and len(every.output["records"]) == 3
    with pytest.raises(StepError, match="no matters record matched"):
        execute(
            services,
            "practicepanther.find",
            {"resource": "matters", "filter": "name eq 'no such matter anywhere'"},
            connection=connection_id,
        )
    empty = execute(
        services,
        "practicepanther.find",
        {"resource": "matters", "filter": "name eq 'no such matter anywhere'", "not_found": "continue"},
        connection=connection_id,
    )
    assert empty.output == {}


def test_find_or_create_finds_then_creates_once(
    services: Services, pp_client: PracticePantherClient, matter: dict[str, Any], connection_id: str
) -> None:
    params = {
        "resource": "tasks",
        "match": {"subject": "Conflict check", "matter_ref": {"id": matter["id"]}},
        "data": {"priority": "High"},
    }
    made = execute(services, "practicepanther.find_or_create", params, connection=connection_id)
    assert made.output["created"] is True and made.output["priority"] == "High"
    found = execute(
        services, "practicepanther.find_or_create", params, connection=connection_id, step_id="s9"
    )
    assert found.output["created"] is False and found.output["id"] == made.output["id"]
