"""HMAC-SHA256 signatures for outgoing webhooks, Stripe style.

The header is ``X-PPW-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256(secret, ``<t>.<raw body>``). The receiver recomputes it with the shared secret, compares
in constant time and rejects timestamps too far from its clock (replays). :func:`verify` is the
reference implementation receivers can copy (docs/actions.md shows it).
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-PPW-Signature"
DEFAULT_TOLERANCE = 300.0


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-PPW-Signature`` header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={signature(secret, body, ts)}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance: float = DEFAULT_TOLERANCE, now: float | None = None
) -> bool:
    """True when ``header`` is a valid signature of ``body`` made within ``tolerance`` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    return hmac.compare_digest(given, signature(secret, body, ts))
