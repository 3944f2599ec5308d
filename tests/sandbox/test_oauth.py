"""The authorization code grant: what a client, and an attacker, can and cannot do."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from worker.sandbox import SandboxServer, obtain_tokens

REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture
def http(shared_sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_sandbox.url, follow_redirects=False, timeout=10) as client:
        yield client


def _authorize(http: httpx.Client, **overrides: str | None) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": "ppw-sandbox-client",
        "redirect_uri": REDIRECT,
        "state": "xyz",
    }
    params.update(overrides)  # type: ignore[arg-type]
    return http.get("/OAuth/Authorize", params={k: v for k, v in params.items() if v is not None})


def _redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _code(http: httpx.Client, redirect_uri: str = REDIRECT) -> str:
    return _redirect_params(_authorize(http, redirect_uri=redirect_uri))["code"]


def _token(http: httpx.Client, **form: str) -> httpx.Response:
    data = {
        "client_id": "ppw-sandbox-client",
        "client_secret": "ppw-sandbox-secret",
        "redirect_uri": REDIRECT,
    }
    data.update(form)
    return http.post("/OAuth/Token", data=data)


def _me(http: httpx.Client, token: str) -> int:
    return http.get("/api/v2/users/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_authorize_redirects_back_with_code_and_state(http: httpx.Client) -> None:
    response = _authorize(http)
    assert response.headers["location"].startswith(REDIRECT + "?")
    params = _redirect_params(response)
    assert params["state"] == "xyz" and params["code"]


def test_code_exchange_returns_the_documented_fields(http: httpx.Client) -> None:
    response = _token(http, grant_type="authorization_code", code=_code(http))
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"access_token", "refresh_token", "expires_in", "token_type"}
    assert body["expires_in"] == 86400 and body["token_type"].lower() == "bearer"
    assert response.headers["cache-control"] == "no-store"
    assert _me(http, body["access_token"]) == 200


def test_a_code_is_single_use_and_its_replay_revokes_what_it_issued(http: httpx.Client) -> None:
    code = _code(http)
    first = _token(http, grant_type="authorization_code", code=code).json()
    replay = _token(http, grant_type="authorization_code", code=code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert _me(http, first["access_token"]) == 401


def test_the_token_request_must_repeat_the_redirect_uri(http: httpx.Client) -> None:
    response = _token(
        http, grant_type="authorization_code", code=_code(http), redirect_uri="http://127.0.0.1/other"
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_a_used_refresh_token_is_invalid_grant(http: httpx.Client) -> None:
    first = _token(http, grant_type="authorization_code", code=_code(http)).json()
    second = _token(http, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]
    assert _me(http, rotated["access_token"]) == 200
    reuse = _token(http, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    third = _token(http, grant_type="refresh_token", refresh_token=rotated["refresh_token"])
    assert third.status_code == 200


def test_wrong_client_secret_is_invalid_client(http: httpx.Client) -> None:
    response = _token(http, grant_type="authorization_code", code=_code(http), client_secret="nope")
    assert response.status_code == 400 and response.json()["error"] == "invalid_client"


def test_client_credentials_may_come_as_http_basic(http: httpx.Client) -> None:
    basic = base64.b64encode(b"ppw-sandbox-client:ppw-sandbox-secret").decode()
    response = http.post(
        "/OAuth/Token",
        data={"grant_type": "authorization_code", "code": _code(http), "redirect_uri": REDIRECT},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": ""}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "made-up"}, "invalid_grant"),
        ({"grant_type": "refresh_token", "refresh_token": "made-up"}, "invalid_grant"),
    ],
)
def test_token_endpoint_errors(http: httpx.Client, form: dict[str, str], error: str) -> None:
    response = _token(http, **form)
    assert response.status_code == 400 and response.json()["error"] == error


def test_loopback_redirect_uri_matches_on_any_port(http: httpx.Client) -> None:
    response = _authorize(http, redirect_uri="http://127.0.0.1:51234/callback")
    assert response.headers["location"].startswith("http://127.0.0.1:51234/callback?")
    code = _redirect_params(response)["code"]
    exchanged = _token(
        http, grant_type="authorization_code", code=code, redirect_uri="http://127.0.0.1:51234/callback"
    )
    assert exchanged.status_code == 200


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://127.0.0.1:8765/elsewhere",
        "https://evil.example/callback",
        "http://127.0.0.1.evil.example:8765/callback",
        "http://localhost:8765/callback",  # registered host is 127.0.0.1, not localhost
        None,
    ],
)
def test_unregistered_redirect_uri_is_400_without_redirect(
    http: httpx.Client, redirect_uri: str | None
) -> None:
    response = _authorize(http, redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.json()["error"] == "invalid_request"


def test_unknown_client_is_400_without_redirect(http: httpx.Client) -> None:
    response = _authorize(http, client_id="someone-else")
    assert response.status_code == 400 and response.json()["error"] == "invalid_client"


def test_missing_state_and_wrong_response_type_redirect_with_error(http: httpx.Client) -> None:
    no_state = _redirect_params(_authorize(http, state=None))
    assert no_state["error"] == "invalid_request" and "code" not in no_state
    token_flow = _redirect_params(_authorize(http, response_type="token"))
    assert token_flow == {
        "error": "unsupported_response_type",
        "error_description": "response_type must be 'code'.",
        "state": "xyz",
    }


def test_api_calls_need_a_live_bearer_token(http: httpx.Client) -> None:
    assert http.get("/api/v2/matters").status_code == 401
    response = http.get("/api/v2/matters", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"message": "Authorization has been denied for this request."}


def test_access_tokens_expire_after_their_lifetime(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(seed=None, token_lifetime=0.5)
    tokens = obtain_tokens(server.url, server.config.client_id, server.config.client_secret, REDIRECT)
    assert tokens["expires_in"] == 1
    with httpx.Client(base_url=server.url, timeout=10) as http:
        deadline = time.monotonic() + 10
        while _me(http, tokens["access_token"]) == 200:
            assert time.monotonic() < deadline, "the access token never expired"
            time.sleep(0.1)
        assert _me(http, tokens["access_token"]) == 401
        refreshed = _token(http, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
        assert _me(http, refreshed["access_token"]) == 200


def test_obtain_tokens_reports_a_refused_flow(shared_sandbox: SandboxServer) -> None:
    with pytest.raises(RuntimeError, match="invalid_client"):
        obtain_tokens(shared_sandbox.url, "ppw-sandbox-client", "wrong", REDIRECT)
