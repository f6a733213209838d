"""The public surface: what ``quotaflow`` exports, and errors that survive pickling."""

from __future__ import annotations

import pickle

import quotaflow
from quotaflow import (
    AcquireTimeoutError,
    BoundLimit,
    CapacityExceededError,
    ConfigurationError,
    QuotaExhaustedError,
    QuotaflowError,
    tpm,
)

EXPECTED = {
    "AcquireTimeoutError", "AsyncStore", "BoundLimit", "CapacityExceededError", "Clock",
    "Concurrency", "ConfigurationError", "Decision", "EventKind", "Hook", "InvalidUsageError",
    "JsonFormatter", "Limit", "LimitStatus", "Limiter", "LimiterEvent", "MemoryStore", "Metric",
    "Quota", "QuotaExhaustedError", "QuotaPeriod", "QuotaflowError", "Rate", "Reservation",
    "ReservationError", "ScopeStatus", "Store", "StoreError", "StoreUnavailableError",
    "SyncLimiter", "SyncReservation", "SystemClock", "Usage", "concurrency", "configure_logging",
    "cost_per_day", "cost_per_hour", "daily_quota", "itpm", "monthly_quota", "otpm", "rpd", "rpm",
    "rps", "tpd", "tpm", "__version__"
}  # fmt: skip


def test_the_public_names_are_exactly_the_documented_ones() -> None:
    assert set(quotaflow.__all__) == EXPECTED
    for name in quotaflow.__all__:
        assert hasattr(quotaflow, name), name


def test_every_error_derives_from_one_base_with_a_reason() -> None:
    for name in quotaflow.__all__:
        value = getattr(quotaflow, name)
        if isinstance(value, type) and issubclass(value, Exception) and value is not QuotaflowError:
            assert issubclass(value, QuotaflowError), name
            assert value.reason != QuotaflowError.reason, name


def test_errors_pickle_with_their_attributes() -> None:
    bound = BoundLimit("openai:gpt-4o", tpm(30_000))
    for error in (
        CapacityExceededError(bound, 40_000),
        AcquireTimeoutError(2.5, bound),
        ConfigurationError("unknown scope 'x'"),
        QuotaExhaustedError("openai:gpt-4o", 1.8e9, "insufficient_quota"),
    ):
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own data)
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.__dict__ == error.__dict__
