"""A continuously refilling token bucket in exact integer arithmetic, allowed into debt."""

from __future__ import annotations

__all__ = ["TokenBucket"]


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


class TokenBucket:
    """``limit`` units per ``period_ns``, refilled continuously, full when created.

    The level is kept in units x nanoseconds (``level * period_ns``), so refills are exact
    integers and nothing drifts; the same representation as
    :class:`quotaflow.testing.SimulatedProvider`. Charges made after admission (output tokens)
    may take the level below zero: the debt is paid back by the refill before anything fits.

    Args:
        name: what the bucket counts (``"tokens"``, ``"input_tokens"``...).
        limit: the capacity, which is also the amount refilled per period.
        period_ns: the period, in nanoseconds.
        now_ns: the creation time.
    """

    __slots__ = ("_at", "_level", "charged", "limit", "name", "period_ns")

    def __init__(self, name: str, limit: int, period_ns: int, now_ns: int) -> None:
        self.name = name
        self.limit = limit
        self.period_ns = period_ns
        self._level = limit * period_ns
        self._at = now_ns
        self.charged = 0  # net units charged since creation (charges minus refunds)

    @property
    def _full(self) -> int:
        return self.limit * self.period_ns

    def _refill(self, now_ns: int) -> int:
        if now_ns > self._at:  # a clock read just before another one never takes time back
            self._level = min(self._full, self._level + (now_ns - self._at) * self.limit)
            self._at = now_ns
        return self._level

    def level(self, now_ns: int) -> float:
        """Units available at ``now_ns`` (negative in debt); for display only."""
        return self._refill(now_ns) / self.period_ns

    def holds(self, amount: int, now_ns: int) -> bool:
        """Whether ``amount`` units are available at ``now_ns``."""
        return self._refill(now_ns) >= amount * self.period_ns

    def charge(self, amount: int, now_ns: int) -> None:
        """Take ``amount`` units at ``now_ns``, into debt if need be."""
        self._level = self._refill(now_ns) - amount * self.period_ns
        self.charged += amount

    def refund(self, amount: int, now_ns: int) -> None:
        """Give back ``amount`` units at ``now_ns``, never beyond a full bucket."""
        self._level = min(self._full, self._refill(now_ns) + amount * self.period_ns)
        self.charged -= amount

    def remaining(self, now_ns: int) -> int:
        """Whole units available at ``now_ns``: ``max(0, floor(level))``."""
        return max(0, self._refill(now_ns) // self.period_ns)

    def used(self, now_ns: int) -> int:
        """``limit - floor(level)``: more than the limit while in debt."""
        return self.limit - self._refill(now_ns) // self.period_ns

    def reset_after_ns(self, now_ns: int) -> int:
        """Nanoseconds until the bucket is full again (rounded up)."""
        return _ceil_div(self._full - self._refill(now_ns), self.limit)

    def wait_ns(self, amount: int, now_ns: int) -> int:
        """Nanoseconds until ``amount`` units are available (rounded up; 0 if they are)."""
        missing = amount * self.period_ns - self._refill(now_ns)
        return _ceil_div(missing, self.limit) if missing > 0 else 0

    def admissible(self, first_ns: int, last_ns: int) -> int:
        """The most units a client could have had admitted from ``first_ns`` to ``last_ns``.

        ``limit + limit * (last - first) / period``, rounded down: a full bucket at the first
        admission plus the refill until the last one.
        """
        return self.limit + self.limit * max(0, last_ns - first_ns) // self.period_ns
