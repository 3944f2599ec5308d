"""``slack.update``: edit a Slack message posted earlier by ``slack.post`` with the bot token.

``chat.update`` against ``PPW_SLACK_API_URL`` with ``PPW_SLACK_BOT_TOKEN``: ``channel`` is the
channel *id* the post answered (``{{ steps.notice.channel }}``; Slack does not take a ``#name``
here), ``ts`` the message's (``{{ steps.notice.ts }}``), and ``text`` and/or ``blocks`` replace
its content. Retries and masking are those of ``slack.post`` (:func:`worker.actions.slack.web_api`):
``ratelimited``/429/5xx are retried with ``Retry-After``; ``message_not_found``,
``cant_update_message``, ``edit_window_closed`` and other errors need a person.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.params import SlackUpdateParams
from worker.actions.slack import web_api

if TYPE_CHECKING:
    from worker.settings import Settings


class SlackUpdate(StepType):
    """``slack.update``; the channel labels ``ppw_webhook_deliveries``."""

    name = "slack.update"
    params = SlackUpdateParams
    result_keys = frozenset({"ok", "channel", "ts"})
    destination = ("channel",)
    with_doc = (
        '`channel` (the id, e.g. `"{{ steps.notice.channel }}"`), `ts` (`"{{ steps.notice.ts }}"`), '
        "`text` and/or `blocks`; needs `PPW_SLACK_BOT_TOKEN`"
    )
    result_doc = "`ok`, `channel`, `ts`"

    def run(self, params: SlackUpdateParams, ctx: StepContext) -> StepResult:
        body: dict[str, Any] = {"channel": params.channel, "ts": str(params.ts)}
        if params.text is not None:
            body["text"] = str(params.text)
        if params.blocks:
            body["blocks"] = params.blocks
        return web_api("chat.update", body, ctx, "slack.update")

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        has_token = settings.slack_bot_token is not None and bool(settings.slack_bot_token.get_secret_value())
        body = {k: params[k] for k in ("channel", "ts", "text", "blocks") if params.get(k) is not None}
        return {
            "method": "POST",
            "url": f"{settings.slack_api_url.rstrip('/')}/chat.update",
            "auth": "PPW_SLACK_BOT_TOKEN" + ("" if has_token else " (NOT configured here)"),
            "json": body,
        }
