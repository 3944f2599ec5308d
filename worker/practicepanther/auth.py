"""OAuth 2 with PracticePanther: the login flow, and access tokens refreshed exactly once at a time.

PracticePanther's refresh tokens are single use and rotated on every refresh. If two processes
refresh with the same refresh token, the second gets ``invalid_grant`` and the integration is
locked out until a human logs in again. So a refresh happens:

* under a lease in the shared state backend (``ppw:<connection>:oauth:refresh``), so one process
  at a time refreshes, and under a thread lock, so one thread per process asks for the lease;
* with the refresh token read from the store *after* the lease is held, never from memory;
* and the new tokens are saved *before* anyone uses them.

Everyone else waits and then uses what the refresher stored. ``invalid_grant``/``invalid_client``
from the token endpoint marks the connection as needing re-authorisation in the store: ``ppw auth
status`` shows it, polling pauses on it, and nothing retries it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from worker.practicepanther import resources
from worker.practicepanther.callback import Callback, CallbackListener, page
from worker.practicepanther.errors import (
    AuthError,
    LoginError,
    PracticePantherError,
    RateLimited,
    ReauthorizationRequired,
    ServerError,
    TransportError,
)
from worker.practicepanther.tokens import USER_FIELDS, TokenSet, TokenStore, user_label
from worker.settings import Settings
from worker.state.base import StateError, StateStore, key
from worker.state.locks import SHORT_TTL, Lease, keep_alive

__all__ = ["OAuthClient", "login"]

log = logging.getLogger(__name__)

#: Used when the token endpoint omits ``expires_in`` (PracticePanther documents 24 h).
DEFAULT_EXPIRES_IN = 86400.0
#: Refresh this long before expiry (or a tenth of the token's lifetime, if shorter).
REFRESH_MARGIN = 300.0
#: Errors from the token endpoint that no retry can fix.
PERMANENT_GRANT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
#: Attempts to store rotated tokens before giving up (the state backend may blip).
SAVE_ATTEMPTS = 5
_POLL = 0.05


def _now() -> datetime:
    return datetime.now(UTC)


def _security() -> dict[str, Any]:
    definition: dict[str, Any] = resources.swagger()["securityDefinitions"]["oauth2"]
    return definition


class OAuthClient:
    """Tokens for one connection: the authorization-code exchange and serialized refreshes.

    Parameters
    ----------
    settings:
        Base URL, client id and secret, redirect URI, timeout and encryption key.
    store:
        The state backend shared by every process of the deployment.
    connection:
        Connection id (defaults to ``settings.connection_id``).
    http:
        An ``httpx.Client`` to reuse; one is made (and closed by :meth:`close`) otherwise.
    """

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        connection: str | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.settings = settings
        self.connection = connection or settings.connection_id
        self.store = store
        key_setting = settings.token_encryption_key
        self.tokens = TokenStore(
            store, self.connection, key_setting.get_secret_value() if key_setting else None
        )
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=settings.http_timeout)
        self._base = settings.pp_base_url.rstrip("/")
        self._token_url = self._base + _security()["tokenUrl"]
        self._authorize_url = self._base + _security()["authorizationUrl"]
        self._lease_key = key(self.connection, "oauth", "refresh")
        # A short lease, renewed while the refresh runs: a process killed mid-refresh blocks the
        # others for SHORT_TTL at most. A live refresh may take up to three HTTP timeouts.
        self._lease_ttl = SHORT_TTL
        self._refresh_limit = max(60.0, 3 * settings.http_timeout)
        self._thread_lock = threading.Lock()
        #: Token-endpoint calls this object made; a test and the metrics can read it.
        self.token_requests = 0

    def __repr__(self) -> str:
        return f"OAuthClient(connection={self.connection!r}, base={self._base!r})"

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    # the authorization-code flow --------------------------------------------------------------
    def authorize_url(self, state: str) -> str:
        """Where to send the user's browser; ``state`` comes back on the redirect, unchanged."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.pp_client_id,
                "redirect_uri": self.settings.pp_redirect_uri,
                "state": state,
            }
        )
        return f"{self._authorize_url}?{query}"

    def exchange_code(self, code: str) -> TokenSet:
        """Trade the one-time code from the redirect for tokens, and store them."""
        try:
            payload = self._grant({"grant_type": "authorization_code", "code": code})
        except ReauthorizationRequired as exc:
            raise LoginError(
                f"PracticePanther refused the authorization code ({exc.message}); it may have expired "
                "or been used already: run `ppw auth login` again",
                method="POST",
                path=exc.path,
                status=exc.status,
            ) from None
        tokens = self._token_set(payload, previous=None)
        self.tokens.save(tokens)
        return tokens

    # access tokens --------------------------------------------------------------------------
    def access_token(self) -> str:
        """A valid access token, refreshed first when it is expired or about to be."""
        tokens = self._usable()
        if not tokens.expires_within(_margin(tokens)):
            return tokens.access_token.get_secret_value()
        return self._refresh(seen=tokens.access_token.get_secret_value())

    def force_refresh(self, seen_token: str) -> str:
        """PracticePanther answered 401 to ``seen_token``: refresh, unless someone already did."""
        return self._refresh(seen=seen_token, force=True)

    def _usable(self) -> TokenSet:
        tokens = self.tokens.load()
        if tokens is None:
            raise AuthError(
                f"connection {self.connection!r} is not logged in to PracticePanther: run `ppw auth login`"
            )
        if tokens.needs_reauth:
            raise ReauthorizationRequired(
                f"connection {self.connection!r} needs `ppw auth login` again: {tokens.reauth_reason}"
            )
        return tokens

    def _refresh(self, *, seen: str, force: bool = False) -> str:
        """Refresh once across threads and processes; callers that lose the race reuse the result."""
        with self._thread_lock:
            deadline = time.monotonic() + self._refresh_limit + self._lease_ttl + 5
            owner = uuid.uuid4().hex
            while True:
                fresh = self._refreshed_by_someone(seen, force)
                if fresh is not None:
                    return fresh
                lease = Lease(self.store, self._lease_key, self._lease_ttl, owner=owner)
                if lease.acquire():
                    try:
                        with keep_alive(lease, until=time.monotonic() + self._refresh_limit):
                            fresh = self._refreshed_by_someone(seen, force)
                            if fresh is not None:
                                return fresh
                            return self._refresh_holding_lease()
                    finally:
                        lease.release()
                if time.monotonic() > deadline:
                    raise AuthError(
                        "timed out waiting for another process to refresh the PracticePanther token"
                    )
                time.sleep(_POLL)

    def _refreshed_by_someone(self, seen: str, force: bool) -> str | None:
        """The stored access token when it differs from ``seen`` and is still good, else None."""
        tokens = self._usable()
        current = tokens.access_token.get_secret_value()
        if current != seen and not tokens.expires_within(0 if force else _margin(tokens)):
            return current
        return None

    def _refresh_holding_lease(self) -> str:
        tokens = self._usable()
        log.info("refreshing the PracticePanther access token for connection %s", self.connection)
        try:
            payload = self._grant(
                {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token.get_secret_value()}
            )
        except ReauthorizationRequired as exc:
            self.tokens.mark_reauth(f"the token endpoint answered {exc.message}")
            log.error(
                "PracticePanther refused the refresh token for connection %s (%s); "
                "run `ppw auth login` to reconnect",
                self.connection,
                exc.message,
            )
            raise
        new = self._token_set(payload, previous=tokens)
        self._persist(new)  # before anyone uses the new token
        return new.access_token.get_secret_value()

    def _persist(self, tokens: TokenSet) -> None:
        """Save rotated tokens, trying hard: the old refresh token is already spent, so tokens
        lost here cost a manual ``ppw auth login``."""
        for attempt in range(SAVE_ATTEMPTS):
            try:
                self.tokens.save(tokens)
                return
            except StateError:
                if attempt == SAVE_ATTEMPTS - 1:
                    log.critical(
                        "could not store the rotated PracticePanther tokens for connection %s; "
                        "`ppw auth login` will be needed",
                        self.connection,
                    )
                    raise
                time.sleep(0.2 * 2**attempt)

    def reauthorization_needed(self) -> str | None:
        """Why the connection needs ``ppw auth login`` (never logged in, or refused), else None.

        The poller asks this before polling and pauses instead of failing every poll.
        """
        tokens = self.tokens.load()
        if tokens is None:
            return f"connection {self.connection!r} is not logged in"
        if not tokens.needs_reauth:
            return None
        return tokens.reauth_reason or "re-authorisation needed"

    # the token endpoint ----------------------------------------------------------------------
    def _grant(self, fields: dict[str, str]) -> dict[str, Any]:
        path = urlsplit(self._token_url).path
        form = {
            **fields,
            "client_id": self.settings.pp_client_id,
            "client_secret": self.settings.pp_client_secret.get_secret_value(),
            "redirect_uri": self.settings.pp_redirect_uri,
        }
        self.token_requests += 1
        try:
            response = self.http.post(
                self._token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self.settings.http_timeout,
            )
        except httpx.TransportError as exc:
            sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            raise TransportError(
                f"token endpoint unreachable ({type(exc).__name__})",
                request_sent=sent,
                method="POST",
                path=path,
            ) from None
        if response.is_success:
            data = _json(response)
            if not isinstance(data, dict) or not data.get("access_token"):
                raise AuthError("token endpoint answered without an access_token", method="POST", path=path)
            return data
        error = _oauth_error(response)
        where = {"method": "POST", "path": path, "status": response.status_code}
        if error in PERMANENT_GRANT_ERRORS:
            raise ReauthorizationRequired(error, **where)
        if response.status_code == 429:
            raise RateLimited("token endpoint rate limited", **where)
        if response.status_code >= 500:
            raise ServerError("token endpoint failed", **where)
        raise AuthError(f"token endpoint refused the request ({error or 'no error code'})", **where)

    def _token_set(self, payload: dict[str, Any], previous: TokenSet | None) -> TokenSet:
        now = _now()
        expires_in = payload.get("expires_in")
        try:
            lifetime = float(expires_in) if expires_in is not None else DEFAULT_EXPIRES_IN
        except (TypeError, ValueError):
            lifetime = DEFAULT_EXPIRES_IN
        rotated = payload.get("refresh_token")
        if not rotated and previous is None:
            raise AuthError("token endpoint answered without a refresh_token", method="POST")
        return TokenSet(
            access_token=payload["access_token"],
            refresh_token=rotated or previous.refresh_token,  # type: ignore[union-attr]
            expires_at=now + timedelta(seconds=lifetime),
            obtained_at=now,
            refresh_obtained_at=now if rotated or previous is None else previous.refresh_obtained_at,
            user=previous.user if previous else None,
        )


