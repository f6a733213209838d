"""Rate-limit headers, read back with quotaflow's own parser: limits exact, state sensible."""

from __future__ import annotations

import pytest

from quotaflow import Metric
from quotaflow.providers import Provider, parse_rate_limit_headers
from tests.emulator.helpers import (
    OPENAI_MODEL,
    chat,
    config,
    harness,
    messages,
    prompt_tokens,
)


@pytest.mark.asyncio
async def test_openai_headers_report_the_state_right_after_admission() -> None:
    async with harness() as h:
        body = chat(max_tokens=100)
        response = await h.chat(body, output="10")
        assert response.status_code == 200
        prompt = prompt_tokens("openai", body)
        headers = response.headers
        assert headers["x-ratelimit-limit-requests"] == "500"
        assert headers["x-ratelimit-remaining-requests"] == "499"
        assert headers["x-ratelimit-reset-requests"] == "120ms"  # 60 s / 500
        assert headers["x-ratelimit-limit-tokens"] == "30000"
        # the admission charge (prompt + max_tokens), before the correction to the output
        assert headers["x-ratelimit-remaining-tokens"] == str(30_000 - prompt - 100)
        assert headers["x-ratelimit-reset-tokens"] == f"{(prompt + 100) * 2}ms"  # 2 ms a token
        assert headers["x-request-id"].startswith("req_")
        assert headers["date"] == "Thu, 01 Jan 2026 00:00:00 GMT"
        snapshot = parse_rate_limit_headers("openai", headers)
        requests = snapshot.get(Metric.REQUESTS)
        tokens = snapshot.get(Metric.TOKENS)
        assert requests is not None
        assert tokens is not None
        assert (requests.limit, requests.remaining, requests.reset_after) == (500, 499, 0.12)
        assert (tokens.limit, tokens.remaining) == (30_000, 30_000 - prompt - 100)
        assert tokens.reset_after == pytest.approx((prompt + 100) * 0.002)


@pytest.mark.asyncio
async def test_anthropic_headers_round_trip_with_rounded_remaining_and_absolute_resets() -> None:
    async with harness() as h:
        await h.messages(messages(max_tokens=4_000), output="2000")  # 2,000 output tokens
        h.clock.advance(0.5)
        body = messages()
        response = await h.messages(body, output="5")
        headers = response.headers
        assert response.status_code == 200
        assert headers["request-id"].startswith("req_")
        assert headers["date"] == "Thu, 01 Jan 2026 00:00:00 GMT"
        prompt = prompt_tokens("anthropic", body)
        assert headers["anthropic-ratelimit-requests-limit"] == "50"
        assert headers["anthropic-ratelimit-requests-remaining"] == "48"
        assert headers["anthropic-ratelimit-input-tokens-limit"] == "30000"
        assert headers["anthropic-ratelimit-input-tokens-remaining"] == "30000"  # rounded
        assert headers["anthropic-ratelimit-output-tokens-limit"] == "8000"
        # 8000 - 2000 + 0.5 s of refill (66.7) = 6066 -> 6000
        assert headers["anthropic-ratelimit-output-tokens-remaining"] == "6000"
        assert headers["anthropic-ratelimit-tokens-limit"] == "38000"
        assert headers["anthropic-ratelimit-tokens-remaining"] == "36000"  # 36066 - prompt
        # output: 1933.3 tokens missing at 133.3/s: full 14.5 s after the 0.5 s mark
        assert headers["anthropic-ratelimit-output-tokens-reset"] == "2026-01-01T00:00:15Z"
        assert headers["anthropic-ratelimit-tokens-reset"] == "2026-01-01T00:00:15Z"
        snapshot = parse_rate_limit_headers("anthropic", headers)
        by_metric = {state.metric: state for state in snapshot}
        assert {m: s.limit for m, s in by_metric.items()} == {
            Metric.REQUESTS: 50,
            Metric.TOKENS: 38_000,
            Metric.INPUT_TOKENS: 30_000,
            Metric.OUTPUT_TOKENS: 8_000,
        }
        assert by_metric[Metric.OUTPUT_TOKENS].reset_after == 15.0
        # requests: 1.58 missing at 0.83/s = 1.9 s -> 2.4 s -> 00:00:03, read against the Date
        assert by_metric[Metric.REQUESTS].reset_after == 3.0
        assert 0 < prompt < 66


@pytest.mark.asyncio
async def test_anthropic_remaining_can_be_exact() -> None:
    async with harness(config(round_anthropic_remaining=False)) as h:
        body = messages()
        response = await h.messages(body, output="7")
        prompt = prompt_tokens("anthropic", body)
        assert response.headers["anthropic-ratelimit-input-tokens-remaining"] == str(
            30_000 - prompt
        )
        assert response.headers["anthropic-ratelimit-output-tokens-remaining"] == "8000"
        assert response.headers["anthropic-ratelimit-tokens-remaining"] == str(38_000 - prompt)


@pytest.mark.asyncio
async def test_429s_carry_the_headers_too() -> None:
    async with harness(config(openai_rpm=1, anthropic_rpm=1)) as h:
        await h.chat(chat())
        refused = await h.chat(chat())
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"
        await h.messages(messages())
        refused = await h.messages(messages())
        assert refused.status_code == 429
        assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert refused.headers["anthropic-ratelimit-requests-reset"] == "2026-01-01T00:01:00Z"


@pytest.mark.asyncio
async def test_per_model_buckets_are_created_full_on_first_use() -> None:
    async with harness() as h:
        await h.chat(chat(max_tokens=1_000), output="0")
        h.clock.advance(1)
        other = await h.chat(chat(max_tokens=1_000) | {"model": "gpt-4o"}, output="0")
        assert other.headers["x-ratelimit-remaining-requests"] == "499"
        assert h.remaining(Provider.OPENAI, OPENAI_MODEL, "requests") == 500  # refilled
        assert set(h.emulator.models) == {
            (Provider.OPENAI, OPENAI_MODEL),
            (Provider.OPENAI, "gpt-4o"),
        }
