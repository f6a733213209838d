"""Server-sent events: the frames a stream is made of."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

__all__ = ["DONE", "Frame", "dumps", "sse"]

#: The end of an OpenAI Chat Completions stream.
DONE: Final = b"data: [DONE]\n\n"


def dumps(data: object) -> bytes:
    """Compact JSON, as UTF-8."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def sse(data: object, event: str | None = None) -> bytes:
    """One event: an optional ``event:`` line, then the JSON ``data:`` line."""
    head = b"" if event is None else b"event: " + event.encode() + b"\n"
    return head + b"data: " + dumps(data) + b"\n\n"


@dataclass(frozen=True, slots=True)
class Frame:
    """One event of a stream.

    Attributes:
        data: its bytes.
        tokens: output tokens it carries (generated just before it is sent).
        terminal: it belongs to the stream's ending (finish, usage, stop events), which a cut
            stream never sends.
    """

    data: bytes
    tokens: int = 0
    terminal: bool = False