def _margin(tokens: TokenSet) -> float:
    lifetime = (tokens.expires_at - tokens.obtained_at).total_seconds()
    return min(REFRESH_MARGIN, max(lifetime, 0) / 10)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _oauth_error(response: httpx.Response) -> str | None:
    data = _json(response)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return None


# the login flow ------------------------------------------------------------------------------
def login(
    settings: Settings,
    store: StateStore,
    *,
    open_browser: bool,
    timeout: float,
    on_url: Callable[[str], None],
    connection: str | None = None,
    http: httpx.Client | None = None,
) -> TokenSet:
    """Run the authorization-code flow end to end and store the tokens.

    Listens on the redirect URI's host and port *before* announcing the URL (so a script that
    follows it at once finds the listener), calls ``on_url`` with the authorize URL, opens it in a
    browser when ``open_browser``, and waits up to ``timeout`` seconds for the redirect. A
    redirect whose ``state`` is not the one generated here is refused, in the browser and with a
    :class:`LoginError`: it belongs to another login attempt, or to someone trying to connect this
    worker to *their* PracticePanther account.
    """
    redirect = urlsplit(settings.pp_redirect_uri)
    if redirect.scheme != "http" or not redirect.hostname:
        raise LoginError(
            f"PPW_PP_REDIRECT_URI must be a local http:// address for `ppw auth login` to listen on; "
            f"got {settings.pp_redirect_uri!r}"
        )
    oauth = OAuthClient(settings, store, connection=connection, http=http)
    state = secrets.token_urlsafe(32)
    try:
        with CallbackListener(redirect.hostname, redirect.port or 80, redirect.path) as listener:
            url = oauth.authorize_url(state)
            on_url(url)
            if open_browser:
                webbrowser.open(url)
            callback = listener.wait(timeout)
            try:
                tokens = _complete(oauth, callback, state)
            except PracticePantherError as exc:
                listener.respond(
                    400 if isinstance(exc, LoginError) else 502, page("Login refused", exc.message)
                )
                raise
            label = user_label(tokens.user)
            who = f" as {label}" if label else ""
            listener.respond(
                200, page("Connected", f"ppw is connected to PracticePanther{who}. Close this tab.")
            )
            return tokens
    finally:
        oauth.close()


