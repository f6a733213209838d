"""The embedded default store: state in this process's memory.

Safe under threads (one lock around the engine; every operation is short and does no I/O) and
under asyncio (the async methods never block). Memory stays bounded: reservations not settled
within their TTL are forgotten, and scopes whose limits are all idle (buckets full, nothing
spent this period, no lease held) are dropped by a sweep that runs at most once per
``sweep_interval`` seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from quotaflow._clock import Clock, SystemClock
from quotaflow.core import NS_PER_SECOND, Claim, Engine, Limit, LimitSnapshot, ReserveResult, Usage
from quotaflow.stores._notes import NoteBook, check_note

__all__ = ["MemoryStore"]


class MemoryStore:
    """Limit state in process memory; implements both :class:`Store` and :class:`AsyncStore`.

    Args:
        clock: the time source (a :class:`~quotaflow.testing.FakeClock` in tests).
        sweep_interval: seconds between sweeps of expired reservations and idle scopes.
    """

    __slots__ = ("_clock", "_engine", "_lock", "_notes", "_now")

    #: Operations never block (no I/O, a lock held for microseconds), so an async limiter may
    #: call the sync methods directly and save a coroutine per call.
    nonblocking = True

    def __init__(self, *, clock: Clock | None = None, sweep_interval: float = 60.0) -> None:
        self._clock = clock or SystemClock()
        self._engine = Engine(sweep_interval_ns=round(sweep_interval * NS_PER_SECOND))
        self._lock = threading.Lock()
        self._now = self._clock.now_ns
        self._notes = NoteBook()

    # Store ---------------------------------------------------------------------------------

    def reserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` now as reservation ``rid``, all or nothing."""
        with self._lock:
            return self._engine.reserve(rid, claims, self._now(), ttl_ns)

    def settle(self, rid: str, actual: Usage | None) -> bool:
        """Reconcile ``rid`` with ``actual`` usage; ``None`` refunds it all."""
        with self._lock:
            return self._engine.settle(rid, actual, self._now())

    def renew(self, rid: str, ttl_ns: int) -> bool:
        """Extend ``rid`` and its leases."""
        with self._lock:
            return self._engine.renew(rid, self._now(), ttl_ns)

    def snapshot(self, scope: str, limits: Sequence[Limit]) -> tuple[int, list[LimitSnapshot]]:
        """Return the time and the state of ``limits`` in ``scope``."""
        with self._lock:
            now = self._now()
            return now, self._engine.snapshot(scope, limits, now)

    def close(self) -> None:
        """Nothing to release."""

    # AsyncStore ----------------------------------------------------------------------------

    async def areserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` now as reservation ``rid``, all or nothing."""
        with self._lock:
            return self._engine.reserve(rid, claims, self._now(), ttl_ns)

    async def asettle(self, rid: str, actual: Usage | None) -> bool:
        """Reconcile ``rid`` with ``actual`` usage; ``None`` refunds it all."""
        return self.settle(rid, actual)

    async def arenew(self, rid: str, ttl_ns: int) -> bool:
        """Extend ``rid`` and its leases."""
        return self.renew(rid, ttl_ns)

    async def asnapshot(
        self, scope: str, limits: Sequence[Limit]
    ) -> tuple[int, list[LimitSnapshot]]:
        """Return the time and the state of ``limits`` in ``scope``."""
        return self.snapshot(scope, limits)

    async def aclose(self) -> None:
        """Nothing to release."""

    # Notes ---------------------------------------------------------------------------------

    def get_note(self, key: str) -> str | None:
        """Return the note under ``key``, or ``None`` if there is none or it expired."""
        with self._lock:
            return self._notes.get(key, self._now())

    def put_note(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds (replacing any earlier note)."""
        ttl_ns = check_note(key, value, ttl)
        with self._lock:
            self._notes.put(key, value, self._now() + ttl_ns)

    async def aget_note(self, key: str) -> str | None:
        """Return the note under ``key`` (see :meth:`get_note`)."""
        return self.get_note(key)

    async def aput_note(self, key: str, value: str, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds."""
        self.put_note(key, value, ttl)

    # Introspection -------------------------------------------------------------------------

    def sweep(self) -> None:
        """Forget expired reservations and idle scopes now, rather than at the next interval."""
        with self._lock:
            self._engine.sweep(self._now())

    @property
    def scope_count(self) -> int:
        """Scopes with state in memory."""
        return self._engine.scope_count

    @property
    def reservation_count(self) -> int:
        """Reservations held."""
        return self._engine.reservation_count
