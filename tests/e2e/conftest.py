"""End-to-end scenarios: the sandbox over HTTP, a Slack stand-in, real brokers and state stores.

A :class:`Scenario` is one embedded-or-deployed worker setup: rules written to a temporary rules
directory, tokens obtained through the real OAuth flow, a :class:`~worker.process.runtime.Runtime`
on the requested broker with unique queue names (so tests can share Redis and RabbitMQ), and helpers
to change records the way a person would and to wait for the results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.fixtures.client import SandboxAdmin, connect, sandbox_settings
from tests.fixtures.stubs import StubServer
from worker.delivery.history import Run
from worker.delivery.options import DeliveryOptions
from worker.polling.poller import Poller, PollOptions
from worker.practicepanther.client import PracticePantherClient
from worker.process.runtime import Runtime, wait_until
from worker.sandbox import SandboxServer
from worker.settings import Settings
from worker.state import StateStore, open_store

#: Fast retries so storms and failures finish within the test budget; the policy is production's.
FAST = DeliveryOptions(max_attempts=8, retry_base=0.2, retry_max=1.5, run_lease=20.0, queued_wait=0.1)

CLOSED_MATTER_RULE = """\
- id: closed-matter-followup
  description: Closing task and a note to billing when a matter closes
  trigger:
    resource: matters
    on: updated
    changed: status
    to: Closed
  steps:
    - id: task
      type: practicepanther.create
      with:
        resource: tasks
        data:
          subject: "Send closing letter: {{ record.display_name }}"
          matter_ref: {id: "{{ record.id }}"}
          status: NotCompleted
    - id: tell
      type: slack.post
      with:
        webhook: billing
        text: "{{ record.display_name }} closed; closing task {{ steps.task.id }}"
