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

    __slots__ = ("_at", "_held", "_q", "_since", "_void", "gross", "limit", "net", "tat")

    def __init__(self, limit: Rate) -> None:
        self.limit = limit
        self.tat = 0
        self.gross = 0  # units ever admitted and charged; never decreases (identifies positions)
        self.net = 0  # units admitted and charged, less refunds
        self._at: list[int] = []  # gross before each kept admission: increasing
        self._q: list[int] = []  # q_k = t_k * R - N_k * P of each: decreasing
        self._since = 0  # gross when the rate last changed; older marks use the coarse bound
        self._held: dict[int, int] = {}  # mark of each reservation held -> how many share it
        self._void = -1  # reservations with marks up to this one can no longer be refunded

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

    def take(self, amount: int, now: int, rid: str | None) -> int:
        """Admit ``amount`` units at ``now`` (the caller checked that they fit).

        ``rid`` is the reservation's id, or ``None`` for an overrun charged at settlement (which
        no refund will ever ask about). Returns the mark that :meth:`settle` needs: the gross
        count after this admission.
        """
        tat = self.tat
        limit = self.limit
        gross = self.gross
        if tat <= now:
            # The bucket is full: what was admitted before now has refilled, so refunds of it
            # are absorbed, and no later refund can ask about this admission. Nothing to keep.
            self._void = gross
            if self._q:
                self._q.clear()
                self._at.clear()
            tat = now
        else:
            q, at = self._q, self._at
            value = now * limit.refill - self.net * limit.period_ns
            while q and q[-1] <= value:
                q.pop()
                at.pop()
            q.append(value)
            at.append(gross)
            if len(q) > SLACK + len(self._held):
                self._compact()
        self.tat = tat - (amount * limit.period_ns // -limit.refill)
        self.net += amount
        mark = self.gross = gross + amount
        if rid is not None:
            # Marks of positive amounts are unique; a zero amount shares the previous mark.
            count = self._held.get(mark, 0) if not amount else 0
            self._held[mark] = count + 1
        return mark

    def _compact(self) -> None:
        """Keep only the entries a held reservation asks for (see the module docstring)."""
        at, q = self._at, self._q
        asked = sorted({i for mark in self._held if (i := bisect_left(at, mark)) < len(at)})
        self._at = [at[i] for i in asked]
        self._q = [q[i] for i in asked]

    def _release(self, mark: int) -> None:
        """The reservation marked ``mark`` is no longer held."""
        held = self._held
        count = held.pop(mark, 0)
        if count > 1:
            held[mark] = count - 1

    def settle(self, reserved: int, actual: int, mark: int, now: int, rid: str | None) -> None:  # noqa: ARG002
        """Reconcile a reservation of ``reserved`` units (marked ``mark``) with ``actual`` use.

        Less than reserved is refunded, as far as the bucket has not refilled past it; more is
        charged at ``now`` as debt that delays later admissions.
        """
        self._release(mark)
        if actual > reserved:
            self.take(actual - reserved, now, None)
            return
        refund = reserved - actual
        if not refund or mark <= self._void:
            # Absorbed: the bucket was full since. ``net`` keeps the units too: the reservation
            # lies before every entry kept, so it counts the same in each of their terms.
            return
        limit = self.limit
        tat = self.tat - refund * limit.period_ns // limit.refill  # rounded down
        if mark < self._since:
            # From before a rate change, which cleared the entries: bound it by the units
            # admitted since, counted in full. ``net`` is left as is, for the reason above.
            tat = max(tat, now + limit.interval_ns(self.gross - mark))
        else:
            tat = max(tat, self._refund_floor(refund, mark))
            self.net -= refund
        if tat < self.tat:
            self.tat = tat

    def _refund_floor(self, refund: int, mark: int) -> int:
        """The ``tat`` the admissions after ``mark`` still need, and lift their entries."""
        q, at = self._q, self._at
        index = bisect_left(at, mark)  # the first admission after this reservation
        if index == len(q):
            return 0
        limit = self.limit
        floor = -((self.net * limit.period_ns + q[index]) // -limit.refill)
        # Later admissions keep their terms (they hold as much as before): lift their entries
        # by what ``net`` is about to lose.
        shift = refund * limit.period_ns
        for later in range(index, len(q)):
            q[later] += shift
        # Earlier entries that no longer exceed the first later one are dominated.
        first = q[index]
        while index and q[index - 1] <= first:
            index -= 1
            del q[index], at[index]
        return floor

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
