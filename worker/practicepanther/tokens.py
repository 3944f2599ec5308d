"""The OAuth tokens of one connection, kept in the state backend, encrypted at rest when asked.

PracticePanther's refresh token is single-use and rotated on every refresh, so the stored copy is
the only one that works: it lives in the shared state backend (not in a process) so every worker
process and host uses the same one. With ``PPW_TOKEN_ENCRYPTION_KEY`` set the stored value is a
Fernet token (AES-128-CBC + HMAC-SHA256): someone who can read Redis or the SQLite file but not
the worker's environment learns nothing. Several comma-separated keys rotate keys: the first
encrypts, all of them decrypt. Tokens never appear in logs, reprs or exceptions (``SecretStr``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, Field, SecretStr, field_serializer

from worker.errors import PpwError
from worker.state.base import StateStore, key

__all__ = ["USER_FIELDS", "TokenSet", "TokenStore", "TokenStoreError", "generate_key", "user_label"]

#: What is kept of ``/users/me`` to say who a connection acts as.
USER_FIELDS = ("id", "display_name", "first_name", "last_name", "email")

_FORMAT_PLAIN = "plain"
_FORMAT_FERNET = "fernet"


def _now() -> datetime:
    return datetime.now(UTC)


class TokenSet(BaseModel):
    """What the token endpoint gave us, plus when, and whether the connection is dead."""

    access_token: SecretStr
    refresh_token: SecretStr
    expires_at: datetime
    obtained_at: datetime = Field(default_factory=_now)
    refresh_obtained_at: datetime = Field(default_factory=_now)
    needs_reauth: bool = False
    reauth_reason: str | None = None
    user: dict[str, Any] | None = None

    @field_serializer("access_token", "refresh_token", when_used="json")
    def _reveal(self, value: SecretStr) -> str:
        """Only the token store serialises a TokenSet to JSON, to persist it."""
        return value.get_secret_value()

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        """Whether the access token is expired or will be within ``seconds``."""
        remaining = (self.expires_at - (now or _now())).total_seconds()
        return remaining <= seconds

    @property
    def refresh_age_seconds(self) -> float:
        """How old the refresh token is (PracticePanther lets it live 60 days unless used)."""
        return (_now() - self.refresh_obtained_at).total_seconds()


def user_label(user: dict[str, Any] | None) -> str | None:
    """``Jane Doe <jane@firm.example>`` from what ``/users/me`` said (any part may be missing)."""
    if not user:
        return None
    name = user.get("display_name") or " ".join(
        str(user[k]) for k in ("first_name", "last_name") if user.get(k)
    )
    email = user.get("email")
    if name and email:
        return f"{name} <{email}>"
    return str(name or email) if (name or email) else None


class TokenStoreError(PpwError, RuntimeError):
    """The stored tokens cannot be read (wrong or missing encryption key, corrupt value)."""


def generate_key() -> str:
    """A new random key for ``PPW_TOKEN_ENCRYPTION_KEY``."""
    return Fernet.generate_key().decode()


def _cipher(encryption_key: str | None) -> MultiFernet | None:
    if not encryption_key:
        return None
    keys = [part.strip() for part in encryption_key.split(",") if part.strip()]
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise TokenStoreError(
            "PPW_TOKEN_ENCRYPTION_KEY is not a valid Fernet key (32 url-safe base64 bytes); "
            "make one with `ppw auth generate-key`"
        ) from exc


class TokenStore:
    """Load, save and forget one connection's :class:`TokenSet` in a :class:`StateStore`.

    Parameters
    ----------
    store:
        The shared state backend.
    connection:
        Connection id; the tokens live under ``ppw:<connection>:oauth:tokens``.
    encryption_key:
        ``PPW_TOKEN_ENCRYPTION_KEY``'s value (one Fernet key, or several comma-separated, newest
        first), or None to store plain JSON. A plain value stored earlier is still read and is
        encrypted by the next save.
    """

    def __init__(self, store: StateStore, connection: str, encryption_key: str | None) -> None:
        self.store = store
        self.connection = connection
        self.key = key(connection, "oauth", "tokens")
        self._cipher = _cipher(encryption_key)

    def __repr__(self) -> str:
        encrypted = "encrypted" if self._cipher else "plain"
        return f"TokenStore(connection={self.connection!r}, {encrypted})"

    def load(self) -> TokenSet | None:
        """The stored tokens, or None when this connection never logged in (or logged out)."""
        raw = self.store.get(self.key)
        if raw is None:
            return None
        tokens = TokenSet.model_validate_json(self._decode(raw))
        self._export(tokens)
        return tokens

    def save(self, tokens: TokenSet) -> None:
        """Persist ``tokens``; the caller uses a rotated refresh token only after this returns."""
        self.store.set(self.key, self._encode(tokens.model_dump_json()))
        self._export(tokens)

    def _export(self, tokens: TokenSet) -> None:
        """``ppw_token_expiry_timestamp_seconds`` and ``ppw_token_reauth_required``, on every read
        and write: each process that uses the tokens (API calls, polls, ``/readyz``) keeps them current."""
        from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

        metrics.TOKEN_EXPIRY.labels(self.connection).set(tokens.expires_at.timestamp())
        metrics.TOKEN_REAUTH_REQUIRED.labels(self.connection).set(1 if tokens.needs_reauth else 0)

    def clear(self) -> bool:
        """Forget the tokens; True when there were any."""
        return self.store.delete(self.key) > 0

    def mark_reauth(self, reason: str) -> TokenSet | None:
        """Record that the connection needs ``ppw auth login`` again (shown by status, seen by polls)."""
        tokens = self.load()
        if tokens is None:
            return None
        marked = tokens.model_copy(update={"needs_reauth": True, "reauth_reason": reason})
        self.save(marked)
        return marked

    def _encode(self, payload: str) -> str:
        if self._cipher is None:
            return json.dumps({"format": _FORMAT_PLAIN, "tokens": json.loads(payload)})
        data = self._cipher.encrypt(payload.encode()).decode()
        return json.dumps({"format": _FORMAT_FERNET, "data": data})

    def _decode(self, raw: str) -> str:
        try:
            envelope = json.loads(raw)
            kind = envelope["format"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenStoreError(f"stored tokens under {self.key} are not readable") from exc
        if kind == _FORMAT_PLAIN:
            return json.dumps(envelope["tokens"])
        if kind != _FORMAT_FERNET:
            raise TokenStoreError(f"stored tokens under {self.key} have unknown format {kind!r}")
        if self._cipher is None:
            raise TokenStoreError(
                "the stored tokens are encrypted; set PPW_TOKEN_ENCRYPTION_KEY to the key they were "
                "saved with (or run `ppw auth logout` and log in again)"
            )
        try:
            return self._cipher.decrypt(envelope["data"].encode()).decode()
        except InvalidToken as exc:
            raise TokenStoreError(
                "PPW_TOKEN_ENCRYPTION_KEY does not decrypt the stored tokens; was the key changed? "
                "Put the old key after the new one (comma-separated) or log in again"
            ) from exc
