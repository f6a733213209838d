from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quotaflow.core._usage import Usage
from quotaflow.providers import (
    ReportedUsage,
    accounting_rule,
    admission_usage,
    counted_usage,
    quota_reset,
)

CACHED = ReportedUsage(
    input_tokens=2025, output_tokens=15, cache_read_tokens=1800, cache_write_tokens=200
)


def test_anthropic_cache_reads_do_not_count_toward_itpm() -> None:
    assert counted_usage("anthropic", CACHED) == Usage(input_tokens=225, output_tokens=15)


def test_legacy_anthropic_models_count_cache_reads() -> None:
    legacy = ReportedUsage(2025, 15, 1800, 200, model="claude-3-5-haiku-20241022")
    assert counted_usage("anthropic", legacy) == Usage(input_tokens=2025, output_tokens=15)


def test_openai_counts_every_input_token() -> None:
    assert counted_usage("openai", CACHED) == Usage(input_tokens=2025, output_tokens=15)


def test_bedrock_claude_output_burns_down_five_times() -> None:
    usage = ReportedUsage(100, 10, model="us.anthropic.claude-sonnet-4-20250514-v1:0")
    assert counted_usage("bedrock", usage) == Usage(input_tokens=100, output_tokens=50)
    old = ReportedUsage(100, 10, model="anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert counted_usage("bedrock", old) == Usage(input_tokens=100, output_tokens=10)


def test_a_rule_can_be_passed_directly_with_cost() -> None:
    rule = accounting_rule("generic")
    assert counted_usage(rule, CACHED, cost=7) == Usage(input_tokens=2025, output_tokens=15, cost=7)


def test_openai_admission_holds_all_of_max_tokens() -> None:
    usage = admission_usage(
        "openai", input_tokens=1000, max_tokens=4000, expected_output_tokens=300
    )
    assert usage == Usage(input_tokens=1000, output_tokens=4000)


def test_anthropic_admission_holds_the_expected_output_capped_by_max_tokens() -> None:
    def reserve(expected: int | None) -> Usage:
        return admission_usage(
            "anthropic", input_tokens=1000, max_tokens=4000, expected_output_tokens=expected
        )

    assert reserve(300) == Usage(input_tokens=1000, output_tokens=300)
    assert reserve(9000) == Usage(input_tokens=1000, output_tokens=4000)
    assert reserve(None) == Usage(input_tokens=1000, output_tokens=4000)
    assert admission_usage("anthropic", input_tokens=5) == Usage(input_tokens=5)
    assert admission_usage("anthropic", input_tokens=5, expected_output_tokens=7) == Usage(
        input_tokens=5, output_tokens=7
    )


def test_admission_rejects_bad_amounts() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        admission_usage("openai", input_tokens=1, max_tokens=-1)
    with pytest.raises(ValueError, match="input_tokens"):
        admission_usage("openai", input_tokens=1.5)  # type: ignore[arg-type]


def test_gemini_daily_quota_resets_at_midnight_pacific_across_dst() -> None:
    winter = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)  # 01:00 PST
    assert quota_reset("gemini", "day", winter) == datetime(2026, 1, 11, 8, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 10, 6, 59, tzinfo=UTC)  # 23:59 PDT on the 9th
    assert quota_reset("gemini", "day", summer) == datetime(2026, 7, 10, 7, 0, tzinfo=UTC)


def test_monthly_caps_reset_on_the_first_utc() -> None:
    assert quota_reset("anthropic", "month", datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == (
        datetime(2027, 1, 1, tzinfo=UTC)
    )
    assert quota_reset("openrouter", "day", datetime(2026, 2, 28, 12, tzinfo=UTC)) == (
        datetime(2026, 3, 1, tzinfo=UTC)
    )


def test_quota_reset_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="period"):
        quota_reset("gemini", "week", datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="aware"):
        quota_reset("gemini", "day", datetime(2026, 1, 1))  # noqa: DTZ001
