"""The contract between a limiter and the place its state lives.

A store is handed fully planned admissions (the claims of one request on every limit of every
scope it spans) and answers each operation atomically. Two protocols exist because a store is
driven either from threads (:class:`Store`) or from an event loop (:class:`AsyncStore`); the
method names differ (``reserve`` / ``areserve``) so that one class can implement both, as
:class:`~quotaflow.stores.MemoryStore` does.

Times are integer nanoseconds on the store's own clock (a shared store uses its server's time,
so that hosts with skewed clocks agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from quotaflow.core import Claim, Limit, LimitSnapshot, ReserveResult, Usage

__all__ = ["AsyncStore", "Store"]


@runtime_checkable
class Store(Protocol):
    """A state store used from threads."""

    def reserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` now as reservation ``rid``, all or nothing; idempotent by ``rid``."""

    def settle(self, rid: str, actual: Usage | None) -> bool:
        """Reconcile ``rid`` with ``actual`` (``None`` refunds it all); ``False`` if unknown."""

    def renew(self, rid: str, ttl_ns: int) -> bool:
        """Extend ``rid`` and its leases by ``ttl_ns`` from now; ``False`` if it is gone."""

    def snapshot(self, scope: str, limits: Sequence[Limit]) -> tuple[int, list[LimitSnapshot]]:
        """Return the store's time and the state of ``limits`` in ``scope``."""

    def close(self) -> None:
        """Release connections and files."""


@runtime_checkable
class AsyncStore(Protocol):
    """A state store used from an event loop."""

    async def areserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        """Admit ``claims`` now as reservation ``rid``, all or nothing; idempotent by ``rid``."""

    async def asettle(self, rid: str, actual: Usage | None) -> bool:
        """Reconcile ``rid`` with ``actual`` (``None`` refunds it all); ``False`` if unknown."""

    async def arenew(self, rid: str, ttl_ns: int) -> bool:
        """Extend ``rid`` and its leases by ``ttl_ns`` from now; ``False`` if it is gone."""

    async def asnapshot(
        self, scope: str, limits: Sequence[Limit]
    ) -> tuple[int, list[LimitSnapshot]]:
        """Return the store's time and the state of ``limits`` in ``scope``."""

    async def aclose(self) -> None:
        """Release connections and files."""
