"""Output accounting of one admitted call: as tokens are generated, and once when it ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quotaflow.emulator._admission import token_buckets
from quotaflow.providers import Provider

if TYPE_CHECKING:
    from quotaflow.emulator._clock import TimeSource
    from quotaflow.emulator._state import ModelState

__all__ = ["Meter"]


class Meter:
    """Counts one call's output and settles its buckets.

    Anthropic: each generated token is charged to the OTPM bucket when generated (into debt
    if need be). OpenAI: admission charged ``prompt + max_tokens``; when the call ends, the
    token buckets are corrected to ``prompt + generated`` (the unused part is refunded, unless
    ``refund_unused`` is off); without ``max_tokens`` the output is charged then.
    """

    __slots__ = ("_clock", "_finished", "_max_tokens", "_refund_unused", "_state", "generated")

    def __init__(
        self,
        state: ModelState,
        clock: TimeSource,
        *,
        max_tokens: int | None,
        refund_unused: bool,
    ) -> None:
        self._state = state
        self._clock = clock
        self._max_tokens = max_tokens
        self._refund_unused = refund_unused
        self._finished = False
        self.generated = 0

    def produced(self, tokens: int) -> None:
        """Count ``tokens`` just generated."""
        self.generated += tokens
        self._state.stats.output_tokens += tokens
        if self._state.family is Provider.ANTHROPIC:
            self._state.bucket("output_tokens").charge(tokens, self._clock.now_ns())

    def finish(self) -> None:
        """Settle the call (once; later calls do nothing): at its end, or when it was cut."""
        if self._finished:
            return
        self._finished = True
        if self._state.family is not Provider.OPENAI:
            return
        now = self._clock.now_ns()
        for bucket in token_buckets(self._state):
            if self._max_tokens is None:
                bucket.charge(self.generated, now)
            elif self._refund_unused:
                bucket.refund(self._max_tokens - self.generated, now)
