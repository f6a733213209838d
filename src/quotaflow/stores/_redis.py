"""Limit state shared through Redis: one Lua script run, one round trip, per operation.

Every operation (an admission across any number of scopes and limits, a settlement, a
cancellation, a renewal, a status read) runs ``_redis.lua`` once with EVALSHA; redis-py loads
the script again when a server answers NOSCRIPT (after a restart or a failover). The script
implements the semantics of :mod:`quotaflow.core`, so a limiter behaves the same on every
store; see the script's header for its arithmetic.

Keys. Every key of a namespace carries the hash tag ``{namespace}``: whatever one admission
touches lives in one slot, which makes every operation atomic on Redis Cluster too. A Cluster
therefore spreads *namespaces* over its nodes; use one namespace per group of limits that
admissions combine (one per provider account, say). There are no ``KEYS`` scans: state is
read by name and idle state expires by TTL.

Space. A rate keeps constant state (its bucket, plus a stack bounded by the reservations it
holds and 64); a quota one counter; a concurrency limit one sorted-set entry per lease. No
per-token or per-request log exists.

Time comes from the Redis server (``TIME``), so hosts with skewed clocks agree. Tests may pass
a ``clock`` instead; the script then takes that time.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,  # noqa: A004 (redis-py's, not the builtin)
    NoScriptError,
    RedisError,
    TimeoutError,  # noqa: A004 (redis-py's, not the builtin)
    TryAgainError,
)

from quotaflow._clock import Clock
from quotaflow._errors import ConfigurationError, StoreError, StoreUnavailableError
from quotaflow.core import BoundLimit, Claim, Limit, LimitSnapshot, ReserveResult, Usage
from quotaflow.core._limits import Concurrency, Quota, QuotaPeriod, Rate
from quotaflow.core._quota_state import calendar_bounds
from quotaflow.stores._notes import check_note
from quotaflow.stores._redis_clients import (
    AsyncClient,
    RedisOptions,
    SyncClient,
    check_url,
    make_async_client,
    make_sync_client,
)

__all__ = ["RedisStore"]

_log = logging.getLogger("quotaflow")

#: Receives the scopes where another client gave capacity back.
ReleaseCallback = Callable[[tuple[str, ...]], None]

_SCRIPT: Final = resources.files("quotaflow.stores").joinpath("_redis.lua").read_text("utf-8")
_NS_PER_US: Final = 1000
_MAX_BOUNDS_ROUNDS: Final = 3
_SPEC_CACHE_SIZE: Final = 50_000

#: What the script needs of one limit in one scope: the state key, the claim's fields after
#: the amount and usage index (see the script's ``reserve``), the snapshot's fields, the
#: kind, the quota's calendar spec and the Quota itself (for its period bounds).
_Spec = tuple[str, str, str, str, str, Quota | None]


def _namespace(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:  # noqa: PLR2004
        raise ConfigurationError(f"namespace must be a non-empty string, got {value!r}")
    if any(c in value for c in "{}") or not value.isprintable():
        raise ConfigurationError(f"namespace must be printable, without braces: {value!r}")
    return value


class RedisStore:
    """Limit state in Redis, shared by every process and host that uses the same namespace.

    Implements both :class:`~quotaflow.stores.Store` and :class:`~quotaflow.stores.AsyncStore`;
    the sync and asyncio clients are made on first use.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS),
            ``redis+unix:///path/to/socket``, ``redis+cluster://h1:p1,h2:p2`` or
            ``redis+sentinel://h1:p1,h2:p2/service[/db]``.
        namespace: separates independent sets of limits on one Redis; the hash tag of every key.
        clock: take time from this clock instead of the server (tests).
        options: pool size, timeouts and retries (:class:`RedisOptions`).
    """

    __slots__ = (
        "_async",
        "_callbacks",
        "_clock",
        "_listen_lock",
        "_listener",
        "_options",
        "_origin",
        "_prefix",
        "_pubsub",
        "_skew_ns",
        "_specs",
        "_sync",
        "url",
    )

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "quotaflow",
        clock: Clock | None = None,
        options: RedisOptions | None = None,
    ) -> None:
        if not isinstance(url, str):
            raise ConfigurationError(f"url must be a string, got {url!r}")
        check_url(url)
        self.url = url
        self._prefix = f"qf:{{{_namespace(namespace)}}}:"
        self._clock = clock
        self._options = options or RedisOptions()
        self._sync: SyncClient | None = None
        self._async: AsyncClient | None = None
        self._skew_ns = 0  # server time minus local wall time, learned from every reply
        self._specs: dict[tuple[str, Limit], _Spec] = {}
        self._origin = secrets.token_hex(6)  # tags this store's release notifications
        self._listen_lock = threading.Lock()
        self._callbacks: list[ReleaseCallback] = []
        self._pubsub: Any = None
        self._listener: Any = None

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, namespace={self._prefix[4:-2]!r})"

    # Arguments and replies -------------------------------------------------------------------

    def _now_arg(self) -> int:
        clock = self._clock
        return -1 if clock is None else clock.now_ns() // _NS_PER_US

    def _estimate_ns(self) -> int:
        """The server's time as best known here (to pick the quota periods to send)."""
        clock = self._clock
        return clock.now_ns() if clock is not None else time.time_ns() + self._skew_ns

    def _learn(self, now_us: int) -> int:
        now_ns = now_us * _NS_PER_US
        if self._clock is None:
            self._skew_ns = now_ns - time.time_ns()
        return now_ns

    def _spec(self, scope: str, limit: Limit) -> _Spec:
        spec = self._specs.get((scope, limit))
        if spec is not None:
            return spec
        key = f"{self._prefix}s|{limit.key}|{scope}"
        calendar, quota = "", None
        if isinstance(limit, Rate):
            kind, params = "r", f"{limit.refill} {limit.period_ns} {limit.capacity}"
        elif isinstance(limit, Quota):
            calendar, quota = f"{limit.period.value}|{limit.zone.key}", limit
            kind, params = "q", f"{limit.capacity} 0 0"
        elif isinstance(limit, Concurrency):
            kind, params = "c", f"{limit.capacity} {-(-limit.ttl_ns // _NS_PER_US)} 0"
        else:  # pragma: no cover - the Limit union is closed
            raise ConfigurationError(f"unknown limit {limit!r}")
        spec = (
            key,
            f"{params} {calendar} {scope}",
            f"{kind} {params} {calendar}",
            kind,
            calendar,
            quota,
        )
        if len(self._specs) >= _SPEC_CACHE_SIZE:
            self._specs.clear()
        self._specs[scope, limit] = spec
        return spec

    def _bounds(self, quotas: dict[str, Quota], now_ns: int) -> list[Any]:
        """ARGV for the period bounds: count, then spec, start and end (µs) for each."""
        out: list[Any] = [len(quotas)]
        for calendar, quota in quotas.items():
            start, end = calendar_bounds(quota.period, quota.zone, now_ns)
            out += [calendar, start // _NS_PER_US, end // _NS_PER_US]
        return out

    @staticmethod
    def _requested_bounds(reply: list[Any], now_ns: int) -> list[Any]:
        """ARGV bounds for the calendar specs a ``{2, now, spec...}`` reply asks for."""
        specs = [s.decode() if isinstance(s, bytes) else str(s) for s in reply[2:]]
        out: list[Any] = [len(specs)]
        for calendar in specs:
            period, _, zone = calendar.partition("|")
            start, end = calendar_bounds(QuotaPeriod(period), ZoneInfo(zone), now_ns)
            out += [calendar, start // _NS_PER_US, end // _NS_PER_US]
        return out

    def _reserve_call(
        self, rid: str, claims: Sequence[Claim], ttl_ns: int
    ) -> tuple[list[str], list[Any], list[Any]]:
        """KEYS, the ARGV head (operation, time) and the ARGV tail (after the bounds)."""
        keys = [f"{self._prefix}r|{rid}"]
        tail: list[Any] = [rid, -(-ttl_ns // _NS_PER_US), len(claims)]
        quotas: dict[str, Quota] = {}
        for scope, limit, amount, index in claims:
            key, rest, _, kind, calendar, quota = self._spec(scope, limit)
            keys.append(key)
            tail.append(f"{kind} {amount} {index} {rest}")
            if quota is not None:
                quotas[calendar] = quota
        if len(set(keys)) != len(keys):
            raise ConfigurationError(f"claims name one limit of one scope twice: {claims!r}")
        head = ["reserve", self._now_arg(), *self._bounds(quotas, self._estimate_ns())]
        return keys, head, tail

    def _reserve_result(self, reply: list[Any], claims: Sequence[Claim]) -> ReserveResult:
        now = self._learn(reply[1])
        if reply[0] == 1:
            return ReserveResult(True, now, now, None)  # noqa: FBT003
        scope, limit, _, _ = claims[reply[3]]
        return ReserveResult(False, now, reply[2] * _NS_PER_US, BoundLimit(scope, limit))  # noqa: FBT003

    def _settle_tail(self, rid: str, actual: Usage | None) -> list[Any]:
        if actual is None:
            return [1, 0, 0, 0, 0, 0, rid, self._origin]
        return [0, *actual, rid, self._origin]

    def _snapshot_call(
        self, scope: str, limits: Sequence[Limit]
    ) -> tuple[list[str], list[Any], list[Any]]:
        keys: list[str] = []
        tail: list[Any] = [len(limits)]
        quotas: dict[str, Quota] = {}
        for limit in limits:
            key, _, fields, _, calendar, quota = self._spec(scope, limit)
            keys.append(key)
            tail.append(fields)
            if quota is not None:
                quotas[calendar] = quota
        head = ["snapshot", self._now_arg(), *self._bounds(quotas, self._estimate_ns())]
        return keys, head, tail

    def _snapshot_result(
        self, reply: list[Any], limits: Sequence[Limit]
    ) -> tuple[int, list[LimitSnapshot]]:
        now = self._learn(reply[1])
        snapshots = [
            LimitSnapshot(
                limit=limit,
                used=reply[2 + 3 * i],
                remaining=reply[3 + 3 * i],
                resets_in_ns=max(0, reply[4 + 3 * i]) * _NS_PER_US,
            )
            for i, limit in enumerate(limits)
        ]
        return now, snapshots

    # Calls -----------------------------------------------------------------------------------

    def _client(self) -> SyncClient:
        client = self._sync
        if client is None:
            client = self._sync = make_sync_client(self.url, self._options)
        return client

    def _aclient(self) -> AsyncClient:
        client = self._async
        if client is None:
            client = self._async = make_async_client(self.url, self._options)
        return client

    def _run(self, keys: list[str], head: list[Any], tail: list[Any]) -> list[Any]:
        client = self._client()
        args = [*head, *tail]
        for _ in range(_MAX_BOUNDS_ROUNDS):
            try:
                reply: list[Any] = _eval(client, keys, args)
            except RedisError as error:
                raise _store_error(error) from error
            if reply[0] != 2:  # noqa: PLR2004
                return reply
            bounds = self._requested_bounds(reply, self._learn(reply[1]))
            args = [head[0], head[1], *bounds, *tail]
        raise StoreError("the quota periods kept moving while the store was asked (clock jump?)")

    async def _arun(self, keys: list[str], head: list[Any], tail: list[Any]) -> list[Any]:
        client = self._aclient()
        args = [*head, *tail]
        for _ in range(_MAX_BOUNDS_ROUNDS):
            try:
                reply: list[Any] = await _aeval(client, keys, args)
            except RedisError as error:
                raise _store_error(error) from error
            if reply[0] != 2:  # noqa: PLR2004
                return reply
            bounds = self._requested_bounds(reply, self._learn(reply[1]))
            args = [head[0], head[1], *bounds, *tail]
        raise StoreError("the quota periods kept moving while the store was asked (clock jump?)")

    # Notes -----------------------------------------------------------------------------------

    def get_note(self, key: str) -> str | None:
        """Return the note under ``key``, or ``None`` if there is none or it expired."""
        try:
            value = self._client().get(f"{self._prefix}n|{key}")
        except RedisError as error:
            raise _store_error(error) from error
        return _text(value)

    def put_note(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (replacing any earlier note)."""
        ttl_ms = -(-check_note(key, value, ttl) // 1_000_000)
        try:
            self._client().set(f"{self._prefix}n|{key}", value, px=ttl_ms)
        except RedisError as error:
            raise _store_error(error) from error

    async def aget_note(self, key: str) -> str | None:
        """Return the note under ``key`` (see :meth:`get_note`)."""
        try:
            value = await self._aclient().get(f"{self._prefix}n|{key}")
        except RedisError as error:
            raise _store_error(error) from error
        return _text(value)

    async def aput_note(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds."""
        ttl_ms = -(-check_note(key, value, ttl) // 1_000_000)
        try:
            await self._aclient().set(f"{self._prefix}n|{key}", value, px=ttl_ms)
        except RedisError as error:
            raise _store_error(error) from error

    # Store -----------------------------------------------------------------------------------

    def reserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` now as reservation ``rid``, all or nothing; idempotent by ``rid``."""
        return self._reserve_result(self._run(*self._reserve_call(rid, claims, ttl_ns)), claims)

    def settle(self, rid: str, actual: Usage | None) -> bool:
        """Reconcile ``rid`` with ``actual`` usage (``None`` refunds it all)."""
        head = ["settle", self._now_arg(), 0]
        reply = self._run([f"{self._prefix}r|{rid}"], head, self._settle_tail(rid, actual))
        self._learn(reply[1])
        return bool(reply[0] == 1)

    def renew(self, rid: str, ttl_ns: int) -> bool:
        """Extend ``rid`` and its leases by ``ttl_ns`` from now; ``False`` if it is gone."""
        head = ["renew", self._now_arg(), 0]
        reply = self._run([f"{self._prefix}r|{rid}"], head, [-(-ttl_ns // _NS_PER_US), rid])
        return bool(reply[0] == 1)

    def snapshot(self, scope: str, limits: Sequence[Limit]) -> tuple[int, list[LimitSnapshot]]:
        """Return the server's time and the state of ``limits`` in ``scope``."""
        if not limits:
            return self._estimate_ns(), []
        return self._snapshot_result(self._run(*self._snapshot_call(scope, limits)), limits)

    def close(self) -> None:
        """Stop listening for releases and close the sync client's connections."""
        with self._listen_lock:
            listener, self._listener = self._listener, None
            pubsub, self._pubsub = self._pubsub, None
            self._callbacks.clear()
        if listener is not None:
            listener.stop()
            listener.join(timeout=5)
        if pubsub is not None:
            pubsub.close()
        client, self._sync = self._sync, None
        if client is not None:
            client.close()

    # Release notifications -------------------------------------------------------------------

    def listen(self, on_release: ReleaseCallback) -> None:
        """Call ``on_release(scopes)`` whenever another client gives capacity back there.

        Settlements publish the scopes they refunded or whose leases they released; a
        background thread subscribed to the namespace's channel passes them on, so waiters in
        every process try again at once instead of at the slot the store named earlier. The
        callback runs on that thread. If Redis cannot be reached, waiting falls back to the
        slots (correct, only slower) and the listener reconnects by itself.
        """
        with self._listen_lock:
            self._callbacks.append(on_release)
            if self._pubsub is not None:
                return
            try:
                pubsub = self._client().pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]
                pubsub.subscribe(**{f"{self._prefix}released": self._on_message})
                self._listener = pubsub.run_in_thread(
                    sleep_time=1.0, daemon=True, exception_handler=_listener_failed
                )
            except RedisError as error:
                _log.warning("quotaflow: not listening for releases on %s: %s", self.url, error)
                return
            self._pubsub = pubsub

    def _on_message(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, bytes):
            return
        origin, *scopes = data.decode("utf-8", "replace").split("\n")
        if origin == self._origin or not scopes:
            return  # this store's own settlement: its limiter has woken its waiters already
        released = tuple(scopes)
        for callback in tuple(self._callbacks):
            try:
                callback(released)
            except Exception:  # noqa: BLE001 (a callback must not kill the listener)
                _log.exception("quotaflow: release callback %r failed", callback)

    # AsyncStore ------------------------------------------------------------------------------

    async def areserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` now as reservation ``rid``, all or nothing; idempotent by ``rid``."""
        reply = await self._arun(*self._reserve_call(rid, claims, ttl_ns))
        return self._reserve_result(reply, claims)

    async def asettle(self, rid: str, actual: Usage | None) -> bool:
        """Reconcile ``rid`` with ``actual`` usage (``None`` refunds it all)."""
        head = ["settle", self._now_arg(), 0]
        reply = await self._arun([f"{self._prefix}r|{rid}"], head, self._settle_tail(rid, actual))
        self._learn(reply[1])
        return bool(reply[0] == 1)

    async def arenew(self, rid: str, ttl_ns: int) -> bool:
        """Extend ``rid`` and its leases by ``ttl_ns`` from now; ``False`` if it is gone."""
        head = ["renew", self._now_arg(), 0]
        reply = await self._arun([f"{self._prefix}r|{rid}"], head, [-(-ttl_ns // _NS_PER_US), rid])
        return bool(reply[0] == 1)

    async def asnapshot(
        self, scope: str, limits: Sequence[Limit]
    ) -> tuple[int, list[LimitSnapshot]]:
        """Return the server's time and the state of ``limits`` in ``scope``."""
        if not limits:
            return self._estimate_ns(), []
        reply = await self._arun(*self._snapshot_call(scope, limits))
        return self._snapshot_result(reply, limits)

    async def aclose(self) -> None:
        """Close the asyncio client's connections (and the sync client's, if any)."""
        client, self._async = self._async, None
        if client is not None:
            await client.aclose()
        self.close()


# One script object per client class would be redis-py's way; calling EVALSHA directly keeps
# the hot path short. The SHA is computed once; NOSCRIPT loads the script and tries again.
_SHA: Final = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _eval(client: SyncClient, keys: list[str], args: list[Any]) -> list[Any]:
    try:
        reply = client.evalsha(_SHA, len(keys), *keys, *args)
    except NoScriptError:
        client.script_load(_SCRIPT)
        reply = client.evalsha(_SHA, len(keys), *keys, *args)
    return cast("list[Any]", reply)


async def _aeval(client: AsyncClient, keys: list[str], args: list[Any]) -> list[Any]:
    try:
        reply = await client.evalsha(_SHA, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(_SCRIPT)
        reply = await client.evalsha(_SHA, len(keys), *keys, *args)
    return cast("list[Any]", reply)


_UNREACHABLE: Final = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    ClusterDownError,
    TryAgainError,
)


def _listener_failed(error: BaseException, pubsub: Any, thread: Any) -> None:  # noqa: ANN401, ARG001
    """The release listener lost Redis: pause briefly; redis-py reconnects and resubscribes."""
    _log.debug("quotaflow: release listener: %s", error)
    time.sleep(0.5)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _store_error(error: RedisError) -> StoreError:
    """A transient failure (after redis-py's retries) is :class:`StoreUnavailableError`."""
    message = f"Redis failed: {type(error).__name__}: {error}"
    if isinstance(error, _UNREACHABLE) and not isinstance(error, AuthenticationError):
        return StoreUnavailableError(message)
    return StoreError(message)
