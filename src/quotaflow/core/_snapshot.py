"""A read-only view of one limit's state at one instant."""

from __future__ import annotations

from dataclasses import dataclass

from quotaflow.core._limits import Limit

__all__ = ["LimitSnapshot"]


@dataclass(frozen=True, slots=True)
class LimitSnapshot:
    """Usage of one limit at one instant.

    Attributes:
        limit: the limit.
        used: units in use (rates: still in the bucket; quotas: spent this period; concurrency:
            leases held). May exceed the capacity after an overrun was charged.
        remaining: units that would be admitted now, ``max(0, capacity - used)``.
        resets_in_ns: nanoseconds until the limit is fully available again (rates: the bucket is
            full; quotas: the period ends; concurrency: the last lease expires).
    """

    limit: Limit
    used: int
    remaining: int
    resets_in_ns: int
