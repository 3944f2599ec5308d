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
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from worker.state.base import StateError, StateStore, WriteBatch

_ACQUIRE_LEASE = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

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
local needs = {hset = 'hash', hdel = 'hash', zadd = 'zset', zrem = 'zset'}
local becomes = {set = 'string', delete = 'none', hset = 'hash', zadd = 'zset'}
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
  elseif name == 'hdel' then
    redis.call('HDEL', k, unpack(op, 3))
  elseif name == 'zadd' then
    redis.call('ZADD', k, unpack(op, 3))
  elseif name == 'zrem' then
    redis.call('ZREM', k, unpack(op, 3))
  end
end
return #ops
"""

_CHUNK = 1000  # arguments per Lua command, well under unpack()'s stack limit
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
        self.ops: list[list[str]] = []

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

    def zadd(self, key: str, mapping: Mapping[str, float]) -> None:
        items = list(mapping.items())
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            self.ops.append(["zadd", key, *(i for member, score in chunk for i in (_score(score), member))])

    def zrem(self, key: str, *members: str) -> None:
        for start in range(0, len(members), _CHUNK):
            self.ops.append(["zrem", key, *members[start : start + _CHUNK]])


class RedisStore(StateStore):
    """State in Redis, through one connection pool shared by all threads of the process.

    Parameters
    ----------
    url:
        ``redis://[:password@]host:port/db`` or ``rediss://`` for TLS.
    """

    def __init__(self, url: str, *, socket_timeout: float = 10.0) -> None:
        self.url = url
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None
        self._acquire = self._client.register_script(_ACQUIRE_LEASE)
        self._release = self._client.register_script(_RELEASE_LEASE)
        self._incr = self._client.register_script(_INCR)
        self._batch = self._client.register_script(_BATCH)

    def __repr__(self) -> str:
        return f"RedisStore({redact_url(self.url)!r})"

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.RedisError as exc:
            raise StateError(f"Redis {what} failed: {type(exc).__name__}: {exc}") from None

    # plain keys -----------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        return self._call("GET", lambda: self._client.get(key))

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        return self._call("MGET", lambda: self._client.mget(list(keys)))

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

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        px = _millis(ttl)
        return int(self._call("INCR", lambda: self._incr(keys=[key], args=[amount, px])))

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

    # leases ---------------------------------------------------------------------------------
    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        px = _millis(ttl)
        return bool(self._call("lease acquire", lambda: self._acquire(keys=[key], args=[owner, px])))

    def release_lease(self, key: str, owner: str) -> bool:
        return bool(self._call("lease release", lambda: self._release(keys=[key], args=[owner])))

    # hashes ---------------------------------------------------------------------------------
    def hget(self, key: str, field: str) -> str | None:
        return self._call("HGET", lambda: self._client.hget(key, field))

    def hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        if not fields:
            return []
        return self._call("HMGET", lambda: self._client.hmget(key, list(fields)))

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

    def hlen(self, key: str) -> int:
        return int(self._call("HLEN", lambda: self._client.hlen(key)))

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
            self._call("batch", lambda: self._batch(keys=keys, args=[payload]))

    # lifecycle ------------------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()

    def size_bytes(self, prefix: str) -> int:
        total = 0
        for found in self.scan(prefix):
            usage = self._call("MEMORY USAGE", functools.partial(self._client.memory_usage, found))
            total += int(usage or 0)
        return total
