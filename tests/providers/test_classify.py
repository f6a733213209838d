from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

import pytest

from quotaflow.core._limits import QuotaPeriod
from quotaflow.core._metrics import Metric

if TYPE_CHECKING:
    from pathlib import Path

from quotaflow.providers import (
    ErrorKind,
    HintSource,
    NamedLimit,
    classify_error,
    classify_exception,
    classify_stream_error,
)

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def openai_error(message: str, type_: str | None, code: str | None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def test_openai_tpm_429_is_rate_limited_with_hint_and_limit(data: Path) -> None:
    headers = {
        "retry-after": "2",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1.8s",
    }
    error = classify_error("openai", 429, headers, (data / "openai_429_tpm.json").read_bytes())
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retryable
    assert (error.retry_after, error.hint_source) == (2.0, HintSource.RETRY_AFTER)
    assert error.limit == NamedLimit(
        Metric.TOKENS, 30000, 60.0, requested=2000, name="tokens per min"
    )
    assert error.error_code == "rate_limit_exceeded"
    assert error.error_type == "tokens"


def test_openai_request_larger_than_the_limit_is_too_large() -> None:
    body = openai_error(
        "Request too large for gpt-4o in organization org-x on tokens per min (TPM): "
        "Limit 30000, Requested 34307. The input or output tokens must be reduced.",
        "tokens",
        "rate_limit_exceeded",
    )
    error = classify_error("openai", 429, {}, body)
    assert error.kind is ErrorKind.REQUEST_TOO_LARGE
    assert not error.retryable
    assert error.limit is not None
    assert (error.limit.limit, error.limit.requested) == (30000, 34307)


@pytest.mark.parametrize(
    ("type_", "code", "monthly"),
    [
        ("insufficient_quota", "insufficient_quota", False),
        ("insufficient_quota", "credit_balance_exhausted", False),
        ("insufficient_quota", "organization_spend_limit_exceeded", True),
        ("insufficient_quota", "project_spend_limit_exceeded", True),
        (None, "organization_usage_limit_exceeded", True),
        ("insufficient_quota", None, False),
    ],
)
def test_openai_billing_429s_are_quota_exhausted(
    type_: str | None, code: str | None, monthly: bool
) -> None:
    body = openai_error("You exceeded your current quota.", type_, code)
    error = classify_error("openai", 429, {"retry-after": "20"}, body, now=NOW)
    assert error.kind is ErrorKind.QUOTA_EXHAUSTED
    assert not error.retryable
    assert error.limit is not None
    assert error.limit.metric is Metric.COST
    assert error.resets_at == (datetime(2026, 4, 1, tzinfo=UTC) if monthly else None)


def test_should_retry_header_cannot_make_billing_errors_retryable() -> None:
    body = openai_error("quota", "insufficient_quota", "insufficient_quota")
    error = classify_error("openai", 429, {"x-should-retry": "true"}, body)
    assert not error.retryable


def test_should_retry_header_can_veto_and_allow() -> None:
    vetoed = classify_error("openai", 500, {"x-should-retry": "false"})
    assert vetoed.kind is ErrorKind.SERVER_ERROR
    assert not vetoed.retryable
    allowed = classify_error("openai", 400, {"x-should-retry": "true"})
    assert allowed.kind is ErrorKind.INVALID_REQUEST
    assert allowed.retryable


def test_openai_slow_down_503_asks_for_a_lower_rate() -> None:
    error = classify_error("openai", 503, {}, openai_error("Slow Down", None, None))
    assert error.kind is ErrorKind.OVERLOADED
    assert error.reduce_rate
    overloaded = classify_error(
        "openai", 503, {}, openai_error("The engine is currently overloaded", None, None)
    )
    assert not overloaded.reduce_rate


def test_openai_context_length_is_too_large() -> None:
    body = openai_error(
        "maximum context length", "invalid_request_error", "context_length_exceeded"
    )
    assert classify_error("openai", 400, {}, body).kind is ErrorKind.REQUEST_TOO_LARGE


def test_openai_sdk_unwrapped_body_is_understood() -> None:
    body = {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}
    assert classify_error("openai", 429, {}, body).kind is ErrorKind.QUOTA_EXHAUSTED


def test_azure_429_reads_retry_after_ms_and_the_limit_kind() -> None:
    body = {
        "error": {
            "code": "429",
            "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
            "version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 "
            "pricing tier. Please retry after 37 seconds.",
        }
    }
    error = classify_error("azure", 429, {"retry-after-ms": "37000", "retry-after": "37"}, body)
    assert error.kind is ErrorKind.RATE_LIMITED
    assert (error.retry_after, error.hint_source) == (37.0, HintSource.RETRY_AFTER_MS)
    assert error.limit is not None
    assert error.limit.metric is Metric.TOKENS
    assert classify_error("azure", 429, {}, body).retry_after == 37.0  # from the text


def test_azure_gateway_period_quota_is_quota_exhausted() -> None:
    body = {"statusCode": 403, "message": "Out of call volume quota. Quota will be replenished"}
    assert classify_error("azure", 403, {}, body).kind is ErrorKind.QUOTA_EXHAUSTED
    assert classify_error("openai", 403, {}, body).kind is ErrorKind.INVALID_REQUEST


def test_anthropic_rate_limit_names_its_limit() -> None:
    body = {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "This request would exceed the rate limit for your organization of "
            "50,000 input tokens per minute.",
        },
        "request_id": "req_1",
    }
    error = classify_error("anthropic", 429, {"retry-after": "7"}, body)
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retry_after == 7.0
    assert error.limit == NamedLimit(
        Metric.INPUT_TOKENS, 50000, 60.0, name="input tokens per minute"
    )


