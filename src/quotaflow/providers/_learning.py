"""Learning from settlements: how far estimates are off, and how long answers really are."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from quotaflow._errors import ConfigurationError
from quotaflow.providers._estimate import Estimate

if TYPE_CHECKING:
    from quotaflow.providers._usage import ReportedUsage

__all__ = ["LearnedModel", "UsageLearner"]

_MIN_RATIO: Final = 0.25
_MAX_RATIO: Final = 4.0


@dataclass(frozen=True, slots=True)
class LearnedModel:
    """What was learned about one model.

    Attributes:
        samples: settlements observed (within the window).
        input_ratio: the chosen quantile of actual / estimated input tokens (1.0 until
            ``min_samples`` were seen).
        output_tokens: the chosen quantile of output tokens, or ``None`` until ``min_samples``.
    """

    samples: int = 0
    input_ratio: float = 1.0
    output_tokens: int | None = None


@dataclass(slots=True)
class _History:
    ratios: deque[float]
    outputs: deque[int]
    learned: LearnedModel | None = field(default=None)
    stale: int = 0  # observations since ``learned`` was computed


class UsageLearner:
    """Learns, per model, the input-estimate correction and a high percentile of output.

    Each settlement (estimate and actual usage) updates a sliding window per model. The
    correction for the next reservation is a high quantile of recent ``actual / estimated``
    input ratios (clamped to [0.25, 4]), and the expected output is a high quantile of recent
    output lengths, never above the request's ``max_tokens``. Quantiles rather than means keep
    reservations on the safe side. Thread-safe; memory is bounded by ``max_models * window``.

    Args:
        input_quantile: quantile of input ratios used for correction.
        output_quantile: quantile of output lengths expected (0.95: 1 call in 20 runs longer).
        window: settlements remembered per model.
        min_samples: settlements needed before learned values are used.
        max_models: models remembered (least recently observed forgotten first).
    """

    def __init__(
        self,
        *,
        input_quantile: float = 0.9,
        output_quantile: float = 0.95,
        window: int = 256,
        min_samples: int = 8,
        max_models: int = 1024,
    ) -> None:
        for name, value in (
            ("input_quantile", input_quantile),
            ("output_quantile", output_quantile),
        ):
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                raise ConfigurationError(f"{name} must be in [0, 1], got {value!r}")
        for name, count in (
            ("window", window),
            ("min_samples", min_samples),
            ("max_models", max_models),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {count!r}")
        if min_samples > window:
            raise ConfigurationError(
                f"min_samples ({min_samples}) must not exceed window ({window})"
            )
        self._input_quantile = float(input_quantile)
        self._output_quantile = float(output_quantile)
        self._window = window
        self._min_samples = min_samples
        self._max_models = max_models
        self._refresh = max(1, window // 32)
        self._models: OrderedDict[str, _History] = OrderedDict()
        self._lock = threading.Lock()

    def observe(
        self, estimate: Estimate, actual: ReportedUsage, *, model: str | None = None
    ) -> None:
        """Record one settlement: what was estimated and what the provider reported.

        ``model`` defaults to the estimate's (then the report's) model; without any, nothing
        is learned.
        """
        key = _key(model or estimate.model or actual.model)
        if key is None:
            return
        ratio = None
        if estimate.input_tokens > 0 and actual.input_tokens > 0:
            ratio = min(max(actual.input_tokens / estimate.input_tokens, _MIN_RATIO), _MAX_RATIO)
        with self._lock:
            history = self._models.pop(key, None) or _History(
                deque(maxlen=self._window), deque(maxlen=self._window)
            )
            self._models[key] = history
            while len(self._models) > self._max_models:
                self._models.popitem(last=False)
            if ratio is not None:
                history.ratios.append(ratio)
            history.outputs.append(actual.output_tokens)
            history.stale += 1
            # Quantiles of a full window move slowly: recompute them (two sorts of the
            # window) every ``window / 32`` observations, not on every one.
            if history.learned is None or history.stale >= self._refresh:
                history.learned = None

    def learned(self, model: str | None) -> LearnedModel:
        """What was learned about ``model`` (defaults until ``min_samples`` settlements)."""
        key = _key(model)
        with self._lock:
            history = None if key is None else self._models.get(key)
            if history is None:
                return LearnedModel()
            if history.learned is None or history.learned.samples < self._min_samples:
                history.learned = self._summarise(history)
                history.stale = 0
            return history.learned

    def _summarise(self, history: _History) -> LearnedModel:
        samples = len(history.outputs)
        if samples < self._min_samples:
            return LearnedModel(samples)
        ratio = 1.0
        if len(history.ratios) >= self._min_samples:
            ratio = _quantile(sorted(history.ratios), self._input_quantile)
        output = math.ceil(_quantile(sorted(history.outputs), self._output_quantile))
        return LearnedModel(samples, ratio, output)

    def correct(self, estimate: Estimate, *, model: str | None = None) -> Estimate:
        """``estimate`` with its input corrected and its expected output filled in.

        The expected output is the learned quantile, capped by ``max_output_tokens`` (which
        stays the hard cap); before anything is learned it is ``max_output_tokens``.
        """
        learned = self.learned(model or estimate.model)
        output = learned.output_tokens
        cap = estimate.max_output_tokens
        if output is None or (cap is not None and output > cap):
            output = cap
        ratio = learned.input_ratio
        input_tokens = (
            estimate.input_tokens if ratio == 1.0 else math.ceil(estimate.input_tokens * ratio)
        )
        if input_tokens == estimate.input_tokens and output == estimate.output_tokens:
            return estimate
        return Estimate(  # not dataclasses.replace: this runs on every governed call
            input_tokens,
            estimate.max_output_tokens,
            output,
            estimate.exact,
            estimate.counter,
            estimate.images,
            estimate.model,
        )


def _key(model: str | None) -> str | None:
    return model.strip().lower() if model and model.strip() else None


def _quantile(ordered: list[float] | list[int], q: float) -> float:
    """The ``q`` quantile of sorted values, linearly interpolated."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
