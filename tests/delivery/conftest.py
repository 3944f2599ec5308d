"""A firm for the timing tests: a sandbox account, rules that wait or fire on dates, and the
dispatcher, runner and pumps that run them, on real state (both backends), with days passing on
time-machine's clock (``clock``), never on sleep."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from tests.fixtures.client import SandboxAdmin, sandbox_settings
from tests.fixtures.stubs import StubServer
from tests.polling.conftest import _log_in
from worker.actions.services import Services
from worker.delivery.app import DeliveryApp
from worker.delivery.dispatch import Dispatcher
from worker.delivery.options import DeliveryOptions
from worker.delivery.rulebook import EngineRuleBook
from worker.delivery.runner import Outcome, Runner
from worker.delivery.timers import TimerPump
from worker.events import Change, Event
from worker.rules.watcher import RuleRegistry
from worker.sandbox import SandboxServer
from worker.state.base import StateStore

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York

RULE = """\
- id: follow-up
  trigger: {{resource: matters, on: updated}}
  mode: {mode}
  steps:
    - id: noted
      type: log
      with: {{message: "seen {{{{ record.name }}}}"}}
    - id: later
      type: wait
      with: {wait}
    - id: tell
      type: http.request
      with: {{url: "{url}/tell", json: {{name: "{{{{ record.name }}}}", status: "{{{{ record.status }}}}"}}}}
"""


class Firm:
    """A sandbox account, a rule that waits, and the dispatcher, runner and pump that run it."""

    def __init__(
        self, sandbox: SandboxServer, store: StateStore, stub: StubServer, rules_dir: Path, connection: str
    ) -> None:
        self.store, self.stub, self.rules_dir, self.connection = store, stub, rules_dir, connection
        self.settings = sandbox_settings(
            sandbox,
            store.url,
            connection,
            rules_dir=rules_dir,
            http_allowed_hosts=["127.0.0.1"],
            timezone="America/New_York",
            rule_burst_per_minute=1000,
        )
        _log_in(self.settings, store)
        self.admin = SandboxAdmin(sandbox.url)
        self.write()
        self.registry = RuleRegistry(settings=self.settings)
        self.registry.load()
        options = DeliveryOptions(
            max_attempts=3, retry_base=0.01, retry_max=0.05, run_lease=5, queued_wait=0.01
        )
        self.app = DeliveryApp.create(
            self.settings,
            store,
            EngineRuleBook(lambda: self.registry.engine, self.settings),
            services=Services(self.settings, store),
            options=options,
        )
        self.dispatcher = Dispatcher(self.app)
        self.runner = Runner(self.app)
        self.woken: list[str] = []
        self.pump = TimerPump(store, connection, lambda _c, ids: self.woken.extend(ids))

    def write(self, mode: str = "parallel", wait: str = '{for: "3 days"}') -> None:
        (self.rules_dir / "follow-up.yaml").write_text(RULE.format(mode=mode, wait=wait, url=self.stub.url))

    def reload(self, **kwargs: Any) -> None:
        self.write(**kwargs)
        self.registry.load()
        assert not self.registry.status()["errors"], self.registry.status()["errors"]

    def matter(self, name: str = "Estate of Smith") -> dict[str, Any]:
        account = self.admin.mutate(
            [{"op": "create", "resource": "accounts", "data": {"display_name": "Acme"}}]
        )
        body = {"name": name, "status": "Open", "account_ref": {"id": account[0]["id"]}}
        created: dict[str, Any] = self.admin.mutate([{"op": "create", "resource": "matters", "data": body}])[
            0
        ]
        return created

    def edit(self, record_id: str, **data: Any) -> None:
        self.admin.mutate([{"op": "update", "resource": "matters", "id": record_id, "data": data}])

    def event(self, record: dict[str, Any], revision: str = "1") -> Event:
        ev = Event.build(
            type="updated",
            resource="matters",
            record_id=record["id"],
            revision=f"2026-03-02T15:00:0{revision}Z",
            connection=self.connection,
            record=record,
            changes={"status": Change(old="Pending", new="Open")},
        )
        self.app.events.save(ev)
        return ev

    def start(self, record: dict[str, Any], revision: str = "1") -> str:
        [result] = self.dispatcher.dispatch_many(
            self.connection, [self.event(record, revision).id], lambda *_: None
        )
        [run_id] = result.runs
        return run_id

    def run(self, run_id: str) -> Outcome:
        return self.runner.run(self.connection, run_id)

    def told(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.stub.requests if r.path == "/tell"]


@pytest.fixture
def firm(
    sandbox_factory: Callable[..., SandboxServer],
    store: StateStore,
    stub_server: StubServer,
    tmp_path: Path,
    connection_id: str,
) -> Iterator[Firm]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    made = Firm(sandbox_factory(seed=None), store, stub_server, rules_dir, connection_id)
    yield made
    made.app.close()
    made.admin.http.close()


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(START, tick=True) as traveller:
        yield traveller
