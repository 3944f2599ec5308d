"""The HTTP client of Slack and webhook deliveries: urllib3, pooled, with no retries or redirects
of its own.

A delivery is one small request per event, so the client's own work is most of its cost: on the
benchmark machine a keep-alive POST costs about 240 µs of CPU through urllib3 and 500 µs through
httpx with h11, and a worker delivering a webhook per change spends its core on little else.
httpx stays the PracticePanther client (retries, auth, paging); deliveries need none of that: the
runner retries steps and ``http.request`` follows same-host redirects itself, so urllib3's retries
and redirects are off.

Like httpx before it, the client honours ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` from
the environment, and verifies TLS against the system's certificate store.

A direct request goes straight to its destination's connection pool, found by the URL's origin:
urllib3's ``PoolManager`` would parse the URL and rebuild the pool's key on every request, a
sixth of the client's cost. A webhook's URL is usually the same for every event, so its parts are
remembered (:func:`_split`).
"""

from __future__ import annotations

import codecs
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple
from urllib.request import getproxies_environment, proxy_bypass

import urllib3
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, EmptyPoolError, HTTPError, LocationValueError
from urllib3.util import parse_url

from worker.errors import PpwError

USER_AGENT = "ppw (PracticePanther automation worker)"
#: Destinations whose pools are kept (the manager closes the least used one past that).
_POOLS = 32


class TransportFailure(PpwError):
    """The request got no answer: the connection failed, timed out or broke. Transient.

    ``sent`` says whether the request may have reached the receiver (a read timeout) or surely did
    not (the connection was never made), which decides whether the step may have applied.
    """

    def __init__(self, kind: str, *, sent: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.sent = sent

    @property
    def transient(self) -> bool:
        return True

    @property
    def may_have_applied(self) -> bool:
        return self.sent


@dataclass(frozen=True)
class Reply:
    """A receiver's answer, read in full (receivers' bodies are small and not secret)."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive (urllib3's HTTPHeaderDict)
    content: bytes

    @cached_property
    def text(self) -> str:  # decoded once: a step reads it for its output and for its history
        return self.content.decode(_charset(self.headers.get("content-type", "")), errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not."""
        return json.loads(self.content)


class Outbound:
    """One pool of keep-alive connections per destination, shared by every thread of a process.

    Parameters
    ----------
    timeout:
        Seconds for connecting and for each read, unless a request gives its own.
    maxsize:
        Connections kept per destination. Connections are made only as threads need them,
        so a size above any thread count in use costs nothing; below it, the extra connections
        would be closed after each request (and urllib3 would warn of a full pool).
    """

    def __init__(self, timeout: float, *, maxsize: int = 64) -> None:
        self._timeout = timeout
        common: dict[str, Any] = {"retries": False, "maxsize": maxsize}
        self._direct = urllib3.PoolManager(num_pools=_POOLS, **common)
        self._pools: dict[tuple[str, str, int | None], HTTPConnectionPool] = {}
        proxies = getproxies_environment()
        self._bypassed: dict[str, bool] = {}  # NO_PROXY's verdict per host, asked once each
        self._via: dict[str, urllib3.ProxyManager] = {
            scheme: urllib3.ProxyManager(url, num_pools=_POOLS, **common)
            for scheme, url in proxies.items()
            if scheme in ("http", "https")
        }

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Reply:
        """Send one request and read the whole answer; :class:`TransportFailure` when none came."""
        wait = urllib3.Timeout(connect=timeout or self._timeout, read=timeout or self._timeout)
        try:
            target = _split(url)
            proxy = self._proxy_for(target)
            pool, where = (proxy, url) if proxy is not None else (self._pool(target), target.request_uri)
            response = pool.urlopen(
                method,
                where,
                body=body or None,
                headers={"User-Agent": USER_AGENT, **(headers or {})},
                timeout=wait,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=True,
            )
        except LocationValueError:
            raise
        except (ConnectTimeoutError, EmptyPoolError) as exc:  # NewConnectionError, DNS failures too
            raise TransportFailure(type(exc).__name__, sent=False) from None
        except HTTPError as exc:  # read timeouts, resets, TLS and protocol errors
            raise TransportFailure(type(exc).__name__, sent=True) from None
        return Reply(response.status, response.headers, response.data)

    def post(self, url: str, *, json: Any, headers: Mapping[str, str] | None = None) -> Reply:
        """POST ``json`` (compact, UTF-8) to ``url``."""
        body = _dumps(json)
        return self.request(
            "POST", url, headers={"Content-Type": "application/json", **(headers or {})}, body=body
        )

    def _proxy_for(self, target: _Target) -> urllib3.ProxyManager | None:
        """The proxy to go through, if the environment names one for the URL's scheme and host."""
        proxy = self._via.get(target.scheme)
        if proxy is None:
            return None
        bypassed = self._bypassed.get(target.host)
        if bypassed is None:
            bypassed = self._bypassed[target.host] = bool(proxy_bypass(target.host))
        return None if bypassed else proxy

    def _pool(self, target: _Target) -> HTTPConnectionPool:
        """The destination's pool, as the manager made it; asked again if the manager has since
        dropped it (it keeps the :data:`_POOLS` last used) and closed it."""
        origin = (target.scheme, target.host, target.port)
        pool = self._pools.get(origin)
        if pool is None or pool.pool is None:
            if len(self._pools) >= _POOLS:  # the closed pools of destinations no longer used
                self._pools = {o: p for o, p in self._pools.items() if p.pool is not None}
            pool = self._pools[origin] = self._direct.connection_from_host(
                target.host, port=target.port, scheme=target.scheme
            )
        return pool

    def close(self) -> None:
        self._pools.clear()
        self._direct.clear()
        for proxy in self._via.values():
            proxy.clear()


class _Target(NamedTuple):
    scheme: str
    host: str
    port: int | None
    request_uri: str


@functools.lru_cache(maxsize=256)
def _split(url: str) -> _Target:
    """The URL's parts as urllib3 sends them (its path percent-encoded where it must be)."""
    parts = parse_url(url)
    if not parts.host:
        raise LocationValueError("No host specified.")  # as the pool manager says it
    return _Target((parts.scheme or "http").lower(), parts.host, parts.port, parts.request_uri)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            charset = value.strip("\"' ")
            try:
                return codecs.lookup(charset).name
            except LookupError:
                break
    return "utf-8"
