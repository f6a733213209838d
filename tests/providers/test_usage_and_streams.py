from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from quotaflow.providers import (
    ErrorKind,
    ReportedUsage,
    SSEDecoder,
    SSEEvent,
    StreamUsageAccumulator,
    extract_usage,
)

if TYPE_CHECKING:
    from pathlib import Path

CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-2024-08-06",
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0},
    },
}


def test_openai_chat_usage_keeps_cached_and_reasoning_parts() -> None:
    assert extract_usage("openai", CHAT) == ReportedUsage(
        input_tokens=1200,
        output_tokens=300,
        cache_read_tokens=1024,
        reasoning_tokens=128,
        model="gpt-4o-2024-08-06",
    )


def test_openai_responses_usage_is_read_including_cache_writes() -> None:
    body = {
        "object": "response",
        "model": "o3",
        "usage": {
            "input_tokens": 900,
            "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 500},
            "output_tokens": 400,
            "output_tokens_details": {"reasoning_tokens": 350},
            "total_tokens": 1300,
        },
    }
    assert extract_usage("openai", body) == ReportedUsage(900, 400, 100, 500, 350, "o3")


def test_anthropic_usage_adds_cache_reads_and_writes_to_the_input() -> None:
    body = {
        "type": "message",
        "model": "claude-sonnet-4-5",
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 200,
            "cache_read_input_tokens": 1800,
            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 15,
        },
    }
    usage = extract_usage("anthropic", body)
    assert usage == ReportedUsage(2025, 15, 1800, 200, 0, "claude-sonnet-4-5")
    assert usage.uncached_input_tokens == 25
    assert extract_usage("bedrock", body) == usage  # decided by shape


def test_gemini_output_adds_thinking_tokens() -> None:
    body = {
        "modelVersion": "gemini-2.5-flash",
        "usageMetadata": {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 40,
            "candidatesTokenCount": 20,
            "thoughtsTokenCount": 80,
            "toolUsePromptTokenCount": 5,
            "totalTokenCount": 205,
        },
    }
    assert extract_usage("gemini", body) == ReportedUsage(105, 100, 40, 0, 80, "gemini-2.5-flash")


@pytest.mark.parametrize(
    "body",
    [
        None,
        b"",
        b"not json",
        {"usage": None},
        {"usage": "lots"},
        {"usage": {"prompt_tokens": -1}},
        {"usage": {"prompt_tokens": True}},
        {"usage": {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}},
        [],
        42,
    ],
)
def test_bodies_without_readable_usage_give_none(body: object) -> None:
    assert extract_usage("openai", body) is None


def test_sse_decoder_handles_every_line_ending_and_split() -> None:
    stream = (
        b"\xef\xbb\xbfevent: a\r\ndata: 1\r\ndata: 2\r\n\r\n: comment\rdata: x\r\rid: 7\ndata:y\n\n"
    )
    expected = [SSEEvent("a", "1\n2"), SSEEvent("message", "x"), SSEEvent("message", "y", "7")]
    assert SSEDecoder().feed(stream) == expected
    decoder = SSEDecoder()
    events = [event for i in range(len(stream)) for event in decoder.feed(stream[i : i + 1])]
    assert events == expected


def test_sse_decoder_survives_split_utf8_and_discards_unterminated_events() -> None:
    decoder = SSEDecoder()
    payload = "data: h\u00e9llo \u2603\n\n".encode()
    assert decoder.feed(payload[:8]) == []
    assert decoder.feed(payload[8:]) == [SSEEvent("message", "h\u00e9llo \u2603")]
    assert decoder.feed("data: partial\n") == []
    assert decoder.close() == []


def feed_in_chunks(acc: StreamUsageAccumulator, raw: bytes, size: int) -> None:
    for start in range(0, len(raw), size):
        acc.feed(raw[start : start + size])


@pytest.mark.parametrize("chunk", [1, 7, 64, 100_000])
def test_openai_chat_stream_reports_the_include_usage_chunk(data: Path, chunk: int) -> None:
    acc = StreamUsageAccumulator("openai")
    feed_in_chunks(acc, (data / "openai_chat.sse").read_bytes(), chunk)
    state = acc.close()
    assert state.usage == ReportedUsage(12, 2, model="gpt-4o-mini")
    assert (state.final, state.complete, state.error) == (True, True, None)


def test_openai_chat_stream_cut_short_has_no_usage_and_says_so(data: Path) -> None:
    raw = (data / "openai_chat.sse").read_bytes()
    acc = StreamUsageAccumulator("openai")
    acc.feed(raw[: raw.index(b'"choices":[]')])
    state = acc.close()
    assert (state.usage, state.final, state.complete) == (None, False, False)
    assert state.model == "gpt-4o-mini"