"""


class Scenario:
    def __init__(
        self,
        *,
        sandbox: SandboxServer,
        slack: StubServer,
        tmp_path: Path,
        connection_id: str,
        broker_url: str,
        state_url: str,
        rules: str,
        options: DeliveryOptions = FAST,
        **overrides: Any,
    ) -> None:
        self.sandbox = sandbox
        self.slack = slack
        self.connection = connection_id
        self.admin = SandboxAdmin(sandbox.url)
        self.rules_dir = tmp_path / "rules"
        self.rules_dir.mkdir(exist_ok=True)
        (self.rules_dir / "rules.yaml").write_text(rules)
        self.settings: Settings = sandbox_settings(
            sandbox,
            state_url,
            connection_id,
            broker_url=broker_url,
            rules_dir=self.rules_dir,
            slack_webhooks={"billing": SecretStr(f"{slack.url}/hooks/T1/B1/billing-secret")},
            slack_api_url=f"{slack.url}/api",
            **overrides,
        )
        self.store: StateStore = open_store(state_url)
        connect(self.settings, self.store)
        self.client = PracticePantherClient(self.settings, self.store, retry_wait=0.01, retry_wait_max=0.05)
        self.queue_prefix = f"ppw_{connection_id}"
        self.options = options
        self.runtime: Runtime | None = None

    def env(self) -> dict[str, str]:
        """The environment that makes ``ppw`` (CLI or subprocess) use this scenario's settings."""
        s = self.settings
        env = {
            "PPW_PP_BASE_URL": s.pp_base_url,
            "PPW_PP_CLIENT_ID": s.pp_client_id,
            "PPW_PP_CLIENT_SECRET": s.pp_client_secret.get_secret_value(),
            "PPW_PP_REDIRECT_URI": s.pp_redirect_uri,
            "PPW_CONNECTION_ID": s.connection_id,
            "PPW_STATE_URL": s.state_url,
            "PPW_BROKER_URL": s.broker_url,
            "PPW_RULES_DIR": str(s.rules_dir),
            "PPW_RATE_LIMIT_PER_SECOND": str(s.rate_limit_per_second),
            "PPW_SLACK_API_URL": s.slack_api_url,
            "PPW_QUEUE_PREFIX": self.queue_prefix,
            "PPW_HTTP_ALLOWED_HOSTS": ",".join(s.http_allowed_hosts),
        }
        for name, secret in s.slack_webhooks.items():
            env[f"PPW_SLACK_WEBHOOKS__{name.upper()}"] = secret.get_secret_value()
        if s.slack_bot_token is not None:
            env["PPW_SLACK_BOT_TOKEN"] = s.slack_bot_token.get_secret_value()
        return env

    def write_rules(self, text: str) -> None:
        (self.rules_dir / "rules.yaml").write_text(text)

    # running ------------------------------------------------------------------------------------
    def prepare(self) -> Runtime:
        """The runtime without workers: to emit events and read history while others do the work."""
        self.runtime = Runtime.create(
            self.settings,
            store=self.store,
            options=self.options,
            queue_prefix=self.queue_prefix,
        )
        return self.runtime

    def start(self, threads: int = 4) -> Runtime:
        runtime = self.prepare()
        runtime.start_workers(threads)
        return runtime

    def poll(self, resource: str = "matters") -> None:
        """One poll, in this thread, emitting through the runtime's actors (priming on the first)."""
        assert self.runtime is not None
        poller = Poller(
            self.client,
            self.store,
            connection=self.connection,
            options=PollOptions.from_settings(self.settings),
        )
        poller.poll(resource, self.runtime.actors.emit)

    def close_matter(self) -> dict[str, Any]:
        """An open matter set to Closed, as a person in the web UI would."""
        [matter] = self.close_matters(1)
        return matter

    def close_matters(self, count: int) -> list[dict[str, Any]]:
        matters = list(self.client.list("matters", filter="status eq 'Open'", limit=count))
        assert len(matters) == count, f"the sandbox has only {len(matters)} open matters"
        self.admin.mutate(
            [
                {"op": "update", "resource": "matters", "id": m["id"], "data": {"status": "Closed"}}
                for m in matters
            ]
        )
        return matters

    def tasks_for(self, matter_id: str) -> list[dict[str, Any]]:
        return list(self.client.list("tasks", params={"matter_id": matter_id}))

    def runs(self, **filters: Any) -> list[Run]:
        assert self.runtime is not None
        return self.runtime.app.history.recent(self.connection, limit=500, **filters)

    def wait_runs(self, count: int, status: str = "succeeded", timeout: float = 30.0) -> list[Run]:
        ok = wait_until(lambda: len(self.runs(status=status)) >= count, timeout)
        runs = self.runs()
        assert ok, f"expected {count} {status} runs, got: " + ", ".join(
            f"{r.rule_id}={r.status} ({r.error})" for r in runs
        )
        return self.runs(status=status)

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.stop(grace=5)
            broker = self.runtime.broker
            try:
                _drop_queues(broker, self.runtime.actors.queues.all())
            finally:
                self.runtime.close()
        self.client.close()
        self.admin.http.close()
        _forget(self.store, self.connection)
        self.store.close()


def _drop_queues(broker: Any, queues: list[str]) -> None:
    """Remove this test's queues from a shared Redis or RabbitMQ."""
    name = type(broker).__name__
    if name == "RedisBroker":
        keys = list(broker.client.scan_iter(f"{broker.namespace}:*"))
        if keys:
            broker.client.delete(*keys)
    elif name == "RabbitmqBroker":
        channel = broker.channel
        for queue in queues:
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(queue + suffix)


def _forget(store: StateStore, connection: str) -> None:
    keys = list(store.scan(f"ppw:{connection}:"))
    for start in range(0, len(keys), 500):
        store.delete(*keys[start : start + 500])


@pytest.fixture
def scenario_factory(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> Iterator[Callable[..., Scenario]]:
    made: list[Scenario] = []

    def make(**kwargs: Any) -> Scenario:
        kwargs.setdefault("rules", CLOSED_MATTER_RULE)
        scenario = Scenario(
            sandbox=sandbox, slack=slack_stub, tmp_path=tmp_path, connection_id=connection_id, **kwargs
        )
        made.append(scenario)
        return scenario

    yield make
    for scenario in made:
        scenario.close()


def eventually(predicate: Callable[[], Any], timeout: float = 20.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.1)
