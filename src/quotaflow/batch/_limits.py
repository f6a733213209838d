"""The limits a batch runs under: given as numbers, a published preset, or learned.

Numbers (``--rpm``... or ``[limits]`` in ``--config``) apply to every model's scope
(``provider:*``). A preset (``openai:tier-3``) gives each model of the batch its published
limits; numbers given as well replace the preset's limit of the same kind. With neither, the
limits are learned from the provider's headers (the governed client's default). Configured
limits are only ever lowered by learned ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from quotaflow._errors import ConfigurationError
from quotaflow.core import Limit
from quotaflow.core._limits import concurrency, itpm, otpm, rpd, rpm, tpd, tpm
from quotaflow.providers import Provider, presets

__all__ = ["LIMIT_NAMES", "check_preset", "scope_limits"]

_FACTORIES: Final[Mapping[str, Callable[[int], Limit]]] = {
    "rpm": rpm,
    "rpd": rpd,
    "tpm": tpm,
    "tpd": tpd,
    "itpm": itpm,
    "otpm": otpm,
    "concurrency": concurrency,
}
#: The limits that can be given as numbers.
LIMIT_NAMES: Final = tuple(_FACTORIES)
_FAMILIES: Final = ("openai", "anthropic", "openrouter")


def check_preset(text: str) -> tuple[str, int | str]:
    """Read ``openai:tier-3``, ``anthropic:2``, ``anthropic:build`` or ``openrouter:free``.

    Raises:
        ConfigurationError: the text names no known preset family.
    """
    family, sep, tier = text.strip().lower().partition(":")
    tier = tier.removeprefix("tier-").removeprefix("tier")
    if not sep or family not in _FAMILIES or not tier:
        raise ConfigurationError(
            f"preset {text!r}: expected FAMILY:TIER with FAMILY one of {', '.join(_FAMILIES)}, "
            "as in 'openai:tier-3', 'anthropic:tier-2' or 'openrouter:free'"
        )
    return family, int(tier) if tier.isdigit() else tier


def _preset_limits(family: str, tier: int | str, model: str) -> list[Limit]:
    if family == "openai":
        return presets.openai(tier, model)
    if family == "anthropic":
        return presets.anthropic(tier, model)
    return presets.openrouter_free()


def _numbers(limits: Mapping[str, int]) -> list[Limit]:
    unknown = set(limits) - set(_FACTORIES)
    if unknown:
        raise ConfigurationError(
            f"unknown limits {', '.join(sorted(unknown))}; use {', '.join(LIMIT_NAMES)}"
        )
    return [_FACTORIES[name](amount) for name, amount in limits.items()]


def scope_limits(
    provider: Provider, limits: Mapping[str, int], preset: str | None, models: Iterable[str]
) -> dict[str, tuple[Limit, ...]]:
    """The configured limits per scope (empty: learn them all from the headers).

    Raises:
        ConfigurationError: a limit is invalid, or the preset has no table for a model.
    """
    given = _numbers(limits)
    if preset is None:
        return {f"{provider.value}:*": tuple(given)} if given else {}
    family, tier = check_preset(preset)
    scoped: dict[str, tuple[Limit, ...]] = {}
    for model in models:
        merged = {limit.key: limit for limit in _preset_limits(family, tier, model)}
        merged.update({limit.key: limit for limit in given})
        scoped[f"{provider.value}:{model}"] = tuple(merged.values())
    if given:  # models the pre-flight did not see still get the numbers
        scoped[f"{provider.value}:*"] = tuple(given)
    return scoped
