"""Who may call a hook: the sender proves it knows the hook's secret.

Two schemes, chosen per hook by the rule (``auth:``):

* ``hmac`` (default): ``X-PPW-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
  HMAC-SHA256(secret, ``"<t>.<raw body>"``), the same format ppw's own ``http.request`` step
  sends (:mod:`worker.actions.signing`). The timestamp must be within the replay window of our
  clock, so a captured request cannot be replayed later. Several ``v1=`` values are accepted (a
  sender rotating its secret signs with both).
* ``bearer``: ``Authorization: Bearer <secret>``, for senders that can only set a static header
  (form builders, Zapier). Weaker: anyone who sees one request can replay it.

Every comparison is constant-time. A failure says *why* (for the metric and the log), never with
the secret or the signature the sender sent.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.actions.signing import HEADER, signature

__all__ = ["HEADER", "Verdict", "check_bearer", "check_signature", "env_name", "hook_secret"]


def env_name(secret_name: str) -> str:
    """The environment variable holding a hook's secret: ``intake-form`` ->
    ``PPW_WEBHOOK_SECRETS__INTAKE_FORM`` (a shell variable cannot contain ``-``)."""
    return "PPW_WEBHOOK_SECRETS__" + secret_name.upper().replace("-", "_")


def hook_secret(secrets: Mapping[str, Any], secret_name: str) -> str:
    """The configured secret for ``secret_name`` (``-`` and ``_`` alike), or ``""``."""
    for candidate in (secret_name, secret_name.replace("-", "_")):
        value = secrets.get(candidate)
        if value is not None:
            text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
            if text:
                return str(text)
    return ""


@dataclass(frozen=True)
class Verdict:
    """The outcome of authenticating one request; ``reason`` is a metric label when it failed."""

    ok: bool
    reason: str = "ok"
    detail: str = ""

    @classmethod
    def failed(cls, reason: str, detail: str) -> Verdict:
        return cls(False, reason, detail)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def check_signature(
    headers: Mapping[str, str], body: bytes, secret: str, *, now: float, window: float
) -> Verdict:
    """The ``X-PPW-Signature`` header signs ``body`` with ``secret`` within ``window`` seconds of ``now``."""
    header = _header(headers, HEADER)
    if not header:
        return Verdict.failed("unsigned", f"missing {HEADER} header")
    timestamp: int | None = None
    given: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.strip().lstrip("-").isdigit():
            timestamp = int(value.strip())
        elif name == "v1" and value.strip():
            given.append(value.strip())
    if timestamp is None or not given:
        return Verdict.failed("bad_signature", f"{HEADER} must look like t=<unix seconds>,v1=<hex>")
    if abs(now - timestamp) > window:
        return Verdict.failed(
            "stale", f"signature timestamp is {abs(now - timestamp):.0f}s away (window {window:g}s)"
        )
    expected = signature(secret, body, timestamp)
    # compare with every candidate, so the time taken does not tell which one failed
    matched = [hmac.compare_digest(candidate.lower(), expected) for candidate in given]
    if not any(matched):
        return Verdict.failed("bad_signature", "signature does not match the body")
    return Verdict(True)


def check_bearer(headers: Mapping[str, str], secret: str) -> Verdict:
    """``Authorization: Bearer <secret>``."""
    header = _header(headers, "Authorization")
    if not header:
        return Verdict.failed("unsigned", "missing Authorization header")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return Verdict.failed("bad_token", "Authorization must be 'Bearer <token>'")
    if not hmac.compare_digest(token.strip().encode(), secret.encode()):
        return Verdict.failed("bad_token", "token does not match")
    return Verdict(True)
