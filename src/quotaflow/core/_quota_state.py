"""The state of one calendar quota: usage within the current day or month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from quotaflow.core._limits import NS_PER_SECOND, Quota, QuotaPeriod
from quotaflow.core._snapshot import LimitSnapshot

__all__ = ["QuotaState", "calendar_bounds", "period_bounds"]


def period_bounds(quota: Quota, now: int) -> tuple[int, int]:
    """Return ``(start, end)`` in ns of the quota period that contains ``now``.

    Boundaries are local midnights in the quota's time zone, so a day lasts 23 or 25 hours
    across a daylight-saving change.
    """
    return calendar_bounds(quota.period, quota.zone, now)


def calendar_bounds(period: QuotaPeriod, zone: ZoneInfo, now: int) -> tuple[int, int]:
    """Return ``(start, end)`` in ns of the day or month in ``zone`` that contains ``now``."""
    local = datetime.fromtimestamp(now // NS_PER_SECOND, UTC).astimezone(zone)
    if period is QuotaPeriod.DAY:
        start = datetime(local.year, local.month, local.day, tzinfo=zone)
        following = (start + timedelta(days=1)).date()
        end = datetime(following.year, following.month, following.day, tzinfo=zone)
    else:
        start = datetime(local.year, local.month, 1, tzinfo=zone)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)  # noqa: PLR2004
        end = datetime(year, month, 1, tzinfo=zone)
    return int(start.timestamp()) * NS_PER_SECOND, int(end.timestamp()) * NS_PER_SECOND


class QuotaState:
    """Mutable state of one :class:`Quota` in one scope."""

    __slots__ = ("end", "limit", "start", "used")

    def __init__(self, limit: Quota) -> None:
        self.limit = limit
        self.start = 0
        self.end = 0
        self.used = 0

    def _roll(self, now: int) -> None:
        if now >= self.end:
            self.start, self.end = period_bounds(self.limit, now)
            self.used = 0

    def reconfigure(self, limit: Quota, now: int) -> None:  # noqa: ARG002 (uniform protocol)
        """Adopt a new total; the usage of the current period is kept."""
        self.limit = limit

    def available_at(self, amount: int, now: int) -> int:
        """Return ``now`` if ``amount`` fits this period, else the start of the next one."""
        self._roll(now)
        return now if self.used + amount <= self.limit.capacity else self.end

    def take(self, amount: int, now: int, rid: str) -> int:  # noqa: ARG002 (uniform protocol)
        """Spend ``amount`` in the current period; the mark is the period's start."""
        self._roll(now)
        self.used += amount
        return self.start

    def settle(self, reserved: int, actual: int, mark: int, now: int, rid: str | None) -> None:  # noqa: ARG002
        """Refund what was not used if the reservation's period is still current; charge overruns.

        An overrun is charged to the current period: it is spent now, whenever it was reserved.
        """
        self._roll(now)
        if actual > reserved:
            self.used += actual - reserved
        elif mark == self.start:
            self.used = max(0, self.used - (reserved - actual))

    def is_idle(self, now: int) -> bool:
        """Whether nothing is spent in the current period."""
        return now >= self.end or self.used == 0

    def snapshot(self, now: int) -> LimitSnapshot:
        """Return the spend of the current period and the time until it ends."""
        self._roll(now)
        return LimitSnapshot(
            limit=self.limit,
            used=self.used,
            remaining=max(0, self.limit.capacity - self.used),
            resets_in_ns=self.end - now,
        )
