"""Helpers for testing code that uses quotaflow: a clock you move by hand.

Example:
    >>> clock = FakeClock()
    >>> limiter = SyncLimiter({"api": [rpm(60)]}, clock=clock)
    >>> clock.advance(1.0)  # one more request's worth of capacity refills
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from quotaflow.core import NS_PER_SECOND

__all__ = ["FakeClock", "Rejection", "SimulatedProvider", "let_tasks_run"]

#: 2026-01-01T00:00:00Z, a fixed and unremarkable instant to start fake time at.
DEFAULT_START_NS: Final = 1_767_225_600 * NS_PER_SECOND
_COMPACT_AT: Final = 64  # cancelled timers are swept out of the heap past this size


class _Timer:
    __slots__ = ("callback", "cancelled", "clock")

    def __init__(self, clock: FakeClock, callback: Callable[[], None]) -> None:
        self.clock = clock
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.clock._cancelled()  # noqa: SLF001 (the clock's own timer)


class FakeClock:
    """A :class:`~quotaflow.Clock` that moves only when told to.

    ``advance`` runs due timers in time order (the clock reads each timer's due time while it
    runs), so async waiters and blocked threads wake exactly when they would in real time.
    Timers scheduled with :meth:`call_later` run in the thread that calls ``advance``; with
    asyncio, let the woken tasks run afterwards (``await asyncio.sleep(0)``).

    Args:
        start: the initial time, seconds since the epoch.
        real_timeout: seconds a thread blocked in :meth:`wait` waits for ``advance`` before
            failing the test instead of hanging it.
    """

    def __init__(self, start: float | None = None, *, real_timeout: float = 30.0) -> None:
        self._now = DEFAULT_START_NS if start is None else round(start * NS_PER_SECOND)
        self._timers: list[tuple[int, int, _Timer]] = []
        self._order = itertools.count()
        self._lock = threading.RLock()
        self._timers_changed = threading.Condition(self._lock)
        self._live = 0  # timers scheduled and neither run nor cancelled
        self._real_timeout = real_timeout

    def now_ns(self) -> int:
        """Return the fake time in nanoseconds."""
        return self._now

    def time(self) -> float:
        """Return the fake time in seconds."""
        return self._now / NS_PER_SECOND

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        """Run ``callback`` once the clock has been advanced by ``delay`` seconds."""
        timer = _Timer(self, callback)
        with self._lock:
            due = self._now + max(0, round(delay * NS_PER_SECOND))
            heapq.heappush(self._timers, (due, next(self._order), timer))
            self._live += 1
            self._timers_changed.notify_all()
        return timer

    def _cancelled(self) -> None:
        with self._lock:
            self._live -= 1
            if len(self._timers) > _COMPACT_AT and len(self._timers) > 2 * self._live:
                self._timers = [entry for entry in self._timers if not entry[2].cancelled]
                heapq.heapify(self._timers)
            self._timers_changed.notify_all()

    def wait_for_timers(self, count: int, timeout: float = 10.0) -> None:
        """Block until exactly ``count`` timers are pending (threads have reached their waits).

        For tests that drive threads: a blocked :class:`~quotaflow.SyncLimiter` waiter
        schedules its timer from its own thread, so advance the clock only once it has.
        Raises ``TimeoutError`` after ``timeout`` seconds of real time.
        """
        with self._lock:
            if not self._timers_changed.wait_for(lambda: self.pending_timers == count, timeout):
                raise TimeoutError(f"{self.pending_timers} timers pending, expected {count}")

    def wait(self, event: threading.Event, timeout: float | None) -> None:
        """Block until ``event`` is set, or until the clock is advanced past ``timeout``."""
        timer = self.call_later(timeout, event.set) if timeout is not None else None
        try:
            if not event.wait(self._real_timeout):
                raise TimeoutError(
                    f"a thread waited {self._real_timeout}s of real time for FakeClock.advance"
                )
        finally:
            if timer is not None:
                timer.cancel()

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every timer that falls due on the way."""
        if seconds < 0:
            raise ValueError(f"time cannot go backwards: advance({seconds})")
        with self._lock:
            target = self._now + round(seconds * NS_PER_SECOND)
            while self._timers and self._timers[0][0] <= target:
                due, _, timer = heapq.heappop(self._timers)
                self._now = max(self._now, due)
                if not timer.cancelled:
                    timer.cancelled = True  # it ran: no longer pending
                    self._live -= 1
                    timer.callback()
            self._now = target
            self._timers_changed.notify_all()

    @property
    def pending_timers(self) -> int:
        """Timers scheduled and not yet run or cancelled."""
        return self._live


