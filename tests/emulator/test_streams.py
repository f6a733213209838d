"""Streamed answers: the providers' event sequences, and the usage quotaflow reads from them."""

from __future__ import annotations

import json

import pytest

from quotaflow.emulator._delivery import EmulatedDisconnectError
from quotaflow.providers import ReportedUsage, StreamUsageAccumulator, extract_usage
from tests.emulator.helpers import (
    ANTHROPIC_MODEL,
    OPENAI_MODEL,
    chat,
    events,
    harness,
    messages,
    payloads,
    prompt_tokens,
    responses,
)


def accumulated(provider: str, body: bytes) -> StreamUsageAccumulator:
    accumulator = StreamUsageAccumulator(provider)
    accumulator.feed(body)
    accumulator.close()
    return accumulator


@pytest.mark.asyncio
async def test_chat_stream_with_usage() -> None:
    async with harness() as h:
        body = chat(max_tokens=100, stream=True, stream_options={"include_usage": True})
        response = await h.chat(body, output="10")
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-ratelimit-limit-tokens"] == "30000"
        chunks = payloads(response.content)
        assert response.content.endswith(b"data: [DONE]\n\n")
        assert chunks[0]["choices"][0]["delta"] == {
            "role": "assistant",
            "content": "",
            "refusal": None,
        }
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == "lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem ipsum"
        assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 4 + ["stop"]
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-1]["choices"] == []
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        state = accumulated("openai", response.content).state
        assert (state.final, state.complete) == (True, True)
        prompt = prompt_tokens("openai", body)
        assert state.usage == ReportedUsage(prompt, 10, model=OPENAI_MODEL)


@pytest.mark.asyncio
async def test_chat_stream_without_usage_and_capped() -> None:
    async with harness() as h:
        response = await h.chat(chat(max_tokens=6, stream=True), output="50")
        chunks = payloads(response.content)
        assert all("usage" not in c for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        state = accumulated("openai", response.content).state
        assert (state.usage, state.complete) == (None, True)


@pytest.mark.asyncio
async def test_responses_stream() -> None:
    async with harness() as h:
        body = responses(stream=True, max_output_tokens=100)
        response = await h.responses(body, output="9")
        sse = events(response.content)
        kinds = [e.event for e in sse]
        assert kinds == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            *["response.output_text.delta"] * 3,
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        data = [json.loads(e.data) for e in sse]
        assert [d["type"] for d in data] == kinds
        assert [d["sequence_number"] for d in data] == list(range(len(data)))
        assert data[0]["response"]["status"] == "in_progress"
        assert data[-4]["text"] == "lorem ipsum lorem ipsum lorem ipsum lorem ipsum lorem"
        final = data[-1]["response"]
        assert (final["status"], final["incomplete_details"]) == ("completed", None)
        prompt = prompt_tokens("openai", body)
        state = accumulated("openai", response.content).state
        assert (state.final, state.complete) == (True, True)
        assert state.usage == ReportedUsage(prompt, 9, model=OPENAI_MODEL)


@pytest.mark.asyncio
async def test_responses_that_reach_max_output_tokens_are_incomplete() -> None:
    async with harness() as h:
        body = responses(max_output_tokens=16)
        complete = (await h.responses(body, output="99")).json()
        assert complete["status"] == "incomplete"
        assert complete["incomplete_details"] == {"reason": "max_output_tokens"}
        assert complete["output"][0]["status"] == "incomplete"
        streamed = await h.responses(body | {"stream": True}, output="99")
        assert events(streamed.content)[-1].event == "response.incomplete"
        state = accumulated("openai", streamed.content).state
        assert state.usage is not None
        assert (state.usage.output_tokens, state.final) == (16, True)


@pytest.mark.asyncio
async def test_anthropic_stream() -> None:
    async with harness() as h:
        body = messages(max_tokens=7, stream=True)
        response = await h.messages(body, output="50")
        sse = events(response.content)
        assert [e.event for e in sse] == [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        data = [json.loads(e.data) for e in sse]
        assert all(d["type"] == e.event for d, e in zip(data, sse, strict=True))
        prompt = prompt_tokens("anthropic", body)
        assert data[0]["message"]["usage"]["input_tokens"] == prompt
        assert data[0]["message"]["usage"]["output_tokens"] == 1
        assert data[-2]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
        assert data[-2]["usage"] == {"output_tokens": 7}
        state = accumulated("anthropic", response.content).state
        assert (state.final, state.complete) == (True, True)
        assert state.usage == ReportedUsage(prompt, 7, model=ANTHROPIC_MODEL)


@pytest.mark.asyncio
async def test_non_streamed_bodies_read_back_with_extract_usage() -> None:
    async with harness() as h:
        for provider, response in (
            ("openai", await h.chat(chat(), output="3")),
            ("openai", await h.responses(responses(), output="3")),
            ("anthropic", await h.messages(messages(), output="3")),
        ):
            usage = extract_usage(provider, response.content)
            assert usage is not None
            assert usage.output_tokens == 3


@pytest.mark.parametrize("fault", ["drop", "cut_stream"])
@pytest.mark.asyncio
async def test_faults_after_admission_abort_the_response(fault: str) -> None:
    async with harness() as h:
        # In-process the abort surfaces as the exception; over a socket the client sees the
        # connection dropped (tested with the SDKs).
        with pytest.raises(EmulatedDisconnectError):
            await h.chat(chat(stream=True), fault=fault)
        with pytest.raises(EmulatedDisconnectError):
            await h.messages(messages(), fault="drop")
        if fault == "cut_stream":  # means nothing to a non-streamed call
            assert (await h.messages(messages(), fault=fault)).status_code == 200
        stats = h.emulator.stats()
        assert stats["admitted"] == {"openai": 1, "anthropic": 1 + (fault == "cut_stream")}
