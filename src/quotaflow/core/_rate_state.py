"""The state of one rolling rate: a token bucket kept as a theoretical arrival time (GCRA).

All arithmetic is on integers (nanoseconds and whole units), rounded against the caller, so
that no sequence of operations ever admits more than the limit allows.

The bucket is empty-of-usage (full of capacity) when ``tat <= now``; it holds
``(tat - now) / interval_ns(1)`` units of usage otherwise. A request of ``n`` units fits at
``now`` when ``max(tat, now) + interval_ns(n) <= now + tolerance_ns``.

Refunds. Giving back ``x`` units of a reservation A must not credit capacity that the bucket
had regained by refilling since A: had A been smaller, the bucket would have filled up (and
stopped refilling) earlier. Exactly, the bucket after the refund must still hold what every
admission after A put in it, less what has refilled since: with ``G`` the units ever admitted
(``gross``) and ``r`` the refill rate,

    tat' = max(tat - x/r,  max over admissions k after A of  t_k + (G_now - G_before_k)/r)

The maximum over a suffix of admissions is kept in a monotonic stack of ``t_k - G_before_k/r``
(larger values below): an entry dominated by a later one can never be the answer and is
dropped; the stack is emptied whenever the bucket is full (nothing before then can bind), and
it is bounded by merging its two oldest entries into the larger value, which only ever makes
a refund smaller. See ``docs/architecture.md``.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

from quotaflow.core._limits import Rate
from quotaflow.core._snapshot import LimitSnapshot

__all__ = ["MAX_PEAKS", "RateState"]

#: Entries kept per bucket to bound refunds exactly; beyond it, refunds get conservative.
MAX_PEAKS: Final = 64


class RateState:
    """Mutable state of one :class:`Rate` in one scope."""

    __slots__ = ("_gross_at", "_peaks", "_since", "gross", "limit", "tat")

    def __init__(self, limit: Rate) -> None:
        self.limit = limit
        self.tat = 0
        self.gross = 0  # units ever admitted (and charged), never decreasing
        self._gross_at: list[int] = []  # gross before each kept admission, increasing
        self._peaks: list[int] = []  # t_k - floor(G_before_k / r) for each, decreasing
        self._since = 0  # gross when the rate last changed; older marks use the coarse bound

    def reconfigure(self, limit: Rate, now: int) -> None:
        """Adopt new parameters while keeping the usage recorded under the old ones."""
        old = self.limit
        self.limit = limit
        if self.tat > now:
            # used units = (tat - now) * refill / period; re-express them in the new bucket.
            used = -(-(self.tat - now) * old.refill // old.period_ns)
            self.tat = now + limit.interval_ns(used)
        self._gross_at.clear()
        self._peaks.clear()
        self._since = self.gross

    def available_at(self, amount: int, now: int) -> int:
        """Return the earliest time (ns) at which ``amount`` units fit; ``now`` if they do now."""
        limit = self.limit
        start = self.tat - (amount * limit.period_ns // -limit.refill) - limit.tolerance_ns
        return start if start > now else now

    def _add(self, amount: int, now: int) -> int:
        """Put ``amount`` units in the bucket at ``now``, recording the admission for refunds."""
        tat = self.tat
        limit = self.limit
        gross = self.gross
        peaks = self._peaks
        gross_at = self._gross_at
        if tat <= now:
            if peaks:  # the bucket is full: no earlier admission can bound a refund any more
                peaks.clear()
                gross_at.clear()
            tat = now
        peak = now - gross * limit.period_ns // limit.refill
        while peaks and peaks[-1] <= peak:
            peaks.pop()
            gross_at.pop()
        peaks.append(peak)
        gross_at.append(gross)
        if len(peaks) > MAX_PEAKS:
            del peaks[1], gross_at[0]  # merge the two oldest, keeping the larger peak
        self.tat = tat - (amount * limit.period_ns // -limit.refill)
        self.gross = gross + amount
        return self.gross

    def take(self, amount: int, now: int, rid: str) -> int:  # noqa: ARG002 (uniform protocol)
        """Admit ``amount`` units at ``now`` (the caller checked that they fit).

        Returns the mark that :meth:`settle` needs: the gross count after this admission.
        """
        return self._add(amount, now)

    def settle(self, reserved: int, actual: int, mark: int, now: int, rid: str) -> None:  # noqa: ARG002
        """Reconcile a reservation of ``reserved`` units (marked ``mark``) with ``actual`` use.

        Less than reserved is refunded, as far as the bucket has not refilled past it; more is
        charged at ``now`` as debt that delays later admissions.
        """
        if actual > reserved:
            self._add(actual - reserved, now)
            return
        limit = self.limit
        tat = self.tat - (reserved - actual) * limit.period_ns // limit.refill  # rounded down
        if mark < self._since:
            later = self.gross - mark  # from before a rate change: count later units in full
            floor = now + limit.interval_ns(later) if later > 0 else tat
        else:
            index = bisect_left(self._gross_at, mark)  # the first admission after this one
            floor = tat
            if index < len(self._peaks):
                floor = self._peaks[index] - (self.gross * limit.period_ns // -limit.refill)
        if floor > tat:
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
