"""Knobs of inbound webhooks and schedules, read from the settings.

Read from :class:`~worker.settings.Settings` (``PPW_WEBHOOK_*``, ``PPW_SCHEDULE_*``) into one
frozen object per process, so tests run the real machinery with small windows and no patching.
The defaults are the settings' (see :mod:`worker.options`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from worker.options import options_from, setting
from worker.settings import Settings


@dataclass(frozen=True)
class TriggerOptions:
    """Limits and windows of webhooks and schedules.

    Parameters
    ----------
    webhook_max_body:
        Largest request body accepted, in bytes (``PPW_WEBHOOK_MAX_BODY``); a
        bigger one is answered 413 without being read to the end.
    webhook_replay_window:
        Seconds a ``X-PPW-Signature`` timestamp may be away from our clock
        (``PPW_WEBHOOK_REPLAY_WINDOW``); older (or future) signatures are answered 401.
    webhook_rate_per_minute:
        Deliveries one hook accepts per minute across all replicas
        (``PPW_WEBHOOK_RATE_PER_MINUTE``); more are answered 429 with ``Retry-After``.
    webhook_dedupe_window:
        Seconds within which the same body to the same hook is the same
        delivery (``PPW_WEBHOOK_DEDUPE_WINDOW``), for senders that retry without an
        ``Idempotency-Key``.
    webhook_idempotency_ttl:
        Seconds an ``Idempotency-Key`` is remembered
        (``PPW_WEBHOOK_IDEMPOTENCY_TTL``).
    schedule_grace:
        How late (seconds) a slot missed while no scheduler ran may still run when
        one comes back (``PPW_SCHEDULE_GRACE``); a rule's ``grace:`` overrides it.
    schedule_query_limit:
        Most records a schedule's query fetches (``PPW_SCHEDULE_QUERY_LIMIT``);
        a rule's ``query.limit`` overrides it.
    schedule_tick:
        Seconds between the leader's looks at the clock (``PPW_SCHEDULE_TICK``): a
        slot runs at most this late.
    """

    webhook_max_body: int = setting("webhook_max_body")
    webhook_replay_window: float = setting("webhook_replay_window")
    webhook_rate_per_minute: int = setting("webhook_rate_per_minute")
    webhook_dedupe_window: float = setting("webhook_dedupe_window")
    webhook_idempotency_ttl: float = setting("webhook_idempotency_ttl")
    schedule_grace: float = setting("schedule_grace")
    schedule_query_limit: int = setting("schedule_query_limit")
    schedule_tick: float = setting("schedule_tick")

    @classmethod
    def from_settings(cls, settings: Settings) -> TriggerOptions:
        return options_from(cls, settings)

    def with_(self, **changes: Any) -> TriggerOptions:
        return replace(self, **changes)
