"""``http.request``: call a webhook receiver or an internal API, safely.

- Destinations are limited to ``PPW_HTTP_ALLOWED_HOSTS`` (``hooks.example.com``,
  ``*.example.com``, ``host:8443``); the list is empty by default, so every host is refused until
  ops allow it. Redirects are followed only to the same host (at most :data:`MAX_REDIRECTS`).
- ``secret: NAME`` signs the body with ``PPW_WEBHOOK_SECRETS__NAME``:
  ``X-PPW-Signature: t=<ts>,v1=<hex>`` (see :mod:`worker.actions.signing`), or, with
  ``signature: standard-webhooks``, the Standard Webhooks headers (``webhook-id`` is the
  idempotency key below, the same on every retry) any Standard Webhooks library verifies.
- Every request carries ``Idempotency-Key``: a hash of (event, rule, step), the same on every retry,
  replay and worker, so a receiver can drop a repeat after a timeout that reached it.
- 408/425/429/5xx are retried with backoff (``Retry-After`` honoured); other 4xx need a person.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urljoin, urlsplit

from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.errors import PermanentStepError
from worker.actions.outbound import Reply, TransportFailure
from worker.actions.params import HttpRequestParams
from worker.actions.responses import PREVIEW, status_error, transport_error
from worker.actions.signing import HEADER as SIGNATURE_HEADER
from worker.actions.signing import sign, standard_webhooks_headers

if TYPE_CHECKING:
    from worker.settings import Settings

MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Response text kept for later steps (the ledger stores it).
MAX_TEXT = 4_000
_PRIVATE_HEADERS = frozenset({"set-cookie", "authorization", "www-authenticate", "proxy-authenticate"})


def idempotency_key(event_id: str, rule_id: str, step_id: str) -> str:
    """Stable across retries and workers: receivers dedupe on it."""
    return hashlib.sha256(f"ppw\x1f{event_id}\x1f{rule_id}\x1f{step_id}".encode()).hexdigest()[:32]


@lru_cache(maxsize=16)
def _allow_list(allowed: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(name, port)`` of each entry, parsed once: the allow list comes from settings and every
    request checks its destination against it."""
    entries = []
    for raw in allowed:
        entry = raw.strip().lower()
        if not entry:
            continue
        name, _, port = entry.partition(":") if not entry.startswith("[") else (entry, "", "")
        entries.append((name, port))
    return tuple(entries)


def host_allowed(url: str, allowed: Sequence[str]) -> bool:
    """Whether ``url``'s host (optionally host:port) matches an entry of ``allowed``."""
    return _allowed(urlsplit(url), allowed)


def _allowed(parts: SplitResult, allowed: Sequence[str]) -> bool:
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        return False
    port = str(parts.port or (443 if parts.scheme == "https" else 80))
    for name, want_port in _allow_list(tuple(allowed)):
        if want_port and want_port != port:
            continue
        if name == host or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


