"""The OAuth 2 authorization server: authorization code grant with rotating refresh tokens.

Follows RFC 6749 and what is known of PracticePanther's live service:

* ``GET /OAuth/Authorize`` approves at once (no login form) and redirects with ``code`` and
  ``state``. An unknown client or an unregistered ``redirect_uri`` is answered 400 without a
  redirect (RFC 6749 §4.1.2.1: never redirect to an unverified URI); other errors redirect back
  with ``error=``. Loopback redirect URIs (``http://127.0.0.1``, ``localhost``, ``[::1]``) match
  a registered one on any port (RFC 8252 §7.3).
* Codes are single use and live ``CODE_LIFETIME`` seconds; replaying a code is ``invalid_grant``
  and revokes the tokens it produced (RFC 6749 §4.1.2).
* Refresh tokens are single use and rotate on every refresh: the old one answers
  ``400 {"error": "invalid_grant"}`` afterwards, which is how two workers refreshing at once lock
  an integration out of the live service.
* A wrong client secret is ``400 invalid_client``; access tokens expire after the configured
  lifetime and any API call without a live bearer token gets 401.

Tokens and codes are random and only ever compared, never logged.
"""

from __future__ import annotations

import base64
import hmac
import math
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

CODE_LIFETIME = 120.0
REFRESH_LIFETIME = 60 * 24 * 3600.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class AuthorizeResult:
    """What ``/OAuth/Authorize`` answers: a redirect (``location``) or a 400 with ``error``."""

    location: str | None = None
    error: dict[str, str] | None = None


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    expires: float
    used: bool = False
    tokens: set[str] = field(default_factory=set)


@dataclass
class _Refresh:
    client_id: str
    expires: float
    code: str
    used: bool = False


class TokenError(Exception):
    """An RFC 6749 §5.2 error answer of the token endpoint (always 400 here, as the live API)."""

    def __init__(self, error: str, description: str) -> None:
        self.error = error
        self.description = description
        super().__init__(error)

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _loopback(parts: Any) -> bool:
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS | {"::1"}


def redirect_uri_matches(requested: str, registered: tuple[str, ...]) -> bool:
    """Exact match, or the same loopback URI on another port (RFC 8252 §7.3)."""
    if requested in registered:
        return True
    asked = urlsplit(requested)
    if not _loopback(asked):
        return False
    for candidate in registered:
        known = urlsplit(candidate)
        if (
            _loopback(known)
            and known.hostname == asked.hostname
            and known.path == asked.path
            and known.query == asked.query
        ):
            return True
    return False


