"""The official openai and anthropic SDKs against a real emulator server over 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anthropic
import httpx2
import openai
import pytest

from quotaflow.emulator import EmulatorServer
from quotaflow.providers import ErrorKind, classify_exception, parse_rate_limit_headers
from tests.emulator.helpers import ANTHROPIC_MODEL, OPENAI_MODEL, config, prompt_tokens

if TYPE_CHECKING:
    from collections.abc import Iterator

PROMPT: list[Any] = [{"role": "user", "content": "Say something in Latin."}]
FAULT = "x-emulator-fault"
OUTPUT = "x-emulator-output-tokens"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(
        config(openai_rpm=100_000, openai_tpm=10_000_000, anthropic_rpm=100_000)
    ) as running:
        yield running


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.openai_base_url, api_key="x", max_retries=0, http_client=httpx2.Client()
    ) as sdk:
        yield sdk


@pytest.fixture
def claude(server: EmulatorServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as sdk:
        yield sdk


def openai_prompt() -> int:
    return prompt_tokens("openai", {"model": OPENAI_MODEL, "messages": PROMPT})


def anthropic_prompt() -> int:
    return prompt_tokens("anthropic", {"model": ANTHROPIC_MODEL, "messages": PROMPT})


def test_chat_completions(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=PROMPT, max_tokens=50, extra_headers={OUTPUT: "12"}
    )
    completion = raw.parse()
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == " ".join(["lorem", "ipsum"] * 6)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        openai_prompt(),
        12,
    )
    assert completion._request_id == raw.headers["x-request-id"]
    snapshot = parse_rate_limit_headers("openai", raw.headers)
    assert {state.limit for state in snapshot} == {100_000, 10_000_000}


def test_chat_completions_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=PROMPT,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (openai_prompt(), 5)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5


def test_responses(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=OPENAI_MODEL,
        input="Say something.",
        max_output_tokens=30,
        extra_headers={OUTPUT: "7"},
    )
    assert (response.status, response.output_text) == ("completed", "lorem ipsum " * 3 + "lorem")
    assert response.usage is not None
    assert response.usage.output_tokens == 7
    events = list(
        client.responses.create(
            model=OPENAI_MODEL, input="Say something.", stream=True, extra_headers={OUTPUT: "7"}
        )
    )
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert final.usage is not None
    assert (final.usage.output_tokens, final.output_text) == (7, response.output_text)


def test_anthropic_messages(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=PROMPT, extra_headers={OUTPUT: "15"}
    )
    message = raw.parse()
    assert (message.stop_reason, message.usage.output_tokens) == ("end_turn", 15)
    assert message.usage.input_tokens == anthropic_prompt()
    assert message._request_id == raw.headers["request-id"]
    snapshot = parse_rate_limit_headers("anthropic", raw.headers)
    assert {state.limit for state in snapshot} == {100_000, 30_000, 8_000, 38_000}


def test_anthropic_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=9, messages=PROMPT, extra_headers={OUTPUT: "40"}
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 9
    assert (final.stop_reason, final.usage.output_tokens) == ("max_tokens", 9)
    assert final.usage.input_tokens == anthropic_prompt()
    kinds = [
        event.type
        for event in claude.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=9, messages=PROMPT, stream=True
        )
    ]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]


@pytest.mark.asyncio
async def test_async_clients(server: EmulatorServer) -> None:
    async with (
        openai.AsyncOpenAI(
            base_url=server.openai_base_url,
            api_key="x",
            max_retries=0,
            http_client=httpx2.AsyncClient(),
        ) as client,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0) as claude,
    ):
        headers = {OUTPUT: "6"}

        async def chat_stream() -> int:
            stream = await client.chat.completions.create(
                model=OPENAI_MODEL,
                messages=PROMPT,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=headers,
            )
            usage = [chunk.usage async for chunk in stream][-1]
            assert usage is not None
            return usage.completion_tokens

        async def responses_stream() -> int:
            stream = await client.responses.create(
                model=OPENAI_MODEL, input="hi", stream=True, extra_headers=headers
            )
            final = [event async for event in stream][-1]
            assert final.type == "response.completed"
            assert final.response.usage is not None
            return final.response.usage.output_tokens

        async def messages_stream() -> int:
            async with claude.messages.stream(
                model=ANTHROPIC_MODEL, max_tokens=50, messages=PROMPT, extra_headers=headers
            ) as stream:
                return (await stream.get_final_message()).usage.output_tokens

        async def chat() -> int:
            completion = await client.chat.completions.create(
                model=OPENAI_MODEL, messages=PROMPT, extra_headers=headers
            )
            assert completion.usage is not None
            return completion.usage.completion_tokens

        async def responses() -> int:
            response = await client.responses.create(
                model=OPENAI_MODEL, input="hi", extra_headers=headers
            )
            assert response.usage is not None
            return response.usage.output_tokens

        async def message() -> int:
            reply = await claude.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=50, messages=PROMPT, extra_headers=headers
            )
            return reply.usage.output_tokens

        calls = [chat_stream, responses_stream, messages_stream, chat, responses, message]
        counts = await asyncio.wait_for(asyncio.gather(*(call() for call in calls * 4)), 20)
        assert counts == [6] * len(counts)


def test_drop_raises_a_connection_error(client: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    drop = {FAULT: "drop"}
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model=OPENAI_MODEL, messages=PROMPT, extra_headers=drop)
    verdict = classify_exception("openai", caught.value)
    assert verdict is not None
    assert verdict.kind is ErrorKind.NETWORK
    with pytest.raises(anthropic.APIConnectionError):
        claude.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=10, messages=PROMPT, extra_headers=drop
        )
    stream = client.chat.completions.create(
        model=OPENAI_MODEL, messages=PROMPT, stream=True, extra_headers=drop
    )
    with pytest.raises(openai.APIConnectionError):
        list(stream)
    # the client recovers: the broken connection is not reused
    assert client.chat.completions.create(model=OPENAI_MODEL, messages=PROMPT).choices


def test_cut_streams_end_without_usage(client: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    cut = {FAULT: "cut_stream", OUTPUT: "30"}
    stream = client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=PROMPT,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=cut,
    )
    received: list[openai.types.chat.ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        received.extend(stream)
    assert len(received) == 3  # the role chunk and two content chunks; no usage
    assert all(chunk.usage is None for chunk in received)
    with (
        pytest.raises(anthropic.APIConnectionError),
        claude.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=50, messages=PROMPT, extra_headers=cut
        ) as messages,
    ):
        list(messages.text_stream)


def test_status_faults_raise_the_sdks_status_errors(
    client: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=10, messages=PROMPT, extra_headers={FAULT: "529"}
        )
    assert overloaded.value.status_code == 529
    verdict = classify_exception("anthropic", overloaded.value)
    assert verdict is not None
    assert verdict.kind is ErrorKind.OVERLOADED
    with pytest.raises(openai.InternalServerError) as server_error:
        client.chat.completions.create(
            model=OPENAI_MODEL, messages=PROMPT, extra_headers={FAULT: "529"}
        )
    assert server_error.value.status_code == 529
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model=OPENAI_MODEL, input="hi", extra_headers={FAULT: "rate_limit"})
    verdict = classify_exception("openai", limited.value)
    assert verdict is not None
    assert (verdict.kind, verdict.retry_after) == (ErrorKind.RATE_LIMITED, 1.0)
    with pytest.raises(openai.RateLimitError) as quota:
        client.chat.completions.create(
            model=OPENAI_MODEL, messages=PROMPT, extra_headers={FAULT: "insufficient_quota"}
        )
    assert quota.value.code == "insufficient_quota"
    with pytest.raises(anthropic.RateLimitError) as spend:
        claude.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=10,
            messages=PROMPT,
            extra_headers={FAULT: "insufficient_quota"},
        )
    verdict = classify_exception("anthropic", spend.value)
    assert verdict is not None
    assert verdict.kind is ErrorKind.QUOTA_EXHAUSTED
