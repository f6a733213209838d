"""What the emulator enforces and how it behaves: one frozen, validated configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Final

from quotaflow._errors import ConfigurationError
from quotaflow.emulator._faults import Fault

__all__ = ["EmulatorConfig", "ModelLimits"]

_RATE_TOLERANCE: Final = 1e-9  # fault rates may add up to 1 with float rounding


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not _is_int(value) or value <= 0:  # type: ignore[operator]
        kind = "a positive integer or None" if optional else "a positive integer"
        raise ConfigurationError(f"{name} must be {kind}, got {value!r}")


def _seconds(name: str, value: object) -> None:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """Per-model limits; a field left ``None`` keeps the family's default.

    ``rpm`` applies to both families; ``tpm``, ``rpd`` and ``tpd`` to the OpenAI endpoints;
    ``itpm`` and ``otpm`` to Anthropic's. A model served by both families gets two separate
    sets of buckets.
    """

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None
    itpm: int | None = None
    otpm: int | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            _positive(f"ModelLimits.{item.name}", getattr(self, item.name), optional=True)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the provider emulator behaves. Every value is checked on construction.

    Attributes:
        openai_rpm: requests per minute of each OpenAI model.
        openai_tpm: tokens per minute of each OpenAI model (prompt + ``max_tokens`` at
            admission, corrected to prompt + completion when the response ends).
        openai_rpd: requests per day, or ``None`` for no daily limit.
        openai_tpd: tokens per day, or ``None``.
        anthropic_rpm: requests per minute of each Anthropic model.
        anthropic_itpm: input tokens per minute.
        anthropic_otpm: output tokens per minute (charged as generated).
        model_limits: per-model overrides, by model name.
        latency: seconds before the first byte of a response.
        token_latency: seconds per generated token (streams pace their chunks by it).
        output_tokens: the inclusive range the output length is drawn from (uniformly), always
            capped by the request's own maximum.
        seed: seeds the output lengths and faults (``None``: unpredictable).
        fault_rates: the probability of each fault per request, by :class:`Fault` name; they
            may add up to at most 1.
        quota_exhausted_after: after this many admitted requests of a family, every call to it
            gets the provider's quota (billing) error.
        round_anthropic_remaining: round Anthropic's token ``remaining`` headers to the
            nearest thousand, as Anthropic does.
        refund_unused: give back the unused part of OpenAI's ``max_tokens`` when a response
            ends (``False`` keeps the admission charge: the strictest reading of OpenAI's docs).
        openrouter_credit_limit: the credit limit (USD) the OpenRouter key endpoint reports;
            ``None`` for unlimited.
        api_key: when set, requests with another key get a 401 in the provider's format.
    """

    openai_rpm: int = 500
    openai_tpm: int = 30_000
    openai_rpd: int | None = None
    openai_tpd: int | None = None
    anthropic_rpm: int = 50
    anthropic_itpm: int = 30_000
    anthropic_otpm: int = 8_000
    model_limits: Mapping[str, ModelLimits] = field(default_factory=dict, hash=False)
    latency: float = 0.05
    token_latency: float = 0.0
    output_tokens: tuple[int, int] = (20, 200)
    seed: int | None = 0
    fault_rates: Mapping[str, float] = field(default_factory=dict, hash=False)
    quota_exhausted_after: int | None = None
    round_anthropic_remaining: bool = True
    refund_unused: bool = True
    openrouter_credit_limit: float | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name in ("openai_rpm", "openai_tpm", "anthropic_rpm", "anthropic_itpm"):
            _positive(name, getattr(self, name))
        _positive("anthropic_otpm", self.anthropic_otpm)
        _positive("openai_rpd", self.openai_rpd, optional=True)
        _positive("openai_tpd", self.openai_tpd, optional=True)
        _seconds("latency", self.latency)
        _seconds("token_latency", self.token_latency)
        self._check_output_tokens()
        if self.seed is not None and not _is_int(self.seed):
            raise ConfigurationError(f"seed must be an integer or None, got {self.seed!r}")
        if self.quota_exhausted_after is not None and (
            not _is_int(self.quota_exhausted_after) or self.quota_exhausted_after < 0
        ):
            raise ConfigurationError(
                f"quota_exhausted_after must be an integer >= 0 or None, "
                f"got {self.quota_exhausted_after!r}"
            )
        for name in ("round_anthropic_remaining", "refund_unused"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be a bool, got {getattr(self, name)!r}")
        credit = self.openrouter_credit_limit
        if credit is not None:
            _seconds("openrouter_credit_limit", credit)  # the same check: finite and >= 0
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ConfigurationError(
                f"api_key must be a non-empty string or None, got {self.api_key!r}"
            )
        object.__setattr__(self, "model_limits", self._checked_model_limits())
        object.__setattr__(self, "fault_rates", self._checked_fault_rates())

    def _check_output_tokens(self) -> None:
        bounds = self.output_tokens
        if (
            not isinstance(bounds, tuple)
            or len(bounds) != 2  # noqa: PLR2004
            or not all(_is_int(b) for b in bounds)
            or not 0 <= bounds[0] <= bounds[1]
        ):
            raise ConfigurationError(
                f"output_tokens must be a (low, high) pair of integers with 0 <= low <= high, "
                f"got {bounds!r}"
            )

    def _checked_model_limits(self) -> dict[str, ModelLimits]:
        if not isinstance(self.model_limits, Mapping):
            raise ConfigurationError(
                f"model_limits must be a mapping of model name to ModelLimits, "
                f"got {self.model_limits!r}"
            )
        checked: dict[str, ModelLimits] = {}
        for model, limits in self.model_limits.items():
            if not isinstance(model, str) or not model:
                raise ConfigurationError(f"model_limits keys must be model names, got {model!r}")
            if not isinstance(limits, ModelLimits):
                raise ConfigurationError(
                    f"model_limits[{model!r}] must be a ModelLimits, got {limits!r}"
                )
            checked[model] = limits
        return checked

    def _checked_fault_rates(self) -> dict[Fault, float]:
        if not isinstance(self.fault_rates, Mapping):
            raise ConfigurationError(
                f"fault_rates must be a mapping of fault name to rate, got {self.fault_rates!r}"
            )
        known = ", ".join(fault.value for fault in Fault)
        rates: dict[Fault, float] = {}
        for name, rate in self.fault_rates.items():
            try:
                fault = Fault(name)
            except ValueError:
                raise ConfigurationError(
                    f"unknown fault {name!r} in fault_rates; expected one of: {known}"
                ) from None
            number = rate if isinstance(rate, int | float) and not isinstance(rate, bool) else -1
            if not 0 <= number <= 1:
                raise ConfigurationError(
                    f"fault_rates[{name!r}] must be a probability in [0, 1], got {rate!r}"
                )
            if number:
                rates[fault] = float(number)
        total = sum(rates.values())
        if total > 1 + _RATE_TOLERANCE:
            raise ConfigurationError(f"fault_rates must add up to at most 1, got {total!r}")
        return rates
