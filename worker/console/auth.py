"""Who may use the console: users from the settings, argon2 password hashes, login rate limiting.

Users are configured, not stored: ``PPW_CONSOLE_USERS__ALICE=operator:$argon2id$...`` (name →
``role:hash``, the hash from ``ppw console hash-password``). A ``viewer`` sees every page; an
``operator`` also replays, releases, discards and cancels. There is no sign-up, no password reset
and no user editing in the console: changing a user is changing the deployment's environment.

Or an authenticating reverse proxy (oauth2-proxy, a load balancer with SSO) signs users in: with
``PPW_CONSOLE_TRUSTED_HEADER`` set, a request whose *peer* address (the socket's, never
``X-Forwarded-For``) is in ``PPW_CONSOLE_TRUSTED_PROXIES`` and carries the header is that user, with
the role from ``PPW_CONSOLE_PROXY_ROLES__<NAME>`` or ``PPW_CONSOLE_PROXY_DEFAULT_ROLE`` (``none``:
unknown users are refused). See :class:`ProxyAuth`.
"""

from __future__ import annotations

import hashlib
import ipaddress
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
    #: ``password`` (signed in with the login form) or ``proxy`` (named by the trusted proxy)
    via: str = "password"

    @property
    def can_act(self) -> bool:
        """Operators replay, release, discard and cancel; viewers only look."""
        return self.role == "operator"

    @property
    def fingerprint(self) -> str:
        """Changes when the password (or role) changes, so older sessions stop working."""
        seed = f"{self.role}\x1f{self.password_hash}"
        if self.via != "password":
            seed += f"\x1f{self.via}"
        return hashlib.sha256(seed.encode()).hexdigest()[:16]


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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: the proxy role that refuses users with no ``PPW_CONSOLE_PROXY_ROLES__<NAME>`` line
NO_ROLE = "none"
#: longest user name taken from the trusted header
MAX_NAME = 256


@dataclass(frozen=True)
class ProxyAuth:
    """Sign-in by a trusted header from an authenticating proxy (see the module docstring)."""

    header: str
    proxies: tuple[Network, ...]
    roles: dict[str, Role]
    default_role: Role | None

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` (the socket's client address) is one of the trusted proxies."""
        return in_networks(peer, self.proxies)

    def user(self, name: str) -> User | None:
        """The user the proxy names, with their role; None when unknown and the default is none."""
        who = name.strip().lower()
        role = self.roles.get(who, self.default_role)
        if not who or role is None:
            return None
        return User(name=who, role=role, password_hash="", via="proxy")


def in_networks(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def parse_networks(values: list[str], setting: str) -> tuple[Network, ...]:
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConsoleConfigError(f"{setting}: {value!r} is not an IP address or CIDR") from None
    return tuple(networks)


def parse_proxy(settings: Settings) -> ProxyAuth | None:
    """The trusted-header sign-in, or None when ``PPW_CONSOLE_TRUSTED_HEADER`` is empty; raises
    :class:`ConsoleConfigError` when it cannot be safe (no trusted proxy, a bad address or role)."""
    header = settings.console_trusted_header.strip()
    if not header:
        return None
    if not header.replace("-", "").replace("_", "").isalnum():
        raise ConsoleConfigError(f"PPW_CONSOLE_TRUSTED_HEADER: {header!r} is not a header name")
    proxies = parse_networks(settings.console_trusted_proxies, "PPW_CONSOLE_TRUSTED_PROXIES")
    if not proxies:
        raise ConsoleConfigError(
            "PPW_CONSOLE_TRUSTED_HEADER is set but PPW_CONSOLE_TRUSTED_PROXIES is empty: name the "
            "proxy's address(es), or anyone reaching the console could claim any user"
        )
    if any(net.prefixlen == 0 for net in proxies):
        raise ConsoleConfigError(
            "PPW_CONSOLE_TRUSTED_PROXIES must name the proxy, not every address (0.0.0.0/0, ::/0)"
        )
    roles: dict[str, Role] = {}
    for name, role in settings.console_proxy_roles.items():
        if role not in ROLES:
            raise ConsoleConfigError(f"PPW_CONSOLE_PROXY_ROLES__{name.upper()} must be viewer or operator")
        roles[name.lower()] = role
    default = settings.console_proxy_default_role.strip().lower()
    if default not in (*ROLES, NO_ROLE):
        raise ConsoleConfigError("PPW_CONSOLE_PROXY_DEFAULT_ROLE must be viewer, operator or none")
    default_role: Role | None = next((r for r in ROLES if r == default), None)
    return ProxyAuth(header=header.lower(), proxies=proxies, roles=roles, default_role=default_role)


def check_config(settings: Settings) -> None:
    """Refuse a console that cannot be safe: no signing secret, a short one, bad user lines, or a
    trusted header without trusted proxies."""
    secret = settings.console_secret.get_secret_value() if settings.console_secret else ""
    if len(secret) < 32:
        raise ConsoleConfigError(
            "PPW_CONSOLE_SECRET must be set to at least 32 characters (`openssl rand -hex 32`): "
            "it signs the console's session cookies"
        )
    proxy = parse_proxy(settings)
    if not parse_users(settings) and proxy is None:
        raise ConsoleConfigError(
            "no console user: add PPW_CONSOLE_USERS__<NAME>=<viewer|operator>:<hash> "
            "(the hash from `ppw console hash-password`), or sign in through a proxy "
            "(PPW_CONSOLE_TRUSTED_HEADER)"
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