async def let_tasks_run(rounds: int = 20) -> None:
    """Yield to the event loop ``rounds`` times, so that tasks woken by ``advance`` run.

    Twenty rounds let a woken waiter reach the store and hand the turn to the next one; call it
    again (or with more rounds) for longer chains.
    """
    for _ in range(rounds):
        await asyncio.sleep(0)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A call the simulated provider refused: when, on which metric, and by how much."""

    at_ns: int
    metric: str
    wanted: int
    available: float


class SimulatedProvider:
    """An in-process stand-in for a provider that enforces limits the way providers do.

    Each limit is a bucket of ``capacity`` units refilled continuously at ``capacity / period``
    (OpenAI and Anthropic describe theirs this way), full until the first call. :meth:`call`
    charges a call's usage at time ``now`` if every bucket holds enough, else rejects it (the
    429 a real provider would send) and charges nothing. Arithmetic is exact: a level is kept
    in units x nanoseconds, so a rejection always means a limit was really exceeded.

    Args:
        limits: ``{metric: (capacity, period_seconds)}``, e.g.
            ``{"requests": (500, 60), "tokens": (30_000, 60)}``.
    """

    def __init__(self, limits: dict[str, tuple[int, float]]) -> None:
        # metric -> [capacity, period_ns, level * period_ns, time of the level (-1: not yet)]
        self._buckets: dict[str, list[int]] = {}
        for metric, (capacity, period) in limits.items():
            period_ns = round(period * NS_PER_SECOND)
            self._buckets[metric] = [capacity, period_ns, capacity * period_ns, -1]
        self.accepted: dict[str, int] = dict.fromkeys(limits, 0)
        self.calls = 0
        self.rejections: list[Rejection] = []

    def _refill(self, bucket: list[int], now: int) -> int:
        capacity, period_ns, level, at = bucket
        if at >= 0:
            now = max(now, at)  # a caller that read its clock just before another one
            level = min(capacity * period_ns, level + (now - at) * capacity)
        bucket[2], bucket[3] = level, now
        return level

    def level(self, metric: str, now: int) -> float:
        """Units of ``metric`` available at ``now`` (ns)."""
        bucket = self._buckets[metric]
        return self._refill(bucket, now) / bucket[1]

    def call(self, usage: dict[str, int], now: int) -> bool:
        """Charge ``usage`` (metric -> units) at ``now`` (ns); ``False`` is a rejection."""
        self.calls += 1
        charged = [(m, self._buckets[m], n) for m, n in usage.items() if m in self._buckets]
        for metric, bucket, amount in charged:
            if self._refill(bucket, now) < amount * bucket[1]:
                self.rejections.append(Rejection(now, metric, amount, bucket[2] / bucket[1]))
                return False
        for metric, bucket, amount in charged:
            bucket[2] -= amount * bucket[1]
            self.accepted[metric] += amount
        return True

    def admissible(self, metric: str, seconds: float) -> int:
        """The most ``metric`` any client could have had accepted over ``seconds`` from full."""
        capacity, period_ns, _, _ = self._buckets[metric]
        return capacity + int(capacity * seconds * NS_PER_SECOND / period_ns)
