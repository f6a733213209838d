"""What is charged when: admission at arrival, output as generated, corrections at the end."""

from __future__ import annotations

from typing import Any

import pytest

from quotaflow.emulator import ModelLimits
from quotaflow.emulator._anthropic_messages import message_stream
from quotaflow.emulator._call import Api, Call
from quotaflow.emulator._delivery import EmulatedDisconnectError, paced
from quotaflow.emulator._openai_chat import chat_stream
from quotaflow.providers import Provider
from tests.emulator.helpers import (
    ANTHROPIC_MODEL,
    OPENAI_MODEL,
    Harness,
    chat,
    config,
    harness,
    messages,
    prompt_tokens,
    responses,
)


def model_stats(h: Harness, family: str, model: str) -> dict[str, Any]:
    stats: dict[str, Any] = h.emulator.stats()["families"][family][model]  # type: ignore[index]
    return stats


@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.asyncio
async def test_openai_tpm_is_corrected_to_prompt_plus_completion(api: str) -> None:
    async with harness() as h:
        body = chat(max_tokens=500) if api == "chat" else responses(max_output_tokens=500)
        call = h.chat if api == "chat" else h.responses
        response = await call(body, output="40")
        prompt = prompt_tokens("openai", body)
        usage = response.json()["usage"]
        completion = usage["completion_tokens" if api == "chat" else "output_tokens"]
        assert completion == 40
        # admission charged prompt + max_tokens (the headers say so) ...
        assert response.headers["x-ratelimit-remaining-tokens"] == str(30_000 - prompt - 500)
        # ... and the end of the response refunded the unused part
        assert h.remaining(Provider.OPENAI, OPENAI_MODEL, "tokens") == 30_000 - prompt - 40
        stats = model_stats(h, "openai", OPENAI_MODEL)
        assert stats["buckets"]["tokens"]["charged"] == prompt + 40
        assert (stats["input_tokens"], stats["output_tokens"]) == (prompt, 40)


@pytest.mark.asyncio
async def test_without_refunds_the_admission_charge_stays() -> None:
    async with harness(config(refund_unused=False)) as h:
        body = chat(max_completion_tokens=500)
        await h.chat(body, output="40")
        prompt = prompt_tokens("openai", body)
        assert h.remaining(Provider.OPENAI, OPENAI_MODEL, "tokens") == 30_000 - prompt - 500


@pytest.mark.asyncio
async def test_without_max_tokens_admission_counts_the_prompt_and_the_end_the_output() -> None:
    async with harness(config(output_tokens=(30, 30), refund_unused=False)) as h:
        body = chat()
        response = await h.chat(body)
        prompt = prompt_tokens("openai", body)
        assert response.headers["x-ratelimit-remaining-tokens"] == str(30_000 - prompt)
        assert response.json()["choices"][0]["finish_reason"] == "stop"
        assert h.remaining(Provider.OPENAI, OPENAI_MODEL, "tokens") == 30_000 - prompt - 30


@pytest.mark.asyncio
async def test_anthropic_charges_input_at_admission_and_output_as_generated() -> None:
    async with harness() as h:
        body = messages(max_tokens=4_000)
        response = await h.messages(body, output="123")
        prompt = prompt_tokens("anthropic", body)
        assert response.json()["usage"] == {
            "input_tokens": prompt,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 123,
            "service_tier": "standard",
        }
        # max_tokens does not count against OTPM: admission saw a full output bucket
        assert response.headers["anthropic-ratelimit-output-tokens-remaining"] == "8000"
        assert h.remaining(Provider.ANTHROPIC, ANTHROPIC_MODEL, "input_tokens") == 30_000 - prompt
        assert h.remaining(Provider.ANTHROPIC, ANTHROPIC_MODEL, "output_tokens") == 8_000 - 123


@pytest.mark.asyncio
async def test_anthropic_streams_charge_output_per_delta() -> None:
    async with harness(config(anthropic_otpm=6)) as h:
        outcome = h.emulator.receive(
            Api.MESSAGES,
            {"x-emulator-output-tokens": "10"},
            b'{"model": "m", "max_tokens": 50, "messages": [], "stream": true}',
        )
        assert isinstance(outcome, Call)
        bucket = h.state(Provider.ANTHROPIC, "m").bucket("output_tokens")
        levels = [
            bucket.level(h.clock.now_ns()) async for _ in paced(outcome, message_stream(outcome), 0)
        ]
        # start, block start, ping: nothing; then 4 + 4 + 2 tokens, into debt; then the ending
        assert levels == [6, 6, 6, 2, -2, -4, -4, -4, -4]
        assert model_stats(h, "anthropic", "m")["output_tokens"] == 10


