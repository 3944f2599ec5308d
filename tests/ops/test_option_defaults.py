"""The options objects take their defaults from Settings, and read the settings they name."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from worker.delivery.options import DAY, DeliveryOptions
from worker.options import options_from, setting, setting_name
from worker.polling.poller import PollOptions
from worker.process.broker import BrokerOptions
from worker.settings import Settings
from worker.triggers.options import TriggerOptions

# Which setting each option takes: an option dropping its setting (and growing a default of its
# own, which could then drift from Settings') fails here.
TAKES: dict[type[Any], dict[str, str]] = {
    DeliveryOptions: {
        "max_attempts": "max_retries",
        "retry_base": "retry_base",
        "retry_max": "retry_max",
        "retention": "run_retention_days",
        "run_lease": "run_lease",
        "burst_per_minute": "rule_burst_per_minute",
        "breaker_pause": "breaker_pause",
    },
    TriggerOptions: {
        name: name
        for name in (
            "webhook_max_body",
            "webhook_replay_window",
            "webhook_rate_per_minute",
            "webhook_dedupe_window",
            "webhook_idempotency_ttl",
            "schedule_grace",
            "schedule_query_limit",
            "schedule_tick",
        )
    },
    PollOptions: {
        "page_size": "poll_page_size",
        "overlap": "poll_overlap",
        "sweep_interval": "poll_sweep_interval",
        "timeout": "poll_timeout",
        "lease": "poll_lease",
        "flood_limit": "flood_limit",
        "use_updated_since": "poll_use_updated_since",
        "backfill_since": "backfill_since",
    },
    BrokerOptions: {
        "queue_prefix": "queue_prefix",
        "redis_heartbeat_timeout_ms": "broker_heartbeat_timeout",
        "redis_maintenance_chance": "broker_maintenance_chance",
    },
}

OPTIONS = pytest.mark.parametrize("cls", list(TAKES), ids=lambda cls: cls.__name__)


def defaults() -> Settings:
    """Settings holding only their declared defaults (no environment, no ``.env``)."""
    return Settings.model_construct()


@OPTIONS
def test_each_option_names_the_setting_it_takes(cls: type[Any]) -> None:
    taken = {f.name: setting_name(f) for f in dataclasses.fields(cls) if setting_name(f)}
    assert taken == TAKES[cls]


@OPTIONS
def test_defaults_are_the_settings_defaults(cls: type[Any]) -> None:
    assert cls() == cls.from_settings(defaults())


def test_converted_defaults() -> None:
    settings = defaults()
    delivery = DeliveryOptions()
    assert delivery.max_attempts == settings.max_retries + 1
    assert delivery.retention == settings.run_retention_days * DAY
    assert BrokerOptions().redis_heartbeat_timeout_ms == int(settings.broker_heartbeat_timeout * 1000)
    assert PollOptions().use_updated_since == frozenset()
    assert PollOptions().backfill_since == {}


def test_configured_settings_are_read_and_converted() -> None:
    settings = Settings(
        _env_file=None,
        max_retries=2,
        run_retention_days=3,
        webhook_max_body=10,
        poll_page_size=7,
        poll_use_updated_since="matters",
        backfill_since={"matters": "2026-01-01"},
        broker_heartbeat_timeout=1.5,
        queue_prefix="other",
    )
    delivery = DeliveryOptions.from_settings(settings)
    assert (delivery.max_attempts, delivery.retention) == (3, 3 * DAY)
    assert TriggerOptions.from_settings(settings).webhook_max_body == 10
    poll = PollOptions.from_settings(settings)
    assert (poll.page_size, poll.use_updated_since) == (7, frozenset({"matters"}))
    assert poll.backfill_since["matters"].year == 2026
    broker = BrokerOptions.from_settings(settings)
    assert (broker.queue_prefix, broker.redis_heartbeat_timeout_ms) == ("other", 1500)


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(KeyError, match="no_such_setting"):
        setting("no_such_setting")


def test_options_from_keeps_given_values() -> None:
    @dataclasses.dataclass(frozen=True)
    class Knobs:
        lease: float = setting("run_lease")
        batch: int = 10

    assert Knobs() == Knobs(lease=Settings.model_fields["run_lease"].default)
    assert options_from(Knobs, Settings(_env_file=None, run_lease=2.0), batch=3) == Knobs(2.0, 3)
