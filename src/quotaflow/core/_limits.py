"""Limit definitions: rolling rates, calendar quotas and concurrency caps.

A limit is a frozen value: what it counts (a :class:`Metric`) and how much. The state it
governs lives in a store, keyed by the scope and the limit's :attr:`key`, so replacing a limit
with one of the same key (say TPM 30,000 → 60,000) keeps the usage already recorded.

Rolling rates are token buckets, the model the providers themselves use: ``capacity`` units
fit at once and the bucket refills continuously at ``limit / period``. Over any interval of
length ``T`` at most ``capacity + limit * T / period`` units are admitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from quotaflow._errors import ConfigurationError
from quotaflow.core._metrics import Metric
from quotaflow.core._usage import MAX_AMOUNT

__all__ = [
    "BoundLimit",
    "Concurrency",
    "Limit",
    "Quota",
    "QuotaPeriod",
    "Rate",
    "concurrency",
    "cost_per_day",
    "cost_per_hour",
    "daily_quota",
    "itpm",
    "monthly_quota",
    "otpm",
    "rpd",
    "rpm",
    "rps",
    "tpd",
    "tpm",
]

NS_PER_SECOND: Final = 1_000_000_000
_MAX_PERIOD_NS: Final = 366 * 86_400 * NS_PER_SECOND
_MAX_TTL_SECONDS: Final = 7 * 86_400.0
_MIN_SECONDS: Final = 1e-6  # shorter periods and TTLs would round to nothing in nanoseconds


def _seconds(name: str, value: float | timedelta) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigurationError(f"{name} must be seconds or a timedelta, got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{name} must be a positive, finite duration, got {value!r}")
    if seconds < _MIN_SECONDS:
        raise ConfigurationError(f"{name} must be at least 1 microsecond, got {value!r}")
    return float(seconds)


def _check_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"limit must be a positive integer, got {value!r}")
    if not 0 < value <= MAX_AMOUNT:
        raise ConfigurationError(f"limit must be between 1 and {MAX_AMOUNT}, got {value}")
    return value


def _check_factor(name: str, value: object, *, upper: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    if not 0 < value <= upper:
        raise ConfigurationError(f"{name} must be in (0, {upper:g}], got {value!r}")
    return float(value)


def _metric(value: Metric | str) -> Metric:
    return value if isinstance(value, Metric) else Metric.parse(value)


@dataclass(frozen=True, slots=True)
class Rate:
    """A rolling rate limit: ``limit`` units per ``period``, refilled continuously.

    Args:
        metric: what is counted.
        limit: units admitted per ``period`` (as the provider publishes it).
        period: the period, in seconds or as a ``timedelta``.
        burst: bucket size as a multiple of ``limit`` (1.0, the providers' model, admits a full
            period's worth at once; 0.1 smooths traffic to a tenth of that).
        headroom: the fraction of the limit to use (0.98 keeps 2% spare for other clients).

    The effective ``capacity`` is ``floor(limit * burst * headroom)`` units and the refill
    ``floor(limit * headroom)`` units per period; both must be at least 1.
    """

    metric: Metric
    limit: int
    period: float
    burst: float = 1.0
    headroom: float = 1.0
    capacity: int = field(init=False, compare=False)
    refill: int = field(init=False, compare=False)
    period_ns: int = field(init=False, compare=False)
    tolerance_ns: int = field(init=False, compare=False, repr=False)
    key: str = field(init=False, compare=False, repr=False)

    def __init__(
        self,
        metric: Metric | str,
        limit: int,
        period: float | timedelta,
        *,
        burst: float = 1.0,
        headroom: float = 1.0,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "metric", _metric(metric))
        if self.metric is Metric.CONCURRENT:
            raise ConfigurationError("a rate cannot count 'concurrent'; use Concurrency")
        set_(self, "limit", _check_limit(limit))
        set_(self, "period", _seconds("period", period))
        set_(self, "burst", _check_factor("burst", burst, upper=1000.0))
        set_(self, "headroom", _check_factor("headroom", headroom, upper=1.0))
        period_ns = round(self.period * NS_PER_SECOND)
        if period_ns > _MAX_PERIOD_NS:
            raise ConfigurationError(f"period must be at most 366 days, got {period!r}")
        refill = math.floor(limit * self.headroom)
        capacity = math.floor(limit * self.burst * self.headroom)
        if refill < 1 or capacity < 1:
            raise ConfigurationError(
                f"{limit} {self.metric} with burst={burst} and headroom={headroom} leaves no "
                "capacity; raise the limit or the factors"
            )
        set_(self, "period_ns", period_ns)
        set_(self, "refill", refill)
        set_(self, "capacity", capacity)
        # Time for the bucket to refill from empty; floored so that rounding never admits more.
        set_(self, "tolerance_ns", capacity * period_ns // refill)
        set_(self, "key", f"rate:{self.metric}:{period_ns}")

    def interval_ns(self, amount: int) -> int:
        """Nanoseconds the bucket needs to refill ``amount`` units, rounded up."""
        return -(-amount * self.period_ns // self.refill)

    def __str__(self) -> str:
        return f"{self.limit} {self.metric}/{_period_text(self.period)}"


class QuotaPeriod(StrEnum):
    """The calendar period after which a :class:`Quota` resets."""

    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Quota:
    """A calendar quota: at most ``limit`` units per day or month, reset at local midnight.

    Args:
        metric: what is counted (``cost`` for budgets).
        limit: units admitted per period.
        period: ``"day"`` or ``"month"``.
        timezone: the IANA zone whose midnight resets the quota (Gemini's daily quotas reset
            at midnight ``"America/Los_Angeles"``).
    """

    metric: Metric
    limit: int
    period: QuotaPeriod
    timezone: str = "UTC"
    capacity: int = field(init=False, compare=False)
    zone: ZoneInfo = field(init=False, compare=False, repr=False)
    key: str = field(init=False, compare=False, repr=False)

    def __init__(
        self,
        metric: Metric | str,
        limit: int,
        period: QuotaPeriod | str = QuotaPeriod.DAY,
        *,
        timezone: str = "UTC",
    ) -> None:
        set_ = object.__setattr__
        set_(self, "metric", _metric(metric))
        if self.metric is Metric.CONCURRENT:
            raise ConfigurationError("a quota cannot count 'concurrent'; use Concurrency")
        set_(self, "limit", _check_limit(limit))
        try:
            set_(self, "period", QuotaPeriod(period))
        except ValueError:
            raise ConfigurationError(
                f"quota period must be 'day' or 'month', got {period!r}"
            ) from None
        try:
            set_(self, "zone", ZoneInfo(timezone))
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigurationError(f"unknown time zone {timezone!r}") from None
        set_(self, "timezone", timezone)
        set_(self, "capacity", self.limit)
        set_(self, "key", f"quota:{self.metric}:{self.period}:{timezone}")

    def __str__(self) -> str:
        return f"{self.limit} {self.metric}/{self.period} ({self.timezone})"


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` calls in flight. Each call holds a lease that expires after ``ttl``.

    The TTL bounds how long a crashed caller can hold a slot; a live caller renews it.
    """

    limit: int
    ttl: float = 600.0
    metric: Metric = field(init=False, default=Metric.CONCURRENT)
    capacity: int = field(init=False, compare=False)
    ttl_ns: int = field(init=False, compare=False, repr=False)
    key: str = field(init=False, compare=False, repr=False, default="concurrent")

    def __init__(self, limit: int, *, ttl: float | timedelta = 600.0) -> None:
        set_ = object.__setattr__
        set_(self, "limit", _check_limit(limit))
        seconds = _seconds("ttl", ttl)
        if seconds > _MAX_TTL_SECONDS:
            raise ConfigurationError(f"ttl must be at most 7 days, got {ttl!r}")
        set_(self, "ttl", seconds)
        set_(self, "ttl_ns", round(seconds * NS_PER_SECOND))
        set_(self, "metric", Metric.CONCURRENT)
        set_(self, "capacity", self.limit)
        set_(self, "key", "concurrent")

    def __str__(self) -> str:
        return f"{self.limit} concurrent"


#: Any limit.
Limit = Rate | Quota | Concurrency


@dataclass(frozen=True, slots=True)
class BoundLimit:
    """A limit together with the scope it applies to; how errors and statuses name a limit."""

    scope: str
    limit: Limit

    def __str__(self) -> str:
        return f"{self.scope!r} limit {self.limit}"


def _period_text(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return unit if count == 1 else f"{count}{unit}"
    return f"{seconds:g}s"


# Shorthands for the limits providers publish. ---------------------------------------------


def rps(limit: int, *, burst: float = 1.0, headroom: float = 1.0) -> Rate:
    """Requests per second."""
    return Rate(Metric.REQUESTS, limit, 1, burst=burst, headroom=headroom)


def rpm(limit: int, *, burst: float = 1.0, headroom: float = 1.0) -> Rate:
    """Requests per minute (RPM)."""
    return Rate(Metric.REQUESTS, limit, 60, burst=burst, headroom=headroom)


def rpd(limit: int, *, burst: float = 1.0, headroom: float = 1.0) -> Rate:
    """Requests per rolling day (RPD)."""
    return Rate(Metric.REQUESTS, limit, 86_400, burst=burst, headroom=headroom)


def tpm(limit: int, *, burst: float = 1.0, headroom: float = 1.0) -> Rate:
    """Tokens (input + output) per minute: the combined TPM of OpenAI and Anthropic."""
    return Rate(Metric.TOKENS, limit, 60, burst=burst, headroom=headroom)


def tpd(limit: int, *, burst: float = 1.0, headroom: float = 1.0) -> Rate:
    """Tokens per rolling day (TPD)."""
    return Rate(Metric.TOKENS, limit, 86_400, burst=burst, headroom=headroom)


def itpm(limit: int, *, burst: float = 1.0, headroom: float = 1.0) -> Rate:
    """Input tokens per minute (ITPM)."""
    return Rate(Metric.INPUT_TOKENS, limit, 60, burst=burst, headroom=headroom)


def otpm(limit: int, *, burst: float = 1.0, headroom: float = 1.0) -> Rate:
    """Output tokens per minute (OTPM)."""
    return Rate(Metric.OUTPUT_TOKENS, limit, 60, burst=burst, headroom=headroom)


def cost_per_hour(micro_usd: int, *, burst: float = 1.0) -> Rate:
    """Spend per rolling hour, in integer micro-USD."""
    return Rate(Metric.COST, micro_usd, 3_600, burst=burst)


def cost_per_day(micro_usd: int, *, burst: float = 1.0) -> Rate:
    """Spend per rolling day, in integer micro-USD."""
    return Rate(Metric.COST, micro_usd, 86_400, burst=burst)


def daily_quota(metric: Metric | str, limit: int, *, timezone: str = "UTC") -> Quota:
    """At most ``limit`` units per calendar day, reset at midnight in ``timezone``."""
    return Quota(metric, limit, QuotaPeriod.DAY, timezone=timezone)


def monthly_quota(metric: Metric | str, limit: int, *, timezone: str = "UTC") -> Quota:
    """At most ``limit`` units per calendar month, reset at midnight on the 1st in ``timezone``."""
    return Quota(metric, limit, QuotaPeriod.MONTH, timezone=timezone)


def concurrency(limit: int, *, ttl: float | timedelta = 600.0) -> Concurrency:
    """At most ``limit`` calls in flight; a lease not renewed within ``ttl`` expires."""
    return Concurrency(limit, ttl=ttl)
