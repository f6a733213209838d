"""What the emulator counted for one model of one family, for ``GET /emulator/stats``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quotaflow.core import NS_PER_SECOND

if TYPE_CHECKING:
    from collections.abc import Mapping

    from quotaflow.emulator._bucket import TokenBucket

__all__ = ["ModelStats"]


@dataclass(slots=True)
class ModelStats:
    """Counters of one (family, model).

    Attributes:
        admitted: requests admitted.
        rate_limited: 429s sent, by the bucket that lacked (``too_large`` for OpenAI requests
            that can never fit).
        faults: faults injected, by name.
        quota_exhausted: quota errors sent because ``quota_exhausted_after`` was reached.
        input_tokens: input tokens of the admitted requests.
        output_tokens: output tokens generated (sent, or cut short).
        first_ns: the first admission's time.
        last_ns: the last admission's time.
    """

    admitted: int = 0
    rate_limited: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    quota_exhausted: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    first_ns: int | None = None
    last_ns: int | None = None

    def admit(self, input_tokens: int, now_ns: int) -> None:
        """Count one admitted request."""
        self.admitted += 1
        self.input_tokens += input_tokens
        if self.first_ns is None:
            self.first_ns = now_ns
        self.last_ns = now_ns if self.last_ns is None else max(self.last_ns, now_ns)

    def as_json(self, buckets: Mapping[str, TokenBucket], now_ns: int) -> dict[str, object]:
        """The counters, and per bucket its limit, what it charged and what was admissible.

        ``admissible`` is ``limit + limit / window * (last - first admission)``: the most any
        client could have had admitted over the run, so utilisation = counted / admissible.
        """
        first = self.first_ns
        last = self.last_ns if self.last_ns is not None else first
        span = 0 if first is None or last is None else last - first
        return {
            "admitted": self.admitted,
            "rate_limited": dict(self.rate_limited),
            "faults": dict(self.faults),
            "quota_exhausted": self.quota_exhausted,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "first_admission_ns": first,
            "last_admission_ns": last,
            "span_seconds": span / NS_PER_SECOND,
            "buckets": {
                name: {
                    "limit": bucket.limit,
                    "window_seconds": bucket.period_ns / NS_PER_SECOND,
                    "charged": bucket.charged,
                    "remaining": bucket.remaining(now_ns),
                    "admissible": 0
                    if first is None or last is None
                    else bucket.admissible(first, last),
                }
                for name, bucket in buckets.items()
            },
        }
