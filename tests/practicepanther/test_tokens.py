"""Token storage on both backends: round trip, encryption at rest, key rotation, no leaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.practicepanther.tokens import TokenSet, TokenStore, TokenStoreError, generate_key
from worker.state import StateStore

ACCESS = "access-SECRET-1234567890"
REFRESH = "refresh-SECRET-0987654321"


def _tokens() -> TokenSet:
    return TokenSet(
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        user={"display_name": "Jane"},
    )


def test_round_trip_plain(store: StateStore, connection_id: str) -> None:
    tokens = TokenStore(store, connection_id, None)
    assert tokens.load() is None
    tokens.save(_tokens())
    loaded = tokens.load()
    assert loaded is not None
    assert loaded.access_token.get_secret_value() == ACCESS
    assert loaded.refresh_token.get_secret_value() == REFRESH
    assert loaded.user == {"display_name": "Jane"}
    assert tokens.clear() is True
    assert tokens.load() is None
    assert tokens.clear() is False


def test_encrypted_at_rest(store: StateStore, connection_id: str) -> None:
    tokens = TokenStore(store, connection_id, generate_key())
    tokens.save(_tokens())
    raw = store.get(tokens.key)
    assert raw is not None
    assert ACCESS not in raw and REFRESH not in raw and "Jane" not in raw
    loaded = tokens.load()
    assert loaded is not None and loaded.refresh_token.get_secret_value() == REFRESH


def test_wrong_or_missing_key_is_explained(store: StateStore, connection_id: str) -> None:
    TokenStore(store, connection_id, generate_key()).save(_tokens())
    with pytest.raises(TokenStoreError, match="does not decrypt"):
        TokenStore(store, connection_id, generate_key()).load()
    with pytest.raises(TokenStoreError, match="set PPW_TOKEN_ENCRYPTION_KEY"):
        TokenStore(store, connection_id, None).load()


def test_key_rotation_and_plain_migration(store: StateStore, connection_id: str) -> None:
    old, new = generate_key(), generate_key()
    TokenStore(store, connection_id, None).save(_tokens())  # stored before encryption was enabled
    migrating = TokenStore(store, connection_id, old)
    loaded = migrating.load()
    assert loaded is not None
    migrating.save(loaded)
    assert REFRESH not in (store.get(migrating.key) or "")
    rotated = TokenStore(store, connection_id, f"{new},{old}")
    assert rotated.load() is not None
    rotated.save(_tokens())
    assert TokenStore(store, connection_id, new).load() is not None


def test_invalid_key_is_explained(store: StateStore, connection_id: str) -> None:
    with pytest.raises(TokenStoreError, match="generate-key"):
        TokenStore(store, connection_id, "not-a-fernet-key")


def test_mark_reauth(store: StateStore, connection_id: str) -> None:
    tokens = TokenStore(store, connection_id, None)
    assert tokens.mark_reauth("gone") is None
    tokens.save(_tokens())
    tokens.mark_reauth("invalid_grant")
    loaded = tokens.load()
    assert loaded is not None and loaded.needs_reauth and loaded.reauth_reason == "invalid_grant"


def test_no_token_in_repr_or_str() -> None:
    tokens = _tokens()
    for text in (repr(tokens), str(tokens), tokens.model_dump().__repr__()):
        assert ACCESS not in text and REFRESH not in text
