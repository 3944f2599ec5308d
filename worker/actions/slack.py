"""``slack.post``: a message to Slack, by incoming webhook or with the bot token.

``webhook: billing`` posts to the incoming-webhook URL configured as ``PPW_SLACK_WEBHOOKS__BILLING``
(the URL is the secret: it is never rendered, logged or stored, the run history says
``webhook: billing``). ``channel: "#billing"`` posts with ``chat.postMessage`` and
``PPW_SLACK_BOT_TOKEN`` against ``PPW_SLACK_API_URL``, answering the message's ``channel`` id and
``ts``; ``thread: "{{ steps.notice.ts }}"`` then replies in that message's thread (``thread_ts``)
and ``slack.update`` (:mod:`worker.actions.slack_update`) edits it. Both take ``text`` and/or Block
Kit ``blocks`` (``text`` is then the notification fallback).

Slack's answers: incoming webhooks reply ``200 ok`` or a status with an error string
(``invalid_payload``, ``no_text``, ``channel_not_found``, ``channel_is_archived``,
``action_prohibited``, ``no_service``); the Web API replies 200 with ``{"ok": false, "error": ...}``.
Rate limits come as 429 with ``Retry-After`` (or ``ratelimited``), honoured by the retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.errors import PermanentStepError, TransientStepError
from worker.actions.outbound import TransportFailure
from worker.actions.params import SlackPostParams
from worker.actions.responses import retry_after, status_error, transport_error

if TYPE_CHECKING:
    from worker.settings import Settings

#: Web API ``error`` values that mean "try again later"; anything else needs a person.
TRANSIENT_API_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def _payload(params: SlackPostParams) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if params.text is not None:
        payload["text"] = str(params.text)
    if params.blocks:
        payload["blocks"] = params.blocks
    if not payload:
        raise PermanentStepError("slack.post needs text or blocks")
    return payload


class SlackPost(StepType):
    """``slack.post``; the webhook's or channel's name labels ``ppw_webhook_deliveries``."""

    name = "slack.post"
    params = SlackPostParams
    result_keys = frozenset({"ok", "channel", "ts"})
    destination = ("webhook", "channel")
    with_doc = (
        '`webhook: NAME` (URL in `PPW_SLACK_WEBHOOKS__NAME`) **or** `channel: "#x"` (needs '
        "`PPW_SLACK_BOT_TOKEN`); `text` and/or `blocks`; `thread: ts` replies in a thread (channel only)"
    )
    result_doc = "`ok`, `channel`, `ts`"

    def run(self, params: SlackPostParams, ctx: StepContext) -> StepResult:
        payload = _payload(params)
        if params.webhook:
            return _via_webhook(params.webhook, payload, ctx)
        if params.channel:
            return _via_api(params.channel, payload, params.thread, ctx)
        raise PermanentStepError("slack.post needs either webhook: NAME or channel: '#channel'")

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """The webhook by its setting's name (and whether it is configured), never its URL."""
        body = {k: params[k] for k in ("text", "blocks") if params.get(k) is not None}
        if params.get("thread"):
            body["thread_ts"] = params["thread"]
        webhook = params.get("webhook")
        if webhook:
            configured = webhook in settings.slack_webhooks
            return {
                "method": "POST",
                "url": f"PPW_SLACK_WEBHOOKS__{str(webhook).upper()}"
                + ("" if configured else " (NOT configured here)"),
                "json": body,
            }
        has_token = settings.slack_bot_token is not None and bool(settings.slack_bot_token.get_secret_value())
        return {
            "method": "POST",
            "url": f"{settings.slack_api_url.rstrip('/')}/chat.postMessage",
            "auth": "PPW_SLACK_BOT_TOKEN" + ("" if has_token else " (NOT configured here)"),
            "json": {"channel": params.get("channel"), **body},
        }


def _via_webhook(name: str, payload: dict[str, Any], ctx: StepContext) -> StepResult:
    settings = ctx.services.settings
    secret = settings.slack_webhooks.get(name.lower())
    if secret is None:
        known = ", ".join(sorted(settings.slack_webhooks)) or "none configured"
        raise PermanentStepError(
            f"unknown Slack webhook {name!r} (set PPW_SLACK_WEBHOOKS__{name.upper()}; known: {known})"
        )
    request = {"webhook": name, "payload": ctx.services.mask(payload)}
    if ctx.dry_run:
        return StepResult(output={"ok": True, "dry_run": True}, request=request)
    what = f"Slack webhook {name!r}"
    try:
        response = ctx.services.http.post(secret.get_secret_value(), json=payload)
    except TransportFailure as exc:
        raise transport_error(what, exc) from None
    body = response.text.strip()
    if response.status_code == 200:
        return StepResult(output={"ok": True}, request=request, response={"status": 200, "body": body[:100]})
    raise status_error(what, response, body[:200] or None)


def _via_api(channel: str, payload: dict[str, Any], thread: str | None, ctx: StepContext) -> StepResult:
    body = {"channel": channel, **payload}
    if thread:
        body["thread_ts"] = str(thread)
    return web_api("chat.postMessage", body, ctx, f"slack.post to channel {channel!r}")


def web_api(method: str, body: dict[str, Any], ctx: StepContext, needs: str) -> StepResult:
    """Call Slack's Web API ``method`` with the bot token; ``ok``, ``channel``, ``ts`` of the answer.

    Transport failures, 429 and 5xx, and the ``error`` values of :data:`TRANSIENT_API_ERRORS` are
    transient (``Retry-After`` honoured); any other ``error`` needs a person. The token is never in
    the run history, the body is masked. ``needs`` names the step in the missing-token error.
    """
    settings = ctx.services.settings
    token = settings.slack_bot_token
    if token is None or not token.get_secret_value():
        raise PermanentStepError(f"{needs} needs PPW_SLACK_BOT_TOKEN")
    url = settings.slack_api_url.rstrip("/") + "/" + method
    request = {"method": "POST", "url": url, "payload": ctx.services.mask(body)}
    if ctx.dry_run:
        return StepResult(output={"ok": True, "dry_run": True}, request=request)
    what = f"Slack {method}"
    try:
        response = ctx.services.http.post(
            url,
            json=body,
            headers={"Authorization": f"Bearer {token.get_secret_value()}"},
        )
    except TransportFailure as exc:
        raise transport_error(what, exc) from None
    if response.status_code != 200:
        raise status_error(what, response)
    try:
        answer = response.json()
    except ValueError:
        raise TransientStepError(f"{what} answered 200 without JSON") from None
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = str(answer.get("error", "unknown_error")) if isinstance(answer, dict) else "unknown_error"
        message = f"{what} to {body.get('channel')!r} failed: {error}"
        if error in TRANSIENT_API_ERRORS:
            raise TransientStepError(message, retry_after=retry_after(response))
        raise PermanentStepError(message)
    summary = {"status": 200, "ok": True, "channel": answer.get("channel"), "ts": answer.get("ts")}
    return StepResult(
        output={"ok": True, "channel": answer.get("channel"), "ts": answer.get("ts")},
        request=request,
        response=summary,
    )
