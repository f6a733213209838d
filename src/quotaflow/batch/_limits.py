"""The limits a batch runs under: given as numbers, a published preset, or learned.

Numbers (``--rpm``... or ``[limits]`` in ``--config``) apply to every model's scope
(``provider:*``). A preset (``openai:tier-3``) gives each model of the batch its published
limits; numbers given as well replace the preset's limit of the same kind. With neither, the
limits are learned from the provider's headers (the governed client's default). Configured
limits are only ever lowered by learned ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from quotaflow._errors import ConfigurationError
from quotaflow.client._config import LIMIT_SHORTHANDS
from quotaflow.core import Limit
from quotaflow.providers import Provider, presets

__all__ = ["LIMIT_NAMES", "check_limit_names", "check_preset", "scope_limits"]

#: The limits that can be given as numbers (a subset of the client's shorthands).
LIMIT_NAMES: Final = ("rpm", "rpd", "tpm", "tpd", "itpm", "otpm", "concurrency")
_FACTORIES: Final = MappingProxyType({name: LIMIT_SHORTHANDS[name] for name in LIMIT_NAMES})
#: The tiers of each preset family (a model may have a table for some of them only: OpenAI's
#: ``free`` is gpt-3.5-turbo's). OpenRouter publishes the limits of its free models only.
_TIERS: Final[Mapping[str, tuple[int | str, ...]]] = {
    "openai": (1, 2, 3, 4, 5, "free"),
    "anthropic": (1, 2, 3, 4, "start", "build", "scale"),
    "openrouter": ("free",),
}


def check_limit_names(names: Iterable[str], where: str = "") -> None:
    """Refuse limit names other than :data:`LIMIT_NAMES` (``where`` prefixes the message).

    Raises:
        ConfigurationError: a name is unknown.
    """
    unknown = set(names) - set(LIMIT_NAMES)
    if unknown:
        raise ConfigurationError(
            f"{where}unknown limits {', '.join(sorted(unknown))}; use {', '.join(LIMIT_NAMES)}"
        )


def check_preset(text: str, provider: Provider | None = None) -> tuple[str, int | str]:
    """Read ``openai:tier-3``, ``anthropic:2``, ``anthropic:build`` or ``openrouter:free``.

    Args:
        text: the preset.
        provider: the provider the batch goes to; the family must be its own.

    Raises:
        ConfigurationError: the text names no known preset family or tier, or the family is
            not ``provider``'s.
    """
    family, sep, tier = text.strip().lower().partition(":")
    tier = tier.strip().removeprefix("tier-").removeprefix("tier")
    if not sep or family not in _TIERS or not tier:
        raise ConfigurationError(
            f"preset {text!r}: expected FAMILY:TIER with FAMILY one of {', '.join(_TIERS)}, "
            "as in 'openai:tier-3', 'anthropic:tier-2' or 'openrouter:free'"
        )
    known = _TIERS[family]
    parsed = int(tier) if tier.isdigit() else tier
    if parsed not in known:
        raise ConfigurationError(
            f"preset {text!r}: {family} has no tier {tier!r}; known: "
            f"{', '.join(str(t) for t in known)}"
        )
    if provider is not None and family != provider.value:
        raise ConfigurationError(
            f"preset {text!r} is for {family}, and the batch goes to {provider.value}"
        )
    return family, parsed


def _preset_limits(family: str, tier: int | str, model: str) -> list[Limit]:
    if family == "openai":
        return presets.openai(tier, model)
    if family == "anthropic":
        return presets.anthropic(tier, model)
    return presets.openrouter_free()  # check_preset allows its "free" tier only


def _numbers(limits: Mapping[str, int]) -> list[Limit]:
    check_limit_names(limits)
    return [_FACTORIES[name](amount) for name, amount in limits.items()]


def scope_limits(
    provider: Provider, limits: Mapping[str, int], preset: str | None, models: Iterable[str]
) -> dict[str, tuple[Limit, ...]]:
    """The configured limits per scope (empty: learn them all from the headers).

    Raises:
        ConfigurationError: a limit is invalid, the preset is not one of ``provider``'s, or
            it has no table for a model.
    """
    given = _numbers(limits)
    if preset is None:
        return {f"{provider.value}:*": tuple(given)} if given else {}
    family, tier = check_preset(preset, provider)
    scoped: dict[str, tuple[Limit, ...]] = {}
    for model in models:
        merged = {limit.key: limit for limit in _preset_limits(family, tier, model)}
        merged.update({limit.key: limit for limit in given})
        scoped[f"{provider.value}:{model}"] = tuple(merged.values())
    if given:  # models the pre-flight did not see still get the numbers
        scoped[f"{provider.value}:*"] = tuple(given)
    return scoped
