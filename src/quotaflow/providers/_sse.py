r"""An incremental Server-Sent Events decoder (the WHATWG event-stream grammar).

Fed arbitrary byte or text chunks (a chunk may end inside a line, inside ``\r\n``, or inside
a UTF-8 character), it yields each event as soon as its blank line arrives.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Final

from quotaflow.providers._log import note_ignored

__all__ = ["SSEDecoder", "SSEEvent"]

#: A line longer than this is dropped (with a log line) instead of growing the buffer forever.
MAX_LINE_CHARS: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type (``"message"`` unless named), data and id."""

    event: str = "message"
    data: str = ""
    id: str | None = None


class SSEDecoder:
    r"""Turns a stream of chunks into :class:`SSEEvent` values, incrementally.

    Example:
        >>> decoder = SSEDecoder()
        >>> decoder.feed(b"event: ping\ndata: {}\n")
        []
        >>> decoder.feed(b"\n")
        [SSEEvent(event='ping', data='{}', id=None)]
    """

    __slots__ = ("_buffer", "_data", "_event", "_id", "_last_id", "_saw_cr", "_started", "_utf8")

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._saw_cr = False
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._last_id: str | None = None

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        """Decode ``chunk`` and return the events it completed (possibly none)."""
        text = self._utf8.decode(chunk) if isinstance(chunk, bytes | bytearray) else chunk
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        return self._consume(text)

    def close(self) -> list[SSEEvent]:
        """End the stream. Per the standard, an event without its blank line is discarded."""
        self._consume(self._utf8.decode(b"", final=True))
        self._buffer = ""
        self._event, self._data, self._id = "", [], None
        return []

    def _consume(self, text: str) -> list[SSEEvent]:
        if self._saw_cr and text.startswith("\n"):
            text = text[1:]  # the "\n" of a "\r\n" split across chunks
        self._saw_cr = False
        buffer = self._buffer + text
        if "\r" in buffer:
            lines = self._split_any(buffer)
        else:  # the common case: "\n" line ends only, split in one pass
            lines = buffer.split("\n")
            self._buffer = lines.pop()
        events = [event for line in lines if (event := self._line(line)) is not None]
        return self._checked(events)

    def _split_any(self, buffer: str) -> list[str]:
        """Split the complete lines (any of the three line ends); keep the rest buffered."""
        lines: list[str] = []
        start = 0
        while True:
            cr, lf = buffer.find("\r", start), buffer.find("\n", start)
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            end = min(ends)
            lines.append(buffer[start:end])
            if buffer[end] == "\r":
                if end + 1 == len(buffer):
                    self._saw_cr = True
                    start = end + 1
                elif buffer[end + 1] == "\n":
                    start = end + 2
                else:
                    start = end + 1
            else:
                start = end + 1
        self._buffer = buffer[start:]
        return lines

    def _checked(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """Drop an unfinished line that grew past the limit; return ``events``."""
        if len(self._buffer) > MAX_LINE_CHARS:
            note_ignored("sse line", self._buffer[:40], reason="oversized")
            self._buffer = ""
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        if self._id is not None:
            self._last_id = self._id
            self._id = None
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data), self._last_id)
        self._event, self._data = "", []
        return event
