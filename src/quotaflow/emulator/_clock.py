"""The only thing the emulator needs from a clock."""

from __future__ import annotations

from typing import Protocol

__all__ = ["TimeSource"]


class TimeSource(Protocol):
    """Anything with ``now_ns()``: :class:`quotaflow.SystemClock`, ``testing.FakeClock``..."""

    def now_ns(self) -> int:
        """Return the current time in nanoseconds since the Unix epoch."""
        ...
