"""The concurrency a batch runs at: its maximum, or adapted by AIMD after rate limits."""

from __future__ import annotations

import threading

from quotaflow.batch._config import BatchConfig

__all__ = ["AdaptiveConcurrency"]


class AdaptiveConcurrency:
    """The concurrency in force: the maximum, or adapted by AIMD after rate-limit errors.

    A rate-limit error halves it (down to the minimum) once per decrease: errors of tries
    started before the last decrease were sent at the old concurrency and are not counted
    again. Every ``current`` consecutive successes add one back, up to the maximum.
    """

    def __init__(self, config: BatchConfig) -> None:
        self._adaptive = config.adaptive_concurrency
        self._min = config.min_concurrent_requests
        self._max = config.max_concurrent_requests
        self.current = self._max
        self.generation = 0
        self._successes = 0
        self._lock = threading.Lock()

    def on_success(self) -> None:
        if not self._adaptive:
            return
        with self._lock:
            self._successes += 1
            if self._successes >= self.current:
                self._successes = 0
                self.current = min(self._max, self.current + 1)

    def on_rate_limited(self, generation: int) -> None:
        if not self._adaptive:
            return
        with self._lock:
            if generation != self.generation:
                return
            self.generation += 1
            self._successes = 0
            self.current = max(self._min, self.current // 2)
