"""FIFO waiting without polling, shared by the async and the sync limiter.

Each scope with waiters has a queue ordered by arrival. A waiter sits in the queue of the scope
that holds it back, so a request stuck on one user's exhausted budget never blocks other users
of the same provider. Only the head of a queue talks to the store: it tries to reserve, and if
refused it sleeps until the slot the store named (one timer per queue) or until a refund in
that scope wakes it. When it is admitted, the next head tries at once.

A request is eligible only once no earlier request waits in any scope it spans; until then it
moves to the queue of that earlier request, keeping its place by arrival. A request that was
admitted by one queue but then held back by another of its scopes *holds* every scope it
spans from then on: later requests for those scopes wait behind it. Without that, traffic on
each single scope could take the capacity it needs in turn, forever.

The decisions are a sans-I/O generator (:func:`wait_turn`) that yields what it needs, either
``RESERVE`` (answered with the store's :class:`ReserveResult`) or a timeout in seconds to
sleep (answered with ``None`` once woken or timed out). The async and the sync limiter each
drive it with their own I/O, so the logic exists once.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Generator
from typing import Final

from quotaflow._errors import AcquireTimeoutError
from quotaflow.core import NS_PER_SECOND, BoundLimit, ReserveResult

__all__ = ["RESERVE", "Waiter", "WaitingRoom", "wait_turn"]

#: What :func:`wait_turn` yields when it wants the driver to try the store.
RESERVE: Final = "reserve"

#: What :func:`wait_turn` yields: ``RESERVE``, or seconds to sleep (``None``: until woken).
Step = str | float | None


def _nothing() -> None:
    return None


class Waiter:
    """One request waiting for its turn."""

    __slots__ = (
        "binding",
        "deadline",
        "eta",
        "holding",
        "position",
        "queue",
        "scopes",
        "seq",
        "wake",
        "woken",
    )

    def __init__(self, seq: int, scopes: tuple[str, ...], deadline: int | None) -> None:
        self.seq = seq
        self.scopes = scopes
        self.deadline = deadline  # ns on the limiter's clock, or None
        self.queue = ""  # the scope whose queue holds it
        self.position = 0  # requests ahead of it when it first queued
        self.eta: int | None = None  # when the store expects to admit it, ns on the limiter's clock
        self.binding: BoundLimit | None = None
        self.woken = False
        self.holding = False  # holds every scope it spans (it was held back by a second one)
        self.wake: Callable[[], None] = _nothing  # set by the driver


class WaitingRoom:
    """The queues of one limiter. Thread-safe."""

    __slots__ = ("_holders", "_queues", "_seq", "epoch", "lock")

    def __init__(self) -> None:
        self._queues: dict[str, list[tuple[int, Waiter]]] = {}
        self._holders: dict[str, list[Waiter]] = {}  # scope -> waiters holding it
        self._seq = itertools.count()
        self.lock = threading.Lock()
        # Bumped by every wake, even with nobody queued: a refusal read before a wake may be
        # stale by the time its request has queued (a release slipped in between).
        self.epoch = 0

    def busy(self, scopes: tuple[str, ...]) -> bool:
        """Whether a request for ``scopes`` would have to queue behind others."""
        queues, holders = self._queues, self._holders
        if not queues and not holders:
            return False
        return any(scope in queues or scope in holders for scope in scopes)

    def depth(self, scope: str) -> int:
        """Requests waiting in the queue of ``scope``."""
        return len(self._queues.get(scope, ()))

    def head_eta(self, scopes: tuple[str, ...]) -> int | None:
        """When the first waiter of any of ``scopes`` expects to be admitted, if known."""
        with self.lock:
            etas = [eta for s in scopes if (q := self._queues.get(s)) and (eta := q[0][1].eta)]
        return min(etas) if etas else None

    def new_waiter(self, scopes: tuple[str, ...], deadline: int | None) -> Waiter:
        """Create a waiter with the next arrival number."""
        return Waiter(next(self._seq), scopes, deadline)

    def join(self, waiter: Waiter, scope: str) -> None:
        """Put ``waiter`` in the queue of ``scope`` (caller holds the lock)."""
        queue = self._queues.setdefault(scope, [])
        if not waiter.queue:
            waiter.position = len(queue)
        waiter.queue = scope
        heapq.heappush(queue, (waiter.seq, waiter))

    def leave(self, waiter: Waiter) -> Waiter | None:
        """Take ``waiter`` out of its queue; return the new head if it changed (lock held)."""
        name = waiter.queue
        queue = self._queues.get(name)
        if queue is None:
            return None
        was_head = queue[0][1] is waiter
        if was_head:
            heapq.heappop(queue)
        else:
            queue.remove((waiter.seq, waiter))
            heapq.heapify(queue)
        waiter.queue = ""
        if not queue:
            del self._queues[name]
            return None
        return queue[0][1] if was_head else None

    def is_head(self, waiter: Waiter) -> bool:
        """Whether ``waiter`` is first in its queue (lock held)."""
        queue = self._queues.get(waiter.queue)
        return queue is not None and queue[0][1] is waiter

    def earlier_elsewhere(self, waiter: Waiter) -> str | None:
        """A scope of ``waiter`` in which an earlier request waits, if any (lock held)."""
        for scope in waiter.scopes:
            if scope != waiter.queue:
                queue = self._queues.get(scope)
                if queue and queue[0][0] < waiter.seq:
                    return scope
        return None

    def held_by_earlier(self, waiter: Waiter) -> bool:
        """Whether an earlier request holds a scope of ``waiter`` (lock held)."""
        holders = self._holders
        return any(
            holder.seq < waiter.seq for scope in waiter.scopes for holder in holders.get(scope, ())
        )

    def hold(self, waiter: Waiter) -> None:
        """Let ``waiter`` hold every scope it spans (lock held)."""
        if not waiter.holding:
            waiter.holding = True
            for scope in waiter.scopes:
                self._holders.setdefault(scope, []).append(waiter)

    def unhold(self, waiter: Waiter) -> list[Waiter]:
        """Release what ``waiter`` holds; return the queue heads to wake (lock held)."""
        if not waiter.holding:
            return []
        waiter.holding = False
        heads = []
        for scope in waiter.scopes:
            holders = self._holders[scope]
            holders.remove(waiter)
            if not holders:
                del self._holders[scope]
            if queue := self._queues.get(scope):
                heads.append(queue[0][1])
        return heads

    def move(self, waiter: Waiter, scope: str) -> Waiter | None:
        """Move ``waiter`` to the queue of ``scope``; return a new head to wake (lock held)."""
        woken = self.leave(waiter)
        self.join(waiter, scope)
        return woken

    def wake_all(self) -> None:
        """Wake the head of every queue (the limits changed)."""
        self.wake_heads(tuple(self._queues))

    def wake_heads(self, scopes: tuple[str, ...]) -> None:
        """Wake the head of each of ``scopes`` (capacity came back there)."""
        self.epoch += 1
        if not self._queues:
            return
        with self.lock:
            heads = [q[0][1] for s in scopes if (q := self._queues.get(s))]
        for head in heads:
            head.woken = True
            head.wake()


def _timeout(waiter: Waiter, now: int, eta: int | None) -> AcquireTimeoutError:
    retry_after = max(0, (eta or now) - now) / NS_PER_SECOND
    return AcquireTimeoutError(retry_after, waiter.binding)


def wait_turn(  # noqa: C901, PLR0912, PLR0915 (one state machine reads best in one place)
    room: WaitingRoom,
    waiter: Waiter,
    first: ReserveResult | None,
    now: Callable[[], int],
    epoch: int = 0,
) -> Generator[Step, ReserveResult | None, ReserveResult]:
    """Wait until ``waiter`` is admitted; return the granting result.

    ``first`` is the store's refusal that sent the request here (``None`` when it queued behind
    earlier requests without asking the store), read when the room's epoch was ``epoch``: if
    capacity came back since, it is not trusted and the store is asked again. ``now`` reads the
    limiter's clock. Raises :class:`AcquireTimeoutError` at the deadline, or at once when the
    store names a slot past it. Whatever ends the wait, the waiter leaves its queue, releases
    the scopes it holds, and the heads it was keeping waiting are woken.
    """
    result: ReserveResult | None = first
    granted = False
    try:
        with room.lock:
            scope = first.binding.scope if first and first.binding else waiter.scopes[0]
            if not room.busy(waiter.scopes) or room.depth(scope):
                room.join(waiter, scope)
            else:  # behind queued requests, or only behind a holder: any of its queues will do
                room.join(waiter, next((s for s in waiter.scopes if room.depth(s)), scope))
            if not room.is_head(waiter) or room.epoch != epoch:
                # Behind earlier requests (their admission will wake this one), or capacity
                # came back after the refusal: ask the store when first in line.
                result = None
        while True:
            if result is None:
                with room.lock:
                    if not room.is_head(waiter):
                        attempt = False
                    elif (other := room.earlier_elsewhere(waiter)) is not None:
                        _wake(room.move(waiter, other))
                        continue
                    else:
                        # Behind an earlier holder, wait to be woken when it is done.
                        attempt = not room.held_by_earlier(waiter)
                if attempt:
                    result = yield RESERVE
                    assert result is not None  # noqa: S101 (the driver's contract)
            if result is not None and result.granted:
                granted = True
                return result
            sleep_ns: int | None = None
            if result is not None:
                waiter.binding = result.binding
                binding_scope = result.binding.scope if result.binding else waiter.queue
                if binding_scope != waiter.queue:
                    with room.lock:
                        woken = room.move(waiter, binding_scope)
                        room.hold(waiter)  # admitted by one queue, held back by another
                    _wake(woken)
                    result = None
                    continue
                if result.slot is not None:
                    sleep_ns = max(0, result.slot - result.now)
                    waiter.eta = now() + sleep_ns
                    if waiter.deadline is not None and waiter.eta > waiter.deadline:
                        raise _timeout(waiter, now(), waiter.eta)
                result = None
            if waiter.deadline is not None:
                left = waiter.deadline - now()
                if left <= 0:
                    raise _timeout(waiter, now(), room.head_eta(waiter.scopes))
                sleep_ns = left if sleep_ns is None else min(sleep_ns, left)
            if waiter.woken:
                waiter.woken = False
                continue
            yield None if sleep_ns is None else sleep_ns / NS_PER_SECOND
            waiter.woken = False
    finally:
        with room.lock:
            woken = room.leave(waiter) if waiter.queue else None
            released = room.unhold(waiter)
        _wake(woken)
        for head in released:
            _wake(head)
        if not granted:
            waiter.wake = _nothing


def _wake(waiter: Waiter | None) -> None:
    if waiter is not None:
        waiter.woken = True
        waiter.wake()