@pytest.mark.asyncio
async def test_a_cut_stream_is_settled_with_what_was_generated() -> None:
    async with harness() as h:
        outcome = h.emulator.receive(
            Api.CHAT,
            {"x-emulator-fault": "cut_stream", "x-emulator-output-tokens": "20"},
            b'{"model": "m", "max_tokens": 100, "messages": [], "stream": true}',
        )
        assert isinstance(outcome, Call)
        prompt = outcome.input_tokens
        tokens = h.state(Provider.OPENAI, "m").bucket("tokens")
        sent: list[bytes] = []

        async def consume() -> None:
            async for data in paced(outcome, chat_stream(outcome), 0):
                sent.append(data)
                assert tokens.remaining(h.clock.now_ns()) == 30_000 - prompt - 100

        with pytest.raises(EmulatedDisconnectError):
            await consume()
        assert len(sent) == 3  # the role chunk and two content chunks
        assert tokens.remaining(h.clock.now_ns()) == 30_000 - prompt - 8
        stats = model_stats(h, "openai", "m")
        assert (stats["faults"], stats["output_tokens"]) == ({"cut_stream": 1}, 8)


@pytest.mark.asyncio
async def test_a_stream_the_client_abandons_is_settled_too() -> None:
    async with harness() as h:
        outcome = h.emulator.receive(
            Api.CHAT,
            {"x-emulator-output-tokens": "20"},
            b'{"model": "m", "max_tokens": 100, "messages": [], "stream": true}',
        )
        assert isinstance(outcome, Call)
        stream = paced(outcome, chat_stream(outcome), 0)
        for _ in range(2):  # the role chunk, then 4 tokens
            await anext(stream)
        await stream.aclose()
        tokens = h.state(Provider.OPENAI, "m").bucket("tokens")
        assert tokens.remaining(h.clock.now_ns()) == 30_000 - outcome.input_tokens - 4


@pytest.mark.asyncio
async def test_stats_report_the_admissible_amount_over_the_run() -> None:
    async with harness() as h:
        await h.chat(chat(max_tokens=100), output="10")
        h.clock.advance(30)
        await h.chat(chat(max_tokens=100), output="10")
        await h.chat(chat(max_tokens=100), fault="503")
        stats = model_stats(h, "openai", OPENAI_MODEL)
        prompt = prompt_tokens("openai", chat())
        assert stats["admitted"] == 2
        assert stats["faults"] == {"503": 1}
        assert (stats["input_tokens"], stats["output_tokens"]) == (2 * prompt, 20)
        assert stats["last_admission_ns"] - stats["first_admission_ns"] == 30 * 10**9
        assert stats["span_seconds"] == 30.0
        assert stats["buckets"]["tokens"] | {"remaining": 0} == {
            "limit": 30_000,
            "window_seconds": 60.0,
            "charged": 2 * (prompt + 10),
            "remaining": 0,
            "admissible": 45_000,
        }
        assert stats["buckets"]["requests"]["admissible"] == 750
        assert stats["buckets"]["requests"]["charged"] == 3  # the 503 counted a request


@pytest.mark.asyncio
async def test_model_limits_override_the_family_defaults() -> None:
    limits = {"small": ModelLimits(rpm=7, tpm=700), ANTHROPIC_MODEL: ModelLimits(otpm=99)}
    async with harness(config(model_limits=limits)) as h:
        small = await h.chat(chat() | {"model": "small"})
        assert small.headers["x-ratelimit-limit-requests"] == "7"
        assert small.headers["x-ratelimit-limit-tokens"] == "700"
        other = await h.chat(chat())
        assert other.headers["x-ratelimit-limit-tokens"] == "30000"
        claude = await h.messages(messages())
        assert claude.headers["anthropic-ratelimit-output-tokens-limit"] == "99"
        assert claude.headers["anthropic-ratelimit-requests-limit"] == "50"
        listed = (await h.client.get("/v1/models")).json()["data"]
        assert "small" in {model["id"] for model in listed}


@pytest.mark.asyncio
async def test_output_lengths_are_seeded_uniform_and_capped() -> None:
    async def lengths(seed: int) -> list[int]:
        async with harness(config(seed=seed, output_tokens=(5, 15))) as h:
            bodies = [(await h.chat(chat(max_tokens=12))).json() for _ in range(40)]
        for body in bodies:
            choice = body["choices"][0]
            tokens = body["usage"]["completion_tokens"]
            assert len(choice["message"]["content"].split()) == tokens
            assert choice["finish_reason"] == ("length" if tokens == 12 else "stop")
        return [body["usage"]["completion_tokens"] for body in bodies]

    first = await lengths(1)
    assert first == await lengths(1)
    assert first != await lengths(2)
    assert set(first) == set(range(5, 13))


@pytest.mark.asyncio
async def test_reset_gives_fresh_buckets_and_counters() -> None:
    async with harness() as h:
        await h.chat(chat(max_tokens=1_000))
        await h.messages(messages())
        assert (await h.client.post("/emulator/reset")).json() == {"reset": True}
        stats = h.emulator.stats()
        assert (stats["families"], stats["admitted"]) == ({}, {})
        response = await h.chat(chat(max_tokens=1_000))
        prompt = prompt_tokens("openai", chat())
        assert response.headers["x-ratelimit-remaining-tokens"] == str(30_000 - prompt - 1_000)
