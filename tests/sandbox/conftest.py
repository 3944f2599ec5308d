"""One sandbox per test module, reset to its seed (and cleared of faults) before every test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from worker.sandbox import SandboxConfig, SandboxServer, obtain_tokens

NO_FAULTS = {
    "rate_429": 0,
    "retry_after": 1,
    "rate_5xx": 0,
    "latency": 0,
    "clock_skew": 0,
    "page_mutation": 0,
    "refuse_select": False,
    "empty_listings": "",
}


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(seed=1)) as server:
        yield server


@pytest.fixture(scope="module")
def shared_token(shared_sandbox: SandboxServer) -> str:
    config = shared_sandbox.config
    tokens = obtain_tokens(
        shared_sandbox.url, config.client_id, config.client_secret, config.redirect_uris[0]
    )
    return str(tokens["access_token"])


@pytest.fixture
def control(shared_sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """Talks to ``/_sandbox``; the sandbox is back to its seed with no faults."""
    with httpx.Client(base_url=shared_sandbox.url, timeout=10) as client:
        client.post("/_sandbox/faults", json=NO_FAULTS).raise_for_status()
        client.post("/_sandbox/reset").raise_for_status()
        yield client


@pytest.fixture
def api(shared_sandbox: SandboxServer, shared_token: str, control: httpx.Client) -> Iterator[httpx.Client]:
    """An authenticated client for ``/api/v2`` of the freshly reset shared sandbox."""
    headers = {"Authorization": f"Bearer {shared_token}"}
    with httpx.Client(base_url=f"{shared_sandbox.url}/api/v2", headers=headers, timeout=10) as client:
        yield client
