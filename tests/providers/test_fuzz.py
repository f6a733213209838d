"""Every parser of provider output, fed arbitrary input: nothing escapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotaflow.core._usage import Usage
from quotaflow.providers import (
    ErrorClass,
    ErrorKind,
    Provider,
    SSEDecoder,
    StreamUsageAccumulator,
    backoff,
    body_retry_delay,
    classify_error,
    classify_stream_error,
    estimate_request_tokens,
    extract_usage,
    parse_delay,
    parse_duration,
    parse_http_date,
    parse_protobuf_duration,
    parse_rate_limit_headers,
    parse_rfc3339,
    retry_hint,
)
from quotaflow.providers._durations import parse_timestamp_or_delay
from quotaflow.providers._structured import parse_list

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
providers = st.sampled_from(list(Provider))
HEADER_NAMES = [
    "date", "retry-after", "retry-after-ms", "x-ms-retry-after-ms", "x-should-retry", "age",
    "ratelimit", "ratelimit-policy", "x-ratelimit-limit", "x-ratelimit-remaining",
    "x-ratelimit-reset",
    *(f"x-ratelimit-{f}-{s}" for f in ("limit", "remaining", "reset")
      for s in ("requests", "tokens", "project-tokens")),
    *(f"anthropic-ratelimit-{b}-{f}"
      for b in ("requests", "tokens", "input-tokens", "output-tokens")
      for f in ("limit", "remaining", "reset")),
]  # fmt: skip
header_values = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"-?\d{0,20}(\.\d{0,5})?(h|m|s|ms|us|ns)?", fullmatch=True),
    st.from_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)?", fullmatch=True),
    st.sampled_from(["Mon, 24 Feb 2025 22:25:28 GMT", '"a";r=1;t=2', '"a";q=5;w=60;qu="tokens"']),
)
headers = st.dictionaries(
    st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=10)), header_values
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["error", "type", "code", "message", "details", "usage", "metadata", "status",
             "@type", "retryDelay", "violations", "quotaId", "quotaValue", "prompt_tokens",
             "input_tokens", "output_tokens", "messages", "content", "text", "tools",
             "usageMetadata", "promptTokenCount", "response", "limit_source", "max_tokens",
             "contents", "parts", "inlineData", "image_url", "choices", "model", "input"]
        )
        | st.text(max_size=8),
        children,
        max_size=5,
    ),
    max_leaves=25,
)  # fmt: skip
bodies = st.one_of(json_values, st.binary(max_size=200), st.text(max_size=200))


@given(
    st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")), st.none(), st.integers())
)
def test_duration_readers_never_raise(value: object) -> None:
    for reader in (parse_duration, parse_protobuf_duration, parse_http_date, parse_rfc3339):
        reader(value)
    parse_delay(value, NOW)
    parse_timestamp_or_delay(value, NOW)
    seconds = parse_duration(value)
    assert seconds is None or 0 <= seconds <= 366 * 86_400


@given(st.text(max_size=300))
def test_structured_field_reader_never_raises(value: str) -> None:
    parse_list(value)


@given(providers, headers, st.none() | st.just(NOW))
def test_header_parser_never_raises(
    provider: Provider, raw: dict[str, str], now: datetime | None
) -> None:
    snapshot = parse_rate_limit_headers(provider, raw, now=now)
    for state in snapshot:
        assert state.remaining is None or state.remaining >= 0
        assert state.reset_after is None or state.reset_after >= 0
        state.wait_for(1000)
    snapshot.wait_for(Usage(input_tokens=10, output_tokens=10))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(providers, st.integers(400, 599), headers, bodies)
def test_error_classifier_never_raises(
    provider: Provider, status: int, raw: dict[str, str], body: object
) -> None:
    error = classify_error(provider, status, raw, body, now=NOW)
    assert isinstance(error, ErrorClass)
    assert error.retry_after is None or 0 <= error.retry_after <= 300
    if error.kind in {ErrorKind.QUOTA_EXHAUSTED, ErrorKind.REQUEST_TOO_LARGE}:
        assert not error.retryable


@given(providers, bodies)
def test_stream_error_classifier_and_body_readers_never_raise(
    provider: Provider, body: object
) -> None:
    classify_stream_error(provider, body)
    body_retry_delay(body)
    retry_hint({}, body)
    usage = extract_usage(provider, body)
    if usage is not None:
        assert usage.uncached_input_tokens >= 0
        assert usage.reasoning_tokens <= usage.output_tokens


@given(providers, st.lists(st.one_of(st.binary(max_size=64), st.text(max_size=64)), max_size=20))
def test_stream_accumulator_never_raises_on_arbitrary_bytes(
    provider: Provider, chunks: list[bytes | str]
) -> None:
    acc = StreamUsageAccumulator(provider)
    for chunk in chunks:
        acc.feed(chunk)
    acc.close()


@given(providers, st.lists(json_values, max_size=10))
def test_stream_accumulator_never_raises_on_arbitrary_events(
    provider: Provider, events: list[object]
) -> None:
    acc = StreamUsageAccumulator(provider)
    for event in events:
        acc.feed(f"data: {json.dumps(event, allow_nan=True)}\n\n")
        acc.feed_json(event)
    state = acc.close()
    assert state.usage is None or state.usage.input_tokens >= 0


@given(st.binary(max_size=300), st.integers(1, 50))
def test_sse_decoder_is_independent_of_chunking(raw: bytes, size: int) -> None:
    whole = SSEDecoder().feed(raw)
    decoder = SSEDecoder()
    pieces = [event for i in range(0, len(raw), size) for event in decoder.feed(raw[i : i + size])]
    assert pieces == whole


@given(providers, json_values.filter(lambda v: isinstance(v, dict)))
def test_estimator_never_raises_on_object_bodies(
    provider: Provider, body: dict[str, object]
) -> None:
    estimate = estimate_request_tokens(provider, body)
    assert estimate.input_tokens >= 0


@given(st.integers(0, 10_000), st.none() | st.floats(allow_nan=True), st.floats(0, 1))
def test_backoff_is_never_negative(attempt: int, hint: float | None, draw: float) -> None:
    delay = backoff(attempt, hint=hint, random=lambda: draw)
    assert delay >= 0
