"""Redis backend: the deployment default, shared by every scheduler and worker process.

Multi-key decisions (leases, counters with a time-to-live, write batches) run as Lua scripts so
that each one is a single atomic step on the server, whatever the number of processes. A batch
checks every key's type before its first write, so a batch either applies whole or not at all,
even when one of its writes would hit a key of the wrong type.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.client import NEVER_DECODE

from worker.state.base import Durability, StateError, StateStore, Turn, WriteBatch

# A lease: the key holds its owner and expires; the owner may renew it. Shared by the scripts below.
_CLAIM = """
local function claim(key, owner, px)
  local current = redis.call('GET', key)
  if not current then
    redis.call('SET', key, owner, 'PX', px)
    return true
  elseif current == owner then
    redis.call('PEXPIRE', key, px)
    return true
  end
  return false
end
"""

_ACQUIRE_LEASE = _CLAIM + "return claim(KEYS[1], ARGV[1], ARGV[2]) and 1 or 0"

_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: the n lease keys, then the keys to read; ARGV: n, then owner and ttl of each lease.
_ACQUIRE_LEASES_AND_GET = (
    _CLAIM
    + """
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  out[i] = claim(KEYS[i], ARGV[2 * i], ARGV[2 * i + 1]) and 1 or 0
end
if #KEYS > n then
  for _, value in ipairs(redis.call('MGET', unpack(KEYS, n + 1))) do table.insert(out, value) end
end
return out
"""
)

# KEYS: queue and lease of each turn; ARGV: member, score and ttl of each. Returns head, taken pairs.
_TAKE_TURNS = (
    _CLAIM
    + """
local out = {}
for i = 1, #KEYS / 2 do
  local queue, lease = KEYS[2 * i - 1], KEYS[2 * i]
  local member = ARGV[3 * i - 2]
  redis.call('ZADD', queue, ARGV[3 * i - 1], member)
  local first = redis.call('ZRANGE', queue, 0, 0)[1]
  table.insert(out, first)
  table.insert(out, (first == member and claim(lease, member, ARGV[3 * i])) and 1 or 0)
end
return out
"""
)

_INCR = """
local existed = redis.call('EXISTS', KEYS[1])
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# ops: [[op, key, ...args], ...]; key types are checked for every op before anything is written.
_BATCH = """
local ops = cjson.decode(ARGV[1])
local needs = {hset = 'hash', hsetb = 'hash', hdel = 'hash', zadd = 'zset', zrem = 'zset', release = 'string'}
local becomes = {set = 'string', delete = 'none', hset = 'hash', hsetb = 'hash', zadd = 'zset'}
local types = {}
for _, op in ipairs(ops) do
  local name, k = op[1], op[2]
  if name == 'delete' then
    for i = 2, #op do types[op[i]] = 'none' end
  else
    local t = types[k]
    if t == nil then t = redis.call('TYPE', k)['ok'] end
    local need = needs[name]
    if need ~= nil and t ~= 'none' and t ~= need then
      return redis.error_reply('WRONGTYPE batch ' .. name .. ' on a ' .. t .. ' key')
    end
    types[k] = becomes[name] or t
  end
end
for _, op in ipairs(ops) do
  local name, k = op[1], op[2]
  if name == 'set' then
    if op[4] ~= '' then
      redis.call('SET', k, op[3], 'PX', op[4])
    else
      redis.call('SET', k, op[3])
    end
  elseif name == 'delete' then
    for i = 2, #op do redis.call('DEL', op[i]) end
  elseif name == 'hset' then
    redis.call('HSET', k, unpack(op, 3))
  elseif name == 'hsetb' then
    -- binary values travel as ARGV (JSON cannot carry them): op[i + 1] is the ARGV index
    for i = 3, #op, 2 do redis.call('HSET', k, op[i], ARGV[op[i + 1]]) end
  elseif name == 'hdel' then
    redis.call('HDEL', k, unpack(op, 3))
  elseif name == 'zadd' then
    redis.call('ZADD', k, unpack(op, 3))
  elseif name == 'zrem' then
    redis.call('ZREM', k, unpack(op, 3))
  elseif name == 'release' then
    if redis.call('GET', k) == op[3] then redis.call('DEL', k) end
  end
end
return #ops
"""

_CHUNK = 1000  # arguments per Lua command, well under unpack()'s stack limit
#: Seconds a thread's connection may sit unused before it is checked for a close by the server.
_IDLE_CHECK = 0.5
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _millis(ttl: float | None) -> str:
    """Redis wants whole positive milliseconds; an empty string means "no expiry"."""
    if ttl is None:
        return ""
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    return str(max(1, math.ceil(ttl * 1000)))


