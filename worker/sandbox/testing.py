"""Helpers for tests and demos that talk to a sandbox over HTTP."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx


def obtain_tokens(base_url: str, client_id: str, client_secret: str, redirect_uri: str) -> dict[str, Any]:
    """Run the authorization code flow against ``base_url`` and return the token response.

    Performs ``GET /OAuth/Authorize`` without following the redirect, reads ``code`` and
    ``state`` from its ``Location``, checks the state came back, then ``POST /OAuth/Token``.
    Raises ``RuntimeError`` with the server's error when a leg fails.
    """
    state = secrets.token_urlsafe(16)
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=10.0) as client:
        authorize = client.get(
            "/OAuth/Authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "state": state,
            },
        )
        location = authorize.headers.get("location")
        if authorize.status_code != 302 or not location:
            raise RuntimeError(f"authorize failed: {authorize.status_code} {authorize.text}")
        params = parse_qs(urlsplit(location).query)
        if "error" in params:
            raise RuntimeError(f"authorize failed: {params['error'][0]}")
        if params.get("state", [""])[0] != state:
            raise RuntimeError("authorize returned a different state")
        token = client.post(
            "/OAuth/Token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"][0],
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uri": redirect_uri,
            },
        )
        if token.status_code != 200:
            raise RuntimeError(f"token exchange failed: {token.status_code} {token.json().get('error')}")
        body: dict[str, Any] = token.json()
        return body
