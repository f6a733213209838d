"""quotaflow: never exceed an LLM provider's limits, while using nearly all of them.

Reserve the estimated usage of a call before sending it, wait FIFO (without polling) until
every limit of every scope admits it, then settle with the actual usage.
"""

from quotaflow._clock import Clock, SystemClock
from quotaflow._errors import (
    AcquireTimeoutError,
    CapacityExceededError,
    ConfigurationError,
    InvalidUsageError,
    QuotaExhaustedError,
    QuotaflowError,
    ReservationError,
    StoreError,
    StoreUnavailableError,
)
from quotaflow._events import EventKind, Hook, LimiterEvent
from quotaflow._limiter import Limiter, Reservation
from quotaflow._logs import JsonFormatter, configure_logging
from quotaflow._status import Decision, LimitStatus, ScopeStatus
from quotaflow._sync_limiter import SyncLimiter, SyncReservation
from quotaflow.core import (
    BoundLimit,
    Concurrency,
    Limit,
    Metric,
    Quota,
    QuotaPeriod,
    Rate,
    Usage,
)
from quotaflow.core._limits import (
    concurrency,
    cost_per_day,
    cost_per_hour,
    daily_quota,
    itpm,
    monthly_quota,
    otpm,
    rpd,
    rpm,
    rps,
    tpd,
    tpm,
)
from quotaflow.stores import AsyncStore, MemoryStore, Store

__version__ = "0.1.0.dev0"

__all__ = [
    "AcquireTimeoutError",
    "AsyncStore",
    "BoundLimit",
    "CapacityExceededError",
    "Clock",
    "Concurrency",
    "ConfigurationError",
    "Decision",
    "EventKind",
    "Hook",
    "InvalidUsageError",
    "JsonFormatter",
    "Limit",
    "LimitStatus",
    "Limiter",
    "LimiterEvent",
    "MemoryStore",
    "Metric",
    "Quota",
    "QuotaExhaustedError",
    "QuotaPeriod",
    "QuotaflowError",
    "Rate",
    "Reservation",
    "ReservationError",
    "ScopeStatus",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "SyncLimiter",
    "SyncReservation",
    "SystemClock",
    "Usage",
    "__version__",
    "concurrency",
    "configure_logging",
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
