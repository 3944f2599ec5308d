"""A poller talking to an empty sandbox over real HTTP, with state on SQLite or Redis.

``harness`` runs each test on both backends (through the ``store`` fixture); ``redis_harness``
pins Redis for the tests about several processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.fixtures.client import TEST_RETRY_WAIT, SandboxAdmin, sandbox_settings
from worker.cli import app
from worker.events import Event
from worker.polling.poller import Poller, PollOptions, PollResult
from worker.practicepanther.client import PracticePantherClient
from worker.practicepanther.tokens import TokenSet, TokenStore
from worker.sandbox import SandboxServer, obtain_tokens
from worker.settings import Settings, get_settings
from worker.state import StateStore


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(interval)


class Harness:
    """One sandbox account, one connection, one poller, and the events it emitted."""

    def __init__(
        self, sandbox: SandboxServer, store: StateStore, connection: str, settings: Settings
    ) -> None:
        self.sandbox = sandbox
        self.store = store
        self.connection = connection
        self.settings = settings
        self.admin = SandboxAdmin(sandbox.url)
        self.client = PracticePantherClient(
            settings, store, retry_wait=TEST_RETRY_WAIT, retry_wait_max=TEST_RETRY_WAIT * 5
        )
        self.options = PollOptions(
            page_size=100, overlap=120.0, sweep_interval=0.0, timeout=30.0, flood_limit=1000
        )
        self.emitted: list[Event] = []
        self._account: str | None = None

    # sandbox edits, as a person in the web UI would make them ------------------------------
    def account(self) -> str:
        if self._account is None:
            self._account = self.admin.mutate(
                [{"op": "create", "resource": "accounts", "data": {"display_name": "Acme"}}]
            )[0]["id"]
        return self._account

    def create(self, resource: str, count: int = 1, **data: Any) -> list[dict[str, Any]]:
        by_resource: dict[str, dict[str, Any]] = {
            "matters": {"status": "Open", "account_ref": {"id": self.account()}},
            "tasks": {"subject": "Call the client"},
            "contacts": {"account_ref": {"id": self.account()}},
        }
        defaults = by_resource.get(resource, {})
        ops = []
        for i in range(count):
            body = {**defaults, **data}
            if resource == "matters":
                body.setdefault("name", f"Matter {i}")
            if resource == "contacts":
                body.setdefault("first_name", f"Person {i}")
            op: dict[str, Any] = {"op": "create", "resource": resource, "data": body}
            ops.append(op)
        created: list[dict[str, Any]] = []
        for start in range(0, len(ops), 200):
            created.extend(self.admin.mutate(ops[start : start + 200]))
        return created

    def update(self, resource: str, record_id: str, **data: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.admin.mutate(
            [{"op": "update", "resource": resource, "id": record_id, "data": data}]
        )[0]
        return result

    def bulk_update(self, resource: str, ids: list[str], **data: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.admin.mutate(
            [{"op": "bulk_update", "resource": resource, "ids": ids, "data": data}]
        )[0]
        return result

    def faults(self, **faults: Any) -> None:
        self.admin.faults(**faults)

    # polling ------------------------------------------------------------------------------
    def poller(self, **options: Any) -> Poller:
        return Poller(
            self.client, self.store, connection=self.connection, options=replace(self.options, **options)
        )

    def poll(self, resource: str = "matters", **options: Any) -> PollResult:
        return self.poller(**options).poll(resource, self.emitted.extend)

    def requests_during(self, action: Callable[[], Any]) -> list[dict[str, Any]]:
        """The API list requests ``action`` made (token calls excluded)."""
        mark = self.admin.mark()
        action()
        entries = self.admin.requests(mark)["requests"]
        return [e for e in entries if e["path"].startswith("/api/")]

    def close(self) -> None:
        self.client.close()
        self.admin.http.close()


def _log_in(settings: Settings, store: StateStore) -> None:
    """Tokens from the sandbox's authorization-code flow, stored as ``ppw auth login`` stores them.

    (The client's own tests drive ``ppw auth login`` itself; here only a connected client matters.)
    """
    secret = settings.pp_client_secret.get_secret_value()
    answer = obtain_tokens(settings.pp_base_url, settings.pp_client_id, secret, settings.pp_redirect_uri)
    tokens = TokenSet(
        access_token=answer["access_token"],
        refresh_token=answer["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=float(answer.get("expires_in", 3600))),
    )
    TokenStore(store, settings.connection_id, None).save(tokens)


def _harness(
    sandbox_factory: Callable[..., SandboxServer], store: StateStore, connection_id: str
) -> Iterator[Harness]:
    sandbox = sandbox_factory(seed=None)
    settings = sandbox_settings(sandbox, store.url, connection_id, rate_limit_per_second=1000.0)
    _log_in(settings, store)
    harness = Harness(sandbox, store, connection_id, settings)
    yield harness
    harness.close()


@pytest.fixture
def harness(
    sandbox_factory: Callable[..., SandboxServer], store: StateStore, connection_id: str
) -> Iterator[Harness]:
    yield from _harness(sandbox_factory, store, connection_id)


@pytest.fixture
def redis_harness(
    sandbox_factory: Callable[..., SandboxServer], redis_store: StateStore, connection_id: str
) -> Iterator[Harness]:
    yield from _harness(sandbox_factory, redis_store, connection_id)


@pytest.fixture(params=["filter", "updated_since"])
def query_mode(request: pytest.FixtureRequest) -> str:
    """Both ways of asking for changes: ``$filter``/``$orderby`` and ``updated_since``."""
    return str(request.param)


Invoke = Callable[..., Result]


@pytest.fixture
def ppw(harness: Harness, tmp_path: Path) -> Iterator[Invoke]:
    """``ppw ...`` as a user types it, against the harness's sandbox and state (memory broker)."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "contact.yaml").write_text(
        "id: contact-log\n"
        "trigger: {resource: contacts, on: created}\n"
        "steps:\n"
        "  - {type: log, with: {message: new contact}}\n"
    )
    settings = harness.settings
    env = {
        "PPW_PP_BASE_URL": settings.pp_base_url,
        "PPW_PP_CLIENT_ID": settings.pp_client_id,
        "PPW_PP_CLIENT_SECRET": settings.pp_client_secret.get_secret_value(),
        "PPW_PP_REDIRECT_URI": settings.pp_redirect_uri,
        "PPW_STATE_URL": harness.store.url,
        "PPW_CONNECTION_ID": harness.connection,
        "PPW_BROKER_URL": "memory://",
        "PPW_RULES_DIR": str(rules_dir),
        "PPW_POLL_PAGE_SIZE": "50",
        "PPW_FLOOD_LIMIT": "5",
        "PPW_POLL_RESOURCES": '["matters", "tasks"]',  # comma form: see report (NoDecode)
    }
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        get_settings.cache_clear()
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    yield invoke
    get_settings.cache_clear()
