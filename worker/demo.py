"""``make demo`` (``python -m worker.demo``): the whole worker against a simulated firm, live.

From a fresh clone, with nothing configured:

1. starts the PracticePanther sandbox in this process, with seed data and churn (matters change
   status, tasks complete, time entries and payments arrive ...);
2. starts a local Slack stand-in that prints every message it receives;
3. connects to the sandbox through the real OAuth authorization-code flow and stores the tokens in
   a fresh SQLite state file under ``.ppw/demo/``;
4. runs what ``ppw run`` runs (poll scheduler, workers on the in-process broker) with the example
   rules in ``rules/``, every Slack webhook they name pointing at the stand-in;
5. serves the web console (port 9100, or any free one) with a login made up for this run and
   printed, so the runs can be followed in a browser too;
6. shows, as it happens, the changes detected, the rules fired and the steps done, until Ctrl-C.

Options: ``--churn PER_MINUTE`` (default 20), ``--interval SECONDS`` (poll interval, default 5),
``--rules DIR`` (default ``rules``).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from worker.console.auth import hash_password
from worker.console.server import ConsoleServer, start_console
from worker.delivery.history import Run
from worker.events import Event
from worker.practicepanther.tokens import TokenSet, TokenStore
from worker.process.run import poll_scheduler
from worker.process.runtime import Runtime
from worker.rules.engine import rules_by_resource
from worker.rules.loader import load_rules
from worker.sandbox import SandboxConfig, SandboxServer
from worker.sandbox.testing import obtain_tokens
from worker.settings import Settings
from worker.state import open_store

DEMO_DIR = Path(".ppw/demo")


def say(line: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"{stamp}  {line}", flush=True)


# -- the Slack stand-in ------------------------------------------------------------------------------


class SlackStandIn:
    """Answers like Slack's incoming webhooks (``/hooks/<name>``) and ``chat.postMessage``, and prints."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                if self.path.startswith("/api/"):
                    where, answer = str(body.get("channel", "?")), {"ok": True, "ts": f"{time.time():.6f}"}
                else:
                    where, answer = "#" + self.path.rstrip("/").rsplit("/", 1)[-1], None
                say(f"  \U0001f4ac Slack {where}: {body.get('text') or json.dumps(body.get('blocks'))}")
                payload = json.dumps(answer).encode() if answer else b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "application/json" if answer else "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the live view ------------------------------------------------------------------------------------


def describe_event(event: Event) -> str:
    label = event.record.get("display_name") or event.record.get("subject") or event.record.get("name")
    changes = ", ".join(
        f"{name}: {change.old!r} → {change.new!r}" for name, change in list(event.changes.items())[:3]
    )
    own = " (our own write)" if event.origin == "ppw" else ""
    text = f"\U0001f50e {event.resource} {event.type}: {label or event.record_id}{own}"
    return text + (f" [{changes}]" if changes else "")


def describe_run(run: Run) -> list[str]:
    icon = {"succeeded": "✅", "dead": "☠️ ", "paused": "⏸️ ", "skipped": "⏭️ "}.get(run.status, "•")
    lines = [f"{icon} rule {run.rule_id} on {run.event.resource} {run.event.record_id[:8]}: {run.status}"]
    if run.reason:
        lines[0] += f" ({run.reason})"
    for step in run.steps:
        detail = ""
        if step.response and step.response.get("id"):
            detail = f" → {step.response['id']}"
        if step.error:
            detail = f" → {step.error}"
        lines.append(f"     {step.id} [{step.type}] {step.status}{detail}")
    if run.error and run.status == "dead":
        lines.append(f"     in the dead-letter store: {run.error} (`ppw dlq list`)")
    return lines


