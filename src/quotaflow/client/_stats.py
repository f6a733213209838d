"""What a governed client did: calls, retries, provider 429s, waits, tokens and cost."""

from __future__ import annotations

import statistics
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Final

__all__ = ["ClientStats", "StatsSnapshot"]

_WAITS_KEPT: Final = 100_000


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A consistent copy of :class:`ClientStats`.

    Attributes:
        calls: governed calls started.
        succeeded: calls that returned a successful response.
        failed: calls that ended in an error (after any retries).
        attempts: requests sent to the provider (retries included).
        retries: attempts after the first.
        provider_429: rate-limit responses from the provider (the number quotaflow exists to
            keep at zero).
        errors: error responses and failures by error kind.
        wait_p50: median admission wait, seconds.
        wait_p99: 99th percentile admission wait, seconds.
        wait_max: longest admission wait, seconds.
        estimated_input_tokens: input tokens estimated for the calls that reported usage.
        input_tokens: input tokens the provider reported.
        reserved_output_tokens: output tokens reserved for those calls.
        output_tokens: output tokens the provider reported.
        cost: micro-USD, for the calls that could be priced.
        unpriced: calls whose model has no known price.
        corrections: times the provider reported more use than quotaflow knew of.
        pauses: times a scope was paused by a 429 or a quota error.
        unsettled_streams: streams that ended without final usage (settled conservatively).
    """

    calls: int
    succeeded: int
    failed: int
    attempts: int
    retries: int
    provider_429: int
    errors: dict[str, int]
    wait_p50: float
    wait_p99: float
    wait_max: float
    estimated_input_tokens: int
    input_tokens: int
    reserved_output_tokens: int
    output_tokens: int
    cost: int
    unpriced: int
    corrections: int
    pauses: int
    unsettled_streams: int


@dataclass
class ClientStats:
    """Counters kept by a governed client; thread-safe. Read them with :meth:`snapshot`."""

    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    attempts: int = 0
    retries: int = 0
    provider_429: int = 0
    estimated_input_tokens: int = 0
    input_tokens: int = 0
    reserved_output_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0
    unpriced: int = 0
    corrections: int = 0
    pauses: int = 0
    unsettled_streams: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=_WAITS_KEPT))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: int) -> None:
        """Add to counters by name."""
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def error(self, kind: str) -> None:
        """Count an error of ``kind``."""
        with self.lock:
            self.errors[kind] += 1

    def attempt(self, wait: float, *, retry: bool) -> None:
        """Record one attempt sent after ``wait`` seconds of admission wait."""
        self.waits.append(wait)
        with self.lock:
            self.attempts += 1
            if retry:
                self.retries += 1

    def reset(self) -> None:
        """Start every counter again from zero."""
        with self.lock:
            for name in StatsSnapshot.__dataclass_fields__:
                if name not in {"errors", "wait_p50", "wait_p99", "wait_max"}:
                    setattr(self, name, 0)
            self.errors.clear()
            self.waits.clear()

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy of the counters, with wait percentiles."""
        with self.lock:
            waits = sorted(self.waits)
            counts = {
                name: getattr(self, name)
                for name in StatsSnapshot.__dataclass_fields__
                if name not in {"errors", "wait_p50", "wait_p99", "wait_max"}
            }
            errors = dict(self.errors)
        return StatsSnapshot(
            errors=errors,
            wait_p50=statistics.median(waits) if waits else 0.0,
            wait_p99=waits[min(len(waits) - 1, int(0.99 * len(waits)))] if waits else 0.0,
            wait_max=waits[-1] if waits else 0.0,
            **counts,
        )
