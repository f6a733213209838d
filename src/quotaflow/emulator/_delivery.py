"""Sending an admitted call: pacing, output accounting, and the faults that cut a response."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from starlette.responses import Response

from quotaflow.emulator._faults import Fault

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterable

    from starlette.types import Receive, Scope, Send

    from quotaflow.emulator._call import Call
    from quotaflow.emulator._sse import Frame

__all__ = ["CUT_AFTER", "DroppedResponse", "EmulatedDisconnectError", "paced", "quiet_drops"]

#: Content chunks a ``cut_stream`` fault lets through before the connection is dropped.
CUT_AFTER: Final = 2


class EmulatedDisconnectError(Exception):
    """Raised inside a response on purpose: the server aborts the connection."""


class DroppedResponse(Response):
    """Sends the status, the headers and half of the body, then drops the connection.

    The ``Content-Length`` announces the whole body, so the client sees a body cut short
    (httpx: ``RemoteProtocolError``; the SDKs: ``APIConnectionError``).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise EmulatedDisconnectError("fault 'drop': the connection was dropped on purpose")


async def paced(call: Call, frames: Iterable[Frame], token_latency: float) -> AsyncGenerator[bytes]:
    """The stream's bytes, each content chunk after ``tokens x token_latency`` seconds.

    The output is counted as each chunk is generated, and the call settled when the stream
    ends, is cut, or the client goes away. ``drop`` aborts before the first event;
    ``cut_stream`` after :data:`CUT_AFTER` content chunks, or before the ending.
    """
    chunks = 0
    try:
        if call.fault is Fault.DROP:
            raise EmulatedDisconnectError("fault 'drop': the connection was dropped on purpose")
        for frame in frames:
            if call.fault is Fault.CUT_STREAM and (frame.terminal or chunks >= CUT_AFTER):
                raise EmulatedDisconnectError("fault 'cut_stream': the stream was cut on purpose")
            if frame.tokens:
                if token_latency:
                    await asyncio.sleep(frame.tokens * token_latency)
                call.meter.produced(frame.tokens)
                chunks += 1
            yield frame.data
    finally:
        call.meter.finish()


class _QuietDrops(logging.Filter):
    """Hides the server's error log of a connection dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, EmulatedDisconnectError)


def quiet_drops() -> None:
    """Keep uvicorn from logging a traceback for every injected ``drop`` or ``cut_stream``."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(item, _QuietDrops) for item in logger.filters):
        logger.addFilter(_QuietDrops())
