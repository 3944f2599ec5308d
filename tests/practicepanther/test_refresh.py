"""Token lifecycle against the sandbox: refresh before expiry and on 401, exactly one refresh across
threads and processes, and a dead refresh token leading to the re-authorisation state."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.fixtures.client import SandboxAdmin
from worker.practicepanther.auth import OAuthClient
from worker.practicepanther.client import PracticePantherClient
from worker.practicepanther.errors import AuthError, ReauthorizationRequired
from worker.practicepanther.tokens import TokenStore
from worker.settings import Settings
from worker.state import StateStore, key

ROOT = Path(__file__).resolve().parents[2]


def _tokens(client: PracticePantherClient) -> TokenStore:
    return client.oauth.tokens


def _expire_in_store(client: PracticePantherClient) -> None:
    """Make the stored access token look expired, as if a day had passed."""
    tokens = _tokens(client)
    current = tokens.load()
    assert current is not None
    past = datetime.now(UTC) - timedelta(seconds=1)
    tokens.save(current.model_copy(update={"expires_at": past, "obtained_at": past - timedelta(days=1)}))


def test_refreshes_before_expiry_and_persists_the_rotated_token(
    pp_client: PracticePantherClient, sandbox_admin: SandboxAdmin
) -> None:
    before = _tokens(pp_client).load()
    assert before is not None
    _expire_in_store(pp_client)
    mark = sandbox_admin.mark()

    assert pp_client.me()["id"]

    log = sandbox_admin.requests(mark)
    assert log["token_grants"] == {"refresh_token": 1}
    assert log["by_status"].get("401", 0) == 0  # refreshed before use, not after a refusal
    after = _tokens(pp_client).load()
    assert after is not None
    assert after.refresh_token.get_secret_value() != before.refresh_token.get_secret_value()
    assert after.expires_at > datetime.now(UTC) + timedelta(hours=1)
    pp_client.me()
    assert sandbox_admin.refresh_grants(mark) == 1  # the new token is reused, not refreshed again


def test_a_401_triggers_one_refresh_and_a_resend(
    pp_client: PracticePantherClient, sandbox_admin: SandboxAdmin
) -> None:
    pp_client.me()
    sandbox_admin.faults(expire_tokens=True)
    mark = sandbox_admin.mark()

    assert pp_client.me()["id"]

    log = sandbox_admin.requests(mark)
    assert log["token_grants"] == {"refresh_token": 1}
    assert [(e["path"], e["status"]) for e in log["requests"]] == [
        ("/api/v2/users/me", 401),
        ("/OAuth/Token", 200),
        ("/api/v2/users/me", 200),
    ]


def _settings_json(settings: Settings) -> str:
    return json.dumps(
        {
            "pp_base_url": settings.pp_base_url,
            "pp_client_id": settings.pp_client_id,
            "pp_client_secret": settings.pp_client_secret.get_secret_value(),
            "pp_redirect_uri": settings.pp_redirect_uri,
            "state_url": settings.state_url,
            "connection_id": settings.connection_id,
            "rate_limit_per_second": 0,
        }
    )


@pytest.mark.parametrize("expiry", ["known_expired", "revoked_401"])
def test_eight_threads_in_two_processes_refresh_once(
    pp_client: PracticePantherClient,
    pp_settings: Settings,
    redis_store: StateStore,
    sandbox_admin: SandboxAdmin,
    expiry: str,
) -> None:
    run = uuid.uuid4().hex[:8]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.practicepanther.refresh_worker",
                _settings_json(pp_settings),
                "4",
                run,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        ready = key(pp_settings.connection_id, "test", run, "ready")
        deadline = time.monotonic() + 60
        while int(redis_store.get(ready) or 0) < 2:
            assert time.monotonic() < deadline, "worker processes did not start"
            assert all(p.poll() is None for p in processes), processes[0].communicate()
            time.sleep(0.02)
        if expiry == "known_expired":
            _expire_in_store(pp_client)  # every caller sees an expired token before calling
        else:
            sandbox_admin.faults(expire_tokens=True)  # every caller gets a 401
        mark = sandbox_admin.mark()
        redis_store.set(key(pp_settings.connection_id, "test", run, "go"), "1", ttl=60)
        outputs = [p.communicate(timeout=60) for p in processes]
    finally:
        for p in processes:
            p.kill()

    reports = []
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    results = [r for report in reports for r in report["results"]]
    assert len(results) == 8
    assert all(r.startswith("ok:") for r in results), results
    assert sandbox_admin.refresh_grants(mark) == 1
    assert sum(report["token_calls"] for report in reports) == 1


def test_a_reused_refresh_token_requires_reauthorisation(
    pp_client: PracticePantherClient, pp_settings: Settings, sandbox_admin: SandboxAdmin
) -> None:
    stolen = _tokens(pp_client).load()
    assert stolen is not None
    assert pp_client.oauth.reauthorization_needed() is None
    # Another installation (or a copied state backend) uses the refresh token first.
    rogue = httpx.post(
        pp_settings.pp_base_url + "/OAuth/Token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": stolen.refresh_token.get_secret_value(),
            "client_id": pp_settings.pp_client_id,
            "client_secret": pp_settings.pp_client_secret.get_secret_value(),
        },
    )
    assert rogue.status_code == 200
    _expire_in_store(pp_client)
    mark = sandbox_admin.mark()

    with pytest.raises(ReauthorizationRequired) as caught:
        pp_client.me()

    marked = _tokens(pp_client).load()
    assert marked is not None and marked.needs_reauth
    assert marked.reauth_reason and "invalid_grant" in marked.reauth_reason
    assert pp_client.oauth.reauthorization_needed() == marked.reauth_reason
    assert stolen.refresh_token.get_secret_value() not in str(caught.value) + repr(caught.value)
    # Permanent: the next call fails fast without asking the token endpoint again.
    with pytest.raises(ReauthorizationRequired, match="ppw auth login"):
        pp_client.list_page("matters", top=1)
    log = sandbox_admin.requests(mark)
    assert log["token_grants"] == {"refresh_token": 1}
    assert log["count"] == 1


def test_not_logged_in_fails_without_calling_out(
    pp_settings: Settings, redis_store: StateStore, sandbox_admin: SandboxAdmin
) -> None:
    mark = sandbox_admin.mark()
    with PracticePantherClient(pp_settings, redis_store) as client, pytest.raises(AuthError, match="login"):
        assert (
            client.oauth.reauthorization_needed()
            == f"connection {pp_settings.connection_id!r} is not logged in"
        )
        client.me()
    assert sandbox_admin.requests(mark)["count"] == 0


def test_a_wrong_client_secret_requires_reauthorisation(
    pp_client: PracticePantherClient, pp_settings: Settings, redis_store: StateStore
) -> None:
    _expire_in_store(pp_client)
    wrong = pp_settings.model_copy(
        update={"pp_client_secret": pp_settings.pp_client_secret.__class__("nope")}
    )
    oauth = OAuthClient(wrong, redis_store)
    with pytest.raises(ReauthorizationRequired, match="invalid_client"):
        oauth.access_token()
    oauth.close()
