"""Who may use the console: users from the settings, argon2 password hashes, login rate limiting.

Users are configured, not stored: ``PPW_CONSOLE_USERS__ALICE=operator:$argon2id$...`` (name →
``role:hash``, the hash from ``ppw console hash-password``). A ``viewer`` sees every page; an
``operator`` also replays, releases, discards and cancels. There is no sign-up, no password reset
and no user editing in the console: changing a user is changing the deployment's environment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from worker.errors import PpwError
from worker.settings import Settings
from worker.state.base import StateStore, key

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")

#: Failed logins one address may make for one user name per window, and one user name from all.
FAILURES_PER_ADDRESS = 5
FAILURES_PER_USER = 20
WINDOW = 60.0

_hasher = PasswordHasher()
#: Verified when the user name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY = _hasher.hash("not a password of anyone")


class ConsoleConfigError(PpwError, ValueError):
    """The console's settings cannot work (no secret, a malformed user line)."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str

    @property
    def can_act(self) -> bool:
        """Operators replay, release, discard and cancel; viewers only look."""
        return self.role == "operator"

    @property
    def fingerprint(self) -> str:
        """Changes when the password (or role) changes, so older sessions stop working."""
        return hashlib.sha256(f"{self.role}\x1f{self.password_hash}".encode()).hexdigest()[:16]


def hash_password(password: str) -> str:
    """An argon2id hash for ``PPW_CONSOLE_USERS__<NAME>=<role>:<hash>``."""
    if len(password) < 12:
        raise ConsoleConfigError("a console password needs at least 12 characters")
    return _hasher.hash(password)


def parse_users(settings: Settings) -> dict[str, User]:
    """The configured users by lower-case name; raises :class:`ConsoleConfigError` for a bad line."""
    users: dict[str, User] = {}
    for name, raw in settings.console_users.items():
        role, sep, hashed = raw.get_secret_value().partition(":")
        if not sep or role not in ROLES:
            raise ConsoleConfigError(
                f"PPW_CONSOLE_USERS__{name.upper()} must be <role>:<argon2 hash> with role viewer or operator"
            )
        if not hashed.startswith("$argon2"):
            raise ConsoleConfigError(
                f"PPW_CONSOLE_USERS__{name.upper()}: the hash is not an argon2 hash "
                "(make one with `ppw console hash-password`)"
            )
        users[name.lower()] = User(name=name.lower(), role=role, password_hash=hashed)
    return users


def check_config(settings: Settings) -> None:
    """Refuse a console that cannot be safe: no signing secret, a short one, or bad user lines."""
    secret = settings.console_secret.get_secret_value() if settings.console_secret else ""
    if len(secret) < 32:
        raise ConsoleConfigError(
            "PPW_CONSOLE_SECRET must be set to at least 32 characters (`openssl rand -hex 32`): "
            "it signs the console's session cookies"
        )
    if not parse_users(settings):
        raise ConsoleConfigError(
            "no console user: add PPW_CONSOLE_USERS__<NAME>=<viewer|operator>:<hash> "
            "(the hash from `ppw console hash-password`)"
        )


def verify(users: dict[str, User], name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None (in about the same time either way)."""
    user = users.get(name.strip().lower())
    try:
        _hasher.verify(user.password_hash if user else _DUMMY, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


class LoginLimiter:
    """Counts failed logins in the state store (so replicas share them), per address and user name
    and per user name alone, in fixed windows of :data:`WINDOW` seconds."""

    def __init__(self, store: StateStore, connection: str) -> None:
        self.store = store
        self.connection = connection

    def _keys(self, address: str, name: str) -> list[str]:
        who = name.strip().lower()
        pair = hashlib.sha256(f"{address}\x1f{who}".encode()).hexdigest()[:24]
        user = hashlib.sha256(who.encode()).hexdigest()[:24]
        return [
            key(self.connection, "console-login", "pair", pair),
            key(self.connection, "console-login", "user", user),
        ]

    def blocked(self, address: str, name: str) -> bool:
        pair, user = self.store.get_many(self._keys(address, name))
        return int(pair or 0) >= FAILURES_PER_ADDRESS or int(user or 0) >= FAILURES_PER_USER

    def failed(self, address: str, name: str) -> None:
        self.store.incr_many(self._keys(address, name), ttl=WINDOW)
