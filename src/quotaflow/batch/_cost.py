"""Prices of batch lines, in micro-USD, and the spending budget of ``--max-cost``."""

from __future__ import annotations

from quotaflow.providers import MissingDependencyError, PriceBook, Provider, ReportedUsage
from quotaflow.providers import UnknownModelError as _UnknownModelError

__all__ = ["Budget", "Pricing"]

_MAX_MODELS = 4096


class Pricing:
    """Costs from quotaflow's price book, with no fallback: an unknown model has no price."""

    def __init__(self, provider: Provider) -> None:
        self._provider = provider
        self._book = PriceBook(fallback=None)
        self._known: dict[str, bool] = {}
        try:
            self._book.cost("gpt-4o-mini", ReportedUsage(1, 1), provider=Provider.OPENAI)
        except MissingDependencyError:
            self.available = False
        else:
            self.available = True

    def knows(self, model: str) -> bool:
        """Whether ``model`` has a known price."""
        known = self._known.get(model)
        if known is None:
            known = self.cost(model, ReportedUsage(1, 1)) is not None
            if len(self._known) >= _MAX_MODELS:
                self._known.clear()
            self._known[model] = known
        return known

    def cost(self, model: str, usage: ReportedUsage) -> int | None:
        """The cost of ``usage`` on ``model`` in micro-USD; ``None`` when it has no price."""
        if not self.available or self._known.get(model) is False:
            return None
        try:
            return self._book.cost(model, usage, provider=self._provider)
        except _UnknownModelError:
            return None

    def worst_case(self, model: str, input_tokens: int, output_tokens: int) -> int | None:
        """The cost of a call using ``input_tokens`` and ``output_tokens``, if priced."""
        return self.cost(model, ReportedUsage(input_tokens, output_tokens))


class Budget:
    """Spending under ``--max-cost``: what was spent, what in-flight calls may still spend.

    Args:
        limit: micro-USD, or ``None`` for no limit.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.spent = 0
        self.reserved = 0

    def fits(self, worst: int) -> bool:
        """Whether a call that may cost ``worst`` can start without risking the limit."""
        return self.limit is None or self.spent + self.reserved + worst <= self.limit

    def reserve(self, worst: int) -> None:
        """Hold ``worst`` for a call that starts."""
        self.reserved += worst

    def settle(self, worst: int, actual: int) -> None:
        """Replace a call's hold with what it cost."""
        self.reserved -= worst
        self.spent += actual

    def release(self, worst: int) -> None:
        """Drop the hold of a call that was cancelled (it is redone by a rerun)."""
        self.reserved -= worst
