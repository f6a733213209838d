"""Accounting rules as data: which tokens each provider counts toward which limit, and when.

The rules are what the providers document (see docs/providers.md for the sources); where a
rule is an inference it says so in ``note``. Replace a rule with ``dataclasses.replace`` to
adapt it (a Provisioned Throughput burndown rate, a legacy model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from quotaflow._errors import ConfigurationError
from quotaflow.core._limits import QuotaPeriod
from quotaflow.core._usage import Usage, check_amount
from quotaflow.providers._clock import PACIFIC, next_reset
from quotaflow.providers._provider import Provider

if TYPE_CHECKING:
    from datetime import datetime

    from quotaflow.providers._usage import ReportedUsage

__all__ = [
    "AccountingRule",
    "accounting_rule",
    "admission_usage",
    "counted_usage",
    "quota_reset",
]


@dataclass(frozen=True, slots=True)
class AccountingRule:
    """How one provider (and model) counts a call against its limits.

    Attributes:
        provider: the provider.
        cache_reads_count: cache-read input tokens count toward input/token limits.
        cache_writes_count: cache-write input tokens count toward input/token limits.
        output_weight: each output token counts this many times toward token limits
            (Bedrock's "burndown rate"; Vertex Provisioned Throughput has model-specific ones).
        admission_counts_max_tokens: the provider charges ``max_tokens`` (not the actual
            output) when it admits a call, so a reservation must hold all of it.
        daily_reset_timezone: where the provider's daily quotas reset at midnight.
        monthly_reset_timezone: where its monthly caps reset on the 1st.
        note: the source, or that the rule is inferred.
    """

    provider: Provider
    cache_reads_count: bool = True
    cache_writes_count: bool = True
    output_weight: int = 1
    admission_counts_max_tokens: bool = False
    daily_reset_timezone: str = "UTC"
    monthly_reset_timezone: str = "UTC"
    note: str = ""


_RULES: Final = {
    Provider.OPENAI: AccountingRule(
        Provider.OPENAI,
        admission_counts_max_tokens=True,
        note="TPM admission uses max(max_tokens, estimate) (rate-limits guide); cached "
        "tokens are assumed to count toward TPM (inferred)",
    ),
    Provider.AZURE: AccountingRule(
        Provider.AZURE,
        admission_counts_max_tokens=True,
        note="admission estimate = prompt tokens + max_tokens (Azure quota docs)",
    ),
    Provider.GROQ: AccountingRule(
        Provider.GROQ, admission_counts_max_tokens=True, note="assumed like OpenAI (inferred)"
    ),
    Provider.OPENROUTER: AccountingRule(
        Provider.OPENROUTER,
        admission_counts_max_tokens=True,
        note="the in-flight budget holds input + max_tokens; free-model RPD resets at UTC "
        "midnight (limits docs)",
    ),
    Provider.ANTHROPIC: AccountingRule(
        Provider.ANTHROPIC,
        cache_reads_count=False,
        note="ITPM counts input_tokens + cache_creation_input_tokens, not cache reads; OTPM "
        "counts generated tokens, not max_tokens (rate-limits docs)",
    ),
    Provider.GEMINI: AccountingRule(
        Provider.GEMINI,
        daily_reset_timezone=PACIFIC,
        note="TPM counts input tokens; RPD resets at midnight Pacific (rate-limits docs)",
    ),
    Provider.VERTEX: AccountingRule(
        Provider.VERTEX,
        daily_reset_timezone=PACIFIC,
        note="standard quotas count input tokens; Provisioned Throughput burndown rates are "
        "model-specific: set output_weight",
    ),
    Provider.BEDROCK: AccountingRule(
        Provider.BEDROCK,
        admission_counts_max_tokens=True,
        note="quota is held for input + max_tokens at admission, then adjusted (AWS docs)",
    ),
    Provider.GENERIC: AccountingRule(Provider.GENERIC, note="counts everything (conservative)"),
}

# Anthropic models whose ITPM still counts cache reads (the † rows of the rate-limits tables).
_ANTHROPIC_CACHE_READS_COUNT: Final = ("claude-3-5-haiku", "claude-haiku-3-5")
# Bedrock counts each output token 5 times toward TPM for Claude 3.7 and later (AWS "token
# burndown rate"); older Claude models and other families count it once.
_BEDROCK_ONE_TO_ONE: Final = ("claude-3-haiku", "claude-3-sonnet", "claude-3-opus", "claude-3-5")
_BEDROCK_OUTPUT_WEIGHT: Final = 5


def accounting_rule(provider: Provider | str, model: str | None = None) -> AccountingRule:
    """The accounting rule for ``provider``, refined for ``model`` where models differ."""
    provider = Provider.parse(provider)
    rule = _RULES[provider]
    name = (model or "").lower()
    if provider is Provider.ANTHROPIC and any(m in name for m in _ANTHROPIC_CACHE_READS_COUNT):
        return AccountingRule(provider, note="legacy model: cache reads count toward ITPM")
    if (
        provider is Provider.BEDROCK
        and "claude" in name
        and not any(m in name for m in _BEDROCK_ONE_TO_ONE)
    ):
        return AccountingRule(
            provider,
            output_weight=_BEDROCK_OUTPUT_WEIGHT,
            admission_counts_max_tokens=True,
            note="Claude 3.7 and later: output tokens burn down quota 5x (AWS docs)",
        )
    return rule


def counted_usage(
    provider: Provider | str | AccountingRule,
    reported: ReportedUsage,
    *,
    cost: int = 0,
) -> Usage:
    """What a finished call counts against the provider's limits (to settle a reservation).

    Args:
        provider: the provider (its rule for ``reported.model`` applies), or a rule.
        reported: the usage the provider reported.
        cost: the call's cost in micro-USD, carried into the result.
    """
    rule = (
        provider
        if isinstance(provider, AccountingRule)
        else accounting_rule(provider, reported.model)
    )
    input_tokens = reported.input_tokens
    if not rule.cache_reads_count:
        input_tokens -= reported.cache_read_tokens
    if not rule.cache_writes_count:
        input_tokens -= reported.cache_write_tokens
    return Usage(
        input_tokens=max(input_tokens, 0),
        output_tokens=reported.output_tokens * rule.output_weight,
        cost=cost,
    )


def admission_usage(
    provider: Provider | str | AccountingRule,
    *,
    input_tokens: int,
    max_tokens: int | None = None,
    expected_output_tokens: int | None = None,
    model: str | None = None,
    cost: int = 0,
) -> Usage:
    """What to reserve before a call, so that no limit is exceeded when the provider counts.

    A provider that charges ``max_tokens`` at admission (OpenAI, Azure, Bedrock) gets all of
    it; the others get ``expected_output_tokens`` (say, a learned high percentile), never more
    than ``max_tokens``; without an expectation, ``max_tokens``.

    Raises:
        InvalidUsageError: an amount is not a non-negative integer.
    """
    rule = provider if isinstance(provider, AccountingRule) else accounting_rule(provider, model)
    check_amount("input_tokens", input_tokens)
    cap = None if max_tokens is None else check_amount("max_tokens", max_tokens)
    expected = (
        None
        if expected_output_tokens is None
        else check_amount("expected_output_tokens", expected_output_tokens)
    )
    if cap is not None and (rule.admission_counts_max_tokens or expected is None):
        output = cap
    elif expected is not None:
        output = expected if cap is None else min(expected, cap)
    else:
        output = 0
    return Usage(input_tokens=input_tokens, output_tokens=output * rule.output_weight, cost=cost)


def quota_reset(provider: Provider | str, period: QuotaPeriod | str, now: datetime) -> datetime:
    """When ``provider``'s daily or monthly quota next resets (Gemini: midnight Pacific)."""
    rule = accounting_rule(provider)
    try:
        period = QuotaPeriod(period)
    except ValueError:
        raise ConfigurationError(f"period must be 'day' or 'month', got {period!r}") from None
    zone = rule.daily_reset_timezone if period is QuotaPeriod.DAY else rule.monthly_reset_timezone
    return next_reset(period, now, zone)
