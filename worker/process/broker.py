"""The Dramatiq broker, chosen by ``PPW_BROKER_URL``.

``memory://`` is the embedded default: a :class:`~dramatiq.brokers.stub.StubBroker` whose messages
live in this process and are worked by an in-process :class:`dramatiq.Worker` (``ppw run`` starts
it). ``redis://`` and ``amqp://`` are the deployment brokers that many ``ppw worker`` processes
share. The broker is always built by :func:`create_broker` and actors are bound to it by
:func:`worker.process.actors.declare_actors`, never to Dramatiq's global broker, so one process (a test) can
hold a memory, a Redis and a RabbitMQ broker side by side.

Retries are decided by the actors themselves (they know which errors are transient, honour
``Retry-After`` and put runs that cannot succeed in ppw's own dead-letter store), so the
:class:`~dramatiq.middleware.Retries` middleware here only carries the delay of a
:class:`dramatiq.Retry` and bounds retries of unexpected failures (the state store down ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from worker.errors import PpwError
from worker.observability.middleware import LogContextMiddleware
from worker.options import options_from, setting
from worker.settings import Settings

# Bounds for failures the actors did not classify themselves (they raise dramatiq.Retry with an
# explicit delay for the ones they did).
UNEXPECTED_MAX_RETRIES = 20
UNEXPECTED_MIN_BACKOFF_MS = 1_000
UNEXPECTED_MAX_BACKOFF_MS = 5 * 60_000
# A step may legitimately take a while (a slow PracticePanther, a Slack retry); past this the
# worker thread is interrupted and the message retried, resuming from the ledger.
TIME_LIMIT_MS = 15 * 60_000


class BrokerURLError(PpwError, ValueError):
    """``PPW_BROKER_URL`` names a scheme ppw cannot use."""


@dataclass(frozen=True)
class BrokerOptions:
    """Broker knobs taken from :class:`~worker.settings.Settings` (``PPW_QUEUE_PREFIX`` ...).

    ``queue_prefix`` names the queues (``<prefix>.poll``, ``<prefix>.dispatch``, ``<prefix>.run``)
    so two deployments (or two tests) can share one Redis or RabbitMQ. ``heartbeat_timeout`` and
    ``maintenance_chance`` tune how fast the Redis broker hands the unacknowledged messages of a
    killed worker to another one.
    """

    queue_prefix: str = setting("queue_prefix")
    redis_heartbeat_timeout_ms: int = setting("broker_heartbeat_timeout", lambda seconds: int(seconds * 1000))
    redis_maintenance_chance: int = setting("broker_maintenance_chance")

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerOptions:
        return options_from(cls, settings)


def _middleware() -> list[Middleware]:
    return [
        AgeLimit(),
        TimeLimit(time_limit=TIME_LIMIT_MS),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(
            max_retries=UNEXPECTED_MAX_RETRIES,
            min_backoff=UNEXPECTED_MIN_BACKOFF_MS,
            max_backoff=UNEXPECTED_MAX_BACKOFF_MS,
        ),
        CurrentMessage(),
        # a clean log context per message: worker threads are reused across messages
        LogContextMiddleware(),
    ]


def create_broker(settings: Settings, options: BrokerOptions | None = None) -> dramatiq.Broker:
    """The broker for ``settings.broker_url``; does not touch Dramatiq's global broker.

    Parameters
    ----------
    settings:
        ``broker_url`` picks the kind (``memory://``, ``redis://``/``rediss://``,
        ``amqp://``/``amqps://``).
    options:
        Overrides for the knobs described in :class:`BrokerOptions`.
    """
    options = options or BrokerOptions.from_settings(settings)
    url = settings.broker_url
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return StubBroker(middleware=_middleware(), fail_fast_default=False)
    if scheme in ("redis", "rediss", "unix"):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(
            url=url,
            middleware=_middleware(),
            namespace=f"dramatiq-{options.queue_prefix}",
            heartbeat_timeout=options.redis_heartbeat_timeout_ms,
            maintenance_chance=options.redis_maintenance_chance,
        )
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=_with_heartbeat(url), middleware=_middleware(), confirm_delivery=True)
    raise BrokerURLError(
        f"PPW_BROKER_URL scheme {scheme!r} is not supported; use memory://, redis://host:6379/0 "
        "or amqp://user:password@host:5672/"
    )


def _with_heartbeat(url: str) -> str:
    """A short AMQP heartbeat so RabbitMQ notices a dead worker quickly and redelivers its messages."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", "10")
    return urlunsplit(parts._replace(query=urlencode(query)))


def describe(url: str) -> str:
    """The broker URL with any password masked, for start-up banners and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def is_embedded(broker: dramatiq.Broker) -> bool:
    """Whether messages live only in this process (memory broker)."""
    return isinstance(broker, StubBroker)


def queue_backlog(broker: dramatiq.Broker, queue_name: str) -> int | None:
    """Messages of ``queue_name`` (and its delay queue) that no consumer has taken yet; None when it
    cannot be told.

    The sweeper asks before re-sending pending events and unfinished runs: a backlog means their
    messages are merely waiting their turn, and re-sending them would only add duplicates. Messages
    a consumer has taken are not counted: when that consumer dies, the Redis broker hands them on
    only at its next randomised maintenance, and ppw does not wait for that (the sweeper re-sends
    the work, and the duplicate that the broker delivers later finds it done).
    """
    from dramatiq.common import dq_name

    try:
        if isinstance(broker, StubBroker):  # one process: nothing is taken by anyone else
            present = [q for q in (queue_name, dq_name(queue_name)) if q in broker.queues]
            return sum(int(broker.queues[q].unfinished_tasks) for q in present)
        from dramatiq.brokers.redis import RedisBroker

        if isinstance(broker, RedisBroker):  # untaken message ids wait in the queue's list
            names = (queue_name, dq_name(queue_name))
            return sum(int(broker.client.llen(f"{broker.namespace}:{q}")) for q in names)
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        if isinstance(broker, RabbitmqBroker):  # ready counts: unacknowledged messages are not in them
            ready, delayed, _dead = broker.get_queue_message_counts(queue_name)
            return int(ready) + int(delayed)
    except Exception:  # the broker is down: nothing can be sent now anyway
        return None
    return None
    return None
