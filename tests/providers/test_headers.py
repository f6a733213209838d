from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from quotaflow.core._metrics import Metric
from quotaflow.core._usage import Usage
from quotaflow.providers import LimitState, Provider, parse_rate_limit_headers

# Real values (OpenAI, 2025-05 community thread): resets fit a continuously refilling bucket.
OPENAI = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-limit-tokens": "160000",
    "x-ratelimit-remaining-tokens": "159976",
    "x-ratelimit-reset-tokens": "9ms",
}
# Real captured set (Anthropic, 2025-02-24, claude-3-5-sonnet).
ANTHROPIC = {
    "Date": "Mon, 24 Feb 2025 22:25:28 GMT",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "78000",
    "anthropic-ratelimit-input-tokens-reset": "2025-02-24T22:25:32Z",
    "anthropic-ratelimit-output-tokens-limit": "16000",
    "anthropic-ratelimit-output-tokens-remaining": "12000",
    "anthropic-ratelimit-output-tokens-reset": "2025-02-24T22:25:47Z",
    "anthropic-ratelimit-requests-limit": "1000",
    "anthropic-ratelimit-requests-remaining": "999",
    "anthropic-ratelimit-requests-reset": "2025-02-24T22:25:30Z",
    "anthropic-ratelimit-tokens-limit": "96000",
    "anthropic-ratelimit-tokens-remaining": "90000",
    "anthropic-ratelimit-tokens-reset": "2025-02-24T22:25:32Z",
}


def test_openai_headers_give_one_state_per_metric() -> None:
    snapshot = parse_rate_limit_headers("openai", OPENAI)
    assert snapshot.get(Metric.REQUESTS) == LimitState(Metric.REQUESTS, 5000, 4999, 0.012, 60.0)
    tokens = snapshot.get(Metric.TOKENS)
    assert tokens is not None
    assert (tokens.limit, tokens.remaining) == (160000, 159976)
    assert tokens.reset_after == pytest.approx(0.009)
    assert len(snapshot) == 2


def test_openai_project_token_headers_are_a_separate_bucket() -> None:
    headers = {
        **OPENAI,
        "x-ratelimit-limit-project-tokens": "60000",
        "x-ratelimit-remaining-project-tokens": "57000",
        "x-ratelimit-reset-project-tokens": "3s",
    }
    project = parse_rate_limit_headers("openai", headers).get("tokens", "project")
    assert project == LimitState(Metric.TOKENS, 60000, 57000, 3.0, 60.0, "project")


def test_header_names_match_case_insensitively() -> None:
    upper = {k.upper(): v for k, v in OPENAI.items()}
    assert parse_rate_limit_headers("openai", upper) == parse_rate_limit_headers("openai", OPENAI)


def test_anthropic_resets_are_read_against_the_response_date() -> None:
    later = datetime(2030, 1, 1, tzinfo=UTC)  # a skewed local clock is not used
    snapshot = parse_rate_limit_headers(Provider.ANTHROPIC, ANTHROPIC, now=later)
    assert snapshot.date == datetime(2025, 2, 24, 22, 25, 28, tzinfo=UTC)
    assert snapshot.get(Metric.INPUT_TOKENS) == LimitState(
        Metric.INPUT_TOKENS, 80000, 78000, 4.0, 60.0
    )
    assert snapshot.get(Metric.OUTPUT_TOKENS) == LimitState(
        Metric.OUTPUT_TOKENS, 16000, 12000, 19.0, 60.0
    )
    assert snapshot.get(Metric.REQUESTS) == LimitState(Metric.REQUESTS, 1000, 999, 2.0, 60.0)
    assert snapshot.get(Metric.TOKENS) == LimitState(Metric.TOKENS, 96000, 90000, 4.0, 60.0)


def test_anthropic_resets_fall_back_to_now_without_a_date() -> None:
    headers = {k: v for k, v in ANTHROPIC.items() if k != "Date"}
    now = datetime(2025, 2, 24, 22, 25, 31, tzinfo=UTC)
    snapshot = parse_rate_limit_headers("anthropic", headers, now=now)
    assert snapshot.get(Metric.INPUT_TOKENS) == LimitState(
        Metric.INPUT_TOKENS, 80000, 78000, 1.0, 60.0
    )
    assert snapshot.get(Metric.REQUESTS) == LimitState(Metric.REQUESTS, 1000, 999, 0.0, 60.0)
    no_clock = parse_rate_limit_headers("anthropic", headers)
    assert all(state.reset_after is None for state in no_clock)


def test_anthropic_priority_tier_headers_are_named_priority() -> None:
    headers = {
        "anthropic-priority-input-tokens-limit": "100000",
        "anthropic-priority-input-tokens-remaining": "50000",
    }
    state = parse_rate_limit_headers("anthropic", headers).get(Metric.INPUT_TOKENS, "priority")
    assert state == LimitState(Metric.INPUT_TOKENS, 100000, 50000, None, 60.0, "priority")


def test_azure_sends_plain_seconds_and_placeholders() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-remaining-tokens": "59000",
        "x-ratelimit-reset-tokens": "18",
    }
    snapshot = parse_rate_limit_headers("azure", headers)
    assert snapshot.get(Metric.TOKENS) == LimitState(Metric.TOKENS, None, 59000, 18.0, 60.0)
    placeholders = {
        "x-ratelimit-limit-requests": "-1",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-limit-tokens": "0",
        "x-ratelimit-remaining-tokens": "0",
    }
    assert len(parse_rate_limit_headers("azure", placeholders)) == 0


