"""The state of one rolling rate: a token bucket kept as a theoretical arrival time (GCRA).

All arithmetic is on integers (nanoseconds and whole units), rounded against the caller, so
that no sequence of operations ever admits more than the limit allows.

The bucket is empty-of-usage (full of capacity) when ``tat <= now``; it holds
``(tat - now) / interval_ns(1)`` units of usage otherwise. A request of ``n`` units fits at
``now`` when ``max(tat, now) + interval_ns(n) <= now + tolerance_ns``.

Refunds. Giving back ``x`` units of a reservation A must not credit capacity that the bucket
had regained by refilling since A: had A been smaller, the bucket would have filled up (and
stopped refilling) earlier. Exactly, the bucket after the refund must still hold what every
admission *after* A holds, less what has refilled since. With ``N`` the units held (admitted
and charged, less refunds), ``P``/``R`` the period and refill, and ``t_k`` and ``N_k`` the
time of admission ``k`` and the units held before it:

    tat' = max(tat - x*P/R,  (N_now*P + max over k after A of q_k) / R),  q_k = t_k*R - N_k*P

A refund of A adds ``x*P`` to ``q_k`` of every admission after A (their terms do not change;
the terms of A and earlier drop by ``x``). The maxima over suffixes are kept in a monotonic
stack of exact integers: an entry dominated by a later one can never be the answer and is
dropped, and the stack is emptied whenever the bucket is full (nothing before then can
bind). A held reservation only ever asks for one entry, the first at or after its mark; when
the stack outgrows the reservations held by ``SLACK`` entries, every other entry is dropped.
That is exact: an entry no held reservation asks for stays below the asked-for entry before
it forever (only a refund of a reservation between the two could lift it, and reservations
made from now on come after both). Memory is bounded by the reservations held plus
``SLACK``. See ``docs/architecture.md``.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

from quotaflow.core._limits import Rate
from quotaflow.core._snapshot import LimitSnapshot

__all__ = ["SLACK", "RateState"]

#: Entries a bucket keeps beyond one per held reservation before it drops the unneeded ones.
SLACK: Final = 64


class RateState:
    """Mutable state of one :class:`Rate` in one scope."""

    __slots__ = ("_at", "_held", "_q", "_since", "gross", "limit", "net", "tat")

    def __init__(self, limit: Rate) -> None:
        self.limit = limit
        self.tat = 0
        self.gross = 0  # units ever admitted and charged; never decreases (identifies positions)
        self.net = 0  # units admitted and charged, less refunds
        self._at: list[int] = []  # gross before each kept admission: increasing
        self._q: list[int] = []  # q_k = t_k * R - N_k * P of each: decreasing
        self._since = 0  # gross when the rate last changed; older marks use the coarse bound
        self._held: dict[int, int] = {}  # mark of each reservation held -> how many share it

    def reconfigure(self, limit: Rate, now: int) -> None:
        """Adopt new parameters while keeping the usage recorded under the old ones."""
        old = self.limit
        self.limit = limit
        if self.tat > now:
            # used units = (tat - now) * refill / period; re-express them in the new bucket.
            used = -(-(self.tat - now) * old.refill // old.period_ns)
            self.tat = now + limit.interval_ns(used)
        self._at.clear()
        self._q.clear()
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
        q = self._q
        at = self._at
        if tat <= now:
            if q:  # the bucket is full: no earlier admission can bound a refund any more
                q.clear()
                at.clear()
            tat = now
        value = now * limit.refill - self.net * limit.period_ns
        while q and q[-1] <= value:
            q.pop()
            at.pop()
        q.append(value)
        at.append(self.gross)
        if len(q) > SLACK + len(self._held):
            self._compact()
        self.tat = tat - (amount * limit.period_ns // -limit.refill)
        self.net += amount
        self.gross += amount
        return self.gross

    def _compact(self) -> None:
        """Keep only the entries a held reservation asks for (see the module docstring)."""
        at, q = self._at, self._q
        asked = sorted({i for mark in self._held if (i := bisect_left(at, mark)) < len(at)})
        self._at = [at[i] for i in asked]
        self._q = [q[i] for i in asked]

    def _release(self, mark: int) -> None:
        """The reservation marked ``mark`` is no longer held."""
        held = self._held
        count = held.get(mark, 0)
        if count > 1:
            held[mark] = count - 1
        elif count:
            del held[mark]

    def take(self, amount: int, now: int, rid: str) -> int:  # noqa: ARG002 (uniform protocol)
        """Admit ``amount`` units at ``now`` (the caller checked that they fit).

        Returns the mark that :meth:`settle` needs: the gross count after this admission.
        """
        mark = self._add(amount, now)
        held = self._held
        held[mark] = held.get(mark, 0) + 1
        return mark

    def settle(self, reserved: int, actual: int, mark: int, now: int, rid: str) -> None:  # noqa: ARG002
        """Reconcile a reservation of ``reserved`` units (marked ``mark``) with ``actual`` use.

        Less than reserved is refunded, as far as the bucket has not refilled past it; more is
        charged at ``now`` as debt that delays later admissions.
        """
        self._release(mark)
        if actual > reserved:
            self._add(actual - reserved, now)
            return
        refund = reserved - actual
        if not refund:
            return
        limit = self.limit
        tat = self.tat - refund * limit.period_ns // limit.refill  # rounded down
        q = self._q
        if mark < self._since:
            later = self.gross - mark  # from before a rate change: count later units in full
            if later > 0:
                tat = max(tat, now + limit.interval_ns(later))
        else:
            index = bisect_left(self._at, mark)  # the first admission after this one
            if index < len(q):
                floor = -((self.net * limit.period_ns + q[index]) // -limit.refill)
                tat = max(tat, floor)
                # Later admissions keep their terms: they hold as much as before.
                shift = refund * limit.period_ns
                for later_index in range(index, len(q)):
                    q[later_index] += shift
                # Earlier entries that no longer exceed the first later one are dominated.
                first = q[index]
                while index and q[index - 1] <= first:
                    index -= 1
                    del q[index], self._at[index]
        self.net -= refund
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