def test_anthropic_spend_cap_stops_until_next_month() -> None:
    body = {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "You have reached your monthly spend limit.",
            "details": {"error_code": "enforced_spend_limit_reached"},
        },
    }
    error = classify_error("anthropic", 429, {}, body, now=NOW)
    assert error.kind is ErrorKind.QUOTA_EXHAUSTED
    assert error.resets_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert error.error_code == "enforced_spend_limit_reached"
    assert error.limit == NamedLimit(
        Metric.COST, period=QuotaPeriod.MONTH, name="enforced_spend_limit_reached"
    )


def test_anthropic_usage_limit_400_is_quota_exhausted() -> None:
    body = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "You have reached your specified workspace API usage limits. You will "
            "regain access on 2026-04-01 at 00:00 UTC.",
        },
    }
    assert classify_error("anthropic", 400, {}, body).kind is ErrorKind.QUOTA_EXHAUSTED
    plain = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    assert classify_error("anthropic", 400, {}, plain).kind is ErrorKind.INVALID_REQUEST


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (402, ErrorKind.QUOTA_EXHAUSTED),
        (413, ErrorKind.REQUEST_TOO_LARGE),
        (500, ErrorKind.SERVER_ERROR),
        (502, ErrorKind.SERVER_ERROR),
        (504, ErrorKind.TIMEOUT),
        (408, ErrorKind.TIMEOUT),
        (529, ErrorKind.OVERLOADED),
        (503, ErrorKind.OVERLOADED),
        (409, ErrorKind.SERVER_ERROR),
        (401, ErrorKind.INVALID_REQUEST),
        (404, ErrorKind.INVALID_REQUEST),
    ],
)
def test_statuses_map_to_kinds(status: int, kind: ErrorKind) -> None:
    assert classify_error("anthropic", status, {}, None).kind is kind
    assert classify_error("anthropic", status).retryable is kind.retryable


def test_openrouter_402_depends_on_the_limit_source() -> None:
    def body(source: str, reason: str | None = None) -> dict[str, object]:
        metadata = {"limit_source": source} | ({"reason": reason} if reason else {})
        return {"error": {"code": 402, "message": "Insufficient credits", "metadata": metadata}}

    in_flight = classify_error(
        "openrouter", 402, {"Retry-After": "3"}, body("openrouter_in_flight_budget")
    )
    assert in_flight.kind is ErrorKind.RATE_LIMITED
    assert in_flight.retry_after == 3.0
    assert classify_error("openrouter", 402, {}, body("openrouter_credits")).kind is (
        ErrorKind.QUOTA_EXHAUSTED
    )
    too_big = body("openrouter_credits", "weight_exceeds_budget")
    assert classify_error("openrouter", 402, {}, too_big).kind is ErrorKind.REQUEST_TOO_LARGE
    key = classify_error("openrouter", 402, {}, body("openrouter_key_limit"))
    assert key.kind is ErrorKind.QUOTA_EXHAUSTED
    assert key.limit == NamedLimit(Metric.COST, name="openrouter_key_limit")


def test_openrouter_429_is_rate_limited() -> None:
    body = {
        "error": {
            "code": 429,
            "message": "Rate limit exceeded",
            "metadata": {"error_type": "rate_limit_exceeded"},
        }
    }
    error = classify_error("openrouter", 429, {"X-RateLimit-Remaining": "0"}, body)
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.error_code == "429"


