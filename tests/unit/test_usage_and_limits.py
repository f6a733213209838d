"""Validation of usage amounts and limit definitions: bad input fails at once, named."""

from __future__ import annotations

import math
import pickle
from datetime import timedelta

import pytest

from quotaflow import (
    ConfigurationError,
    InvalidUsageError,
    Metric,
    Quota,
    Rate,
    Usage,
    concurrency,
    cost_per_hour,
    daily_quota,
    itpm,
    monthly_quota,
    otpm,
    rpd,
    rpm,
    rps,
    tpd,
    tpm,
)
from quotaflow.core import MAX_AMOUNT


def test_tokens_default_to_input_plus_output() -> None:
    usage = Usage(input_tokens=1200, output_tokens=300)
    assert usage.tokens == 1500
    assert usage.requests == 1
    assert usage.amount(Metric.TOKENS) == 1500
    assert usage.amount(Metric.CONCURRENT) == 1


def test_explicit_tokens_are_kept_when_the_split_is_unknown() -> None:
    usage = Usage(tokens=900)
    assert (usage.input_tokens, usage.output_tokens, usage.tokens) == (0, 0, 900)
    assert "tokens=900" in repr(usage)


def test_usage_is_immutable_hashable_and_picklable() -> None:
    usage = Usage(input_tokens=3, output_tokens=4, cost=12)
    with pytest.raises(AttributeError):
        usage.cost = 1  # type: ignore[misc]
    assert usage == Usage(input_tokens=3, output_tokens=4, cost=12)
    assert len({usage, Usage(input_tokens=3, output_tokens=4, cost=12)}) == 1
    assert pickle.loads(pickle.dumps(usage)) == usage  # noqa: S301 (our own data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_tokens", -1, "input_tokens must not be negative, got -1"),
        ("output_tokens", 1.5, "output_tokens must be an integer number of units, got 1.5"),
        ("output_tokens", 2.0, "got 2.0 (float)"),
        ("cost", math.nan, "cost must be an integer number of units, got nan"),
        ("requests", True, "requests must be an integer number of units, got True"),
        ("tokens", "12", "tokens must be an integer number of units, got '12'"),
        ("input_tokens", MAX_AMOUNT + 1, f"input_tokens={MAX_AMOUNT + 1} exceeds the maximum"),
    ],
)
def test_bad_amounts_raise_naming_the_value(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidUsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Usage(**{field: value})  # type: ignore[arg-type]


def test_invalid_usage_is_a_value_error_with_a_reason() -> None:
    with pytest.raises(ValueError, match="negative") as info:
        Usage(cost=-5)
    assert info.value.reason == "invalid_usage"  # type: ignore[attr-defined]


def test_shorthands_build_the_published_kinds_of_limit() -> None:
    assert rps(10) == Rate("requests", 10, 1)
    assert rpm(500) == Rate(Metric.REQUESTS, 500, 60)
    assert rpd(10_000) == Rate("requests", 10_000, timedelta(days=1))
    assert tpm(30_000) == Rate("tokens", 30_000, 60)
    assert tpd(1_000_000).period == 86_400
    assert itpm(1000).metric is Metric.INPUT_TOKENS
    assert otpm(1000).metric is Metric.OUTPUT_TOKENS
    assert cost_per_hour(5_000_000).metric is Metric.COST
    assert daily_quota("cost", 100).period == "day"
    assert monthly_quota("tokens", 100, timezone="Europe/Paris").timezone == "Europe/Paris"
    assert concurrency(4).capacity == 4


def test_burst_and_headroom_shape_capacity_and_refill() -> None:
    limit = tpm(30_000, burst=0.5, headroom=0.98)
    assert limit.refill == 29_400
    assert limit.capacity == 14_700
    assert str(tpm(30_000)) == "30000 tokens/min"
    assert str(Rate("requests", 3, 7200)) == "3 requests/2h"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: rpm(0), "limit must be between 1 and"),
        (lambda: tpm(-10), "limit must be between 1 and"),
        (lambda: tpm(1.5), "limit must be a positive integer, got 1.5"),  # type: ignore[arg-type]
        (lambda: Rate("tokens", 10, 0), "period must be a positive, finite duration, got 0"),
        (lambda: Rate("tokens", 10, math.inf), "period must be a positive, finite duration"),
        (lambda: Rate("tokens", 10, 400 * 86_400), "period must be at most 366 days"),
        (lambda: Rate("tokenz", 10, 60), "unknown metric 'tokenz'"),
        (lambda: Rate("concurrent", 10, 60), "use Concurrency"),
        (lambda: tpm(10, headroom=1.5), r"headroom must be in \(0, 1\], got 1.5"),
        (lambda: tpm(10, burst=0), r"burst must be in \(0, 1000\], got 0"),
        (lambda: tpm(10, headroom=math.nan), "headroom must be a finite number, got nan"),
        (lambda: rpm(1, headroom=0.5), "leaves no capacity"),
        (lambda: Quota("cost", 10, "week"), "quota period must be 'day' or 'month', got 'week'"),
        (
            lambda: daily_quota("cost", 10, timezone="Mars/Olympus"),
            "unknown time zone 'Mars/Olympus'",
        ),
        (lambda: concurrency(0), "limit must be between 1 and"),
        (lambda: concurrency(2, ttl=-1), "ttl must be a positive, finite duration"),
        (lambda: concurrency(2, ttl=30 * 86_400), "ttl must be at most 7 days"),
    ],
)
def test_bad_limits_raise_configuration_errors(build: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()  # type: ignore[operator]