def _score(value: float) -> str:
    if math.isnan(value):
        raise ValueError("a sorted-set score cannot be NaN")
    return repr(float(value))


def _drop_if_stale(client: redis.Redis) -> None:
    """Disconnect ``client``'s connection if the server closed it (or left data on it)."""
    connection = client.connection
    if connection is None:
        return
    try:
        stale = connection.can_read()
    except (redis.RedisError, OSError):
        stale = True
    if stale:
        connection.disconnect()  # the next command connects again


def redact_url(url: str) -> str:
    """The URL with any password replaced, for reprs and log lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{netloc}"))


class _RedisBatch(WriteBatch):
    def __init__(self) -> None:
        self.ops: list[list[Any]] = []
        #: binary values, passed as ARGV[2:] beside the JSON of the ops
        self.blobs: list[bytes] = []

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.ops.append(["set", key, value, _millis(ttl)])

    def delete(self, *keys: str) -> None:
        for start in range(0, len(keys), _CHUNK):
            self.ops.append(["delete", *keys[start : start + _CHUNK]])

    def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        items = list(mapping.items())
        for start in range(0, len(items), _CHUNK):  # Lua's unpack() has a stack limit
            flat = [item for pair in items[start : start + _CHUNK] for item in pair]
            self.ops.append(["hset", key, *flat])

    def hdel(self, key: str, *fields: str) -> None:
        for start in range(0, len(fields), _CHUNK):
            self.ops.append(["hdel", key, *fields[start : start + _CHUNK]])

    def hset_bytes(self, key: str, mapping: Mapping[str, bytes]) -> None:
        op: list[Any] = ["hsetb", key]
        for name, value in mapping.items():
            self.blobs.append(bytes(value))
            op += [name, len(self.blobs) + 1]  # ARGV[1] is the ops' JSON
        if len(op) > 2:
            self.ops.append(op)

    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        items = list(mapping.items())
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            self.ops.append(["zadd", key, *(i for member, score in chunk for i in (_score(score), member))])

    def zrem(self, key: str, *members: str) -> None:
        for start in range(0, len(members), _CHUNK):
            self.ops.append(["zrem", key, *members[start : start + _CHUNK]])

    def release_lease(self, key: str, owner: str) -> None:
        self.ops.append(["release", key, owner])


class RedisStore(StateStore):
    """State in Redis, through one connection pool shared by all threads of the process.

    Each thread talks over a connection of its own, taken from the pool once and kept (a
    single-connection client per thread): borrowing from the pool for every command, with its
    locks, cost twice the CPU of the command itself, and a run makes several.

    Parameters
    ----------
    url:
        ``redis://[:password@]host:port/db`` or ``rediss://`` for TLS.
    """

    def __init__(self, url: str, *, socket_timeout: float = 10.0) -> None:
        self.url = url
        try:
            self._shared: redis.Redis = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
        self._local = threading.local()
        self._clients: weakref.WeakSet[redis.Redis] = weakref.WeakSet()
        self._clients_lock = threading.Lock()
        self._acquire = self._shared.register_script(_ACQUIRE_LEASE)
        self._release = self._shared.register_script(_RELEASE_LEASE)
        self._acquire_and_get = self._shared.register_script(_ACQUIRE_LEASES_AND_GET)
        self._turns = self._shared.register_script(_TAKE_TURNS)
        self._incr = self._shared.register_script(_INCR)
        self._batch = self._shared.register_script(_BATCH)

    @property
    def _client(self) -> redis.Redis:
        """This thread's client (made again in a forked child: sockets are not shared).

        A connection idle for a while may have been closed by the server (a restart, a
        failover, an idle timeout): it is checked before use, as the pool checks a connection
        it lends, and reconnected, so the first command after an outage does not fail for it.
        """
        local, now = self._local, time.monotonic()
        client: redis.Redis | None = getattr(local, "client", None)
        if client is None or local.pid != os.getpid():
            client = redis.Redis(connection_pool=self._shared.connection_pool, single_connection_client=True)
            local.client, local.pid = client, os.getpid()
            with self._clients_lock:
                self._clients.add(client)
        elif now - local.used > _IDLE_CHECK:
            _drop_if_stale(client)
        local.used = now
        return client

    def __repr__(self) -> str:
        return f"RedisStore({redact_url(self.url)!r})"

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.RedisError as exc:
            raise StateError(f"Redis {what} failed: {type(exc).__name__}: {exc}") from None

    # plain keys -----------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        return cast("str | None", self._call("GET", lambda: self._client.get(key)))

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        return cast("list[str | None]", self._call("MGET", lambda: self._client.mget(list(keys))))

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        px = _millis(ttl)
        self._call("SET", lambda: self._client.set(key, value, px=int(px) if px else None))

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        px = _millis(ttl)
        result = self._call(
            "SET NX", lambda: self._client.set(key, value, nx=True, px=int(px) if px else None)
        )
        return bool(result)

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(self._call("DEL", lambda: self._client.delete(*keys)))

    def set_many_if_absent(self, values: Mapping[str, str], ttl: float | None = None) -> frozenset[str]:
        if not values:
            return frozenset()
        px = _millis(ttl)
        items = list(values.items())

        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for k, v in items:
                pipe.set(k, v, nx=True, px=int(px) if px else None)
            return list(pipe.execute())

        results = self._call("SET NX (many)", run)
        return frozenset(k for (k, _), done in zip(items, results, strict=True) if done)

    def incr_many(self, keys: Sequence[str], ttl: float | None = None) -> list[int]:
        if not keys:
            return []
        px = _millis(ttl)

        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for k in keys:
                self._incr(keys=[k], args=[1, px], client=pipe)
            return list(pipe.execute())

        return [int(v) for v in self._call("INCR (many)", run)]

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        px = _millis(ttl)
        return int(self._call("INCR", lambda: self._incr(keys=[key], args=[amount, px], client=self._client)))

    def ttl(self, key: str) -> float | None:
        millis = int(self._call("PTTL", lambda: self._client.pttl(key)))
        return millis / 1000 if millis >= 0 else None

    def scan(self, prefix: str) -> Iterator[str]:
        pattern = _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"
        seen: set[str] = set()
        cursor: int = 0
        while True:
            cursor, keys = self._call(
                "SCAN",
                functools.partial(self._client.scan, cursor=cursor, match=pattern, count=1000),
            )
            for found in keys:
                if found not in seen:  # SCAN may return a key more than once
                    seen.add(found)
                    yield found
            if int(cursor) == 0:
                return

    def key_type(self, key: str) -> str | None:
        kind = str(self._call("TYPE", lambda: self._client.type(key)))
        return None if kind == "none" else kind

    # leases ---------------------------------------------------------------------------------
    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        px = _millis(ttl)
        return bool(
            self._call(
                "lease acquire", lambda: self._acquire(keys=[key], args=[owner, px], client=self._client)
            )
        )

    def release_lease(self, key: str, owner: str) -> bool:
        return bool(
            self._call("lease release", lambda: self._release(keys=[key], args=[owner], client=self._client))
        )

    def acquire_leases_and_get(
        self, claims: Sequence[tuple[str, str, float]], keys: Sequence[str]
    ) -> tuple[list[bool], list[str | None]]:
        args: list[Any] = [len(claims)]
        for _key, owner, ttl in claims:
            args += [owner, _millis(ttl)]
        reply = self._call(
            "lease acquire and read",
            lambda: self._acquire_and_get(
                keys=[k for k, _, _ in claims] + list(keys), args=args, client=self._client
            ),
        )
        taken = [bool(int(flag)) for flag in reply[: len(claims)]]
        return taken, list(reply[len(claims) :])  # a missing key comes back as None (Lua false)

    # hashes ---------------------------------------------------------------------------------
    def hget(self, key: str, field: str) -> str | None:
        return cast("str | None", self._call("HGET", lambda: self._client.hget(key, field)))

    def hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        if not fields:
            return []
        return cast("list[str | None]", self._call("HMGET", lambda: self._client.hmget(key, list(fields))))

    def hset(self, key: str, mapping: Mapping[str, str]) -> None:
        if mapping:
            fields: dict[Any, Any] = dict(mapping.items())
            self._call("HSET", lambda: self._client.hset(key, mapping=fields))

    def hdel(self, key: str, *fields: str) -> int:
        if not fields:
            return 0
        return int(self._call("HDEL", lambda: self._client.hdel(key, *fields)))

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self._call("HGETALL", lambda: self._client.hgetall(key)))

    def hmget_bytes(self, key: str, fields: Sequence[str]) -> list[bytes | None]:
        if not fields:
            return []
        return cast(
            "list[bytes | None]",
            self._call(
                "HMGET",
                lambda: self._client.execute_command("HMGET", key, *fields, **{NEVER_DECODE: True}),
            ),
        )

    def hset_bytes(self, key: str, mapping: Mapping[str, bytes]) -> None:
        if mapping:
            fields: dict[Any, Any] = dict(mapping.items())
            self._call("HSET", lambda: self._client.hset(key, mapping=fields))

    def hlen(self, key: str) -> int:
        return int(self._call("HLEN", lambda: self._client.hlen(key)))

    def hkeys(self, key: str) -> list[str]:
        return [str(field) for field in self._call("HKEYS", lambda: self._client.hkeys(key))]

    # sorted sets ----------------------------------------------------------------------------
    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        if mapping:
            for score in mapping.values():
                _score(score)
            self._call("ZADD", lambda: self._client.zadd(key, dict(mapping)))

    def zrem(self, key: str, *members: str) -> int:
        if not members:
            return 0
        return int(self._call("ZREM", lambda: self._client.zrem(key, *members)))

    def zrange_by_score(
        self,
        key: str,
        minimum: float = float("-inf"),
        maximum: float = float("inf"),
        *,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[tuple[str, float]]:
        paging: dict[str, Any] = {"start": 0, "num": limit} if limit is not None else {}
        if descending:
            rows = self._call(
                "ZREVRANGEBYSCORE",
                lambda: self._client.zrevrangebyscore(key, maximum, minimum, withscores=True, **paging),
            )
        else:
            rows = self._call(
                "ZRANGEBYSCORE",
                lambda: self._client.zrangebyscore(key, minimum, maximum, withscores=True, **paging),
            )
        return [(member, float(score)) for member, score in rows]

    def zcard(self, key: str) -> int:
        return int(self._call("ZCARD", lambda: self._client.zcard(key)))

    def zcount(self, key: str, minimum: float = float("-inf"), maximum: float = float("inf")) -> int:
        return int(self._call("ZCOUNT", lambda: self._client.zcount(key, minimum, maximum)))

    def take_turns(self, turns: Sequence[Turn]) -> list[tuple[str, bool]]:
        if not turns:
            return []
        keys: list[str] = []
        args: list[str] = []
        for turn in turns:
            keys += [turn.queue, turn.lease]
            args += [turn.member, _score(turn.score), _millis(turn.ttl)]
        reply = self._call("queue turns", lambda: self._turns(keys=keys, args=args, client=self._client))
        return [(str(reply[i]), bool(int(reply[i + 1]))) for i in range(0, len(reply), 2)]

    # atomic groups of writes ----------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        collected = _RedisBatch()
        yield collected
        if collected.ops:
            payload = json.dumps(collected.ops, separators=(",", ":"))
            keys = sorted(
                {op[1] for op in collected.ops}
                | {k for op in collected.ops if op[0] == "delete" for k in op[1:]}
            )
            args: list[Any] = [payload, *collected.blobs]
            self._call("batch", lambda: self._batch(keys=keys, args=args, client=self._client))

    # lifecycle ------------------------------------------------------------------------------
    def durability(self) -> Durability:
        """Eviction policy and persistence, read with ``INFO`` (which managed Redis services allow
        where they disable ``CONFIG``); the RDB save schedule from ``CONFIG GET`` where allowed."""
        info: dict[str, Any] = {}
        for section in ("memory", "persistence"):
            info.update(self._call("INFO", functools.partial(self._info, section)))
        where = redact_url(self.url)
        errors, warnings = [], []
        policy = str(info.get("maxmemory_policy", "noeviction"))
        if policy != "noeviction":
            errors.append(
                f"Redis at {where} has maxmemory-policy {policy}: under memory pressure it deletes "
                "keys, and ppw's cursors, step ledger and tokens would vanish without a word. Set "
                "maxmemory-policy noeviction (redis.conf, `CONFIG SET maxmemory-policy noeviction`, "
                "or a managed Redis's parameter group); see docs/operations.md"
            )
        if not int(info.get("aof_enabled", 0)) and not self._saves_snapshots():
            warnings.append(
                f"Redis at {where} keeps nothing on disk (no AOF, no RDB snapshots): a Redis "
                "restart loses every cursor, ledger entry and token (`ppw auth login` again, and "
                "changes made meanwhile are missed). Turn on `appendonly yes`; see docs/operations.md"
            )
        return Durability(errors=errors, warnings=warnings)

    def _info(self, section: str) -> dict[str, Any]:
        return dict(self._client.info(section))

    def _saves_snapshots(self) -> bool:
        """Whether RDB snapshots are scheduled; False when ``CONFIG`` is not allowed (unknown)."""
        try:
            schedule = self._client.config_get("save").get("save", "")
        except redis.RedisError:
            return False
        return bool(str(schedule).strip())

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            client.close()
        self._shared.close()
        self._shared.connection_pool.disconnect()

    def size_bytes(self, prefix: str) -> int:
        total = 0
        for found in self.scan(prefix):
            usage = self._call("MEMORY USAGE", functools.partial(self._client.memory_usage, found))
            total += int(usage or 0)
        return total
