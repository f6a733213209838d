"""The state of one concurrency limit: the leases in flight and when each expires."""

from __future__ import annotations

from quotaflow.core._limits import Concurrency
from quotaflow.core._snapshot import LimitSnapshot

__all__ = ["LeaseState"]


class LeaseState:
    """Mutable state of one :class:`Concurrency` limit in one scope."""

    __slots__ = ("leases", "limit")

    def __init__(self, limit: Concurrency) -> None:
        self.limit = limit
        self.leases: dict[str, int] = {}  # reservation id -> expiry (ns)

    def _expire(self, now: int) -> None:
        expired = [rid for rid, expiry in self.leases.items() if expiry <= now]
        for rid in expired:
            del self.leases[rid]

    def reconfigure(self, limit: Concurrency, now: int) -> None:  # noqa: ARG002 (uniform protocol)
        """Adopt a new cap; leases in flight are kept (a lower cap admits nobody until they end)."""
        self.limit = limit

    def available_at(self, amount: int, now: int) -> int:  # noqa: ARG002 (always one lease)
        """Return ``now`` if a lease is free, else when the first lease expires."""
        leases = self.leases
        if len(leases) < self.limit.capacity:
            return now
        self._expire(now)
        if len(leases) < self.limit.capacity:
            return now
        return min(leases.values())

    def take(self, amount: int, now: int, rid: str) -> int:  # noqa: ARG002 (always one lease)
        """Grant a lease to ``rid`` until ``now + ttl``."""
        self.leases[rid] = now + self.limit.ttl_ns
        return 0

    def settle(self, reserved: int, actual: int, mark: int, now: int, rid: str | None) -> None:  # noqa: ARG002
        """End the lease of ``rid``: a settled or cancelled call no longer holds a slot."""
        if rid is not None:
            self.leases.pop(rid, None)

    def renew(self, rid: str, now: int) -> bool:
        """Extend the lease of ``rid`` to ``now + ttl``; ``False`` if it has expired already."""
        expiry = self.leases.get(rid)
        if expiry is None or expiry <= now:
            self.leases.pop(rid, None)
            return False
        self.leases[rid] = now + self.limit.ttl_ns
        return True

    def is_idle(self, now: int) -> bool:
        """Whether no lease is held."""
        self._expire(now)
        return not self.leases

    def snapshot(self, now: int) -> LimitSnapshot:
        """Return the leases held and the time until the last one expires."""
        self._expire(now)
        held = len(self.leases)
        last = max(self.leases.values(), default=now)
        return LimitSnapshot(
            limit=self.limit,
            used=held,
            remaining=max(0, self.limit.capacity - held),
            resets_in_ns=last - now,
        )
