"""The rate-limit headers of each provider family, from a model's buckets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from quotaflow.emulator._timefmt import go_duration, rfc3339

if TYPE_CHECKING:
    from quotaflow.emulator._bucket import TokenBucket
    from quotaflow.emulator._state import ModelState

__all__ = ["anthropic_rate_headers", "openai_rate_headers", "round_thousands"]

_THOUSAND: Final = 1_000


def round_thousands(value: int) -> int:
    """To the nearest thousand, halves up (Anthropic's token ``remaining``)."""
    return (value + _THOUSAND // 2) // _THOUSAND * _THOUSAND


def openai_rate_headers(state: ModelState, now_ns: int) -> dict[str, str]:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` of the per-minute buckets.

    ``reset`` is the time until the bucket is full again, as a Go duration.
    """
    headers: dict[str, str] = {}
    for suffix in ("requests", "tokens"):
        bucket = state.bucket(suffix)
        headers[f"x-ratelimit-limit-{suffix}"] = str(bucket.limit)
        headers[f"x-ratelimit-remaining-{suffix}"] = str(bucket.remaining(now_ns))
        headers[f"x-ratelimit-reset-{suffix}"] = go_duration(bucket.reset_after_ns(now_ns))
    return headers


def _anthropic_set(
    headers: dict[str, str], prefix: str, limit: int, remaining: int, full_at_ns: int
) -> None:
    headers[f"anthropic-ratelimit-{prefix}-limit"] = str(limit)
    headers[f"anthropic-ratelimit-{prefix}-remaining"] = str(remaining)
    headers[f"anthropic-ratelimit-{prefix}-reset"] = rfc3339(full_at_ns)


def anthropic_rate_headers(
    state: ModelState, now_ns: int, *, round_remaining: bool
) -> dict[str, str]:
    """``anthropic-ratelimit-{requests,input-tokens,output-tokens,tokens}-*``.

    ``reset`` is the RFC 3339 instant the bucket is full again (rounded up to the second);
    ``tokens-*`` combine the input and output buckets; token ``remaining`` values are rounded
    to the nearest thousand when ``round_remaining``.
    """

    def full_at(bucket: TokenBucket) -> int:
        return now_ns + bucket.reset_after_ns(now_ns)

    def shown(value: int) -> int:
        return round_thousands(value) if round_remaining else value

    requests = state.bucket("requests")
    inputs = state.bucket("input_tokens")
    outputs = state.bucket("output_tokens")
    headers: dict[str, str] = {}
    _anthropic_set(
        headers, "requests", requests.limit, requests.remaining(now_ns), full_at(requests)
    )
    for prefix, bucket in (("input-tokens", inputs), ("output-tokens", outputs)):
        _anthropic_set(
            headers, prefix, bucket.limit, shown(bucket.remaining(now_ns)), full_at(bucket)
        )
    _anthropic_set(
        headers,
        "tokens",
        inputs.limit + outputs.limit,
        shown(inputs.remaining(now_ns) + outputs.remaining(now_ns)),
        max(full_at(inputs), full_at(outputs)),
    )
    return headers
