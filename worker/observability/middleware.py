"""Dramatiq middleware that gives every message its own log context.

Worker threads are reused from message to message; without a reset, the ``event_id`` bound while
handling one message would label the next one's log lines.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from worker.observability import context


class LogContextMiddleware(dramatiq.Middleware):
    """Bind ``message_id`` and ``actor`` for each message; clear the context after it."""

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        context.clear()
        context.bind(message_id=message.message_id, actor=message.actor_name)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        context.clear()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        context.clear()
