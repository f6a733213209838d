"""The exceptions quotaflow raises.

Every error derives from :class:`QuotaflowError` and carries a stable, machine-readable
``reason``. Errors caused by bad input also derive from :class:`ValueError`, so code that
already guards against ``ValueError`` keeps working::

    QuotaflowError                      reason
    ├── ConfigurationError (ValueError) "configuration"   a limit, scope or option is invalid
    ├── InvalidUsageError (ValueError)  "invalid_usage"   a token count or cost is invalid
    ├── CapacityExceededError           "exceeds_capacity" a request can never fit one limit
    ├── AcquireTimeoutError             "timeout"         no slot before the caller's deadline
    ├── ReservationError                "reservation"     a reservation was used the wrong way
    ├── QuotaExhaustedError             "quota_exhausted" the provider's quota or credit ran out
    └── StoreError                      "store"           the state store failed (wraps the cause)
        └── StoreUnavailableError       "store_unavailable" it cannot be reached (transient)

All errors pickle and unpickle with their attributes, so they cross process boundaries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quotaflow.core._limits import BoundLimit

__all__ = [
    "AcquireTimeoutError",
    "CapacityExceededError",
    "ConfigurationError",
    "InvalidUsageError",
    "QuotaExhaustedError",
    "QuotaflowError",
    "ReservationError",
    "StoreError",
    "StoreUnavailableError",
]


class QuotaflowError(Exception):
    """Base class of every error quotaflow raises."""

    reason: str = "error"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle only their args by default; keep the attributes too.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[QuotaflowError], args: tuple[Any, ...], state: dict[str, Any]
) -> QuotaflowError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigurationError(QuotaflowError, ValueError):
    """A limit, scope or option is invalid; the message names the offending value."""

    reason = "configuration"


class InvalidUsageError(QuotaflowError, ValueError):
    """A usage amount (token count, request count, cost) is not a valid non-negative integer."""

    reason = "invalid_usage"


class CapacityExceededError(QuotaflowError):
    """A request asks for more than a limit could ever admit, so waiting would be pointless.

    Attributes:
        limit: the scope and limit that can never admit the request.
        requested: the amount asked for, in the limit's metric.
    """

    reason = "exceeds_capacity"

    def __init__(self, limit: BoundLimit, requested: int) -> None:
        self.limit = limit
        self.requested = requested
        super().__init__(
            f"{limit} can admit at most {limit.limit.capacity} {limit.limit.metric} at once; "
            f"the request needs {requested}"
        )


class AcquireTimeoutError(QuotaflowError):
    """No slot could be granted before the caller's deadline.

    Attributes:
        retry_after: seconds until the request could be admitted, as far as is known now.
        limit: the scope and limit that bound the request, when one did (``None`` when the
            request was only waiting behind earlier requests).
    """

    reason = "timeout"

    def __init__(self, retry_after: float, limit: BoundLimit | None) -> None:
        self.retry_after = retry_after
        self.limit = limit
        bound = f" by {limit}" if limit is not None else " behind earlier requests"
        super().__init__(f"not admitted in time: held{bound}; retry after {retry_after:.3f}s")


class ReservationError(QuotaflowError):
    """A reservation was used the wrong way (for instance settled with a different limiter)."""

    reason = "reservation"


class QuotaExhaustedError(QuotaflowError):
    """The provider's quota, credit or spend limit for a scope is used up: calls are paused.

    Retrying does not help before ``resets_at``: every worker sharing the store refuses new
    calls of the scope until then (calls already in flight finish).

    Attributes:
        scope: the paused scope.
        resets_at: when calls resume, seconds since the epoch (the provider's reset when it
            gave one, else a conservative default).
        detail: the provider's error type or code and message, shortened.
    """

    reason = "quota_exhausted"

    def __init__(self, scope: str, resets_at: float, detail: str) -> None:
        self.scope = scope
        self.resets_at = resets_at
        self.detail = detail
        super().__init__(
            f"the provider's quota for {scope!r} is exhausted ({detail}); calls are paused "
            f"until {resets_at:.3f} (seconds since the epoch)"
        )


class StoreError(QuotaflowError):
    """The state store failed; ``__cause__`` holds the driver's error."""

    reason = "store"


class StoreUnavailableError(StoreError):
    """The state store cannot be reached (refused, reset, timed out, loading), even after retries.

    This is the error a limiter's fault policy acts on; other store errors (a refused
    password, a script error) are not transient and always propagate.
    """

    reason = "store_unavailable"
