"""Admission at arrival: all-or-nothing over a model's buckets, as each provider describes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quotaflow.emulator._bucket import TokenBucket
    from quotaflow.emulator._state import ModelState

__all__ = [
    "Refusal",
    "admit_anthropic",
    "admit_openai",
    "count_request",
    "request_buckets",
    "token_buckets",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not admitted.

    Attributes:
        bucket: the bucket that lacked.
        requested: what the request needed from it.
        wait_ns: nanoseconds until it would fit; ``None`` if it never can (larger than the
            bucket).
    """

    bucket: TokenBucket
    requested: int
    wait_ns: int | None

    @property
    def label(self) -> str:
        """The name the statistics count it under."""
        return "too_large" if self.wait_ns is None else self.bucket.name


def request_buckets(state: ModelState) -> list[TokenBucket]:
    """An OpenAI model's request buckets: per minute, and per day when set."""
    daily = state.optional("requests_per_day")
    return [state.bucket("requests")] if daily is None else [state.bucket("requests"), daily]


def token_buckets(state: ModelState) -> list[TokenBucket]:
    """An OpenAI model's token buckets: per minute, and per day when set."""
    daily = state.optional("tokens_per_day")
    return [state.bucket("tokens")] if daily is None else [state.bucket("tokens"), daily]


def count_request(state: ModelState, now_ns: int) -> None:
    """Charge one request to the request buckets, if they all hold one (refused calls count)."""
    buckets = request_buckets(state)
    if all(bucket.holds(1, now_ns) for bucket in buckets):
        for bucket in buckets:
            bucket.charge(1, now_ns)


def _token_refusal(buckets: list[TokenBucket], tokens: int, now_ns: int) -> Refusal | None:
    for bucket in buckets:
        if tokens > bucket.limit:
            return Refusal(bucket, tokens, None)
    for bucket in buckets:
        if not bucket.holds(tokens, now_ns):
            return Refusal(bucket, tokens, bucket.wait_ns(tokens, now_ns))
    return None


def admit_openai(
    state: ModelState, prompt_tokens: int, max_tokens: int | None, now_ns: int
) -> Refusal | None:
    """Admit an OpenAI request, charging 1 request and ``prompt + max_tokens`` tokens.

    Checked in order: the request buckets (a refusal charges nothing), then whether the tokens
    can ever fit, then the token buckets. A refusal for tokens still counts the request
    (OpenAI: "unsuccessful requests contribute to your per-minute limit").
    """
    requests = request_buckets(state)
    for bucket in requests:
        if not bucket.holds(1, now_ns):
            return Refusal(bucket, 1, bucket.wait_ns(1, now_ns))
    tokens = prompt_tokens + (max_tokens or 0)
    tokens_buckets = token_buckets(state)
    refusal = _token_refusal(tokens_buckets, tokens, now_ns)
    for bucket in requests:
        bucket.charge(1, now_ns)
    if refusal is None:
        for bucket in tokens_buckets:
            bucket.charge(tokens, now_ns)
    return refusal


def admit_anthropic(state: ModelState, input_tokens: int, now_ns: int) -> Refusal | None:
    """Admit an Anthropic request, charging 1 request and its input tokens.

    Needs a request, the input tokens, and an output bucket that is not exhausted (at least
    one token: ``max_tokens`` does not count against OTPM). A refusal charges nothing.
    """
    requests = state.bucket("requests")
    inputs = state.bucket("input_tokens")
    outputs = state.bucket("output_tokens")
    if not requests.holds(1, now_ns):
        return Refusal(requests, 1, requests.wait_ns(1, now_ns))
    if input_tokens > inputs.limit:
        return Refusal(inputs, input_tokens, None)
    if not inputs.holds(input_tokens, now_ns):
        return Refusal(inputs, input_tokens, inputs.wait_ns(input_tokens, now_ns))
    if not outputs.holds(1, now_ns):
        return Refusal(outputs, 1, outputs.wait_ns(1, now_ns))
    requests.charge(1, now_ns)
    inputs.charge(input_tokens, now_ns)
    return None