def check_destination(url: str, allowed: Sequence[str]) -> str:
    """Refuse ``url`` unless it is http(s) to an allowed host; its host name otherwise.

    The host is handed back so callers need not parse the URL again for their messages.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise PermanentStepError(
            f"http.request needs an http:// or https:// URL, got scheme {parts.scheme!r}"
        )
    host = parts.hostname or ""
    if not allowed:
        raise PermanentStepError(
            f"http.request to {host!r} refused: no destinations are allowed "
            f"(set PPW_HTTP_ALLOWED_HOSTS, e.g. PPW_HTTP_ALLOWED_HOSTS={host})"
        )
    if not _allowed(parts, allowed):
        raise PermanentStepError(
            f"http.request to {host!r} refused: not in PPW_HTTP_ALLOWED_HOSTS ({', '.join(allowed)})"
        )
    return host


def _body(params: HttpRequestParams) -> tuple[bytes, str | None]:
    if params.json_body is not None:
        return json.dumps(params.json_body, separators=(",", ":"), default=str).encode(), "application/json"
    return b"", None


class HttpRequest(StepType):
    """``http.request``; its output is scrubbed before it is kept, as the far side may echo a
    secret back, and the signing secret's name labels ``ppw_webhook_deliveries``."""

    name = "http.request"
    params = HttpRequestParams
    result_keys = frozenset({"status", "headers", "json", "text"})
    mask_output = True
    destination = ("secret",)
    with_doc = (
        "`method` (default POST), `url`, `headers`, `json`, `secret: NAME` (HMAC-SHA256 signature "
        "with `PPW_WEBHOOK_SECRETS__NAME`), `signature: standard-webhooks` (default `ppw`: "
        "`X-PPW-Signature`), `timeout` (seconds, ≤ 60)"
    )
    result_doc = "`status`, `headers`, `json`, `text`"

    def run(self, params: HttpRequestParams, ctx: StepContext) -> StepResult:
        settings = ctx.services.settings
        method = params.method.upper()
        url = str(params.url)
        host = check_destination(url, settings.http_allowed_hosts)
        body, content_type = _body(params)
        headers: dict[str, str] = {str(k): str(v) for k, v in (params.headers or {}).items()}
        if content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        headers[IDEMPOTENCY_HEADER] = idempotency_key(ctx.event.id, ctx.rule_id, ctx.step_id)
        headers["X-PPW-Event-Id"] = ctx.event.id
        headers["X-PPW-Rule-Id"] = ctx.rule_id
        if params.secret:
            secret = settings.webhook_secrets.get(params.secret.lower())
            if secret is None:
                known = ", ".join(sorted(settings.webhook_secrets)) or "none configured"
                raise PermanentStepError(
                    f"unknown webhook secret {params.secret!r} "
                    f"(set PPW_WEBHOOK_SECRETS__{params.secret.upper()}; known: {known})"
                )
            if params.signature == "standard-webhooks":
                try:
                    headers.update(
                        standard_webhooks_headers(
                            secret.get_secret_value(), headers[IDEMPOTENCY_HEADER], body
                        )
                    )
                except ValueError:
                    raise PermanentStepError(
                        f"signature: standard-webhooks needs a whsec_<base64> secret in "
                        f"PPW_WEBHOOK_SECRETS__{params.secret.upper()}"
                    ) from None
            else:
                headers[SIGNATURE_HEADER] = sign(secret.get_secret_value(), body)
        timeout = float(params.timeout)
        summary = {
            "method": method,
            "url": ctx.services.mask_text(url),
            "headers": ctx.services.mask(headers),
            "json": ctx.services.mask(params.json_body),
        }
        if ctx.dry_run:
            return StepResult(output={"status": None, "dry_run": True}, request=summary)
        response = _send(ctx, method, url, headers, body, timeout, settings.http_allowed_hosts)
        if response.status_code >= 300:
            raise status_error(f"{method} {host}", response)
        return StepResult(
            output=_output(response),
            request=summary,
            response={"status": response.status_code, "body": _preview(response)},
        )

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """The request, with the signing secret by name (and whether it is configured)."""
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
            how = (
                "HMAC-SHA256 (Standard Webhooks)"
                if params.get("signature") == "standard-webhooks"
                else "HMAC-SHA256"
            )
            out["signed_with"] = f"{how} of the body with PPW_WEBHOOK_SECRETS__{secret.upper()}" + (
                "" if configured else " (NOT configured here)"
            )
        return out


def _send(
    ctx: StepContext,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    allowed: list[str],
) -> Reply:
    origin = urlsplit(url).netloc.lower()
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = ctx.services.http.request(method, url, headers=headers, body=body, timeout=timeout)
        except TransportFailure as exc:
            raise transport_error(f"{method} {urlsplit(url).hostname}", exc) from None
        if response.status_code not in REDIRECTS or "location" not in response.headers:
            return response
        target = urljoin(url, response.headers["location"])
        if urlsplit(target).netloc.lower() != origin:
            raise PermanentStepError(
                f"{method} {urlsplit(url).hostname} redirected ({response.status_code}) to another host "
                f"({urlsplit(target).hostname}); ppw does not follow redirects off the allowed host"
            )
        check_destination(target, allowed)
        if response.status_code == 303 or (response.status_code in (301, 302) and method != "GET"):
            method, body = "GET", b""
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        url = target
    raise PermanentStepError(f"{method} {urlsplit(url).hostname}: more than {MAX_REDIRECTS} redirects")


def _output(response: Reply) -> dict[str, Any]:
    """``steps.<id>.status|headers|json|text`` for later steps (``json`` is None unless it parses)."""
    parsed: Any = None
    if "json" in response.headers.get("content-type", ""):
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
    return {
        "status": response.status_code,
        "headers": {k.lower(): v for k, v in response.headers.items() if k.lower() not in _PRIVATE_HEADERS},
        "json": parsed,
        "text": response.text[:MAX_TEXT],
    }


def _preview(response: Reply) -> str:
    text = response.text
    return text[:PREVIEW] + ("..." if len(text) > PREVIEW else "")
