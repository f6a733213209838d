"""The official openai and anthropic SDKs, governed by the transports, against the emulator.

Real HTTP on 127.0.0.1, the SDKs' own clients (both are built on httpx2), ``max_retries=0`` so
that quotaflow owns the retries. Headers reach quotaflow through the transport: nothing here
uses ``with_raw_response``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from quotaflow import QuotaExhaustedError
from quotaflow.client import AsyncQuotaflowTransport, ClientConfig, QuotaflowTransport, RetryPolicy
from quotaflow.emulator import FAULT_HEADER, EmulatorConfig, EmulatorServer

OPENAI = "gpt-4o-mini"
CLAUDE = "claude-sonnet-4-5"
MESSAGES: list[Any] = [{"role": "user", "content": "Say something about rate limits."}]
FAST_RETRIES = RetryPolicy(max_retries=2, base=0.001, cap=0.01)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        openai_rpm=10_000, openai_tpm=10_000_000, anthropic_rpm=10_000,
        anthropic_itpm=10_000_000, anthropic_otpm=1_000_000, latency=0.0,
    )  # fmt: skip
    with EmulatorServer(config) as server:
        yield server


def config(**options: Any) -> ClientConfig:
    return ClientConfig(**{"retry": FAST_RETRIES, **options})


def assert_nothing_held(transport: QuotaflowTransport | AsyncQuotaflowTransport) -> None:
    assert transport.limiter.store.reservation_count == 0  # type: ignore[union-attr]


def test_openai_sync_chat_stream_and_responses(emulator: EmulatorServer) -> None:
    transport = QuotaflowTransport(config=config())
    client = openai.OpenAI(base_url=emulator.url + "/v1", api_key="k", max_retries=0,
                           http_client=httpx2.Client(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    with client:
        chat = client.chat.completions.create(model=OPENAI, messages=MESSAGES, max_tokens=300)
        stream = client.chat.completions.create(
            model=OPENAI, messages=MESSAGES, max_tokens=300, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        streamed = [chunk.usage for chunk in stream if chunk.usage is not None]
        response = client.responses.create(model=OPENAI, input="hello", max_output_tokens=100)
    assert chat.usage is not None
    assert response.usage is not None
    stats = transport.stats
    assert (stats.calls, stats.succeeded, stats.failed, stats.provider_429) == (3, 3, 0, 0)
    assert stats.output_tokens == (
        chat.usage.completion_tokens + streamed[0].completion_tokens + response.usage.output_tokens
    )
    # The limits came from the emulator's headers, with 2% headroom.
    limits = {str(limit.metric): limit.limit for limit in transport.limiter.limits_of(
        "openai:" + OPENAI)}  # fmt: skip
    assert limits == {"requests": 10_000, "tokens": 10_000_000}
    assert_nothing_held(transport)


@pytest.mark.asyncio
async def test_openai_async_chat_and_stream(emulator: EmulatorServer) -> None:
    transport = AsyncQuotaflowTransport(config=config())
    client = openai.AsyncOpenAI(base_url=emulator.url + "/v1", api_key="k", max_retries=0,
                                http_client=httpx2.AsyncClient(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    async with client:
        await client.chat.completions.create(model=OPENAI, messages=MESSAGES, max_tokens=300)
        stream = await client.chat.completions.create(
            model=OPENAI, messages=MESSAGES, max_tokens=300, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async for _ in stream:
            pass
        async with client.responses.stream(model=OPENAI, input="hi") as events:
            async for _ in events:
                pass
    stats = transport.stats
    assert (stats.succeeded, stats.unsettled_streams, stats.provider_429) == (3, 0, 0)
    assert_nothing_held(transport)


def test_anthropic_sync_message_and_stream(emulator: EmulatorServer) -> None:
    transport = QuotaflowTransport(config=config())
    client = anthropic.Anthropic(base_url=emulator.url, api_key="k", max_retries=0,
                                 http_client=httpx2.Client(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    with client:
        message = client.messages.create(model=CLAUDE, max_tokens=500, messages=MESSAGES)
        with client.messages.stream(model=CLAUDE, max_tokens=500, messages=MESSAGES) as stream:
            final = stream.get_final_message()
    stats = transport.stats
    assert (stats.succeeded, stats.unsettled_streams) == (2, 0)
    assert stats.output_tokens == message.usage.output_tokens + final.usage.output_tokens
    metrics = {str(limit.metric) for limit in transport.limiter.limits_of("anthropic:" + CLAUDE)}
    assert metrics == {"requests", "input_tokens", "output_tokens"}
    assert_nothing_held(transport)


@pytest.mark.asyncio
async def test_anthropic_async_many_calls(emulator: EmulatorServer) -> None:
    transport = AsyncQuotaflowTransport(config=config())
    client = anthropic.AsyncAnthropic(base_url=emulator.url, api_key="k", max_retries=0,
                                      http_client=httpx2.AsyncClient(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    async with client:
        import asyncio  # noqa: PLC0415

        await asyncio.gather(*(
            client.messages.create(model=CLAUDE, max_tokens=400, messages=MESSAGES)
            for _ in range(24)
        ))  # fmt: skip
        async with client.messages.stream(model=CLAUDE, max_tokens=400, messages=MESSAGES) as s:
            await s.get_final_message()
    stats = transport.stats
    assert (stats.succeeded, stats.failed, stats.provider_429) == (25, 0, 0)
    # After 8 answers the learner reserves a high percentile of real output, not max_tokens.
    assert stats.reserved_output_tokens < 25 * 400
    assert_nothing_held(transport)


def test_a_persistent_429_is_retried_then_surfaces_as_the_sdk_error(
    emulator: EmulatorServer,
) -> None:
    transport = QuotaflowTransport(config=config(default_pause=0.01))
    client = openai.OpenAI(base_url=emulator.url + "/v1", api_key="k", max_retries=0,
                           http_client=httpx2.Client(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    with client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model=OPENAI, messages=MESSAGES, max_tokens=50,
            extra_headers={FAULT_HEADER: "rate_limit"},
        )  # fmt: skip
    stats = transport.stats
    assert (stats.attempts, stats.retries, stats.provider_429) == (3, 2, 3)
    assert_nothing_held(transport)


@pytest.mark.parametrize("fault", ["500", "503", "529"])
def test_server_errors_are_retried_with_backoff(emulator: EmulatorServer, fault: str) -> None:
    transport = QuotaflowTransport(config=config())
    client = anthropic.Anthropic(base_url=emulator.url, api_key="k", max_retries=0,
                                 http_client=httpx2.Client(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    with client, pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model=CLAUDE, max_tokens=50, messages=MESSAGES,
                               extra_headers={FAULT_HEADER: fault})  # fmt: skip
    assert raised.value.status_code == int(fault)
    assert transport.stats.attempts == 3
    assert_nothing_held(transport)


def test_a_dropped_connection_is_retried_and_nothing_leaks(emulator: EmulatorServer) -> None:
    transport = QuotaflowTransport(config=config())
    client = openai.OpenAI(base_url=emulator.url + "/v1", api_key="k", max_retries=0,
                           http_client=httpx2.Client(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    with client, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=OPENAI, messages=MESSAGES, max_tokens=50,
                                       extra_headers={FAULT_HEADER: "drop"})  # fmt: skip
    assert transport.stats.errors.get("network", 0) >= 1
    assert_nothing_held(transport)


@pytest.mark.asyncio
async def test_a_stream_cut_midway_settles_conservatively(emulator: EmulatorServer) -> None:
    transport = AsyncQuotaflowTransport(config=config())
    client = anthropic.AsyncAnthropic(base_url=emulator.url, api_key="k", max_retries=0,
                                      http_client=httpx2.AsyncClient(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    async with client:
        with pytest.raises(anthropic.APIError):  # noqa: PT012 (the error comes while reading)
            async with client.messages.stream(
                model=CLAUDE, max_tokens=300, messages=MESSAGES,
                extra_headers={FAULT_HEADER: "cut_stream"},
            ) as stream:  # fmt: skip
                async for _ in stream:
                    pass
    assert transport.stats.unsettled_streams == 1
    assert_nothing_held(transport)


def test_insufficient_quota_pauses_and_raises_a_typed_error(emulator: EmulatorServer) -> None:
    transport = QuotaflowTransport(config=config(quota_pause=30))
    client = openai.OpenAI(base_url=emulator.url + "/v1", api_key="k", max_retries=0,
                           http_client=httpx2.Client(transport=transport))  # type: ignore[arg-type]  # fmt: skip
    with client:
        # The SDK lets quotaflow's typed error through to the caller.
        with pytest.raises(QuotaExhaustedError) as raised:
            client.chat.completions.create(
                model=OPENAI, messages=MESSAGES, max_tokens=50,
                extra_headers={FAULT_HEADER: "insufficient_quota"},
            )  # fmt: skip
        assert raised.value.scope == "openai:" + OPENAI
        attempts = transport.stats.attempts
        with pytest.raises(QuotaExhaustedError):  # paused: not even sent
            client.chat.completions.create(model=OPENAI, messages=MESSAGES, max_tokens=50)
        assert transport.stats.attempts == attempts
    assert_nothing_held(transport)