def test_openai_responses_stream_reads_response_completed(data: Path) -> None:
    acc = StreamUsageAccumulator("openai")
    feed_in_chunks(acc, (data / "openai_responses.sse").read_bytes(), 5)
    state = acc.close()
    assert state.usage == ReportedUsage(12, 2, model="gpt-4o-2024-08-06")
    assert (state.final, state.complete) == (True, True)


def test_openai_responses_failure_reports_the_error() -> None:
    acc = StreamUsageAccumulator("openai")
    acc.feed_json(
        {
            "type": "response.failed",
            "response": {"error": {"code": "rate_limit_exceeded", "message": "slow down"}},
        }
    )
    state = acc.state
    assert state.error is not None
    assert state.error.kind is ErrorKind.RATE_LIMITED
    assert state.complete


@pytest.mark.parametrize("chunk", [1, 13, 100_000])
def test_anthropic_stream_takes_the_last_cumulative_delta(data: Path, chunk: int) -> None:
    acc = StreamUsageAccumulator("anthropic")
    feed_in_chunks(acc, (data / "anthropic_messages.sse").read_bytes(), chunk)
    state = acc.close()
    assert state.usage == ReportedUsage(1825, 15, 1800, 0, 0, "claude-sonnet-4-5")
    assert (state.final, state.complete) == (True, True)


def test_anthropic_deltas_are_cumulative_never_summed() -> None:
    acc = StreamUsageAccumulator("anthropic")
    acc.feed_json(
        {"type": "message_start", "message": {"usage": {"input_tokens": 10, "output_tokens": 1}}}
    )
    acc.feed_json({"type": "message_delta", "usage": {"output_tokens": 5}})
    acc.feed_json({"type": "message_delta", "usage": {"output_tokens": 9, "input_tokens": 10}})
    assert acc.state.usage == ReportedUsage(10, 9)


def test_anthropic_stream_cut_short_yields_what_is_known(data: Path) -> None:
    raw = (data / "anthropic_messages.sse").read_bytes()
    acc = StreamUsageAccumulator("anthropic")
    acc.feed(raw[: raw.index(b"event: message_stop")])
    state = acc.close()
    assert state.usage == ReportedUsage(1825, 15, 1800, 0, 0, "claude-sonnet-4-5")
    assert (state.final, state.complete) == (False, False)


def test_anthropic_error_event_mid_stream_is_classified(data: Path) -> None:
    raw = (data / "anthropic_messages.sse").read_bytes()
    cut = raw[: raw.index(b"event: content_block_stop")]
    error = (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    acc = StreamUsageAccumulator("anthropic")
    state = acc.feed(cut + error)
    assert state.error is not None
    assert state.error.kind is ErrorKind.OVERLOADED
    assert not state.final
    assert state.usage is not None
    assert state.usage.input_tokens == 1825


def test_openrouter_mid_stream_rate_limit_is_classified() -> None:
    acc = StreamUsageAccumulator("openrouter")
    acc.feed(
        b'data: {"id":"gen-1","model":"x",'
        b'"choices":[{"index":0,"delta":{},"finish_reason":"error"}],'
        b'"error":{"code":429,"message":"Rate limit exceeded"}}\n\n'
    )
    assert acc.state.error is not None
    assert acc.state.error.kind is ErrorKind.RATE_LIMITED


def test_gemini_stream_keeps_the_last_running_total() -> None:
    acc = StreamUsageAccumulator("gemini")
    chunk = (
        'data: {{"candidates":[{{"content":{{"parts":[{{"text":"a"}}]}}{finish}}}],'
        '"usageMetadata":{{"promptTokenCount":10,"candidatesTokenCount":{out}}},'
        '"modelVersion":"gemini-2.5-flash"}}\n\n'
    )
    acc.feed(chunk.format(finish="", out=1))
    assert (acc.state.final, acc.state.usage) == (
        False,
        ReportedUsage(10, 1, model="gemini-2.5-flash"),
    )
    acc.feed(chunk.format(finish=',"finishReason":"STOP"', out=7))
    assert acc.state.usage == ReportedUsage(10, 7, model="gemini-2.5-flash")
    assert (acc.state.final, acc.state.complete) == (True, True)


def test_garbage_events_are_skipped() -> None:
    acc = StreamUsageAccumulator("openai")
    acc.feed(b"data: {not json\n\ndata: 42\n\ndata: []\n\n")
    acc.feed_event(SSEEvent("message", "[DONE]"))
    assert acc.state.usage is None
    assert acc.state.complete
