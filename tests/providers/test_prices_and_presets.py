from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import pytest

from quotaflow.core._limits import Quota, QuotaPeriod, Rate
from quotaflow.core._metrics import Metric
from quotaflow.providers import (
    DEFAULT_FALLBACK,
    FallbackPrice,
    PriceBook,
    ReportedUsage,
    UnknownModelError,
    presets,
    price,
)

pytest.importorskip("genai_prices")


def test_gpt_4o_costs_its_list_price_in_micro_usd() -> None:
    # $2.50 / $10 per million: 1000 in + 500 out = $0.0075.
    assert price("gpt-4o", ReportedUsage(1000, 500), provider="openai") == 7_500


def test_cached_input_is_charged_at_the_cache_price() -> None:
    usage = ReportedUsage(1000, 500, cache_read_tokens=200)
    assert price("gpt-4o", usage, provider="openai") == 7_250  # $1.25/M for 200 of them


def test_anthropic_cache_reads_and_writes_are_priced() -> None:
    usage = ReportedUsage(1000, 500, cache_read_tokens=400)
    assert price("claude-sonnet-4", usage, provider="anthropic") == 9_420


def test_reasoning_tokens_are_charged_as_output() -> None:
    plain = price("o3", ReportedUsage(1000, 500), provider="openai")
    assert price("o3", ReportedUsage(1000, 500, reasoning_tokens=400), provider="openai") == plain


def test_costs_round_up_to_whole_micro_usd() -> None:
    assert price("gpt-4o-mini", ReportedUsage(1, 0), provider="openai") == 1


def test_a_provider_without_the_model_falls_back_to_any_provider() -> None:
    assert price("gpt-4o", ReportedUsage(1000, 500), provider="groq") == 7_500


def test_historic_prices_are_selectable() -> None:
    at = datetime(2025, 6, 1, tzinfo=UTC)
    assert price("gpt-4o", ReportedUsage(1000, 500), provider="openai", at=at) == 7_500


def test_unknown_model_warns_once_and_charges_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = PriceBook()
    usage = ReportedUsage(1_000_000, 1_000_000)
    with caplog.at_level(logging.WARNING, logger="quotaflow.providers"):
        costs = [book.cost("no-such-model-xyz", usage) for _ in range(3)]
    assert costs == [90_000_000] * 3  # $15 + $75
    assert len(caplog.records) == 1
    assert "no-such-model-xyz" in caplog.text


def test_fallback_is_configurable_and_can_be_refused() -> None:
    cheap = PriceBook(fallback=FallbackPrice("0.10", "0.40", cache_read_per_mtok=0))
    usage = ReportedUsage(1_000_000, 1_000_000, cache_read_tokens=500_000)
    assert cheap.cost("no-such-model-xyz", usage) == 450_000
    strict = PriceBook(fallback=None)
    with pytest.raises(UnknownModelError, match="no-such-model-xyz"):
        strict.cost("no-such-model-xyz", usage)
    assert DEFAULT_FALLBACK.output_per_mtok == 75


def test_bad_price_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="input_per_mtok"):
        FallbackPrice(-1, 1)
    with pytest.raises(ValueError, match="output_per_mtok"):
        FallbackPrice(1, "lots")
    with pytest.raises(ValueError, match="fallback"):
        PriceBook(fallback=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model"):
        price("", ReportedUsage(1, 1))


def test_openai_preset_is_one_line() -> None:
    assert presets.openai(tier=3, model="gpt-4o") == [
        Rate(Metric.REQUESTS, 5_000, 60),
        Rate(Metric.TOKENS, 800_000, 60),
    ]
    assert presets.openai(1, "gpt-4o-mini-2024-07-18") == [
        Rate(Metric.REQUESTS, 500, 60),
        Rate(Metric.TOKENS, 200_000, 60),
        Rate(Metric.REQUESTS, 10_000, 86_400),
    ]
    [requests, _tokens] = presets.openai(5, "gpt-4.1", headroom=0.9)
    assert isinstance(requests, Rate)
    assert requests.capacity == 9_000


def test_anthropic_presets_cover_numbered_and_named_tiers() -> None:
    assert presets.anthropic(1, "claude-sonnet-4-5-20250929") == [
        Rate(Metric.REQUESTS, 50, 60),
        Rate(Metric.INPUT_TOKENS, 30_000, 60),
        Rate(Metric.OUTPUT_TOKENS, 8_000, 60),
    ]
    assert presets.anthropic("Scale", "claude-opus-4-1") == [
        Rate(Metric.REQUESTS, 10_000, 60),
        Rate(Metric.INPUT_TOKENS, 10_000_000, 60),
        Rate(Metric.OUTPUT_TOKENS, 2_000_000, 60),
    ]
    haiku = presets.anthropic(3, "claude-haiku-4-5")
    assert haiku[1] == Rate(Metric.INPUT_TOKENS, 1_000_000, 60)


def test_unknown_presets_name_what_is_known() -> None:
    with pytest.raises(ValueError, match="known: 1, 2, 3, 4, 5"):
        presets.openai(tier=9)
    with pytest.raises(ValueError, match="gpt-4o-mini"):
        presets.openai(tier=1, model="gpt-4.1-mini")
    with pytest.raises(ValueError, match=r"Claude Sonnet 4\.x"):
        presets.anthropic(1, "claude-3-opus")
    with pytest.raises(ValueError, match="tier True"):
        presets.anthropic(True, "claude-sonnet-4")  # noqa: FBT003


def test_openrouter_gemini_and_azure_presets() -> None:
    assert presets.openrouter_free() == [
        Rate(Metric.REQUESTS, 20, 60),
        Quota(Metric.REQUESTS, 50, QuotaPeriod.DAY),
    ]
    assert presets.openrouter_free(credits_purchased=10)[1] == Quota(Metric.REQUESTS, 1000)
    assert presets.gemini(rpm_limit=15, tpm_limit=250_000, rpd_limit=500)[2] == Quota(
        Metric.REQUESTS, 500, timezone="America/Los_Angeles"
    )
    assert presets.azure(tpm_limit=30_000) == [
        Rate(Metric.TOKENS, 30_000, 60),
        Rate(Metric.REQUESTS, 180, 60),
    ]


def test_every_preset_table_is_dated_and_sourced() -> None:
    for source in presets.SOURCES.values():
        assert source.url.startswith("https://")
        assert date(2026, 1, 1) <= source.as_of <= date(2026, 12, 31)
