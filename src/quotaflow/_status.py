"""Results a limiter returns: admission decisions and per-scope status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from quotaflow.core import BoundLimit, Limit, Metric

__all__ = ["Decision", "LimitStatus", "ScopeStatus"]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """One limit of a scope at one instant.

    Attributes:
        limit: the limit.
        metric: what it counts.
        capacity: the most it admits at once (rates: the bucket size; quotas: the period total).
        used: units in use now (may exceed ``capacity`` after an overrun was charged).
        remaining: units that would be admitted now.
        resets_in: seconds until the limit is fully available again.
    """

    limit: Limit
    metric: Metric
    capacity: int
    used: int
    remaining: int
    resets_in: float


@dataclass(frozen=True, slots=True)
class ScopeStatus:
    """Every limit of one scope, and how many requests wait on it in this limiter."""

    scope: str
    limits: tuple[LimitStatus, ...]
    queue_depth: int
    time: float  # the store's time of the reading, seconds since the epoch

    def limit(self, metric: Metric | str) -> LimitStatus:
        """Return the first limit on ``metric``; ``KeyError`` if the scope has none."""
        for status in self.limits:
            if status.metric == metric:
                return status
        raise KeyError(metric)


@dataclass(frozen=True, slots=True)
class Decision(Generic[R]):
    """The answer of ``try_acquire``: a reservation now, or when to try again.

    Attributes:
        reservation: the reservation when admitted, else ``None``.
        retry_after: seconds until the request could be admitted (0 when admitted).
        limit: the limit that refused it; ``None`` when admitted, or when it was refused only
            because earlier requests are waiting.
    """

    reservation: R | None
    retry_after: float
    limit: BoundLimit | None

    @property
    def allowed(self) -> bool:
        """Whether the request was admitted."""
        return self.reservation is not None

    def __bool__(self) -> bool:
        return self.reservation is not None
