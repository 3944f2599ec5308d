"""The whole worker, assembled as ``ppw run`` assembles it, against a sandbox and an HTTP sink.

sandbox (child process) → scheduler (APScheduler, leader lease) → poll actor → events →
dispatch actor → rules → run actor → ``http.request`` → sink (child process)

The worker side runs in this process: :class:`~worker.process.runtime.Runtime` (state store,
rules from a rules directory, broker, actors, Dramatiq worker threads) and
:class:`~worker.polling.scheduler.PollScheduler` submitting polls through the poll actor, exactly
the pieces ``ppw run`` starts. Its settings are the shipped defaults except where a benchmark
needs otherwise (poll interval, flood limit, allowed hosts), and every name it writes is its own.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dramatiq

from benchmarks import children
from benchmarks.instruments import CountingStore
from benchmarks.sandbox_tools import Admin, connect, settings_for
from benchmarks.services import REDIS_URL, THREADS, Namespace, namespace
from worker.polling import cursors
from worker.polling.scheduler import PollScheduler
from worker.process.broker import BrokerOptions, create_broker
from worker.process.runtime import Runtime, wait_until
from worker.settings import Settings
from worker.state import StateStore, open_store

BrokerKind = Literal["memory", "redis"]

HOOK_RULE = """\
- id: bench-new-matter
  description: every new matter is announced to the intake webhook
  trigger:
    resource: matters
    on: created
  steps:
    - id: announce
      type: http.request
      with:
        method: POST
        url: "{sink}/hook"
        json:
          matter: "{{{{ record.id }}}}"
          name: "{{{{ record.display_name }}}}"
          status: "{{{{ record.status }}}}"
"""


@dataclass
class Pipeline:
    """A running worker and what it talks to."""

    kind: BrokerKind
    settings: Settings
    names: Namespace
    store: StateStore
    runtime: Runtime
    scheduler: PollScheduler
    admin: Admin
    sandbox_url: str
    sink_url: str

    @property
    def connection(self) -> str:
        return self.names.connection

    def primed(self, resource: str = "matters") -> bool:
        return cursors.load_cursor(self.store, self.connection, resource) is not None

    def sink(self) -> dict[str, Any]:
        return children.sink_count(self.sink_url, self.admin.http)


@contextmanager
def pipeline(
    kind: BrokerKind,
    *,
    poll_interval: float = 1.0,
    poll_jitter: float = 0.0,
    threads: int = THREADS,
    rules: str = HOOK_RULE,
    resources: tuple[str, ...] = ("matters",),
    middleware: list[dramatiq.Middleware] | None = None,
    redis_url: str = REDIS_URL,
    sandbox_args: tuple[str, ...] = ("--empty",),
    prime_timeout: float = 60.0,
    count_state_calls: bool = False,
    **overrides: Any,
) -> Iterator[Pipeline]:
    """Start everything, wait for the first poll to prime ``resources``, yield; stop it all after.

    ``middleware`` is added to the broker (a :class:`~benchmarks.instruments.StageClock`);
    ``count_state_calls`` wraps the state store in a :class:`~benchmarks.instruments.CountingStore`.
    """
    with ExitStack() as stack:
        names = stack.enter_context(namespace(redis_url))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ppw-bench-e2e-")))
        sandbox = stack.enter_context(children.sandbox(*sandbox_args))
        sink = stack.enter_context(children.sink())
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        (rules_dir / "bench.yaml").write_text(rules.format(sink=sink.url))
        broker_url = "memory://" if kind == "memory" else redis_url
        state_url = f"sqlite:///{tmp / 'state.db'}" if kind == "memory" else redis_url
        settings = settings_for(
            sandbox.url,
            state_url,
            names.connection,
            broker_url=broker_url,
            rules_dir=rules_dir,
            poll_interval=poll_interval,
            poll_jitter=poll_jitter,
            worker_threads=threads,
            http_allowed_hosts=[sink.url.split("://", 1)[1]],
            **{"flood_limit": 10**9, **overrides},
        )
        store: StateStore = open_store(state_url)
        stack.callback(store.close)
        if count_state_calls:
            store = CountingStore(store)
        connect(sandbox.url, store, names.connection)
        admin = Admin(sandbox.url)
        stack.callback(admin.close)
        options = BrokerOptions(queue_prefix=names.queue_prefix)
        broker = create_broker(settings, options)
        for extra in middleware or []:
            broker.add_middleware(extra)
        runtime = Runtime.create(settings, store=store, broker=broker, queue_prefix=names.queue_prefix)
        stack.callback(runtime.close)
        runtime.start_workers(threads)
        scheduler = PollScheduler.from_settings(
            settings, store, runtime.actors.send_poll, watched=lambda: list(resources)
        )
        scheduler.start()
        stack.callback(scheduler.shutdown)
        running = Pipeline(kind, settings, names, store, runtime, scheduler, admin, sandbox.url, sink.url)
        if not wait_until(lambda: all(running.primed(r) for r in resources), prime_timeout):
            raise RuntimeError(
                f"the first poll did not prime {', '.join(resources)} within {prime_timeout:g}s"
            )
        yield running


def produce(
    admin: Admin,
    count: int,
    *,
    chunk: int = 500,
    pause: float = 0.0,
    on_chunk: Callable[[int], None] | None = None,
) -> float:
    """Create ``count`` matters in the sandbox, ``chunk`` per request; returns when the first was made."""
    first = time.time()
    made = 0
    while made < count:
        size = min(chunk, count - made)
        admin.create("matters", [{"name": f"Bench matter {made + i}", "status": "Open"} for i in range(size)])
        made += size
        if on_chunk:
            on_chunk(made)
        if pause:
            time.sleep(pause)
    return first
