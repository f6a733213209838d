"""Calendar resets: when a daily or monthly provider quota starts over."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from quotaflow._errors import ConfigurationError
from quotaflow.core._limits import QuotaPeriod

__all__ = ["PACIFIC", "next_reset"]

#: Gemini API daily quotas reset at midnight here (DST-aware), not at UTC midnight.
PACIFIC: Final = "America/Los_Angeles"


def next_reset(period: QuotaPeriod | str, now: datetime, timezone: str = "UTC") -> datetime:
    """The first local midnight (``day``) or 1st of the month (``month``) after ``now``.

    Args:
        period: ``"day"`` or ``"month"``.
        now: an aware datetime.
        timezone: the IANA zone whose calendar resets the quota.

    Returns:
        The reset instant, as an aware UTC datetime.
    """
    if now.tzinfo is None:
        raise ConfigurationError("now must be an aware datetime (with a time zone)")
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    if QuotaPeriod(period) is QuotaPeriod.DAY:
        start = local.date() + timedelta(days=1)
    else:
        start = (local.date().replace(day=28) + timedelta(days=4)).replace(day=1)
    # Midnight exists in every zone quotaflow uses; fold=0 picks the first if it repeats.
    return datetime.combine(start, time(0), tzinfo=zone).astimezone(UTC)
