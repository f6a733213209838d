"""Published limits of common provider tiers, as data, so that a limiter is one line away.

    >>> from quotaflow.providers import presets
    >>> presets.openai(tier=3, model="gpt-4o")
    [Rate(metric=<Metric.REQUESTS: 'requests'>, limit=5000, ...), Rate(metric=<Metric.TOKENS...]

Numbers change: every table names its source and the date it was read (:data:`SOURCES`).
Prefer learning the real limits at run time from the ``*-limit`` response headers; presets
are the starting point before the first response.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final, TypeVar

from quotaflow._errors import ConfigurationError
from quotaflow.core._limits import Limit, daily_quota, itpm, otpm, rpd, rpm, tpm
from quotaflow.core._metrics import Metric
from quotaflow.providers._clock import PACIFIC

__all__ = ["SOURCES", "PresetSource", "anthropic", "azure", "gemini", "openai", "openrouter_free"]


@dataclass(frozen=True, slots=True)
class PresetSource:
    """Where a preset table comes from, and when it was read."""

    url: str
    as_of: date
    note: str = ""


SOURCES: Final[Mapping[str, PresetSource]] = {
    "openai": PresetSource(
        "https://developers.openai.com/api/docs/models/gpt-4o",
        date(2026, 11, 23),
        "model pages (gpt-4o, gpt-4o-mini); the free tier from the 2025 rate-limits guide",
    ),
    "anthropic": PresetSource(
        "https://platform.claude.com/docs/en/api/rate-limits",
        date(2026, 4, 23),
        "numbered tiers 1-4 as fetched 2026-04-23",
    ),
    "anthropic-2026": PresetSource(
        "https://platform.claude.com/docs/en/api/rate-limits",
        date(2026, 10, 4),
        "Start/Build/Scale: Start and Scale verified 2026-10-04; Build from a secondary "
        "summary (June 2026) only",
    ),
    "openrouter": PresetSource(
        "https://openrouter.ai/docs/api-reference/limits", date(2026, 11, 23), ":free models"
    ),
    "azure": PresetSource(
        "https://learn.microsoft.com/en-us/azure/ai-foundry/openai/quotas-limits",
        date(2026, 11, 23),
        "6 RPM per 1,000 TPM for older chat models",
    ),
}

_OpenAITable = Mapping[int | str, tuple[int, int, int | None]]
_AnthropicTable = Mapping[int | str, tuple[int, int, int]]

# (RPM, TPM, RPD or None) per tier; gpt-4.1 and gpt-5-pro share gpt-4o's table.
_GPT_4O: Final[_OpenAITable] = {
    1: (500, 30_000, None),
    2: (5_000, 450_000, None),
    3: (5_000, 800_000, None),
    4: (10_000, 2_000_000, None),
    5: (10_000, 30_000_000, None),
}
_OPENAI: Final[Mapping[str, _OpenAITable]] = {
    "gpt-4o": _GPT_4O,
    "gpt-4.1": _GPT_4O,
    "gpt-5-pro": _GPT_4O,
    "gpt-4o-mini": {
        1: (500, 200_000, 10_000),
        2: (5_000, 2_000_000, None),
        3: (5_000, 4_000_000, None),
        4: (10_000, 10_000_000, None),
        5: (30_000, 150_000_000, None),
    },
    "gpt-3.5-turbo": {"free": (3, 40_000, 200)},
}
_DATE_SUFFIX: Final = re.compile(r"-\d{4}-\d{2}-\d{2}$")

# (RPM, ITPM, OTPM) per tier and model family; Start/Build/Scale apply to every family.
_START_BUILD_SCALE: Final[_AnthropicTable] = {
    "start": (1_000, 2_000_000, 400_000),
    "build": (5_000, 5_000_000, 1_000_000),
    "scale": (10_000, 10_000_000, 2_000_000),
}
_SONNET_OPUS_4: Final[_AnthropicTable] = {
    1: (50, 30_000, 8_000),
    2: (1_000, 450_000, 90_000),
    3: (2_000, 800_000, 160_000),
    4: (4_000, 2_000_000, 400_000),
    **_START_BUILD_SCALE,
}
_HAIKU_4_5: Final[_AnthropicTable] = {
    1: (50, 50_000, 10_000),
    2: (1_000, 450_000, 90_000),
    3: (2_000, 1_000_000, 200_000),
    4: (4_000, 4_000_000, 800_000),
    **_START_BUILD_SCALE,
}
_ANTHROPIC: Final[Mapping[str, _AnthropicTable]] = {
    "sonnet-4": _SONNET_OPUS_4,
    "opus-4": _SONNET_OPUS_4,
    "haiku-4-5": _HAIKU_4_5,
}
#: Lifetime credit purchases from which OpenRouter's free models allow 1,000 requests a day.
_OPENROUTER_CREDITS_THRESHOLD: Final = 10
_T = TypeVar("_T")


def _tier_key(tier: int | str) -> int | str:
    return tier.strip().lower() if isinstance(tier, str) else tier


def _row(table: Mapping[int | str, _T], tier: int | str, what: str) -> _T:
    key = _tier_key(tier)
    if isinstance(key, bool) or key not in table:
        known = ", ".join(repr(k) for k in table)
        raise ConfigurationError(f"no published limits for {what} tier {tier!r}; known: {known}")
    return table[key]


def openai(tier: int | str, model: str = "gpt-4o", *, headroom: float = 1.0) -> list[Limit]:
    """OpenAI's published RPM and TPM (and RPD where listed) for ``model`` at ``tier``.

    Args:
        tier: 1 to 5 (``"free"`` for gpt-3.5-turbo).
        model: ``gpt-4o``, ``gpt-4o-mini``, ``gpt-4.1``, ``gpt-5-pro`` or ``gpt-3.5-turbo``;
            dated snapshots (``gpt-4o-2024-08-06``) map to their model.
        headroom: the fraction of each limit to use (other clients of the same key).

    Raises:
        ConfigurationError: the model or tier has no published preset.
    """
    name = _DATE_SUFFIX.sub("", model.strip().lower())
    if name not in _OPENAI:
        known = ", ".join(_OPENAI)
        raise ConfigurationError(f"no OpenAI preset for model {model!r}; known: {known}")
    requests, tokens, daily = _row(_OPENAI[name], tier, f"OpenAI {name}")
    limits: list[Limit] = [rpm(requests, headroom=headroom), tpm(tokens, headroom=headroom)]
    if daily is not None:
        limits.append(rpd(daily, headroom=headroom))
    return limits


def _anthropic_family(model: str) -> str | None:
    name = model.strip().lower().removeprefix("anthropic.").removeprefix("claude-")
    for family in _ANTHROPIC:
        if name == family or name.startswith((f"{family}-", f"{family}.")):
            return family
    if name.startswith("haiku-4.5"):
        return "haiku-4-5"
    return None


def anthropic(
    tier: int | str, model: str = "claude-sonnet-4-5", *, headroom: float = 1.0
) -> list[Limit]:
    """Anthropic's published RPM, ITPM and OTPM for ``model`` at ``tier``.

    Args:
        tier: 1 to 4 (the numbered tiers) or ``"start"``, ``"build"``, ``"scale"`` (2026).
        model: a Claude Sonnet 4.x, Opus 4.x or Haiku 4.5 model id (Sonnet 4.x and Opus 4.x
            are each one shared pool).
        headroom: the fraction of each limit to use.

    Raises:
        ConfigurationError: the model or tier has no published preset.
    """
    family = _anthropic_family(model)
    if family is None:
        raise ConfigurationError(
            f"no Anthropic preset for model {model!r}; known: Claude Sonnet 4.x, Opus 4.x, "
            "Haiku 4.5"
        )
    requests, input_tokens, output_tokens = _row(_ANTHROPIC[family], tier, f"Anthropic {family}")
    return [
        rpm(requests, headroom=headroom),
        itpm(input_tokens, headroom=headroom),
        otpm(output_tokens, headroom=headroom),
    ]


def openrouter_free(*, credits_purchased: float = 0) -> list[Limit]:
    """OpenRouter's ``:free`` model limits.

    20 RPM, and 50 requests per UTC day (1,000 once at least 10 credits were ever purchased).
    """
    daily = 1_000 if credits_purchased >= _OPENROUTER_CREDITS_THRESHOLD else 50
    return [rpm(20), daily_quota(Metric.REQUESTS, daily, timezone="UTC")]


def gemini(*, rpm_limit: int, tpm_limit: int, rpd_limit: int, headroom: float = 1.0) -> list[Limit]:
    """Gemini API limits, as AI Studio shows them for your project.

    Google no longer publishes a table. TPM counts *input* tokens, and RPD resets at midnight
    Pacific.
    """
    return [
        rpm(rpm_limit, headroom=headroom),
        itpm(tpm_limit, headroom=headroom),
        daily_quota(Metric.REQUESTS, rpd_limit, timezone=PACIFIC),
    ]


def azure(*, tpm_limit: int, rpm_per_1000_tpm: int = 6, headroom: float = 1.0) -> list[Limit]:
    """An Azure OpenAI deployment's limits: its TPM, and the RPM derived from it.

    Older chat models get 6 RPM per 1,000 TPM; o-series deployments use other ratios.
    """
    requests = tpm_limit * rpm_per_1000_tpm // 1000
    return [tpm(tpm_limit, headroom=headroom), rpm(max(requests, 1), headroom=headroom)]