def test_groq_request_headers_describe_a_daily_limit() -> None:
    headers = {
        "x-ratelimit-limit-requests": "14400",
        "x-ratelimit-remaining-requests": "14370",
        "x-ratelimit-reset-requests": "2m59.56s",
        "x-ratelimit-limit-tokens": "18000",
        "x-ratelimit-remaining-tokens": "17997",
        "x-ratelimit-reset-tokens": "7.66s",
    }
    snapshot = parse_rate_limit_headers("groq", headers)
    requests = snapshot.get(Metric.REQUESTS)
    assert requests is not None
    assert requests.window == 86_400.0
    assert requests.reset_after == pytest.approx(179.56)
    tokens = snapshot.get(Metric.TOKENS)
    assert tokens is not None
    assert tokens.window == 60.0


def test_openrouter_conventional_headers_read_epoch_milliseconds() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    headers = {
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(now.timestamp() * 1000) + 30_000),
    }
    snapshot = parse_rate_limit_headers("openrouter", headers, now=now)
    assert snapshot.get(Metric.REQUESTS) == LimitState(Metric.REQUESTS, 20, 0, 30.0)


def test_ietf_fields_join_policies_and_current_state_by_name() -> None:
    headers = {
        "RateLimit-Policy": '"hour";q=1000;w=3600, "day";q=5000;w=86400',
        "RateLimit": '"day";r=100;t=36000',
    }
    snapshot = parse_rate_limit_headers("generic", headers)
    assert snapshot.get(Metric.REQUESTS, "day") == LimitState(
        Metric.REQUESTS, 5000, 100, 36000.0, 86400.0, "day"
    )
    assert snapshot.get(Metric.REQUESTS, "hour") == LimitState(
        Metric.REQUESTS, 1000, None, None, 3600.0, "hour"
    )


def test_ietf_token_units_and_unknown_units() -> None:
    headers = {
        "RateLimit-Policy": '"tpm";q=30000;qu="tokens";w=60, "bytes";q=10;qu="content-bytes"',
        "RateLimit": '"tpm";r=100',
    }
    snapshot = parse_rate_limit_headers("openai", headers)
    assert snapshot.get(Metric.TOKENS, "tpm") == LimitState(
        Metric.TOKENS, 30000, 100, None, 60.0, "tpm"
    )
    assert len(snapshot) == 1


def test_ietf_fields_on_cached_responses_are_ignored() -> None:
    headers = {"RateLimit": '"default";r=50;t=30', "Age": "5"}
    assert len(parse_rate_limit_headers("generic", headers)) == 0
    assert len(parse_rate_limit_headers("generic", {**headers, "Age": "0"})) == 1


def test_malformed_ietf_fields_are_ignored_whole() -> None:
    headers = {"RateLimit": "limit=100, remaining=50, reset=30"}
    assert len(parse_rate_limit_headers("generic", headers)) == 0


@pytest.mark.parametrize("value", ["", "-5", "abc", "1.5", "9" * 40, "\u0661\u0662"])
def test_garbage_counts_are_ignored_and_logged_once(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"x-ratelimit-remaining-tokens": value, "x-ratelimit-limit-tokens": "100"}
    with caplog.at_level(logging.WARNING, logger="quotaflow.providers"):
        for _ in range(5):
            state = parse_rate_limit_headers("openai", headers).get(Metric.TOKENS)
            assert state == LimitState(Metric.TOKENS, 100, None, None, 60.0)
    assert len(caplog.records) == 1
    assert "x-ratelimit-remaining-tokens" in caplog.text


def test_repeated_garbage_is_logged_on_a_decimal_schedule(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="quotaflow.providers"):
        for _ in range(100):
            parse_rate_limit_headers("openai", {"x-ratelimit-reset-tokens": "soon"})
    assert [r.getMessage().rsplit(" ", 1)[-1] for r in caplog.records] == ["1)", "10)", "100)"]


def test_missing_headers_give_an_empty_snapshot() -> None:
    snapshot = parse_rate_limit_headers("gemini", {"content-type": "application/json"})
    assert len(snapshot) == 0
    assert snapshot.wait_for() is None


def test_a_non_mapping_is_an_empty_snapshot() -> None:
    assert len(parse_rate_limit_headers("openai", 42)) == 0  # type: ignore[arg-type]


def test_unknown_provider_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown provider 'nope'"):
        parse_rate_limit_headers("nope", {})


def test_wait_for_uses_the_continuous_refill_rate() -> None:
    state = LimitState(Metric.TOKENS, limit=30_000, remaining=0, reset_after=60.0, window=60.0)
    assert state.wait_for(2_000) == pytest.approx(4.0)
    assert state.wait_for(0) == 0.0
    assert state.wait_for(40_000) is None  # never fits
    inferred = LimitState(Metric.TOKENS, limit=160_000, remaining=159_976, reset_after=0.009)
    assert inferred.wait_for(160_000) == pytest.approx(0.009)
    unknown = LimitState(Metric.TOKENS, limit=None, remaining=None)
    assert unknown.wait_for(1) is None
    only_reset = LimitState(Metric.TOKENS, remaining=0, reset_after=5.0)
    assert only_reset.wait_for(1) == 5.0


def test_snapshot_wait_covers_every_limit() -> None:
    headers = {
        **OPENAI,
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-reset-tokens": "1.8s",
    }
    snapshot = parse_rate_limit_headers("openai", headers)
    assert snapshot.exhausted() == (LimitState(Metric.TOKENS, 30000, 0, 1.8, 60.0),)
    assert snapshot.wait_for() == pytest.approx(1.8)
    assert snapshot.wait_for(Usage(input_tokens=500, output_tokens=0)) == pytest.approx(1.0)