def _with_params(uri: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class AuthorizationServer:
    """Issues and checks codes and tokens for one registered client."""

    def __init__(self, client: Client, token_lifetime: float) -> None:
        self.client = client
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, float] = {}
        self._refresh: dict[str, _Refresh] = {}

    # -- authorize ----------------------------------------------------------------------
    def authorize(self, params: Mapping[str, str]) -> AuthorizeResult:
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if not client_id or not hmac.compare_digest(client_id, self.client.client_id):
            return AuthorizeResult(
                error={"error": "invalid_client", "error_description": "Unknown client_id."}
            )
        if not redirect_uri or not redirect_uri_matches(redirect_uri, self.client.redirect_uris):
            return AuthorizeResult(
                error={
                    "error": "invalid_request",
                    "error_description": "redirect_uri is missing or not registered for this client.",
                }
            )
        state = params.get("state")
        back: dict[str, str] = {"state": state} if state else {}
        if params.get("response_type") != "code":
            error = {
                "error": "unsupported_response_type",
                "error_description": "response_type must be 'code'.",
            }
            return AuthorizeResult(location=_with_params(redirect_uri, {**error, **back}))
        if not state:
            error = {"error": "invalid_request", "error_description": "state is required."}
            return AuthorizeResult(location=_with_params(redirect_uri, error))
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(client_id, redirect_uri, time.monotonic() + CODE_LIFETIME)
        return AuthorizeResult(location=_with_params(redirect_uri, {"code": code, "state": state}))

    # -- token --------------------------------------------------------------------------
    def token(self, form: Mapping[str, str], authorization: str | None = None) -> dict[str, Any]:
        """The token response for a ``POST /OAuth/Token`` form; raises :class:`TokenError`."""
        client_id, client_secret = self._client_credentials(form, authorization)
        if not client_id:
            raise TokenError("invalid_request", "client_id is required.")
        if not (
            hmac.compare_digest(client_id, self.client.client_id)
            and hmac.compare_digest(client_secret, self.client.client_secret)
        ):
            raise TokenError("invalid_client", "Client authentication failed.")
        grant_type = form.get("grant_type", "")
        with self._lock:
            if grant_type == "authorization_code":
                return self._exchange_code(form, client_id)
            if grant_type == "refresh_token":
                return self._rotate(form, client_id)
        if not grant_type:
            raise TokenError("invalid_request", "grant_type is required.")
        raise TokenError("unsupported_grant_type", f"grant_type '{grant_type}' is not supported.")

    @staticmethod
    def _client_credentials(form: Mapping[str, str], authorization: str | None) -> tuple[str, str]:
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
                client_id, _, client_secret = decoded.partition(":")
                return client_id, client_secret
            except (ValueError, UnicodeDecodeError):
                raise TokenError("invalid_client", "Malformed Basic credentials.") from None
        return form.get("client_id", ""), form.get("client_secret", "")

    def _exchange_code(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        code = form.get("code", "")
        grant = self._codes.get(code)
        if grant is None or grant.client_id != client_id:
            raise TokenError("invalid_grant", "The authorization code is invalid.")
        if grant.used:
            for token in grant.tokens:
                self._access.pop(token, None)
                self._refresh.pop(token, None)
            raise TokenError("invalid_grant", "The authorization code has already been used.")
        grant.used = True
        if time.monotonic() > grant.expires:
            raise TokenError("invalid_grant", "The authorization code has expired.")
        if form.get("redirect_uri", grant.redirect_uri) != grant.redirect_uri:
            raise TokenError("invalid_grant", "redirect_uri does not match the authorization request.")
        return self._issue(client_id, code, grant)

    def _rotate(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        record = self._refresh.get(token)
        if record is None or record.client_id != client_id:
            raise TokenError("invalid_grant", "The refresh token is invalid.")
        if record.used:
            raise TokenError("invalid_grant", "The refresh token has already been used.")
        record.used = True
        if time.monotonic() > record.expires:
            raise TokenError("invalid_grant", "The refresh token has expired.")
        return self._issue(client_id, record.code, self._codes.get(record.code))

    def _issue(self, client_id: str, code: str, grant: _Code | None) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.monotonic()
        self._access[access] = now + self.token_lifetime
        self._refresh[refresh] = _Refresh(client_id, now + REFRESH_LIFETIME, code)
        if grant is not None:
            grant.tokens.update((access, refresh))
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": max(0, math.ceil(self.token_lifetime)),
            "refresh_token": refresh,
        }

    # -- resource server ----------------------------------------------------------------
    def valid_bearer(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries a live access token."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        token = authorization[7:].strip()
        with self._lock:
            expires = self._access.get(token)
            return expires is not None and time.monotonic() < expires

    def expire_access_tokens(self) -> int:
        """Make every access token expire now (the ``expire_tokens`` fault); refresh tokens live on."""
        with self._lock:
            count = len(self._access)
            self._access.clear()
            return count


# -- HTTP -------------------------------------------------------------------------------------
def _sandbox(request: Request) -> Any:
    return request.app.state.sandbox


async def authorize_endpoint(request: Request) -> Response:
    """``GET /OAuth/Authorize``: auto-approve and redirect, or 400 when it may not redirect."""
    state = _sandbox(request)
    result = state.auth.authorize(request.query_params)
    response: Response
    if result.location is not None:
        response = RedirectResponse(result.location, status_code=302)
    else:
        response = JSONResponse(result.error, status_code=400)
    state.log.record(request.method, request.url.path, _redacted_query(request), response.status_code)
    return response


async def token_endpoint(request: Request) -> Response:
    """``POST /OAuth/Token`` (form fields, or HTTP Basic client authentication)."""
    state = _sandbox(request)
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    try:
        body = state.auth.token(form, request.headers.get("authorization"))
        response = JSONResponse(body, headers=headers)
    except TokenError as error:
        response = JSONResponse(error.body(), status_code=400, headers=headers)
    state.log.record(request.method, request.url.path, "", response.status_code, form.get("grant_type", ""))
    return response


def _redacted_query(request: Request) -> str:
    """The authorize query without anything secret-like (state can be an anti-forgery token)."""
    safe = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k in ("response_type", "client_id", "redirect_uri")
    ]
    return urlencode(safe)


def oauth_routes() -> list[BaseRoute]:
    return [
        Route("/OAuth/Authorize", authorize_endpoint, methods=["GET"]),
        Route("/OAuth/Token", token_endpoint, methods=["POST"]),
    ]
