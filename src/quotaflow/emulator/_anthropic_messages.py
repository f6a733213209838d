"""Anthropic Messages: the message object and its event stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quotaflow.emulator._sse import Frame, sse

if TYPE_CHECKING:
    from collections.abc import Iterator

    from quotaflow.emulator._call import Call

__all__ = ["message", "message_stream"]


def _usage(call: Call, output_tokens: int) -> dict[str, object]:
    return {
        "input_tokens": call.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _stop_reason(call: Call) -> str:
    return "max_tokens" if call.output.capped else "end_turn"


def message(call: Call) -> dict[str, object]:
    """The ``message`` object of a non-streamed call."""
    return {
        "id": call.id,
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [{"type": "text", "text": call.output.text}],
        "stop_reason": _stop_reason(call),
        "stop_sequence": None,
        "usage": _usage(call, call.output.tokens),
    }


def message_stream(call: Call) -> Iterator[Frame]:
    """The events of a streamed call.

    ``message_start`` (input usage, ``output_tokens`` 1), the text block's events, ``ping``,
    ``message_delta`` (stop reason, cumulative output) and ``message_stop``.
    """
    start = message(call) | {"content": [], "stop_reason": None, "usage": _usage(call, 1)}
    yield Frame(sse({"type": "message_start", "message": start}, "message_start"))
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    yield Frame(sse(block, "content_block_start"))
    yield Frame(sse({"type": "ping"}, "ping"))
    for tokens, text in call.output.chunks():
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        yield Frame(sse(delta, "content_block_delta"), tokens)
    yield Frame(
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"), terminal=True
    )
    ending = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(call), "stop_sequence": None},
        "usage": {"output_tokens": call.output.tokens},
    }
    yield Frame(sse(ending, "message_delta"), terminal=True)
    yield Frame(sse({"type": "message_stop"}, "message_stop"), terminal=True)