class LiveView:
    """Prints events as they are emitted and runs as they finish."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.seen: dict[str, str] = {}
        self.stop = threading.Event()
        runtime.actors.listeners.append(self.on_events)
        self.thread = threading.Thread(target=self._watch_runs, name="demo-live-view", daemon=True)
        self.thread.start()

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            say(describe_event(event))

    def _watch_runs(self) -> None:
        app, connection = self.runtime.app, self.runtime.app.settings.connection_id
        while not self.stop.wait(0.5):
            try:
                for run in reversed(app.history.recent(connection, limit=30)):
                    if self.seen.get(run.id) != run.status:
                        self.seen[run.id] = run.status
                        if run.status == "retrying":
                            say(f"↻ rule {run.rule_id}: retrying after {run.error}")
                        elif run.terminal:
                            for line in describe_run(run):
                                say(line)
            except Exception as exc:  # the view must never take the demo down
                say(f"(live view: {exc})")


# -- setup ----------------------------------------------------------------------------------------------


def webhook_names(rules_dir: Path) -> set[str]:
    """Every ``webhook: NAME`` the rules use, so each can point at the stand-in."""
    names: set[str] = set()
    ruleset = load_rules([rules_dir], settings=Settings(rules_dir=rules_dir))
    for loaded in ruleset:
        for step in loaded.rule.steps:
            webhook = getattr(step.params, "webhook", None)
            if isinstance(webhook, str):
                names.add(webhook.lower())
    return names or {"billing"}


def connect(settings: Settings, sandbox_url: str, client_id: str, secret: str, redirect_uri: str) -> None:
    """The authorization-code flow against the sandbox, tokens saved where the worker reads them."""
    answer = obtain_tokens(sandbox_url, client_id, secret, redirect_uri)
    tokens = TokenSet(
        access_token=SecretStr(answer["access_token"]),
        refresh_token=SecretStr(answer["refresh_token"]),
        expires_at=datetime.now(UTC) + timedelta(seconds=float(answer.get("expires_in", 86400))),
    )
    store = open_store(settings.state_url)
    try:
        TokenStore(store, settings.connection_id, None).save(tokens)
    finally:
        store.close()


@contextmanager
def sandbox(churn: float) -> Iterator[Any]:
    server = SandboxServer(SandboxConfig(seed=1, churn_per_minute=churn)).start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--churn", type=float, default=20.0, help="sandbox edits per minute (default 20)")
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval in seconds (default 5)")
    parser.add_argument("--rules", type=Path, default=Path("rules"), help="rules directory (default rules/)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    slack = SlackStandIn()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    password = secrets.token_urlsafe(12)
    console_login: dict[str, Any] = {
        "console_enabled": True,
        "console_users": {"demo": SecretStr(f"operator:{hash_password(password)}")},
        "console_secret": SecretStr(secrets.token_urlsafe(32)),
    }
    with sandbox(args.churn) as server:
        config = server.config
        hooks = {name: SecretStr(f"{slack.url}/hooks/demo/{name}") for name in webhook_names(args.rules)}
        settings = Settings(
            pp_base_url=server.url,
            pp_client_id=config.client_id,
            pp_client_secret=SecretStr(config.client_secret),
            pp_redirect_uri=config.redirect_uris[0],
            broker_url="memory://",
            state_url=f"sqlite:///{DEMO_DIR / 'state.db'}",
            rules_dir=args.rules,
            poll_interval=args.interval,
            poll_jitter=min(1.0, args.interval / 5),
            slack_webhooks=hooks,
            slack_bot_token=SecretStr("xoxb-demo"),
            slack_api_url=f"{slack.url}/api",
            http_allowed_hosts=["127.0.0.1"],
            rate_limit_per_second=20.0,
            worker_threads=4,
            **console_login,
        )
        say(f"sandbox PracticePanther at {server.url} (seed 1, {args.churn:g} edits/minute)")
        say(f"Slack stand-in at {slack.url} (webhooks: {', '.join(sorted(hooks))})")
        connect(settings, server.url, config.client_id, config.client_secret, config.redirect_uris[0])
        say("connected to the sandbox with OAuth; tokens stored in .ppw/demo/state.db")
        run_demo(settings, stop, password)
    slack.stop()
    say("demo stopped")
    return 0


def run_demo(settings: Settings, stop: threading.Event, password: str | None = None) -> None:
    with Runtime.create(settings, watch_rules=True) as runtime:
        registry = runtime.registry
        status: dict[str, Any] = registry.status() if registry else {"loaded": 0, "failed_files": []}
        say(f"{status['loaded']} rule(s) loaded from {settings.rules_dir}/ (edit them: they reload live)")
        for failed in status["failed_files"]:
            say(f"  rule file with errors (its broken rules skipped): {failed} — `ppw rules check` explains")
        view = LiveView(runtime)
        runtime.start_workers(settings.worker_threads)

        scheduler = poll_scheduler(settings, runtime)
        scheduler.start()
        polled = ", ".join(sorted(rules_by_resource(registry.engine)) if registry else []) or "nothing"
        say(
            f"polling {polled} every {settings.poll_interval:g}s; the first poll of each resource only "
            "takes a snapshot. Ctrl-C to stop."
        )
        console = _console(settings, runtime, password)
        try:
            stop.wait()
        finally:
            say("stopping: polls first, then the running steps finish")
            if console is not None:
                console.stop()
            scheduler.shutdown()
            view.stop.set()
            runtime.stop(grace=10)


def _console(settings: Settings, runtime: Runtime, password: str | None) -> ConsoleServer | None:
    """The web console on its usual port (any free one if that is taken), with the demo login."""
    if not settings.console_enabled or password is None:
        return None
    try:
        console = start_console(settings, runtime, live=True)
    except OSError:
        console = start_console(settings, runtime, live=True, port=0)
    say(f"web console at {console.url}: log in as demo / {password} (operator; this run only)")
    return console


if __name__ == "__main__":
    sys.exit(main())
