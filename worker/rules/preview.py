"""What a step would send, described without sending it (``ppw rules test``/``explain``).

Secrets stay names: a Slack webhook shows as ``PPW_SLACK_WEBHOOKS__BILLING`` (and whether it is
configured), a signing secret as its name; everything shown is also passed through the deployment's
scrubber, so a secret value that found its way into a template is masked too.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from worker.actions.params import SEARCH_SHORTHANDS, STEP_TYPES, search_as_find
from worker.observability.scrub import Scrubber
from worker.practicepanther import resources
from worker.settings import Settings


def describe(action: str, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The request(s) a step with rendered ``params`` would make, secrets masked."""
    scrubber = Scrubber(settings.secret_values())
    return {k: scrubber.value(v) for k, v in _describe(action, params, settings).items()}


def _describe(action: str, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    if action in SEARCH_SHORTHANDS:
        try:
            expanded = search_as_find(action, STEP_TYPES[action].model_validate(params))
        except (ValueError, ValidationError):
            return {"params": params}
        return _practicepanther("practicepanther.find", expanded.model_dump(exclude_none=True))
    if action.startswith("practicepanther."):
        return _practicepanther(action, params)
    if action == "slack.post":
        return _slack(params, settings)
    if action == "http.request":
        secret = params.get("secret")
        headers = dict(params.get("headers") or {})
        out: dict[str, Any] = {
            "method": params.get("method", "POST"),
            "url": params.get("url"),
            "headers": headers,
            "json": params.get("json"),
        }
        if secret:
            configured = secret in settings.webhook_secrets
            out["signed_with"] = f"HMAC-SHA256 of the body with PPW_WEBHOOK_SECRETS__{secret.upper()}" + (
                "" if configured else " (NOT configured here)"
            )
        return out
    if action == "log":
        return {"log": params.get("level", "info"), "message": params.get("message")}
    return {"params": params}


def _practicepanther(action: str, params: dict[str, Any]) -> dict[str, Any]:
    resource = resources.get(str(params.get("resource")))
    if action == "practicepanther.create":
        return {"method": "POST", "url": resource.path, "json": params.get("data")}
    if action == "practicepanther.update":
        return {
            "method": "PUT",
            "url": f"{resource.path}?id={params.get('id')}",
            "json": "the current record (GET first) with these fields merged in",
            "merge": params.get("data"),
        }
    query: dict[str, Any] = {}
    if action == "practicepanther.find":
        query.update(params.get("params") or {})
        if params.get("filter"):
            query["$filter"] = params["filter"]
        if params.get("orderby"):
            query["$orderby"] = params["orderby"]
        if params.get("limit") or params.get("result", "first") == "first":
            query["$top"] = params.get("limit") or 1
        return {"method": "GET", "url": resource.path, "params": query}
    match = params.get("match") or {}
    return {
        "method": "GET",
        "url": resource.path,
        "params": {"$filter": " and ".join(f"{k} eq {_literal(v)}" for k, v in match.items()), "$top": 1},
        "then_if_none": {
            "method": "POST",
            "url": resource.path,
            "json": {**match, **(params.get("data") or {})},
        },
    }


def _literal(value: Any) -> str:
    if isinstance(value, dict) and "id" in value:
        value = value["id"]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _slack(params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    body = {k: params[k] for k in ("text", "blocks") if params.get(k) is not None}
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
