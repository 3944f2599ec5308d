"""What the polling commands (``ppw poll once|reconcile``, ``ppw status``, ``ppw held``) do.

The CLI only parses and prints; assembling a poller, an emitter or a scheduler from the settings
happens here, where ``ppw run`` and tests can reuse it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from worker.polling.poller import Emit, Poller, PollOptions
from worker.polling.reconcile import ReconcileOptions, Reconciler
from worker.polling.scheduler import polled_resources
from worker.polling.status import ResourceStatus, queue_depths, resource_statuses
from worker.practicepanther.client import PracticePantherClient
from worker.process.actors import QueueNames
from worker.process.broker import BrokerOptions, create_broker, is_embedded
from worker.process.runtime import Runtime
from worker.rules.engine import rules_by_resource
from worker.rules.watcher import RuleRegistry
from worker.settings import Settings
from worker.state import KindUsage, StateStore, open_store, usage_by_kind

log = logging.getLogger(__name__)


@contextmanager
def open_state(settings: Settings) -> Iterator[StateStore]:
    store = open_store(settings.state_url)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_poller(settings: Settings, store: StateStore, connection: str) -> Iterator[Poller]:
    """A poller for ``connection`` using the PracticePanther client configured in ``settings``."""
    client = PracticePantherClient(settings, store, connection=connection)
    options = PollOptions.from_settings(settings)
    try:
        yield Poller(client, store, connection=connection, options=options)
    finally:
        client.close()


@contextmanager
def open_reconciler(settings: Settings, store: StateStore, connection: str) -> Iterator[Reconciler]:
    """A reconciler (deleted records) for ``connection``, like :func:`open_poller`."""
    client = PracticePantherClient(settings, store, connection=connection)
    options = ReconcileOptions.from_settings(settings)
    try:
        yield Reconciler(client, store, connection=connection, options=options)
    finally:
        client.close()


@dataclass
class Emitter:
    """Where emitted events go: the dispatch queue of the configured broker."""

    emit: Emit
    embedded: bool


@contextmanager
def open_emitter(settings: Settings, store: StateStore) -> Iterator[Emitter]:
    """Send events to dispatch exactly as the poll actor does (stored, then one message each).

    With the embedded memory broker the messages cannot outlive this command; the events stay
    pending in the state store and ``ppw run`` dispatches them when it starts (or within a minute
    if it is running).
    """
    runtime = Runtime.create(settings, store=store)
    try:
        yield Emitter(emit=runtime.actors.emit, embedded=runtime.embedded)
    finally:
        runtime.close()


@dataclass
class StatusReport:
    connection: str
    state: str
    resources: list[ResourceStatus]
    queues: dict[str, int | None]
    embedded_broker: bool
    #: keys and bytes per kind of record (``run``, ``event``, ``snap`` ...), the largest first
    usage: list[KindUsage] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "connection": self.connection,
            "state": self.state,
            "resources": [r.to_dict() for r in self.resources],
            "queues": self.queues,
            "embedded_broker": self.embedded_broker,
            "state_usage": {u.kind: {"keys": u.keys, "bytes": u.bytes} for u in self.usage},
        }


def status_report(settings: Settings, store: StateStore, connection: str) -> StatusReport:
    try:
        watched = watched_resources(settings)
    except Exception as exc:  # a broken rules directory must not hide the status
        log.warning("could not read the rules to list watched resources: %s", exc)
        watched = []
    rows = resource_statuses(store, connection, polled_resources(settings, watched))
    queues: dict[str, int | None] = {}
    embedded = settings.uses_embedded_broker
    if not embedded:
        try:
            broker = create_broker(settings)
        except Exception as exc:
            log.warning("cannot reach the broker for queue depths: %s", exc)
        else:
            try:
                embedded = is_embedded(broker)
                names = QueueNames.with_prefix(BrokerOptions.from_settings(settings).queue_prefix).all()
                queues = queue_depths(broker, names)
            finally:
                broker.close()
    return StatusReport(
        connection=connection,
        state=_describe_state(store),
        resources=rows,
        queues=queues,
        embedded_broker=embedded,
        usage=usage_by_kind(store, connection),
    )


def _describe_state(store: StateStore) -> str:
    return repr(store)


def watched_resources(settings: Settings) -> list[str]:
    """The resources the rules in ``settings.rules_dir`` watch (their files are only read)."""
    registry = RuleRegistry(settings=settings)
    registry.load()
    return sorted(rules_by_resource(registry.engine))
