"""What a limiter does while its shared store cannot be reached: the fault policy.

:class:`FailoverStore` wraps a shared store. While the store answers, it only forwards. When
an operation fails with :class:`~quotaflow.StoreUnavailableError` (redis-py has already
retried it with backoff), the store is marked down, the change is logged once and reported to
``on_change``, and the policy decides:

``fail_closed``
    raise the typed error to the caller (without trying the store again until the next probe,
    so callers fail fast instead of each waiting out a timeout);
``fail_open``
    admit everything, unrecorded;
``local``
    admit against an in-process :class:`~quotaflow.stores.MemoryStore` whose limits are
    ``local_share`` of the configured ones (so N processes sharing a limit each get 1/N).

After ``probe_interval`` seconds the next operation tries the shared store again; when it
answers, the store is marked up (logged once, reported) and new admissions go back to it.
Nothing is lost on the way: reservations admitted locally settle locally, unrecorded ones
settle as no-ops, and settlements the shared store missed while it was down are replayed when
it returns (each is idempotent); any it never sees expire by their TTL, settled as reserved.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from quotaflow._clock import Clock, SystemClock
from quotaflow._errors import ConfigurationError, StoreUnavailableError
from quotaflow.core import (
    NS_PER_SECOND,
    Claim,
    Concurrency,
    Limit,
    LimitSnapshot,
    Quota,
    Rate,
    ReserveResult,
    Usage,
)
from quotaflow.stores._memory import MemoryStore
from quotaflow.stores._notes import AsyncNotes, Notes
from quotaflow.stores._protocol import AsyncStore, Store

__all__ = ["FailoverStore", "FaultMode", "FaultPolicy"]

_log = logging.getLogger("quotaflow")

_MAX_PENDING: Final = 100_000  # settlements kept for replay; older ones expire by TTL instead


class FaultMode(StrEnum):
    """What a limiter does while its shared store is unreachable."""

    FAIL_CLOSED = "fail_closed"
    FAIL_OPEN = "fail_open"
    LOCAL = "local"


@dataclass(frozen=True, slots=True, init=False)
class FaultPolicy:
    """How a limiter behaves while its shared store is unreachable.

    Attributes:
        mode: ``fail_closed`` (raise :class:`~quotaflow.StoreUnavailableError`), ``fail_open``
            (admit, unrecorded) or ``local`` (admit against an in-process share of the limits).
        local_share: in ``local`` mode, the fraction of each limit this process may use
            (``1 / number of processes`` keeps the total within the limit).
        probe_interval: seconds between attempts to reach the store again.
    """

    mode: FaultMode = FaultMode.FAIL_CLOSED
    local_share: float = 0.25
    probe_interval: float = 1.0

    def __init__(
        self,
        mode: FaultMode | str = FaultMode.FAIL_CLOSED,
        *,
        local_share: float = 0.25,
        probe_interval: float = 1.0,
    ) -> None:
        try:
            object.__setattr__(self, "mode", FaultMode(mode))
        except ValueError:
            modes = ", ".join(m.value for m in FaultMode)
            raise ConfigurationError(
                f"fault policy mode must be one of {modes}, got {mode!r}"
            ) from None
        object.__setattr__(self, "local_share", local_share)
        object.__setattr__(self, "probe_interval", probe_interval)
        share = self.local_share
        if isinstance(share, bool) or not isinstance(share, int | float):
            raise ConfigurationError(f"local_share must be a number, got {share!r}")
        if not math.isfinite(share) or not 0 < share <= 1:
            raise ConfigurationError(f"local_share must be in (0, 1], got {share!r}")
        probe = self.probe_interval
        if isinstance(probe, bool) or not isinstance(probe, int | float):
            raise ConfigurationError(f"probe_interval must be seconds, got {probe!r}")
        if not math.isfinite(probe) or not 0 < probe <= 3600:  # noqa: PLR2004
            raise ConfigurationError(f"probe_interval must be in (0, 3600] s, got {probe!r}")

    @classmethod
    def parse(cls, value: FaultPolicy | FaultMode | str) -> FaultPolicy:
        """Accept a policy, a mode, or a mode's name."""
        if isinstance(value, FaultPolicy):
            return value
        return cls(value)


#: Called with ``(available, detail)`` whenever the store goes down or comes back.
ChangeHook = Callable[[bool, str], None]


