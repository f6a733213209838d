"""Which waiting request a model queue admits next: priorities, aging and minimum shares.

Pure bookkeeping on integer nanoseconds; the queue passes ``now``. Requests of one priority
wait in arrival order. The next request is, in this order:

1. the oldest request of a priority class with a minimum share that has earned its turn:
   while a class has requests waiting, every admission (of any class) credits it with its
   share of that admission's weight, and each of its own admissions spends its weight; a class
   whose credit covers its oldest request (less the share that admission earns it) goes
   first, the largest credit first. A class with
   nothing waiting keeps no credit, so an idle period never banks a later burst;
2. otherwise the request with the highest *effective* priority: its priority plus one for
   every ``aging`` seconds it has waited, so a low-priority request eventually outranks any
   newcomer and never starves; ties go to the earlier arrival.

Weights are tokens for a model with token limits, else requests. While a class keeps requests
waiting, it so receives at least its share of the admitted weight. :meth:`shares` reports the
admitted weight per class, decayed exponentially with a half-life of ``window`` seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from quotaflow.core import NS_PER_SECOND

__all__ = ["Entry", "PriorityScheduler"]

V = TypeVar("V")


class Entry(Generic[V]):
    """One waiting request: its priority, arrival and weight, and what it carries."""

    __slots__ = ("arrived", "item", "priority", "removed", "seq", "weight")

    def __init__(self, item: V, priority: int, seq: int, arrived: int, weight: int) -> None:
        self.item = item
        self.priority = priority
        self.seq = seq
        self.arrived = arrived  # ns
        self.weight = max(1, weight)
        self.removed = False


class PriorityScheduler(Generic[V]):
    """The waiting requests of one queue, and the shares each priority class was given."""

    __slots__ = (
        "_aging_ns",
        "_classes",
        "_count",
        "_credit",
        "_decayed_at",
        "_given",
        "_half_life_ns",
        "_min_share",
        "_seq",
    )

    def __init__(
        self, *, aging: float | None, min_share: Mapping[int, float], window: float
    ) -> None:
        self._aging_ns = None if aging is None else round(aging * NS_PER_SECOND)
        self._min_share = dict(min_share)
        self._half_life_ns = round(window * NS_PER_SECOND)
        self._classes: dict[int, deque[Entry[V]]] = {}
        self._given: dict[int, float] = {}  # decayed weight admitted per priority
        self._credit: dict[int, float] = dict.fromkeys(self._min_share, 0.0)
        self._decayed_at = 0
        self._count = 0
        self._seq = 0

    def __len__(self) -> int:
        return self._count

    def add(self, item: V, priority: int, now: int, weight: int) -> Entry[V]:
        """Queue ``item`` behind the earlier requests of its priority."""
        self._seq += 1
        entry = Entry(item, priority, self._seq, now, weight)
        self._classes.setdefault(priority, deque()).append(entry)
        self._count += 1
        return entry

    def put_back(self, entry: Entry[V]) -> None:
        """Return ``entry`` (taken by :meth:`take`) to the head of its class."""
        entry.removed = False
        self._classes.setdefault(entry.priority, deque()).appendleft(entry)
        self._count += 1

    def discard(self, entry: Entry[V]) -> None:
        """Forget a waiting ``entry`` (its caller gave up)."""
        if not entry.removed:
            entry.removed = True
            self._count -= 1

    def peek(self, now: int) -> Entry[V] | None:
        """The entry :meth:`take` would return at ``now``."""
        heads = self._heads()
        if not heads:
            return None
        favoured = self._short_of_share(heads)
        if favoured is not None:
            return favoured
        return max(heads, key=lambda e: (self._effective(e, now), -e.seq))

    def take(self, now: int) -> Entry[V] | None:
        """Remove and return the next entry to admit, or ``None`` when nothing waits."""
        entry = self.peek(now)
        if entry is not None:
            self._classes[entry.priority].popleft()
            entry.removed = True
            self._count -= 1
        return entry

    def admitted(self, entry: Entry[V], now: int) -> None:
        """Count ``entry``'s weight as given to its priority class at ``now``."""
        self._decay(now)
        self._given[entry.priority] = self._given.get(entry.priority, 0.0) + entry.weight
        credit = self._credit
        for priority, share in self._min_share.items():
            if priority == entry.priority or self._waiting(priority):
                credit[priority] += share * entry.weight
            else:
                credit[priority] = 0.0  # nothing waits: no credit is banked
        if entry.priority in credit:
            credit[entry.priority] = max(0.0, credit[entry.priority] - entry.weight)

    def shares(self, now: int) -> dict[int, float]:
        """The recent share of admitted weight of each priority class."""
        self._decay(now)
        total = sum(self._given.values())
        return {p: w / total for p, w in self._given.items()} if total else {}

    def depths(self) -> dict[int, int]:
        """Waiting requests per priority."""
        return {p: n for p, q in self._classes.items() if (n := sum(not e.removed for e in q))}

    def drain(self) -> Iterator[V]:
        """Remove and yield every waiting item, in no particular order."""
        classes, self._classes = self._classes, {}
        self._count = 0
        for queue in classes.values():
            for entry in queue:
                if not entry.removed:
                    entry.removed = True
                    yield entry.item

    # Internals -------------------------------------------------------------------------------

    def _heads(self) -> list[Entry[V]]:
        heads = []
        for priority in list(self._classes):
            queue = self._classes[priority]
            while queue and queue[0].removed:
                queue.popleft()
            if queue:
                heads.append(queue[0])
            else:
                del self._classes[priority]
        return heads

    def _effective(self, entry: Entry[V], now: int) -> float:
        if self._aging_ns is None:
            return float(entry.priority)
        return entry.priority + max(0, now - entry.arrived) / self._aging_ns

    def _short_of_share(self, heads: list[Entry[V]]) -> Entry[V] | None:
        if not self._min_share or len(heads) < 2:  # noqa: PLR2004 (a share needs a rival)
            return None
        best: Entry[V] | None = None
        most = 0.0
        for head in heads:
            credit = self._credit.get(head.priority, 0.0)
            # Its own admission earns it its share of its weight too: it is due once the
            # credit covers the rest.
            due = head.weight * (1.0 - self._min_share.get(head.priority, 0.0))
            if credit >= due and credit > most:
                best, most = head, credit
        return best

    def _waiting(self, priority: int) -> bool:
        queue = self._classes.get(priority)
        return queue is not None and any(not e.removed for e in queue)

    def _decay(self, now: int) -> None:
        elapsed = now - self._decayed_at
        if elapsed <= 0:
            return
        self._decayed_at = now
        if not self._given:
            return
        factor = 0.5 ** (elapsed / self._half_life_ns)
        for priority in list(self._given):
            weight = self._given[priority] * factor
            if weight < 1e-9:  # noqa: PLR2004 (forgotten)
                del self._given[priority]
            else:
                self._given[priority] = weight
