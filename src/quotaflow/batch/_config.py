"""How a batch runs: concurrency, retries, stopping, grouping and adaptive concurrency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from quotaflow._errors import ConfigurationError

__all__ = ["MAX_RETRY_DELAY", "RETRY_JITTER", "BatchConfig"]

#: The longest scheduled wait before a retry, seconds (the ``cap`` given to ``backoff``).
MAX_RETRY_DELAY: Final = 30.0
#: The random fraction of a retry's wait (the ``jitter`` given to ``backoff``).
RETRY_JITTER: Final = 0.25
_MAX_RETRIES: Final = 100


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """Options of a :class:`~quotaflow.batch.BatchProcessor`.

    Attributes:
        max_concurrent_requests: items in flight at once (threads, for the sync methods).
        max_retries_per_item: retries of an item after its first try (0: never retry).
        retry_delay: seconds before an item's first retry; doubled for each further retry,
            capped at 30 s, less up to 25% random jitter
            (:func:`quotaflow.providers.backoff`). A server's retry hint (``Retry-After``,
            a hint in the body...) replaces this schedule, lengthened by up to 25% jitter.
        stop_on_first_error: after the first item that finally fails, start no new items;
            those never started are reported as ``"skipped"``.
        group_by_model: start the items model by model, in the order in which the models
            first appear, so that each model's limits are saturated in turn (results keep
            the input order).
        adaptive_concurrency: halve the concurrency after a rate-limit error, and add one
            back after as many consecutive successes as the current concurrency (AIMD).
        min_concurrent_requests: the floor of the adaptive concurrency.
    """

    max_concurrent_requests: int = 16
    max_retries_per_item: int = 2
    retry_delay: float = 1.0
    stop_on_first_error: bool = False
    group_by_model: bool = False
    adaptive_concurrency: bool = False
    min_concurrent_requests: int = 1

    def __post_init__(self) -> None:
        _integer("max_concurrent_requests", self.max_concurrent_requests, lowest=1)
        _integer("max_retries_per_item", self.max_retries_per_item, lowest=0, highest=_MAX_RETRIES)
        delay = self.retry_delay
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(
            delay
        ) or delay < 0:  # fmt: skip
            raise ConfigurationError(
                f"retry_delay must be a finite, non-negative number of seconds, got {delay!r}"
            )
        for name in ("stop_on_first_error", "group_by_model", "adaptive_concurrency"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigurationError(f"{name} must be True or False, got {value!r}")
        _integer(
            "min_concurrent_requests", self.min_concurrent_requests,
            lowest=1, highest=self.max_concurrent_requests,
        )  # fmt: skip


def _integer(name: str, value: object, *, lowest: int, highest: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lowest
    if ok and highest is not None and isinstance(value, int):
        ok = value <= highest
    if not ok:
        bound = f"in [{lowest}, {highest}]" if highest is not None else f">= {lowest}"
        raise ConfigurationError(f"{name} must be an integer {bound}, got {value!r}")
