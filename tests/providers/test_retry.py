from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from quotaflow.core._usage import Usage
from quotaflow.providers import (
    HintSource,
    RetryHint,
    backoff,
    body_retry_delay,
    parse_rate_limit_headers,
    retry_hint,
)

if TYPE_CHECKING:
    from pathlib import Path

NOW = datetime(2025, 2, 24, 22, 25, 28, tzinfo=UTC)


def test_retry_after_ms_wins_over_everything() -> None:
    headers = {"retry-after-ms": "1500", "Retry-After": "10"}
    body = {"error": {"message": "Please try again in 20s."}}
    assert retry_hint(headers, body) == RetryHint(1.5, HintSource.RETRY_AFTER_MS)


def test_azure_ms_header_is_read() -> None:
    assert retry_hint({"x-ms-retry-after-ms": "250"}) == RetryHint(0.25, HintSource.RETRY_AFTER_MS)


def test_unreadable_ms_header_falls_through_to_retry_after() -> None:
    headers = {"retry-after-ms": "soon", "retry-after": "2"}
    assert retry_hint(headers) == RetryHint(2.0, HintSource.RETRY_AFTER)


def test_retry_after_http_date_is_read_against_the_response_date() -> None:
    headers = {
        "Date": "Mon, 24 Feb 2025 22:25:28 GMT",
        "Retry-After": "Mon, 24 Feb 2025 22:25:40 GMT",
    }
    assert retry_hint(headers, now=datetime(2030, 1, 1, tzinfo=UTC)) == RetryHint(
        12.0, HintSource.RETRY_AFTER
    )
    no_date = {"Retry-After": "Mon, 24 Feb 2025 22:25:40 GMT"}
    assert retry_hint(no_date, now=NOW) == RetryHint(12.0, HintSource.RETRY_AFTER)
    assert retry_hint(no_date) is None


def test_body_hint_comes_before_the_rate_headers(data: Path) -> None:
    body = (data / "openai_429_tpm.json").read_bytes()
    snapshot = parse_rate_limit_headers(
        "openai", {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "30s"}
    )
    assert retry_hint({}, body, snapshot=snapshot) == RetryHint(1.8, HintSource.BODY)
    assert retry_hint({}, None, snapshot=snapshot) == RetryHint(30.0, HintSource.RATE_HEADERS)


def test_rate_headers_hint_uses_what_the_retry_needs() -> None:
    snapshot = parse_rate_limit_headers(
        "openai",
        {
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": "1000",
            "x-ratelimit-reset-tokens": "58s",
        },
    )
    hint = retry_hint({}, snapshot=snapshot, needed=Usage(input_tokens=3000))
    assert hint is not None
    assert hint.source is HintSource.RATE_HEADERS
    assert hint.delay == pytest.approx(4.0)


def test_gemini_retry_info_is_read(data: Path) -> None:
    assert body_retry_delay((data / "gemini_429_daily.json").read_text()) == 59.0


def test_gemini_message_is_read_when_retry_info_is_missing() -> None:
    body = {"error": {"message": "Quota exceeded. Please retry in 49.48s.", "details": []}}
    assert body_retry_delay(body) == pytest.approx(49.48)


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("Please try again in 1.146s. Visit ...", 1.146),
        ("Please try again in 20ms.", 0.02),
        ("Please try again in 6m0s.", 360.0),
        ("Please retry after 37 seconds.", 37.0),
        ("Try again in 250 milliseconds", 0.25),
        ("nothing useful", None),
    ],
)
def test_text_hints_are_read(message: str, seconds: float | None) -> None:
    assert body_retry_delay({"error": {"message": message}}) == (
        None if seconds is None else pytest.approx(seconds)
    )


def test_plain_text_bodies_are_scanned() -> None:
    assert body_retry_delay(b"Too many requests, try again in 3s") == 3.0
    assert body_retry_delay(b"\xff\xfe") is None


def test_vertex_list_wrapped_errors_are_read() -> None:
    body = [{"error": {"details": [{"@type": "x/google.rpc.RetryInfo", "retryDelay": "2s"}]}}]
    assert body_retry_delay(body) == 2.0


def test_hints_are_capped_and_never_negative() -> None:
    assert retry_hint({"retry-after": "86400"}) == RetryHint(300.0, HintSource.RETRY_AFTER)
    assert retry_hint({"retry-after": "86400"}, max_delay=60) == RetryHint(
        60.0, HintSource.RETRY_AFTER
    )
    assert retry_hint({"retry-after": "-5"}) is None
    assert retry_hint({"retry-after": "0"}) == RetryHint(0.0, HintSource.RETRY_AFTER)


def test_no_hint_at_all_is_none() -> None:
    assert retry_hint({}, b"") is None
    assert retry_hint(None, None) is None


def test_a_negative_cap_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="max_delay"):
        retry_hint({}, max_delay=-1)


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    delays = [backoff(n, random=lambda: 0.0) for n in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(10_000, random=lambda: 0.0) == 30.0


def test_backoff_jitter_only_shortens_the_schedule() -> None:
    assert backoff(3, random=lambda: 0.999999) == pytest.approx(4.0 * 0.75, rel=1e-5)
    assert backoff(3, jitter=1.0, random=lambda: 0.5) == 2.0
    assert backoff(3, jitter=0.0, random=lambda: 0.9) == 4.0


def test_backoff_honours_the_hint_and_only_lengthens_it() -> None:
    assert backoff(0, hint=2.0, random=lambda: 0.0) == 2.0
    assert backoff(5, hint=2.0, random=lambda: 0.5) == 2.25
    assert backoff(0, hint=RetryHint(1.0, HintSource.BODY), random=lambda: 0.0) == 1.0
    assert backoff(0, hint=100.0, cap=10.0, random=lambda: 1.0) == 102.5


def test_backoff_rejects_bad_arguments() -> None:
    for kwargs in ({"cap": -1.0}, {"base": float("nan")}, {"jitter": 2.0}):
        with pytest.raises(ValueError, match="must"):
            backoff(1, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempt"):
        backoff(-1)
    with pytest.raises(ValueError, match="attempt"):
        backoff(True)  # noqa: FBT003


def test_backoff_with_the_default_random_source_stays_in_bounds() -> None:
    for attempt in range(10):
        delay = backoff(attempt)
        scheduled = min(30.0, 0.5 * 2**attempt)
        assert 0.75 * scheduled <= delay <= scheduled
