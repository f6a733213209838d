"""Building redis-py clients (sync and asyncio) for a standalone server, a Cluster or Sentinel.

Connection options are validated here, once, so that a bad pool size or timeout fails when
the store is created rather than at the first request. Transient errors (connection refused
or reset, timeouts, a server still loading its data set) are retried by redis-py's own
``Retry`` with exponential backoff and full jitter; anything else (authentication, a script
error, a wrong type) fails at once.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quotaflow._errors import ConfigurationError

__all__ = [
    "REDIS_SCHEMES",
    "AsyncClient",
    "RedisOptions",
    "SyncClient",
    "check_url",
    "make_async_client",
    "make_sync_client",
]

#: URL schemes a :class:`~quotaflow.stores.RedisStore` accepts.
REDIS_SCHEMES: Final = frozenset(
    {"redis", "rediss", "redis+unix", "redis+cluster", "rediss+cluster", "redis+sentinel"}
)

#: A client of either kind: standalone (or a Sentinel's master) or Cluster.
SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
T = TypeVar("T")

_TRANSIENT: Final = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How to connect: pool size, timeouts and the retry policy for transient errors.

    Attributes:
        pool_size: connections per server (per node on a Cluster); callers beyond it wait for
            a free connection up to ``socket_timeout``.
        socket_timeout: seconds to wait for a reply before the attempt counts as failed.
        connect_timeout: seconds to wait for a connection to open.
        retries: further attempts after a transient error (0: fail at the first one).
        backoff_base: seconds before the first retry; doubles with each retry, fully jittered.
        backoff_cap: the longest pause between two attempts, in seconds.
    """

    pool_size: int = 64
    socket_timeout: float = 2.0
    connect_timeout: float = 2.0
    retries: int = 3
    backoff_base: float = 0.02
    backoff_cap: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.pool_size, bool) or not isinstance(self.pool_size, int):
            raise ConfigurationError(f"pool_size must be an integer, got {self.pool_size!r}")
        if not 1 <= self.pool_size <= 10_000:  # noqa: PLR2004
            raise ConfigurationError(f"pool_size must be between 1 and 10000, got {self.pool_size}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise ConfigurationError(f"retries must be an integer, got {self.retries!r}")
        if not 0 <= self.retries <= 100:  # noqa: PLR2004
            raise ConfigurationError(f"retries must be between 0 and 100, got {self.retries}")
        for name in ("socket_timeout", "connect_timeout", "backoff_base", "backoff_cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigurationError(f"{name} must be seconds, got {value!r}")
            if not math.isfinite(value) or not 0 < value <= 3600:  # noqa: PLR2004
                raise ConfigurationError(f"{name} must be in (0, 3600] seconds, got {value!r}")

    def _common(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
        }


def _transient(error: Exception) -> bool:
    return not isinstance(error, AuthenticationError)


class _SyncRetry(redis.retry.Retry):
    """Retry transient errors only: a refused password is not transient."""

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., object],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def retryable(error: Exception) -> bool:
            return _transient(error) and (is_retryable is None or is_retryable(error))

        return super().call_with_retry(do, fail, retryable, with_failure_count)


class _AsyncRetry(redis.asyncio.retry.Retry):
    """Retry transient errors only: a refused password is not transient."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., object],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def retryable(error: Exception) -> bool:
            return _transient(error) and (is_retryable is None or is_retryable(error))

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


def _backoff(options: RedisOptions) -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(cap=options.backoff_cap, base=options.backoff_base)


def _nodes(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = netloc.rpartition("@")[2]
    nodes = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":") if ":" in part else (part.strip(), "", "")
        host = host.strip("[]")
        if not host:
            raise ConfigurationError(f"bad host in Redis URL: {part!r}")
        try:
            number = int(port) if port else default_port
        except ValueError:
            raise ConfigurationError(f"bad port in Redis URL: {part!r}") from None
        if not 0 < number < 65536:  # noqa: PLR2004
            raise ConfigurationError(f"port out of range in Redis URL: {part!r}")
        nodes.append((host, number))
    return nodes


def _credentials(netloc: str) -> dict[str, Any]:
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return {}
    user, colon, password = userinfo.partition(":")
    out: dict[str, Any] = {"password": unquote(password) if colon else unquote(user)}
    if colon and user:
        out["username"] = unquote(user)
    return out


def _db(path: str) -> int:
    name = path.strip("/")
    if not name:
        return 0
    if not name.isdigit():
        raise ConfigurationError(f"Redis database must be a number, got {name!r}")
    return int(name)


def _server_url(url: str) -> str:
    """The URL redis-py understands, for the schemes that map onto its own."""
    if url.startswith("redis+unix://"):
        return "unix://" + url.removeprefix("redis+unix://")
    return url


def make_sync_client(url: str, options: RedisOptions) -> SyncClient:
    """Return a redis-py client for ``url`` (query options already removed)."""
    parts = urlsplit(url)
    retry = _SyncRetry(_backoff(options), options.retries, _TRANSIENT)
    if parts.scheme in {"redis+cluster", "rediss+cluster"}:
        nodes = [
            redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call, unused-ignore]
            for h, p in _nodes(parts.netloc, 6379)
        ]
        return redis.cluster.RedisCluster(
            startup_nodes=nodes, max_connections=options.pool_size, retry=retry,
            ssl=parts.scheme.startswith("rediss"), **_credentials(parts.netloc),
            **options._common(),  # noqa: SLF001
        )  # fmt: skip
    if parts.scheme == "redis+sentinel":
        service, db = _sentinel_target(parts.path)
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            _nodes(parts.netloc, 26379), sentinel_kwargs=options._common(),  # noqa: SLF001
            **options._common(),  # noqa: SLF001
        )  # fmt: skip
        master: SyncClient = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            service, db=db, retry=retry, **_credentials(parts.netloc),
        )  # fmt: skip
        return master
    pool = redis.BlockingConnectionPool.from_url(
        _server_url(url), max_connections=options.pool_size, timeout=options.socket_timeout,
        retry=retry, **options._common(),  # noqa: SLF001
    )  # fmt: skip
    return redis.Redis.from_pool(pool)  # the client owns the pool: closing it disconnects


def make_async_client(url: str, options: RedisOptions) -> AsyncClient:
    """Return a ``redis.asyncio`` client for ``url`` (query options already removed)."""
    parts = urlsplit(url)
    retry = _AsyncRetry(_backoff(options), options.retries, _TRANSIENT)
    if parts.scheme in {"redis+cluster", "rediss+cluster"}:
        nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in _nodes(parts.netloc, 6379)]
        return redis.asyncio.cluster.RedisCluster(
            startup_nodes=nodes, max_connections=options.pool_size, retry=retry,
            ssl=parts.scheme.startswith("rediss"), **_credentials(parts.netloc),
            **options._common(),  # noqa: SLF001
        )  # fmt: skip
    if parts.scheme == "redis+sentinel":
        service, db = _sentinel_target(parts.path)
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            _nodes(parts.netloc, 26379), sentinel_kwargs=options._common(),  # noqa: SLF001
            **options._common(),  # noqa: SLF001
        )  # fmt: skip
        amaster: AsyncClient = sentinel.master_for(
            service, db=db, retry=retry, **_credentials(parts.netloc),
        )  # fmt: skip
        return amaster
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        _server_url(url), max_connections=options.pool_size, timeout=options.socket_timeout,
        retry=retry, **options._common(),  # noqa: SLF001
    )  # fmt: skip
    return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool


def _sentinel_target(path: str) -> tuple[str, int]:
    """``/service`` or ``/service/db`` of a ``redis+sentinel://`` URL."""
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise ConfigurationError(
            "a redis+sentinel:// URL names its service: redis+sentinel://host:port/service"
        )
    return service, _db(db)


def check_url(url: str) -> None:
    """Raise :class:`ConfigurationError` if ``url`` cannot name a Redis deployment."""
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigurationError(f"not a Redis URL scheme: {parts.scheme!r} in {url!r}")
    if parts.scheme == "redis+unix":
        if not parts.path:
            raise ConfigurationError(f"redis+unix:// needs a socket path, got {url!r}")
        return
    if not parts.netloc.rpartition("@")[2]:
        raise ConfigurationError(f"Redis URL has no host: {url!r}")
    nodes = _nodes(parts.netloc, 26379 if parts.scheme == "redis+sentinel" else 6379)
    if parts.scheme in {"redis", "rediss"}:
        if len(nodes) != 1:
            raise ConfigurationError(
                f"{parts.scheme}:// takes one host; use redis+cluster:// for several: {url!r}"
            )
        _db(parts.path)
    elif parts.scheme == "redis+sentinel":
        _sentinel_target(parts.path)
