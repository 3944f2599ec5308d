"""Search steps against the sandbox over HTTP, and the intake example end to end under faults:
find and find_or_create stay idempotent when PracticePanther fails and steps are retried."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.actions.helpers import execute
from tests.fixtures.client import SandboxAdmin
from tests.triggers.conftest import SAMPLES, TRIGGER_RULES, HookWorker
from worker.actions.errors import StepError, StopRun
from worker.actions.services import Services
from worker.practicepanther.client import PracticePantherClient
from worker.state.base import StateStore

SLACK_API = "/api/chat.postMessage"


@pytest.fixture
def services(pp_client: PracticePantherClient, redis_store: StateStore) -> Iterator[Services]:
    svc = Services(pp_client.settings, redis_store, pp_factory=lambda _connection: pp_client)
    yield svc
    svc.close()


def test_find_contact_by_email_ignores_case_and_quotes_the_value(
    services: Services, pp_client: PracticePantherClient, connection_id: str
) -> None:
    contact = next(c for c in pp_client.list("contacts") if c.get("email"))
    found = execute(
        services,
        "find_contact_by_email",
        {"email": f"  {contact['email'].upper()} "},
        connection=connection_id,
    )
    assert found.output["id"] == contact["id"]
    assert found.request["filter"] == f"tolower(email) eq '{contact['email'].lower()}'"
    # a quote in the value stays inside the literal: no error, no match
    tricky = {"email": "x' or email ne 'nobody", "not_found": "continue"}
    assert execute(services, "find_contact_by_email", tricky, connection=connection_id).output == {}
    with pytest.raises(StepError, match="no contacts record matched"):
        execute(
            services, "find_contact_by_email", {"email": "nobody@example.invalid"}, connection=connection_id
        )
    with pytest.raises(StopRun):
        execute(
            services,
            "find_contact_by_email",
            {"email": "nobody@example.invalid", "not_found": "stop"},
            connection=connection_id,
        )


def test_find_matter_by_number_or_name(
    services: Services, pp_client: PracticePantherClient, connection_id: str
) -> None:
    matter = next(m for m in pp_client.list("matters") if m.get("number"))
    by_number = execute(services, "find_matter", {"number": f"#{matter['number']}"}, connection=connection_id)
    assert by_number.output["id"] == matter["id"]
    both = execute(
        services,
        "find_matter",
        {"number": matter["number"], "name": matter["name"]},
        connection=connection_id,
    )
    assert both.output["id"] == matter["id"]
    with pytest.raises(StepError, match="not a matter number"):
        execute(services, "find_matter", {"number": "ten-forty-two"}, connection=connection_id)


def _intake_rule() -> str:
    return (TRIGGER_RULES / "intake-form.yaml").read_text()


def _payload(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "intake-form.json").read_text())
    data.update(changes)
    return data


def test_intake_example_end_to_end_under_failures(hooks: Callable[..., HookWorker], sandbox: Any) -> None:
    worker = hooks(_intake_rule())
    client = worker.scenario.client
    admin = SandboxAdmin(sandbox.url)
    accounts_before = len(list(client.list("accounts")))
    admin.faults(rate_5xx=0.2)  # PracticePanther fails one call in five; steps are retried
    try:
        first = worker.post("intake", _payload(), headers={"Idempotency-Key": "form-1"})
        assert first.status_code == 202, first.text
        worker.post("intake", _payload(), headers={"Idempotency-Key": "form-1"})  # the form retried
        worker.scenario.wait_runs(1, timeout=60)
    finally:
        admin.faults(rate_5xx=0)
    (run,) = worker.scenario.runs()
    assert run.status == "succeeded", run.error
    email = "maya.oconnell@example.com"
    contacts = list(client.list("contacts", filter=f"email eq '{email}'"))
    assert len(contacts) == 1 and contacts[0]["first_name"] == "Maya"
    assert len(list(client.list("accounts"))) == accounts_before + 1
    matters = list(client.list("matters", filter="name eq 'Commercial lease dispute with landlord'"))
    assert len(matters) == 1 and matters[0]["status"] == "Pending"
    assert matters[0]["account_ref"]["id"] == contacts[0]["account_ref"]["id"]
    tasks = list(client.list("tasks", params={"matter_id": matters[0]["id"]}))
    assert [t["subject"] for t in tasks] == [
        "Intake call: Maya O'Connell (Commercial lease dispute with landlord)"
    ]
    (post,) = worker.slack.wait_for(1, SLACK_API)
    assert post.json["channel"] == "#intake" and "(new contact)" in post.json["text"]
    assert tasks[0]["id"] in post.json["text"]

    # the same person writes again about something else: known contact, same account
    again = worker.post(
        "intake", _payload(matter="Second question about the lease", email="MAYA.oconnell@example.com")
    )
    assert again.status_code == 202
    worker.scenario.wait_runs(2)
    assert len(list(client.list("accounts"))) == accounts_before + 1
    second = next(iter(client.list("matters", filter="name eq 'Second question about the lease'")))
    assert second["account_ref"]["id"] == contacts[0]["account_ref"]["id"]
    assert "(known contact)" in worker.slack.wait_for(2, SLACK_API)[1].json["text"]


def test_a_new_person_at_a_known_company_joins_its_account(hooks: Callable[..., HookWorker]) -> None:
    worker = hooks(_intake_rule())
    client = worker.scenario.client
    company = next(a for a in client.list("accounts") if a.get("company_name"))
    before = len(company.get("other_contacts") or [])
    payload = _payload(email="new.person@example.com", first_name="Noor", last_name="Haddad")
    payload["company"] = company["company_name"]
    assert worker.post("intake", payload).status_code == 202
    (run,) = worker.scenario.wait_runs(1)
    assert [s.status for s in run.steps][:4] == ["done", "done", "done", "skipped"]
    account = client.get("accounts", company["id"])
    assert len(account["other_contacts"]) == before + 1
    (contact,) = client.list("contacts", filter="email eq 'new.person@example.com'")
    assert contact["account_ref"]["id"] == company["id"]
    matter = next(iter(client.list("matters", filter="name eq 'Commercial lease dispute with landlord'")))
    assert matter["account_ref"]["id"] == company["id"]
