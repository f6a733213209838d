"""Time, injected: the limiter and the memory store never read the clock directly.

:class:`SystemClock` is the default. Its ``now_ns`` is wall-clock time that never jumps: it
reads the monotonic clock and adds the offset to the wall clock taken once at start, so a
system-time correction neither mints capacity nor freezes the limiter. Tests inject
:class:`quotaflow.testing.FakeClock` and advance time by hand.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    """A scheduled callback that can be called off."""

    def cancel(self) -> None:
        """Call off the callback if it has not run yet."""


class Clock(Protocol):
    """The source of time and timers for a limiter."""

    def now_ns(self) -> int:
        """Return the current time in nanoseconds since the Unix epoch."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` in the running event loop after ``delay`` seconds."""

    def wait(self, event: threading.Event, timeout: float | None) -> None:
        """Block the calling thread until ``event`` is set or ``timeout`` seconds pass."""


class SystemClock:
    """The real clock: monotonic time expressed as wall-clock nanoseconds."""

    __slots__ = ("_offset",)

    def __init__(self) -> None:
        self._offset = time.time_ns() - time.monotonic_ns()

    def now_ns(self) -> int:
        """Return wall-clock nanoseconds that advance monotonically."""
        return self._offset + time.monotonic_ns()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Schedule ``callback`` on the running loop's timer heap."""
        return asyncio.get_running_loop().call_later(delay, callback)

    def wait(self, event: threading.Event, timeout: float | None) -> None:
        """Wait on ``event`` for at most ``timeout`` seconds."""
        event.wait(timeout)
