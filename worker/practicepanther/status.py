"""Is this worker connected to PracticePanther, as whom, and for how long? (``ppw auth status``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

import httpx

from worker.practicepanther.client import PracticePantherClient
from worker.practicepanther.errors import AuthError, PracticePantherError
from worker.practicepanther.tokens import USER_FIELDS, TokenSet, TokenStoreError, user_label
from worker.settings import Settings
from worker.state.base import StateError, StateStore

__all__ = ["ConnectionStatus", "Health", "connection_status"]

#: PracticePanther refresh tokens live 60 days unless used.
REFRESH_TOKEN_LIFETIME = timedelta(days=60)


class Health(IntEnum):
    """The overall verdict, which is also ``ppw auth status``'s exit code."""

    CONNECTED = 0
    NOT_CONNECTED = 1  # never logged in, logged out, or needs `ppw auth login` again
    UNKNOWN = 2  # PracticePanther or the state backend could not be asked


@dataclass
class ConnectionStatus:
    connection: str
    health: Health
    summary: str
    user: dict[str, Any] | None = None
    expires_at: datetime | None = None
    refresh_obtained_at: datetime | None = None
    needs_reauth: bool = False
    reauth_reason: str | None = None
    encrypted: bool = False
    details: list[str] = field(default_factory=list)

    @property
    def refresh_age(self) -> timedelta | None:
        if self.refresh_obtained_at is None:
            return None
        return datetime.now(UTC) - self.refresh_obtained_at

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``ppw auth status --json``); holds no token."""
        age = self.refresh_age
        return {
            "connection": self.connection,
            "connected": self.health is Health.CONNECTED,
            "health": self.health.name.lower(),
            "summary": self.summary,
            "user": self.user,
            "user_label": user_label(self.user),
            "access_token_expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "refresh_token_age_seconds": round(age.total_seconds()) if age is not None else None,
            "needs_reauth": self.needs_reauth,
            "reauth_reason": self.reauth_reason,
            "encrypted_at_rest": self.encrypted,
        }


def connection_status(
    settings: Settings,
    store: StateStore,
    *,
    connection: str | None = None,
    check: bool = True,
    http: httpx.Client | None = None,
) -> ConnectionStatus:
    """What is stored for the connection and, with ``check``, whether PracticePanther accepts it.

    Checking calls ``/api/v2/users/me``, which refreshes the access token first if it is due.
    """
    client = PracticePantherClient(settings, store, connection=connection, http=http)
    try:
        return _status(client, encrypted=settings.token_encryption_key is not None, check=check)
    finally:
        client.close()


def _status(client: PracticePantherClient, *, encrypted: bool, check: bool) -> ConnectionStatus:
    name = client.connection
    try:
        tokens = client.oauth.tokens.load()
    except (TokenStoreError, StateError) as exc:
        return ConnectionStatus(
            name, Health.UNKNOWN, f"cannot read the stored tokens: {exc}", encrypted=encrypted
        )
    if tokens is None:
        return ConnectionStatus(
            name, Health.NOT_CONNECTED, "not logged in: run `ppw auth login`", encrypted=encrypted
        )
    status = ConnectionStatus(name, Health.CONNECTED, "tokens stored", encrypted=encrypted)
    _describe(status, tokens)
    if tokens.needs_reauth:
        status.health = Health.NOT_CONNECTED
        status.summary = f"needs `ppw auth login` again: {tokens.reauth_reason}"
        return status
    if not check:
        return status
    try:
        status.user = _who(client.me())
        status.summary = "connected"
    except AuthError as exc:
        status.health = Health.NOT_CONNECTED
        status.summary = f"PracticePanther refused the connection: {exc.message}"
    except PracticePantherError as exc:
        status.health = Health.UNKNOWN
        status.summary = f"PracticePanther could not be reached: {exc}"
    latest = client.oauth.tokens.load()  # a check may have refreshed or marked the tokens
    if latest is not None:
        _describe(status, latest)
    return status


def _describe(status: ConnectionStatus, tokens: TokenSet) -> None:
    status.user = status.user or tokens.user
    status.expires_at = tokens.expires_at
    status.refresh_obtained_at = tokens.refresh_obtained_at
    status.needs_reauth = tokens.needs_reauth
    status.reauth_reason = tokens.reauth_reason
    age = status.refresh_age
    if age is not None and age > REFRESH_TOKEN_LIFETIME - timedelta(days=7):
        note = "the refresh token is close to PracticePanther's 60-day limit: run `ppw auth login`"
        if note not in status.details:
            status.details.append(note)


def _who(user: dict[str, Any]) -> dict[str, Any]:
    return {k: user[k] for k in USER_FIELDS if user.get(k) is not None}
