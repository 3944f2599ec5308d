"""The fault suite's setup: a sandbox, a webhook receiver, and ``ppw run``/``ppw worker`` processes.

A :class:`Chaos` is one deployment under test. The worker is a real child process started from the
command line; PracticePanther is the sandbox (HTTP, in this process); the webhook receiver is a
stub server counting deliveries by ``Idempotency-Key``. The test's own view of PracticePanther
(which tasks exist) uses a separate OAuth login, so it never spends the worker's refresh token.

Invariants from docs/ARCHITECTURE.md, checked by :meth:`Chaos.assert_invariants` after each fault:

1. nothing lost: every change fired its rule, every run succeeded;
2. no duplicate PracticePanther write: one closing task per closed matter;
3. the webhook was delivered for each change under one idempotency key;
4. no stuck cursor: the cursor reached the newest change, and a change made afterwards still fires.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from tests.chaos.harness import HealthWatch, PpwProcess, eventually, free_port
from tests.fixtures.client import SandboxAdmin, connect, sandbox_settings
from tests.fixtures.stubs import StubServer, stub_server
from worker.delivery.history import Run, RunHistory
from worker.polling import cursors
from worker.polling.cursors import Cursor
from worker.polling.snapshots import parse_revision
from worker.sandbox import SandboxServer, obtain_tokens
from worker.state import StateStore, key, open_store

__all__ = ["stub_server"]

CLOSED_MATTER_RULE = """\
- id: chaos-closed-matter
  description: a closing task in PracticePanther and a webhook when a matter closes
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
          subject: "Closing letter: {{{{ record.display_name }}}}"
          matter_ref: {{id: "{{{{ record.id }}}}"}}
          status: NotCompleted
    - id: notify
      type: http.request
      with:
        url: "{hook}"
        json:
          matter: "{{{{ record.id }}}}"
          task: "{{{{ steps.task.id }}}}"
