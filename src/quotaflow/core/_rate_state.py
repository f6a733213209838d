"""The state of one rolling rate: a token bucket kept as a theoretical arrival time (GCRA).

All arithmetic is on integers (nanoseconds and whole units), rounded against the caller, so
that no sequence of operations ever admits more than the limit allows.

The bucket is empty-of-usage (full of capacity) when ``tat <= now``; it holds
``(tat - now) / interval_ns(1)`` units of usage otherwise. A request of ``n`` units fits at
``now`` when ``max(tat, now) + interval_ns(n) <= now + tolerance_ns``.

Refunds. Giving back ``x`` units reserved at time ``t_a`` must not credit capacity that the
bucket had already regained by refilling: had the reservation been smaller, the bucket would
have filled up (and stopped refilling) earlier. The exact bound needs the whole history, so a
conservative one is used instead: usage admitted after the reservation (``gross`` counts every
unit ever admitted, never decreasing) is still counted in full. See ``docs/architecture.md``.
"""

from __future__ import annotations

from quotaflow.core._limits import Rate
from quotaflow.core._snapshot import LimitSnapshot

__all__ = ["RateState"]


class RateState:
    """Mutable state of one :class:`Rate` in one scope."""

    __slots__ = ("gross", "limit", "tat")

    def __init__(self, limit: Rate) -> None:
        self.limit = limit
        self.tat = 0
        self.gross = 0

    def reconfigure(self, limit: Rate, now: int) -> None:
        """Adopt new parameters while keeping the usage recorded under the old ones."""
        old = self.limit
        self.limit = limit
        if self.tat > now:
            # used units = (tat - now) * refill / period; re-express them in the new bucket.
            used = -(-(self.tat - now) * old.refill // old.period_ns)
            self.tat = now + limit.interval_ns(used)

    def available_at(self, amount: int, now: int) -> int:
        """Return the earliest time (ns) at which ``amount`` units fit; ``now`` if they do now."""
        limit = self.limit
        start = self.tat - (amount * limit.period_ns // -limit.refill) - limit.tolerance_ns
        return start if start > now else now

    def take(self, amount: int, now: int, rid: str) -> int:  # noqa: ARG002 (uniform protocol)
        """Admit ``amount`` units at ``now`` (the caller checked that they fit).

        Returns the mark that :meth:`give_back` needs.
        """
        tat = self.tat
        limit = self.limit
        self.tat = (tat if tat > now else now) - (amount * limit.period_ns // -limit.refill)
        self.gross += amount
        return self.gross

    def settle(self, reserved: int, actual: int, mark: int, now: int, rid: str) -> None:  # noqa: ARG002
        """Reconcile a reservation of ``reserved`` units (marked ``mark``) with ``actual`` use.

        Less than reserved is refunded, as far as the bucket has not refilled past it; more is
        charged at ``now`` as debt that delays later admissions.
        """
        limit = self.limit
        if actual > reserved:
            tat = self.tat
            self.tat = (tat if tat > now else now) + limit.interval_ns(actual - reserved)
            self.gross += actual - reserved
            return
        credit_ns = (reserved - actual) * limit.period_ns // limit.refill  # rounded down
        tat = self.tat - credit_ns
        later = self.gross - mark  # units admitted after the reservation: still in the bucket
        if later > 0:
            floor = now + limit.interval_ns(later)
            if tat < floor:
                tat = floor
        if tat < self.tat:
            self.tat = tat

    def is_idle(self, now: int) -> bool:
        """Whether the bucket is full, so that forgetting the state changes nothing."""
        return self.tat <= now

    def snapshot(self, now: int) -> LimitSnapshot:
        """Return the usage, remaining capacity and time until the bucket is full again."""
        limit = self.limit
        behind = self.tat - now
        used = -(-behind * limit.refill // limit.period_ns) if behind > 0 else 0
        return LimitSnapshot(
            limit=limit,
            used=used,
            remaining=max(0, limit.capacity - used),
            resets_in_ns=max(0, behind),
        )
