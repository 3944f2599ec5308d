"""How a sandbox starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.sandbox.listing import DEFAULT_MAX_PAGE_SIZE


@dataclass
class SandboxConfig:
    """How a sandbox starts: its data, churn, OAuth client and faults.

    Parameters
    ----------
    seed:
        ``None`` for an empty account (only the API user behind ``/users/me``); an int for a
        deterministic small firm (same seed, identical data).
    churn_per_minute:
        Background edits per minute (matters change status, tasks complete ...); 0 = none.
    token_lifetime:
        Seconds an access token lives (``expires_in``).
    client_id, client_secret, redirect_uris:
        The one registered OAuth client.
    faults:
        Initial faults by name (see :mod:`worker.sandbox.faults`).
    max_page_size:
        Most records one list call returns (when ``$top`` is absent or larger).
    """

    seed: int | None = 1
    churn_per_minute: float = 0.0
    token_lifetime: float = 86400.0
    client_id: str = "ppw-sandbox-client"
    client_secret: str = "ppw-sandbox-secret"
    redirect_uris: tuple[str, ...] = ("http://127.0.0.1:8765/callback",)
    faults: dict[str, Any] = field(default_factory=dict)
    max_page_size: int = DEFAULT_MAX_PAGE_SIZE

    def __repr__(self) -> str:
        # The client secret stays out of reprs and logs.
        return (
            f"SandboxConfig(seed={self.seed!r}, churn_per_minute={self.churn_per_minute!r}, "
            f"token_lifetime={self.token_lifetime!r}, client_id={self.client_id!r}, "
            f"client_secret='**********', redirect_uris={self.redirect_uris!r}, faults={self.faults!r}, "
            f"max_page_size={self.max_page_size!r})"
        )