def test_gemini_daily_quota_pauses_until_midnight_pacific(data: Path) -> None:
    body = (data / "gemini_429_daily.json").read_bytes()
    error = classify_error("gemini", 429, {}, body, now=NOW)
    assert error.kind is ErrorKind.QUOTA_EXHAUSTED
    # 2026-03-14 is in PDT (UTC-7): the next Pacific midnight is 07:00 UTC on the 15th.
    assert error.resets_at == datetime(2026, 3, 15, 7, 0, tzinfo=UTC)
    assert error.retry_after == 59.0  # RetryInfo still says 59 s; resets_at is what matters
    assert error.limit == NamedLimit(
        Metric.REQUESTS,
        20,
        86_400.0,
        QuotaPeriod.DAY,
        name="GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    )
    assert error.error_code == "RESOURCE_EXHAUSTED"


def test_gemini_per_minute_quota_is_rate_limited(data: Path) -> None:
    error = classify_error(
        "gemini", 429, {}, (data / "gemini_429_minute.json").read_text(), now=NOW
    )
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retry_after == 59.0
    assert error.limit is not None
    assert (error.limit.metric, error.limit.limit, error.limit.window) == (
        Metric.INPUT_TOKENS,
        250000,
        60.0,
    )


def test_gemini_zero_quota_is_quota_exhausted_without_reset(data: Path) -> None:
    body = json.loads((data / "gemini_429_minute.json").read_text())
    body["error"]["details"][1]["violations"][0]["quotaValue"] = "0"
    error = classify_error("gemini", 429, {}, body, now=NOW)
    assert error.kind is ErrorKind.QUOTA_EXHAUSTED
    assert error.resets_at is None
    message_only = {"error": {"message": "Quota exceeded, limit: 0, model: x", "code": 429}}
    assert classify_error("gemini", 429, {}, message_only).kind is ErrorKind.QUOTA_EXHAUSTED


def test_vertex_dsq_and_provisioned_throughput_429s_are_rate_limited() -> None:
    body = [
        {"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}}
    ]
    assert classify_error("vertex", 429, {}, body).kind is ErrorKind.RATE_LIMITED
    pt = {
        "error": {"code": 429, "message": "Too many requests. Exceeded the Provisioned Throughput."}
    }
    assert classify_error("vertex", 429, {}, pt).kind is ErrorKind.RATE_LIMITED


def test_non_error_statuses_are_a_caller_mistake() -> None:
    for status in (200, 302, 600, True):
        with pytest.raises(ValueError, match="HTTP error status"):
            classify_error("openai", status)


def test_classify_exception_reads_sdk_status_errors() -> None:
    class Response:
        headers: ClassVar = {"retry-after": "4"}

    class RateLimitError(Exception):
        status_code = 429
        response = Response()
        body: ClassVar = {"message": "slow", "type": "requests", "code": "rate_limit_exceeded"}

    error = classify_exception("openai", RateLimitError())
    assert error is not None
    assert error.kind is ErrorKind.RATE_LIMITED
    assert error.retry_after == 4.0


def test_classify_exception_recognises_transport_failures_by_type() -> None:
    class TransportError(Exception):
        pass

    class ReadTimeout(TransportError):  # noqa: N818 (httpx's name)
        pass

    class ConnectError(TransportError):
        pass

    class APIConnectionError(Exception):
        pass

    class APITimeoutError(APIConnectionError):
        pass

    for exc, kind in [
        (TimeoutError(), ErrorKind.TIMEOUT),
        (ReadTimeout(), ErrorKind.TIMEOUT),
        (APITimeoutError(), ErrorKind.TIMEOUT),
        (ConnectionResetError(), ErrorKind.NETWORK),
        (ConnectError(), ErrorKind.NETWORK),
        (APIConnectionError(), ErrorKind.NETWORK),
    ]:
        error = classify_exception("openai", exc)
        assert error is not None
        assert (error.kind, error.retryable, error.status) == (kind, True, None)
    assert classify_exception("openai", KeyError("bug")) is None


def test_stream_errors_are_classified_by_their_embedded_type() -> None:
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    error = classify_stream_error("anthropic", anthropic)
    assert (error.kind, error.status) == (ErrorKind.OVERLOADED, 529)
    failed = {
        "type": "response.failed",
        "response": {"error": {"code": "insufficient_quota", "message": "quota"}},
    }
    assert classify_stream_error("openai", failed).kind is ErrorKind.QUOTA_EXHAUSTED
    rate = {"type": "response.failed", "response": {"error": {"code": "rate_limit_exceeded"}}}
    assert classify_stream_error("openai", rate).kind is ErrorKind.RATE_LIMITED
    openrouter = {"error": {"code": 429, "message": "Rate limit exceeded"}, "choices": []}
    assert classify_stream_error("openrouter", openrouter).kind is ErrorKind.RATE_LIMITED
    assert classify_stream_error("openai", {"error": {"message": "?"}}).kind is (
        ErrorKind.SERVER_ERROR
    )
