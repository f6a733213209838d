"""OpenAI Chat Completions: the completion object and its chunk stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from quotaflow.emulator._sse import DONE, Frame, sse

if TYPE_CHECKING:
    from collections.abc import Iterator

    from quotaflow.emulator._call import Call

__all__ = ["chat_completion", "chat_stream", "chat_usage"]

FINGERPRINT: Final = "fp_emulator"


def chat_usage(call: Call) -> dict[str, object]:
    """The ``usage`` object: prompt, completion and their details (nothing cached)."""
    completion = call.output.tokens
    return {
        "prompt_tokens": call.input_tokens,
        "completion_tokens": completion,
        "total_tokens": call.input_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish_reason(call: Call) -> str:
    return "length" if call.output.capped else "stop"


def _head(call: Call, kind: str) -> dict[str, object]:
    return {
        "id": call.id,
        "object": kind,
        "created": call.created,
        "model": call.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def chat_completion(call: Call) -> dict[str, object]:
    """The ``chat.completion`` object of a non-streamed call."""
    message: dict[str, object] = {
        "role": "assistant",
        "content": call.output.text,
        "refusal": None,
        "annotations": [],
    }
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": _finish_reason(call),
    }
    return _head(call, "chat.completion") | {"choices": [choice], "usage": chat_usage(call)}


def chat_stream(call: Call) -> Iterator[Frame]:
    """The ``chat.completion.chunk`` events: role, content pieces, finish, usage, ``[DONE]``.

    The usage chunk (``choices: []``) is sent only with ``stream_options.include_usage``; the
    other chunks then carry ``"usage": null``, as OpenAI's do.
    """
    head = _head(call, "chat.completion.chunk")
    tail: dict[str, object] = {"usage": None} if call.include_usage else {}

    def chunk(delta: dict[str, object], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse(head | {"choices": [choice]} | tail)

    yield Frame(chunk({"role": "assistant", "content": "", "refusal": None}))
    for tokens, text in call.output.chunks():
        yield Frame(chunk({"content": text}), tokens)
    yield Frame(chunk({}, _finish_reason(call)), terminal=True)
    if call.include_usage:
        yield Frame(sse(head | {"choices": [], "usage": chat_usage(call)}), terminal=True)
    yield Frame(DONE, terminal=True)
