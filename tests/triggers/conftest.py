"""Fixtures for webhook and schedule triggers: a worker with its HTTP server, over real HTTP.

``hooks`` builds a :class:`HookWorker`: the e2e :class:`~tests.e2e.conftest.Scenario` (sandbox over
HTTP, a Slack stand-in, real Redis state, workers running) plus the worker's HTTP server with the
``/hooks/{name}`` routes, and a client that signs deliveries the way a sender does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.e2e.conftest import FAST, Scenario, eventually
from tests.fixtures.stubs import Recorded, StubServer
from worker.actions.signing import sign
from worker.process.health import HealthServer
from worker.process.triggers import webhook_intake
from worker.sandbox import SandboxServer
from worker.triggers import TriggerOptions, WebhookIntake

__all__ = ["HookWorker", "eventually"]

HERE = Path(__file__).parent
SAMPLES = HERE / "samples"
REPO = HERE.parent.parent
TRIGGER_RULES = REPO / "rules" / "triggers"

SECRET = "whsec-test-0123456789abcdef"
BEARER = "bearer-test-token-9876543210"


class HookWorker:
    """A running worker that accepts webhooks; ``post`` delivers like a sender would."""

    def __init__(self, scenario: Scenario, options: TriggerOptions, clock: Callable[[], float]) -> None:
        self.scenario = scenario
        runtime = scenario.start(threads=4)
        intake = webhook_intake(scenario.settings, runtime, options=options)
        assert intake is not None
        self.intake: WebhookIntake = intake
        self.intake.clock = clock
        self.server = HealthServer(scenario.settings, {}, routes=intake.routes(), host="127.0.0.1", port=0)
        self.server.start()
        self.http = httpx.Client(base_url=self.server.url, timeout=20)
        self._baseline = self._deliveries()

    @property
    def slack(self) -> StubServer:
        return self.scenario.slack

    def post(
        self,
        hook: str,
        payload: Any = None,
        *,
        body: bytes | None = None,
        secret: str | None = SECRET,
        timestamp: int | None = None,
        bearer: str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        sent = {"Content-Type": content_type, **(headers or {})}
        if secret is not None:
            sent["X-PPW-Signature"] = sign(secret, raw, timestamp)
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        return self.http.post(f"/hooks/{hook}", content=raw, headers=sent)

    def _deliveries(self) -> dict[str, float]:
        counts: dict[str, float] = {}
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith("ppw_webhook_deliveries_total{"):
                labels, value = line.rsplit(" ", 1)
                counts[labels] = float(value)
        return counts

    def metric(self, hook: str, result: str) -> float:
        """How much ``ppw_webhook_deliveries_total`` for one hook and result grew since this worker
        started (the counters are per process, shared with earlier tests), read from /metrics."""
        labels = f'ppw_webhook_deliveries_total{{hook="{hook}",result="{result}"}}'
        return self._deliveries().get(labels, 0.0) - self._baseline.get(labels, 0.0)

    def posts(self, path: str) -> list[Recorded]:
        return self.slack.received(path)

    def close(self) -> None:
        self.http.close()
        self.server.stop()


@pytest.fixture
def hooks(
    sandbox: SandboxServer,
    slack_stub: StubServer,
    tmp_path: Path,
    connection_id: str,
    redis_url: str,
) -> Iterator[Callable[..., HookWorker]]:
    """``hooks(rules_yaml, options=TriggerOptions(...), clock=...)`` -> a running :class:`HookWorker`."""
    made: list[HookWorker] = []

    def make(
        rules: str,
        *,
        options: TriggerOptions | None = None,
        clock: Callable[[], float] = time.time,
        **overrides: Any,
    ) -> HookWorker:
        overrides.setdefault(
            "webhook_secrets",
            {"intake": SecretStr(SECRET), "shared": SecretStr(SECRET), "zapier": SecretStr(BEARER)},
        )
        scenario = Scenario(
            sandbox=sandbox,
            slack=slack_stub,
            tmp_path=tmp_path,
            connection_id=connection_id,
            broker_url="memory://",
            state_url=redis_url,
            rules=rules,
            options=FAST,
            slack_bot_token=SecretStr("xoxb-test-bot-token"),  # Slack Web API: <slack>/api
            timezone="America/New_York",
            **overrides,
        )
        worker = HookWorker(scenario, options or TriggerOptions(), clock)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()
        worker.scenario.close()


@pytest.fixture
def pipeline(
    sandbox: SandboxServer,
    slack_stub: StubServer,
    tmp_path: Path,
    connection_id: str,
    redis_url: str,
) -> Iterator[Callable[..., Scenario]]:
    """``pipeline(rules_yaml, broker_url=..., **settings)`` -> a started e2e :class:`Scenario`
    (workers running; no HTTP server)."""
    made: list[Scenario] = []

    def make(
        rules: str,
        *,
        broker_url: str = "memory://",
        start: bool = True,
        server: SandboxServer | None = None,
        **overrides: Any,
    ) -> Scenario:
        overrides.setdefault("webhook_secrets", {"intake": SecretStr(SECRET)})
        scenario = Scenario(
            sandbox=server or sandbox,
            slack=slack_stub,
            tmp_path=tmp_path,
            connection_id=connection_id,
            broker_url=broker_url,
            state_url=redis_url,
            rules=rules,
            options=FAST,
            slack_bot_token=SecretStr("xoxb-test-bot-token"),
            timezone="America/New_York",
            **overrides,
        )
        made.append(scenario)
        if start:
            scenario.start(threads=4)
        return scenario

    yield make
    for scenario in made:
        scenario.close()