"""

HOOK_PATH = "/closed"
CLOSING = "Closing letter: "


class Chaos:
    """One deployment under test; see the module docstring."""

    def __init__(
        self,
        *,
        sandbox: SandboxServer,
        stub: StubServer,
        tmp_path: Path,
        connection: str,
        state_url: str,
        broker_url: str,
        rules: str = CLOSED_MATTER_RULE,
        **env: str,
    ) -> None:
        self.sandbox = sandbox
        self.stub = stub
        self.tmp_path = tmp_path
        self.connection = connection
        self.state_url = state_url
        self.broker_url = broker_url
        self.admin = SandboxAdmin(sandbox.url)
        self.rules_dir = tmp_path / "rules"
        self.rules_dir.mkdir(exist_ok=True)
        self.write_rules(rules)
        self.queue_prefix = f"ppw_{connection}"
        key_value = env.get("PPW_TOKEN_ENCRYPTION_KEY")
        self.settings = sandbox_settings(
            sandbox, state_url, connection, token_encryption_key=SecretStr(key_value) if key_value else None
        )
        self.store: StateStore = open_store(state_url)
        connect(self.settings, self.store)  # the worker's tokens, through the real OAuth flow
        self.env = self._env(env)
        self.processes: list[PpwProcess] = []
        self.watches: list[HealthWatch] = []
        self._reader = httpx.Client(base_url=sandbox.url, timeout=30)
        self._token = ""

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        s = self.settings
        env = {
            "PPW_PP_BASE_URL": s.pp_base_url,
            "PPW_PP_CLIENT_ID": s.pp_client_id,
            "PPW_PP_CLIENT_SECRET": s.pp_client_secret.get_secret_value(),
            "PPW_PP_REDIRECT_URI": s.pp_redirect_uri,
            "PPW_CONNECTION_ID": self.connection,
            "PPW_STATE_URL": self.state_url,
            "PPW_BROKER_URL": self.broker_url,
            "PPW_QUEUE_PREFIX": self.queue_prefix,
            "PPW_RULES_DIR": str(self.rules_dir),
            "PPW_POLL_INTERVAL": "1",
            "PPW_POLL_JITTER": "0",
            "PPW_POLL_TIMEOUT": "30",
            "PPW_RATE_LIMIT_PER_SECOND": "100",
            "PPW_HTTP_TIMEOUT": "5",
            "PPW_RETRY_WAIT": "0.05",
            "PPW_RETRY_WAIT_MAX": "0.5",
            "PPW_RETRY_BASE": "0.2",
            "PPW_RETRY_MAX": "1",
            "PPW_MAX_RETRIES": "8",
            "PPW_SHUTDOWN_GRACE": "3",
            "PPW_WORKER_THREADS": "4",
            "PPW_LOG_FORMAT": "json",
            "PPW_HTTP_ALLOWED_HOSTS": json.dumps([urlsplit(self.stub.url).netloc]),
        }
        env.update(extra)
        return env

    # the worker --------------------------------------------------------------------------------
    def process(self, command: str = "run", **env: str) -> PpwProcess:
        """A ``ppw <command>`` process with this deployment's environment (not started)."""
        process = PpwProcess(
            command, {**self.env, **env}, self.tmp_path / "work", name=f"{command}{len(self.processes)}"
        )
        self.processes.append(process)
        return process

    def watch(self, process: PpwProcess) -> HealthWatch:
        """Start watching ``process``'s ``/readyz`` (stopped at cleanup)."""
        watch = HealthWatch(process).start()
        self.watches.append(watch)
        return watch

    def write_rules(self, text: str) -> None:
        (self.rules_dir / "rules.yaml").write_text(text.format(hook=self.stub.url + HOOK_PATH))

    # PracticePanther, as people use it and as the test reads it -------------------------------
    def _get(self, path: str, params: dict[str, Any]) -> Any:
        for _ in range(3):
            if not self._token:
                config = self.sandbox.config
                tokens = obtain_tokens(self.sandbox.url, config.client_id, config.client_secret,
                                       config.redirect_uris[0])  # fmt: skip
                self._token = str(tokens["access_token"])
            response = self._reader.get(
                path, params=params, headers={"Authorization": f"Bearer {self._token}"}
            )
            if response.status_code == 401:
                self._token = ""
                continue
            if response.status_code in (429, 500, 502, 503):
                continue
            response.raise_for_status()
            return response.json()
        raise AssertionError(f"could not read {path} from the sandbox")

    def open_matters(self, count: int) -> list[dict[str, Any]]:
        matters = self._get("/api/v2/matters", {"$filter": "status eq 'Open'", "$top": str(count)})
        assert len(matters) == count, f"the sandbox has only {len(matters)} open matters"
        return list(matters)

    def close(self, matters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Set ``matters`` to Closed as a person in the web UI would; the updated records."""
        return list(
            self.admin.mutate(
                [
                    {"op": "update", "resource": "matters", "id": m["id"], "data": {"status": "Closed"}}
                    for m in matters
                ]
            )
        )

    def closing_tasks(self) -> dict[str, int]:
        """Closing tasks per matter id, as PracticePanther has them."""
        tasks = self._get("/api/v2/tasks", {"$filter": f"startswith(subject, '{CLOSING}')"})
        counts: dict[str, int] = defaultdict(int)
        for task in tasks:
            counts[(task.get("matter_ref") or {}).get("id", "")] += 1
        return dict(counts)

    # the worker's state -----------------------------------------------------------------------
    def runs(self) -> list[Run]:
        return RunHistory(self.store, retention=86_400).recent(self.connection, limit=1000)

    def cursor(self, resource: str = "matters") -> Cursor | None:
        return cursors.load_cursor(self.store, self.connection, resource)

    def primed(self, resource: str = "matters") -> bool:
        return self.cursor(resource) is not None

    def deliveries(self) -> dict[str, set[str]]:
        """Idempotency keys the webhook receiver got, per matter id (successful answers only)."""
        out: dict[str, set[str]] = defaultdict(set)
        for request in self.stub.received(HOOK_PATH):
            if request.status == 200 and request.json:
                out[request.json["matter"]].add(request.header("Idempotency-Key") or "")
        return dict(out)

    def wait_done(self, matters: list[dict[str, Any]], timeout: float = 60.0) -> None:
        ids = {m["id"] for m in matters}

        def done() -> bool:
            finished = {r.event.record_id for r in self.runs() if r.status == "succeeded"}
            return ids <= finished and ids <= set(self.deliveries())

        try:
            eventually(done, timeout, f"{len(ids)} closed matters to be handled")
        except AssertionError:
            raise AssertionError(self.describe()) from None

    def describe(self) -> str:
        runs = ", ".join(f"{r.event.record_id[:8]}={r.status}({r.error})" for r in self.runs())
        logs = "\n".join(p.log()[-3000:] for p in self.processes)
        return f"runs: {runs}\ncursor: {self.cursor()}\nlogs:\n{logs}"

    def assert_invariants(
        self,
        closed: list[dict[str, Any]],
        *,
        timeout: float = 60.0,
        cursor_from: list[dict[str, Any]] | None = None,
    ) -> None:
        """Nothing lost, nothing written twice, no stuck cursor (see the module docstring).

        The cursor must reach the newest ``updated_at`` of ``cursor_from`` (default ``closed``).
        """
        ids = {m["id"] for m in closed}
        self.wait_done(closed, timeout=timeout)
        tasks = self.closing_tasks()
        assert {i: tasks.get(i, 0) for i in ids} == dict.fromkeys(ids, 1), "one closing task per matter"
        assert set(tasks) <= ids, f"closing tasks for matters that were not closed: {set(tasks) - ids}"
        deliveries = self.deliveries()
        assert {i: len(deliveries.get(i, ())) for i in ids} == dict.fromkeys(ids, 1), (
            "one idempotency key each"
        )
        runs = [r for r in self.runs() if r.rule_id == "chaos-closed-matter"]
        per_matter: dict[str, int] = defaultdict(int)
        for run in runs:
            per_matter[run.event.record_id] += 1
        assert dict(per_matter) == dict.fromkeys(ids, 1), "one run per change"
        assert {r.status for r in runs} == {"succeeded"}, self.describe()
        stamps = [parse_revision(m.get("updated_at")) for m in (cursor_from or closed)]
        newest = max(s for s in stamps if s is not None)
        eventually(
            lambda: (c := self.cursor()) is not None and c.position is not None and c.position >= newest,
            15,
            f"the cursor to reach the newest change ({newest})",
        )

    def assert_still_live(self) -> None:
        """A change made now still fires: the cursor is not stuck (invariant 1, after the fault)."""
        [fresh] = self.open_matters(1)
        self.close([fresh])
        self.wait_done([fresh], timeout=30)

    def cleanup(self) -> None:
        for watch in self.watches:
            watch.stop()
        for process in self.processes:
            process.close()
        self.admin.faults(rate_429=0, rate_5xx=0, latency=0, clock_skew=0, page_mutation=0)
        self.admin.http.close()
        self._reader.close()
        with contextlib.suppress(Exception):  # the private Redis of a test may be gone already
            keys = list(self.store.scan(f"ppw:{self.connection}:"))
            for start in range(0, len(keys), 500):
                self.store.delete(*keys[start : start + 500])
            if self.broker_url.startswith("redis"):
                drop_broker_keys(self.broker_url, self.queue_prefix)
        self.store.close()


@pytest.fixture
def chaos_factory(
    sandbox: SandboxServer, stub_server: StubServer, tmp_path: Path, connection_id: str
) -> Iterator[Callable[..., Chaos]]:
    made: list[Chaos] = []

    def make(*, state_url: str, broker_url: str, **kwargs: Any) -> Chaos:
        chaos = Chaos(
            sandbox=sandbox,
            stub=stub_server,
            tmp_path=tmp_path,
            connection=connection_id,
            state_url=state_url,
            broker_url=broker_url,
            **kwargs,
        )
        made.append(chaos)
        return chaos

    yield make
    for chaos in made:
        chaos.cleanup()


def started_steps(chaos: Chaos, step: str = "task") -> list[str]:
    """Event ids whose ``step`` has a ledger entry still saying ``started`` (a step in flight)."""
    prefix = key(chaos.connection, "ledger") + ":"
    found = []
    for name in chaos.store.scan(prefix):
        raw = chaos.store.get(name)
        if raw:
            entry = json.loads(raw)
            if entry.get("step_id") == step and entry.get("status") == "started":
                found.append(name[len(prefix) :].split(":", 1)[0])
    return found


def drop_broker_keys(redis_url: str, queue_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"dramatiq-{queue_prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def drop_rabbitmq_queues(url: str, queue_prefix: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for stage in ("poll", "dispatch", "run"):
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{queue_prefix}.{stage}{suffix}")
    finally:
        connection.close()


__all__ += ["Chaos", "drop_broker_keys", "drop_rabbitmq_queues", "free_port", "started_steps"]
