"""Steps write custom fields by label, against the sandbox over HTTP: ppw finds the field's id and
slot from the definitions (fetched when the cache lacks them), an update keeps every custom field
it does not name, and an unknown label or a bad value is a permanent step error."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.actions.helpers import event, execute
from tests.fixtures.client import SandboxAdmin
from worker.actions.errors import PermanentStepError
from worker.actions.services import Services
from worker.practicepanther import customfields
from worker.practicepanther.client import PracticePantherClient
from worker.practicepanther.customfields import DefinitionCache
from worker.state.base import StateStore


@pytest.fixture
def services(pp_client: PracticePantherClient, redis_store: StateStore) -> Iterator[Services]:
    svc = Services(pp_client.settings, redis_store, pp_factory=lambda _connection: pp_client)
    yield svc
    svc.close()


@pytest.fixture
def labels(sandbox_admin: SandboxAdmin) -> dict[str, str]:
    """Matter definitions made through the sandbox's control API, with labels unique to the test
    (so they never clash with what the sandbox seeds)."""
    tag = uuid.uuid4().hex[:6]
    specs = {
        "stage": ("DropDownList", "Intake, Discovery, Settlement, Closed"),
        "sol": ("Date", None),
        "referral": ("TextBox", None),
        "pct": ("Number", None),
        "conflict": ("Checkbox", None),
    }
    made: dict[str, str] = {}
    for key, (value_type, options) in specs.items():
        label = f"{key.title()} {tag}"
        data = {"label": label, "value_type": value_type, "dropdown_list_values": options, "scope": "matter"}
        sandbox_admin.mutate([{"op": "create", "resource": "custom_fields", "data": data}])
        made[key] = label
    return made


@pytest.fixture
def matter(pp_client: PracticePantherClient) -> dict[str, Any]:
    return next(iter(pp_client.list("matters", limit=1)))


def _values(pp_client: PracticePantherClient, matter_id: str) -> dict[str, Any]:
    return customfields.typed_values("matters", pp_client.get("matters", matter_id))


def test_update_sets_the_named_custom_fields_and_keeps_the_others(
    services: Services,
    pp_client: PracticePantherClient,
    matter: dict[str, Any],
    labels: dict[str, str],
    connection_id: str,
) -> None:
    before = _values(pp_client, matter["id"])
    assert before  # the seeded matter already holds custom values of its own
    ev = event(connection_id, matter["id"])
    first = {labels["stage"]: "Discovery", labels["referral"]: "Web", labels["pct"]: "33.5"}
    execute(
        services,
        "practicepanther.update",
        {"resource": "matters", "id": matter["id"], "custom": first},
        connection=connection_id,
        ev=ev,
    )
    execute(
        services,
        "practicepanther.update",
        {
            "resource": "matters",
            "id": matter["id"],
            "data": {"notes": "settling"},
            "custom": {labels["stage"]: "Settlement", labels["sol"]: "2027-03-01", labels["conflict"]: True},
        },
        connection=connection_id,
        ev=ev,
        step_id="s2",
    )
    after = _values(pp_client, matter["id"])
    assert after[labels["stage"]] == "Settlement"
    assert after[labels["referral"]] == "Web"  # not named by the second update: kept
    assert after[labels["pct"]] == 33.5
    assert after[labels["conflict"]] is True
    assert after[labels["sol"]].isoformat().startswith("2027-03-01T00:00:00")
    for label, kept in before.items():
        assert after[label] == kept  # the seeded custom values are untouched
    assert pp_client.get("matters", matter["id"])["notes"] == "settling"


def test_create_writes_custom_fields_fetching_the_definitions_when_the_cache_lacks_them(
    services: Services,
    pp_client: PracticePantherClient,
    matter: dict[str, Any],
    labels: dict[str, str],
    connection_id: str,
    redis_store: StateStore,
) -> None:
    assert DefinitionCache(redis_store, connection_id).load().scopes == {}
    result = execute(
        services,
        "practicepanther.create",
        {
            "resource": "matters",
            "data": {"name": "Roe v. Doe", "status": "Open", "account_ref": matter["account_ref"]},
            "custom": {labels["stage"]: "Intake", labels["pct"]: 25},
        },
        connection=connection_id,
    )
    created = _values(pp_client, result.output["id"])
    assert created[labels["stage"]] == "Intake" and created[labels["pct"]] == 25
    cached = DefinitionCache(redis_store, connection_id).load()
    assert cached.by_label("matters", labels["stage"]) is not None


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ({"stage": "Setlement"}, "cannot hold 'Setlement' (did you mean 'Settlement'?)"),
        ({"pct": "a third"}, "(Number) cannot hold 'a third' (expected a number)"),
        ({"Nonexistent label": "x"}, "no custom field 'Nonexistent label' on matters"),
    ],
)
def test_a_bad_label_or_value_is_a_permanent_error_and_writes_nothing(
    services: Services,
    pp_client: PracticePantherClient,
    matter: dict[str, Any],
    labels: dict[str, str],
    connection_id: str,
    custom: dict[str, Any],
    message: str,
) -> None:
    before = pp_client.get("matters", matter["id"])
    named = {labels.get(key, key): value for key, value in custom.items()}
    with pytest.raises(PermanentStepError) as caught:
        execute(
            services,
            "practicepanther.update",
            {"resource": "matters", "id": matter["id"], "custom": named},
            connection=connection_id,
        )
    assert message in str(caught.value)
    assert not caught.value.transient
    assert pp_client.get("matters", matter["id"])["updated_at"] == before["updated_at"]


def test_a_resource_without_custom_fields_refuses_custom(services: Services, connection_id: str) -> None:
    with pytest.raises(PermanentStepError, match="tasks have no custom fields"):
        execute(
            services,
            "practicepanther.create",
            {"resource": "tasks", "data": {"subject": "x"}, "custom": {"Stage": "y"}},
            connection=connection_id,
        )
