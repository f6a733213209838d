"""OpenAI Responses: the response object and its typed event stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quotaflow.emulator._sse import Frame, sse

if TYPE_CHECKING:
    from collections.abc import Iterator

    from quotaflow.emulator._call import Call

__all__ = ["response_object", "responses_stream"]


def _usage(call: Call) -> dict[str, object]:
    return {
        "input_tokens": call.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": call.output.tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": call.input_tokens + call.output.tokens,
    }


def _final_status(call: Call) -> str:
    return "incomplete" if call.output.capped else "completed"


def _item_id(call: Call) -> str:
    return "msg_" + call.id.removeprefix("resp_")


def _part(text: str) -> dict[str, object]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _item(call: Call, *, final: bool) -> dict[str, object]:
    return {
        "id": _item_id(call),
        "type": "message",
        "status": _final_status(call) if final else "in_progress",
        "role": "assistant",
        "content": [_part(call.output.text)] if final else [],
    }


def response_object(call: Call, *, final: bool = True) -> dict[str, object]:
    """The ``response`` object, finished or as it is while in progress.

    Finished: ``completed``, or ``incomplete`` when the output reached ``max_output_tokens``.
    In progress: no output and no usage yet.
    """
    incomplete = final and call.output.capped
    return {
        "id": call.id,
        "object": "response",
        "created_at": call.created,
        "status": _final_status(call) if final else "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": call.request.get("instructions"),
        "max_output_tokens": call.max_tokens,
        "metadata": {},
        "model": call.model,
        "output": [_item(call, final=True)] if final else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(call) if final else None,
        "user": None,
    }


def responses_stream(call: Call) -> Iterator[Frame]:
    """The typed events of a streamed call, each with its ``sequence_number``.

    The stream ends in ``response.completed`` (``response.incomplete`` when the output reached
    ``max_output_tokens``).
    """
    sequence = 0

    def event(kind: str, fields: dict[str, object]) -> bytes:
        nonlocal sequence
        data = {"type": kind, "sequence_number": sequence} | fields
        sequence += 1
        return sse(data, kind)

    where = {"item_id": _item_id(call), "output_index": 0, "content_index": 0}
    pending = response_object(call, final=False)
    yield Frame(event("response.created", {"response": pending}))
    yield Frame(event("response.in_progress", {"response": pending}))
    added = {"output_index": 0, "item": _item(call, final=False)}
    yield Frame(event("response.output_item.added", added))
    yield Frame(event("response.content_part.added", where | {"part": _part("")}))
    for tokens, text in call.output.chunks():
        delta = where | {"delta": text, "logprobs": []}
        yield Frame(event("response.output_text.delta", delta), tokens)
    text = call.output.text
    done = where | {"text": text, "logprobs": []}
    yield Frame(event("response.output_text.done", done), terminal=True)
    yield Frame(event("response.content_part.done", where | {"part": _part(text)}), terminal=True)
    item_done = {"output_index": 0, "item": _item(call, final=True)}
    yield Frame(event("response.output_item.done", item_done), terminal=True)
    final = "response.incomplete" if call.output.capped else "response.completed"
    yield Frame(event(final, {"response": response_object(call)}), terminal=True)
