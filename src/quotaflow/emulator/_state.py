"""The buckets and counters of one model of one provider family, created on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from quotaflow.core import NS_PER_SECOND
from quotaflow.emulator._bucket import TokenBucket
from quotaflow.emulator._config import ModelLimits
from quotaflow.emulator._stats import ModelStats
from quotaflow.providers import Provider

if TYPE_CHECKING:
    from quotaflow.emulator._config import EmulatorConfig

__all__ = ["DAY_NS", "MINUTE_NS", "ModelState", "bucket_limits"]

MINUTE_NS: Final = 60 * NS_PER_SECOND
DAY_NS: Final = 86_400 * NS_PER_SECOND


def bucket_limits(
    config: EmulatorConfig, family: Provider, model: str
) -> dict[str, tuple[int, int]]:
    """``{bucket name: (limit, period_ns)}`` for ``model`` served by ``family``.

    OpenAI: ``requests`` and ``tokens`` per minute, ``requests_per_day`` and
    ``tokens_per_day`` when set. Anthropic: ``requests``, ``input_tokens`` and
    ``output_tokens`` per minute.
    """
    override = config.model_limits.get(model, ModelLimits())
    if family is Provider.ANTHROPIC:
        return {
            "requests": (override.rpm or config.anthropic_rpm, MINUTE_NS),
            "input_tokens": (override.itpm or config.anthropic_itpm, MINUTE_NS),
            "output_tokens": (override.otpm or config.anthropic_otpm, MINUTE_NS),
        }
    limits = {
        "requests": (override.rpm or config.openai_rpm, MINUTE_NS),
        "tokens": (override.tpm or config.openai_tpm, MINUTE_NS),
    }
    rpd = override.rpd or config.openai_rpd
    tpd = override.tpd or config.openai_tpd
    if rpd is not None:
        limits["requests_per_day"] = (rpd, DAY_NS)
    if tpd is not None:
        limits["tokens_per_day"] = (tpd, DAY_NS)
    return limits


class ModelState:
    """The buckets (full at creation) and the counters of one (family, model)."""

    __slots__ = ("buckets", "family", "model", "stats")

    def __init__(self, config: EmulatorConfig, family: Provider, model: str, now_ns: int) -> None:
        self.family = family
        self.model = model
        self.buckets = {
            name: TokenBucket(name, limit, period, now_ns)
            for name, (limit, period) in bucket_limits(config, family, model).items()
        }
        self.stats = ModelStats()

    def bucket(self, name: str) -> TokenBucket:
        """The bucket called ``name`` (it must exist for this family)."""
        return self.buckets[name]

    def optional(self, name: str) -> TokenBucket | None:
        """The bucket called ``name``, if this model has one (daily limits are optional)."""
        return self.buckets.get(name)
