"""``teams.post``: a message to a Microsoft Teams channel through a Workflows (Power Automate) webhook.

``webhook: billing`` posts to the URL configured as ``PPW_TEAMS_WEBHOOKS__BILLING`` (the URL, with
its ``sig=``, is the secret: it is never rendered, logged or stored; the run history says
``webhook: billing``). The rule gives ``text`` (sent as a card with one TextBlock) or an Adaptive
Card as YAML (``card:``), checked against the schema Teams accepts (:mod:`worker.actions.cards`)
by ``ppw rules check`` and again once rendered.

The body is what the Workflows template "Post to a channel when a webhook request is received"
expects: ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <card>}]}``. The webhook answers 202 when it
accepted the message; 429 (with ``Retry-After``) and 5xx are retried, any other 4xx (a bad card,
a disabled or deleted flow, a wrong ``sig``) needs a person, as with ``slack.post``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.actions import cards
from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.errors import PermanentStepError
from worker.actions.outbound import TransportFailure
from worker.actions.params import TeamsPostParams
from worker.actions.responses import preview, status_error, transport_error

if TYPE_CHECKING:
    from worker.settings import Settings

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def payload(card: dict[str, Any]) -> dict[str, Any]:
    """The Workflows webhook's body around ``card``."""
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card}]}


def _card(params: TeamsPostParams) -> dict[str, Any]:
    if params.card is not None:
        return params.card
    if params.text is not None:
        return cards.text_card(str(params.text))
    raise PermanentStepError("teams.post needs text or card")


class TeamsPost(StepType):
    """``teams.post``; the webhook's name labels ``ppw_webhook_deliveries``."""

    name = "teams.post"
    params = TeamsPostParams
    result_keys = frozenset({"ok", "status"})
    destination = ("webhook",)
    with_doc = (
        "`webhook: NAME` (Workflows URL in `PPW_TEAMS_WEBHOOKS__NAME`); `text` **or** `card` (an "
        f"Adaptive Card as YAML, version ≤ {cards.MAX_VERSION})"
    )
    result_doc = "`ok`, `status`"

    def run(self, params: TeamsPostParams, ctx: StepContext) -> StepResult:
        settings = ctx.services.settings
        name = params.webhook
        secret = settings.teams_webhooks.get(name.lower())
        if secret is None:
            known = ", ".join(sorted(settings.teams_webhooks)) or "none configured"
            raise PermanentStepError(
                f"unknown Teams webhook {name!r} (set PPW_TEAMS_WEBHOOKS__{name.upper()}; known: {known})"
            )
        body = payload(_card(params))
        request = {"webhook": name, "payload": ctx.services.mask(body)}
        if ctx.dry_run:
            return StepResult(output={"ok": True, "dry_run": True}, request=request)
        what = f"Teams webhook {name!r}"
        try:
            response = ctx.services.http.post(secret.get_secret_value(), json=body)
        except TransportFailure as exc:
            raise transport_error(what, exc) from None
        if 200 <= response.status_code < 300:
            summary = {
                "status": response.status_code,
                "body": ctx.services.mask_text(preview(response))[:100],
            }
            return StepResult(
                output={"ok": True, "status": response.status_code}, request=request, response=summary
            )
        # the flow's error text may quote the request (its URL): masked before it is kept anywhere
        raise status_error(what, response, ctx.services.mask_text(preview(response)) or None)

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """The webhook by its setting's name (and whether it is configured), never its URL."""
        webhook = str(params.get("webhook") or "")
        configured = webhook.lower() in settings.teams_webhooks
        card = params.get("card")
        if not isinstance(card, dict):
            card = cards.text_card(str(params.get("text") or ""))
        return {
            "method": "POST",
            "url": f"PPW_TEAMS_WEBHOOKS__{webhook.upper()}"
            + ("" if configured else " (NOT configured here)"),
            "json": payload(card),
        }
