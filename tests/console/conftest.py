"""A console over real state (both backends): seeded runs, a dead letter, a waiting run, a held
batch, a poll status, two users; signing in with Starlette's TestClient."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from tests.fixtures.client import SandboxAdmin, free_port
from worker.console.auth import hash_password
from worker.console.ops import Ops, Readiness
from worker.console.web import build_app
from worker.delivery.app import DeliveryApp
from worker.delivery.history import EventSummary, Run, StepTrace, run_id_for
from worker.delivery.rulebook import EngineRuleBook
from worker.events import Change, Event
from worker.polling import cursors, held
from worker.polling.snapshots import snapshotter_for
from worker.practicepanther import resources
from worker.process.health import RulesState
from worker.rules.watcher import RuleRegistry
from worker.sandbox import SandboxServer
from worker.settings import Settings
from worker.state.base import StateStore

PASSWORD = "correct horse battery staple"
#: configured secrets that must never appear in a page
SLACK_URL = "https://hooks.slack.com/services/T0CONSOLE/B0CONSOLE/xoxsecretwebhookpath42"
CLIENT_SECRET = "pp-client-secret-never-shown-7f3a9"
CONSOLE_SECRET = "console-signing-secret-0123456789abcdef"

_HASH = hash_password(PASSWORD)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Seeded:
    ops: Ops
    settings: Settings
    store: StateStore
    connection: str
    waiting: Run
    dead: Run
    done: Run
    held_id: str
    sent: list[tuple[str, str]] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)


def console_settings(store: StateStore, connection: str, rules_dir: Path, **extra: object) -> Settings:
    values: dict[str, object] = {
        "state_url": store.url,
        "connection_id": connection,
        "rules_dir": rules_dir,
        "console_enabled": True,
        "console_secret": SecretStr(CONSOLE_SECRET),
        "console_users": {
            "olga": SecretStr(f"operator:{_HASH}"),
            "victor": SecretStr(f"viewer:{_HASH}"),
        },
        "slack_webhooks": {"billing": SecretStr(SLACK_URL)},
        "pp_client_secret": SecretStr(CLIENT_SECRET),
    }
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def sandbox_console_settings(
    store: StateStore, connection: str, rules_dir: Path, sandbox: SandboxServer, **extra: object
) -> Settings:
    """:func:`console_settings` pointed at the PracticePanther sandbox (connect before reading)."""
    config = sandbox.config
    return console_settings(
        store,
        connection,
        rules_dir,
        pp_base_url=sandbox.url,
        pp_client_id=config.client_id,
        pp_client_secret=SecretStr(config.client_secret),
        pp_redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
        rate_limit_per_second=200.0,
        token_encryption_key=None,
        **extra,
    )


def open_matter(admin: SandboxAdmin, name: str = "Whitman v. Garner") -> dict[str, Any]:
    account = admin.mutate([{"op": "create", "resource": "accounts", "data": {"company_name": "Whitman"}}])[0]
    data = {"name": name, "status": "Open", "account_ref": {"id": account["id"]}, "tags": ["Litigation"]}
    matter: dict[str, Any] = admin.mutate([{"op": "create", "resource": "matters", "data": data}])[0]
    return matter


def polled(seeded: Seeded, record: dict[str, Any]) -> None:
    """The snapshot the poller stores of a record it saw."""
    store, conn = seeded.store, seeded.connection
    snapshot = snapshotter_for(store, conn, resources.get("matters")).take(record)
    with store.batch() as batch:
        cursors.write_snapshots(batch, conn, "matters", {record["id"]: snapshot})


def seed(store: StateStore, connection: str, settings: Settings) -> Seeded:
    registry = RuleRegistry(settings=settings)
    registry.load()
    app = DeliveryApp.create(settings, store, EngineRuleBook(lambda: registry.engine, settings))
    now = time.time()

    def event(record_id: str, old: str, new: str) -> Event:
        ev = Event.build(
            type="updated",
            resource="matters",
            record_id=record_id,
            revision=f"2026-03-02T15:00:00Z-{record_id}",
            connection=connection,
            record={"id": record_id, "name": "Estate of Smith", "status": new},
            changes={"status": Change(old=old, new=new)},
        )
        app.events.save(ev)
        return ev

    def run(ev: Event, rule: str, **fields: object) -> Run:
        summary = EventSummary(
            type=ev.type,
            resource=ev.resource,
            record_id=ev.record_id,
            revision=ev.revision,
            changed={"status": True},
        )
        made = Run(
            id=run_id_for(ev.id, rule),
            connection=connection,
            event_id=ev.id,
            event=summary,
            rule_id=rule,
            rule_version="v1",
            **fields,  # type: ignore[arg-type]
        )
        app.history.create(made)
        return made

    request = {
        "method": "POST",
        "url": "https://hooks.slack.com/[redacted]",
        "headers": {"Authorization": "[redacted]", "Content-Type": "application/json"},
        "json": {"text": "Matter Estate of Smith is now Closed"},
    }
    done = run(
        event("m-100", "Open", "Closed"),
        "notify-billing",
        status="succeeded",
        attempts=1,
        created_at=now - 30,
        # a secret that slipped into the history anyway must still not reach a page
        error=f"earlier attempt: POST {SLACK_URL} failed",
        steps=[
            StepTrace(
                id="tell",
                type="slack.post",
                status="done",
                attempts=2,
                duration_ms=120.5,
                request=request,
                response={"status": 200, "body": "ok"},
            )
        ],
    )
    dead = run(
        event("m-200", "Open", "Pending"),
        "create-task",
        attempts=5,
        created_at=now - 20,
        steps=[StepTrace(id="task", type="pp.create_task", status="errored", attempts=5, error="HTTP 500")],
    )
    dead = app.dead_letters.add(dead, "step task failed 5 times: HTTP 500", failed_step="task")
    waiting = run(
        event("m-300", "Pending", "Open"),
        "follow-up",
        status="queued",
        created_at=now - 10,
        mode="parallel",
    )
    wake = now + 3 * 86400
    waiting = waiting.model_copy(
        update={
            "status": "waiting",
            "wake_at": wake,
            "waiting_step": "later",
            "started_at": now - 10,
            "steps": [StepTrace(id="later", type="wait", status="waiting")],
        }
    )
    with store.batch() as batch:
        app.history.write(batch, waiting)
        app.timers.add(batch, waiting, wake)

    flood = [
        Event.build(
            type="created", resource="contacts", record_id=f"c-{i}", revision="1", connection=connection
        )
        for i in range(3)
    ]
    with store.batch() as batch:
        held_batch = held.hold(batch, connection, "contacts", flood, limit=2)
        position = datetime.now(UTC) - timedelta(minutes=5)
        cursors.write_cursor(
            batch,
            connection,
            "matters",
            cursors.Cursor(position=position, primed_at=position, advanced_at=position),
        )
    store.set(
        cursors.status_key(connection, "matters"),
        cursors.PollStatus(
            at=datetime.now(UTC).isoformat(), result="ok", events=3, last_success=None
        ).dumps(),
    )

    seeded = Seeded(
        ops=None,  # type: ignore[arg-type]
        settings=settings,
        store=store,
        connection=connection,
        waiting=waiting,
        dead=dead,
        done=done,
        held_id=held_batch.id,
    )
    seeded.ops = Ops(
        settings=settings,
        app=app,
        send_run=lambda c, r: seeded.sent.append((c, r)),
        emit=seeded.emitted.extend,
        readiness=lambda: Readiness(True, {"state": {"ok": True, "detail": "sqlite answers"}}, "test"),
        rules=lambda: RulesState(2, ["rules/bad.yaml:3:5 (bad-rule): unknown step type 'slak.post'"], 3),
    )
    return seeded


@pytest.fixture
def seeded(store: StateStore, connection_id: str, tmp_path: Path) -> Iterator[Seeded]:
    rules = tmp_path / "rules"
    rules.mkdir()
    made = seed(store, connection_id, console_settings(store, connection_id, rules))
    yield made
    made.ops.app.close()


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(build_app(seeded.ops), follow_redirects=False) as http:
        yield http


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(http: TestClient, user: str = "olga", password: str = PASSWORD) -> str:
    """Signs in; returns the session's CSRF token (from the overview page)."""
    token = csrf_of(http.get("/login").text)
    answer = http.post("/login", data={"csrf": token, "username": user, "password": password, "next": "/"})
    assert answer.status_code == 303, answer.text
    return csrf_of(http.get("/").text)