def _scaled(limit: Limit, share: float) -> Limit:
    """``limit`` reduced to ``share`` of itself (at least one unit)."""
    if isinstance(limit, Rate):
        size = max(1, math.floor(limit.limit * share))
        return Rate(limit.metric, size, limit.period, burst=limit.burst, headroom=limit.headroom)
    if isinstance(limit, Quota):
        size = max(1, math.floor(limit.limit * share))
        return Quota(limit.metric, size, limit.period, timezone=limit.timezone)
    if isinstance(limit, Concurrency):
        return Concurrency(max(1, math.floor(limit.limit * share)), ttl=limit.ttl)
    raise ConfigurationError(f"unknown limit {limit!r}")  # pragma: no cover


class FailoverStore:
    """A shared store plus the fault policy that applies while it is unreachable.

    Implements :class:`Store` and :class:`AsyncStore` (forwarding to whichever the wrapped
    store implements).

    Args:
        store: the shared store.
        policy: the fault policy (or a mode's name).
        clock: the local clock (probe timing, and the ``local`` fallback's time).
        on_change: called as ``on_change(available, detail)`` when the store goes down or
            comes back.
    """

    def __init__(
        self,
        store: Store | AsyncStore,
        policy: FaultPolicy | FaultMode | str = FaultMode.FAIL_CLOSED,
        *,
        clock: Clock | None = None,
        on_change: ChangeHook | None = None,
    ) -> None:
        self.policy = FaultPolicy.parse(policy)
        self.inner = store
        # Checked once: isinstance against a runtime protocol costs microseconds per call.
        self._sync_inner = store if isinstance(store, Store) else None
        self._async_inner = store if isinstance(store, AsyncStore) else None
        self._clock = clock or SystemClock()
        self._on_change = on_change
        self._local = MemoryStore(clock=self._clock)
        self._lock = threading.Lock()
        self._down_since: int | None = None
        self._next_probe = 0
        self._local_rids: set[str] = set()  # admitted by the local fallback
        self._open_rids: set[str] = set()  # admitted unrecorded (fail_open)
        self._pending: OrderedDict[str, Usage | None] = OrderedDict()  # settles to replay
        self._scaled: dict[Limit, Limit] = {}

    @property
    def available(self) -> bool:
        """Whether the shared store was reachable at the last attempt."""
        return self._down_since is None

    # State changes -------------------------------------------------------------------------

    def _should_try(self) -> bool:
        return self._down_since is None or self._clock.now_ns() >= self._next_probe

    def _went_down(self, error: StoreUnavailableError) -> None:
        now = self._clock.now_ns()
        with self._lock:
            self._next_probe = now + round(self.policy.probe_interval * NS_PER_SECOND)
            if self._down_since is not None:
                return
            self._down_since = now
        detail = f"shared store unreachable ({error}); policy {self.policy.mode.value}"
        _log.warning("quotaflow: %s", detail)
        if self._on_change is not None:
            self._on_change(False, detail)  # noqa: FBT003

    def _came_back(self) -> list[tuple[str, Usage | None]]:
        """Mark the store up; return the settlements to replay."""
        with self._lock:
            if self._down_since is None:
                return []
            down_for = (self._clock.now_ns() - self._down_since) / NS_PER_SECOND
            self._down_since = None
            replay = list(self._pending.items())
            self._pending.clear()
        detail = f"shared store reachable again after {down_for:.1f}s"
        _log.warning("quotaflow: %s; replaying %d settlements", detail, len(replay))
        if self._on_change is not None:
            self._on_change(True, detail)  # noqa: FBT003
        return replay

    def _defer(self, rid: str, actual: Usage | None) -> None:
        with self._lock:
            self._pending[rid] = actual
            if len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)  # it expires by its TTL instead

    # The fallback ----------------------------------------------------------------------------

    def _fallback_reserve(
        self, rid: str, claims: Sequence[Claim], ttl_ns: int, error: StoreUnavailableError
    ) -> ReserveResult:
        mode = self.policy.mode
        if mode is FaultMode.FAIL_CLOSED:
            raise error
        if mode is FaultMode.FAIL_OPEN:
            now = self._clock.now_ns()
            self._open_rids.add(rid)
            return ReserveResult(True, now, now, None)  # noqa: FBT003
        local = []
        for scope, limit, amount, index in claims:
            scaled = self._scaled.get(limit)
            if scaled is None:
                scaled = self._scaled[limit] = _scaled(limit, self.policy.local_share)
            # A request larger than the local share waits for a full bucket, takes all of it
            # and is charged the rest as debt when it settles.
            local.append((scope, scaled, min(amount, scaled.capacity), index))
        result = self._local.reserve(rid, local, ttl_ns)
        if result.granted:
            self._local_rids.add(rid)
        return result

    def _admitted_elsewhere(self, rid: str) -> ReserveResult | None:
        """A retried reserve of an id the fallback admitted: granted again, charged once."""
        if rid in self._local_rids or rid in self._open_rids:
            now = self._clock.now_ns()
            return ReserveResult(True, now, now, None)  # noqa: FBT003
        return None

    def _settled_elsewhere(self, rid: str, actual: Usage | None) -> bool | None:
        """Settle an id the fallback admitted; ``None`` if the shared store admitted it."""
        if rid in self._local_rids:
            self._local_rids.discard(rid)
            return self._local.settle(rid, actual)
        if rid in self._open_rids:
            self._open_rids.discard(rid)
            return True
        return None

    def _local_snapshot(
        self, scope: str, limits: Sequence[Limit], error: StoreUnavailableError | None
    ) -> tuple[int, list[LimitSnapshot]]:
        """The fallback's view while the store is unreachable; raise unless in ``local`` mode."""
        if self.policy.mode is not FaultMode.LOCAL:
            raise error or self._unavailable()
        return self._local.snapshot(scope, [self._scale(limit) for limit in limits])

    def _unavailable(self) -> StoreUnavailableError:
        return StoreUnavailableError("shared store unreachable; waiting for the next probe")

    # Store -----------------------------------------------------------------------------------

    def reserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit on the shared store, or per the policy while it is unreachable."""
        if (again := self._admitted_elsewhere(rid)) is not None:
            return again
        if self._should_try():
            try:
                result = self._sync().reserve(rid, claims, ttl_ns)
            except StoreUnavailableError as error:
                self._went_down(error)
                return self._fallback_reserve(rid, claims, ttl_ns, error)
            self._replay(self._came_back())
            return result
        return self._fallback_reserve(rid, claims, ttl_ns, self._unavailable())

    def settle(self, rid: str, actual: Usage | None) -> bool:
        """Settle where ``rid`` was admitted; keep it for replay if the store is down."""
        if (settled := self._settled_elsewhere(rid, actual)) is not None:
            return settled
        if not self._should_try():
            self._defer(rid, actual)
            return True
        try:
            settled = self._sync().settle(rid, actual)
        except StoreUnavailableError as error:
            self._went_down(error)
            self._defer(rid, actual)
            return True
        self._replay(self._came_back())
        return settled

    def renew(self, rid: str, ttl_ns: int) -> bool:
        """Renew where ``rid`` was admitted."""
        if rid in self._local_rids:
            return self._local.renew(rid, ttl_ns)
        if rid in self._open_rids:
            return True
        if not self._should_try():
            raise self._unavailable()
        try:
            return self._sync().renew(rid, ttl_ns)
        except StoreUnavailableError as error:
            self._went_down(error)
            raise

    def snapshot(self, scope: str, limits: Sequence[Limit]) -> tuple[int, list[LimitSnapshot]]:
        """The shared store's view; the local one while it is unreachable (``local`` mode)."""
        if not self._should_try():
            return self._local_snapshot(scope, limits, None)
        try:
            return self._sync().snapshot(scope, limits)
        except StoreUnavailableError as error:
            self._went_down(error)
            return self._local_snapshot(scope, limits, error)

    # Notes: the shared store's while it answers, this process's own meanwhile --------------

    def get_note(self, key: str) -> str | None:
        """The shared note under ``key``; the local one while the store is unreachable."""
        inner = self.inner
        if isinstance(inner, Notes) and self._should_try():
            try:
                return inner.get_note(key)
            except StoreUnavailableError as error:
                self._went_down(error)
        return self._local.get_note(key)

    def put_note(self, key: str, value: str, ttl: float) -> None:
        """Keep the note locally and, while it answers, in the shared store."""
        self._local.put_note(key, value, ttl)
        inner = self.inner
        if isinstance(inner, Notes) and self._should_try():
            try:
                inner.put_note(key, value, ttl)
            except StoreUnavailableError as error:
                self._went_down(error)

    async def aget_note(self, key: str) -> str | None:
        """The shared note under ``key``; the local one while the store is unreachable."""
        inner = self.inner
        if isinstance(inner, AsyncNotes) and self._should_try():
            try:
                return await inner.aget_note(key)
            except StoreUnavailableError as error:
                self._went_down(error)
        return self._local.get_note(key)

    async def aput_note(self, key: str, value: str, ttl: float) -> None:
        """Keep the note locally and, while it answers, in the shared store."""
        self._local.put_note(key, value, ttl)
        inner = self.inner
        if isinstance(inner, AsyncNotes) and self._should_try():
            try:
                await inner.aput_note(key, value, ttl)
            except StoreUnavailableError as error:
                self._went_down(error)

    def listen(self, on_release: Callable[[tuple[str, ...]], None]) -> None:
        """Pass release notifications of the shared store on, if it sends any."""
        listen = getattr(self.inner, "listen", None)
        if listen is not None:
            listen(on_release)

    def close(self) -> None:
        """Close the shared store."""
        self._sync().close()

    def _scale(self, limit: Limit) -> Limit:
        scaled = self._scaled.get(limit)
        if scaled is None:
            scaled = self._scaled[limit] = _scaled(limit, self.policy.local_share)
        return scaled

    def _sync(self) -> Store:
        if self._sync_inner is None:
            raise ConfigurationError(f"{self.inner!r} has no synchronous interface")
        return self._sync_inner

    def _replay(self, pending: list[tuple[str, Usage | None]]) -> None:
        for rid, actual in pending:
            try:
                self._sync().settle(rid, actual)
            except StoreUnavailableError as error:
                self._went_down(error)
                self._defer(rid, actual)

    # AsyncStore ------------------------------------------------------------------------------

    def _async(self) -> AsyncStore:
        if self._async_inner is None:
            raise ConfigurationError(f"{self.inner!r} has no asyncio interface")
        return self._async_inner

    async def areserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit on the shared store, or per the policy while it is unreachable."""
        if (again := self._admitted_elsewhere(rid)) is not None:
            return again
        if self._should_try():
            try:
                result = await self._async().areserve(rid, claims, ttl_ns)
            except StoreUnavailableError as error:
                self._went_down(error)
                return self._fallback_reserve(rid, claims, ttl_ns, error)
            await self._areplay(self._came_back())
            return result
        return self._fallback_reserve(rid, claims, ttl_ns, self._unavailable())

    async def asettle(self, rid: str, actual: Usage | None) -> bool:
        """Settle where ``rid`` was admitted; keep it for replay if the store is down."""
        if (settled := self._settled_elsewhere(rid, actual)) is not None:
            return settled
        if not self._should_try():
            self._defer(rid, actual)
            return True
        try:
            settled = await self._async().asettle(rid, actual)
        except StoreUnavailableError as error:
            self._went_down(error)
            self._defer(rid, actual)
            return True
        await self._areplay(self._came_back())
        return settled

    async def arenew(self, rid: str, ttl_ns: int) -> bool:
        """Renew where ``rid`` was admitted."""
        if rid in self._local_rids:
            return self._local.renew(rid, ttl_ns)
        if rid in self._open_rids:
            return True
        if not self._should_try():
            raise self._unavailable()
        try:
            return await self._async().arenew(rid, ttl_ns)
        except StoreUnavailableError as error:
            self._went_down(error)
            raise

    async def asnapshot(
        self, scope: str, limits: Sequence[Limit]
    ) -> tuple[int, list[LimitSnapshot]]:
        """The shared store's view; the local one while it is unreachable (``local`` mode)."""
        if not self._should_try():
            return self._local_snapshot(scope, limits, None)
        try:
            return await self._async().asnapshot(scope, limits)
        except StoreUnavailableError as error:
            self._went_down(error)
            return self._local_snapshot(scope, limits, error)

    async def aclose(self) -> None:
        """Close the shared store."""
        await self._async().aclose()

    async def _areplay(self, pending: list[tuple[str, Usage | None]]) -> None:
        for rid, actual in pending:
            try:
                await self._async().asettle(rid, actual)
            except StoreUnavailableError as error:
                self._went_down(error)
                self._defer(rid, actual)