def _complete(oauth: OAuthClient, callback: Callback, expected_state: str) -> TokenSet:
    if not callback.state or not secrets.compare_digest(callback.state, expected_state):
        raise LoginError(
            "the login was refused: the redirect's state does not match the one this `ppw auth login` "
            "generated. It came from an older or different login link (or someone else's); nothing was "
            "stored. Run `ppw auth login` again and use the URL it prints."
        )
    if callback.error:
        detail = f": {callback.error_description}" if callback.error_description else ""
        raise LoginError(f"PracticePanther did not authorise the connection ({callback.error}{detail})")
    if not callback.code:
        raise LoginError("the redirect carried no authorization code")
    tokens = oauth.exchange_code(callback.code)
    user = _fetch_user(oauth, tokens)
    if user is not None:
        tokens = tokens.model_copy(update={"user": user})
        oauth.tokens.save(tokens)
    return tokens


def _fetch_user(oauth: OAuthClient, tokens: TokenSet) -> dict[str, Any] | None:
    """Who logged in, for ``ppw auth status``; best effort, the tokens are what matters."""
    try:
        response = oauth.http.get(
            oauth.settings.pp_base_url.rstrip("/") + resources.API_PREFIX + "/users/me",
            headers={"Authorization": f"Bearer {tokens.access_token.get_secret_value()}"},
            timeout=oauth.settings.http_timeout,
        )
    except httpx.HTTPError:
        return None
    data = _json(response) if response.is_success else None
    if not isinstance(data, dict):
        return None
    return {k: data[k] for k in USER_FIELDS if data.get(k) is not None}
