"""Driving the sandbox from a benchmark: connect through OAuth, make changes, count requests.

Everything goes over HTTP, as a person in the web UI (``/_sandbox/mutate``) and the worker (the
OAuth flow, ``/api/v2``) would reach the real service; the request log (``/_sandbox/requests``) is
the server's own count of what the worker asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from worker.practicepanther.tokens import TokenSet, TokenStore
from worker.sandbox import SandboxConfig, SandboxServer, obtain_tokens
from worker.settings import Settings
from worker.state import StateStore

#: Changes sent per ``/_sandbox/mutate`` call.
MUTATE_CHUNK = 500


def connect(sandbox: SandboxServer | str, store: StateStore, connection: str) -> None:
    """Run the authorization-code flow against ``sandbox`` and store the tokens for ``connection``.

    ``sandbox`` is a running server, or the URL of one started with the default client (``ppw
    sandbox`` in a child process).
    """
    config = sandbox.config if isinstance(sandbox, SandboxServer) else SandboxConfig()
    url = sandbox.url if isinstance(sandbox, SandboxServer) else sandbox
    tokens = obtain_tokens(url, config.client_id, config.client_secret, config.redirect_uris[0])
    TokenStore(store, connection, None).save(
        TokenSet(
            access_token=SecretStr(tokens["access_token"]),
            refresh_token=SecretStr(tokens["refresh_token"]),
            expires_at=datetime.now(UTC) + timedelta(seconds=float(tokens.get("expires_in", 86_400))),
        )
    )


def settings_for(sandbox: SandboxServer | str, state_url: str, connection: str, **overrides: Any) -> Settings:
    """Settings for a worker connected to ``sandbox`` (a server, or the URL of a default one)."""
    config = sandbox.config if isinstance(sandbox, SandboxServer) else SandboxConfig()
    values: dict[str, Any] = {
        "pp_base_url": sandbox.url if isinstance(sandbox, SandboxServer) else sandbox,
        "pp_client_id": config.client_id,
        "pp_client_secret": config.client_secret,
        "pp_redirect_uri": config.redirect_uris[0],
        "state_url": state_url,
        "connection_id": connection,
        "token_encryption_key": None,
    }
    values.update(overrides)
    return Settings(**values)


class Admin:
    """``/_sandbox`` controls over HTTP."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)

    def close(self) -> None:
        self.http.close()

    def mutate(self, ops: list[dict[str, Any]]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(ops), MUTATE_CHUNK):
            response = self.http.post("/_sandbox/mutate", json=ops[start : start + MUTATE_CHUNK])
            response.raise_for_status()
            results.extend(response.json())
        return results

    def create(self, resource: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.mutate([{"op": "create", "resource": resource, "data": body} for body in bodies])

    def update(self, resource: str, changes: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        return self.mutate(
            [{"op": "update", "resource": resource, "id": rid, "data": data} for rid, data in changes]
        )

    def faults(self, **faults: Any) -> dict[str, Any]:
        response = self.http.post("/_sandbox/faults", json=faults)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def mark(self) -> int:
        response = self.http.get("/_sandbox/requests", params={"since": 10**12})
        response.raise_for_status()
        return int(response.json()["next"])

    def requests(self, since: int, path_prefix: str = "/api/") -> list[dict[str, Any]]:
        response = self.http.get("/_sandbox/requests", params={"since": since})
        response.raise_for_status()
        return [r for r in response.json()["requests"] if r["path"].startswith(path_prefix)]
