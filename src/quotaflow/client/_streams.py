"""Response streams that settle their reservation as they end, however they end.

A streamed completion is settled from the usage the stream itself reports, once the stream
is closed: read to the end, closed early by the caller, cut by the network, or abandoned by a
cancelled task. The wrapper feeds every chunk to a
:class:`~quotaflow.providers.StreamUsageAccumulator` and calls ``finish`` exactly once.

httpx and httpx2 each check that a response's stream derives from *their* stream classes, so
the wrappers come in one flavour per library; :func:`wrap_sync` / :func:`wrap_async` pick the
one that matches the stream they wrap.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any, Final

import httpx

from quotaflow.providers import StreamUsage, StreamUsageAccumulator

__all__ = ["wrap_async", "wrap_sync"]

try:  # the official SDKs are built on httpx2: support its responses too
    _httpx2: ModuleType | None = importlib.import_module("httpx2")
except ImportError:  # pragma: no cover - httpx2 is optional
    _httpx2 = None

#: Seconds a cancelled reader waits for the stream's settlement to land before it goes on.
_SETTLE_GRACE: Final = 5.0

SyncFinish = Callable[[StreamUsage], None]
AsyncFinish = Callable[[StreamUsage], Awaitable[None]]


class GovernedSyncStream(httpx.SyncByteStream):
    """A sync response stream that settles through ``finish`` when it ends."""

    def __init__(self, inner: Any, accumulator: StreamUsageAccumulator, finish: SyncFinish) -> None:  # noqa: ANN401
        self._inner = inner
        self._accumulator = accumulator
        self._finish: SyncFinish | None = finish

    def __iter__(self) -> Iterator[bytes]:
        feed = self._accumulator.feed
        try:
            for chunk in self._inner:
                feed(chunk)
                yield chunk
        except BaseException:
            self._done()
            raise

    def close(self) -> None:
        """Close the inner stream, then settle (once)."""
        try:
            self._inner.close()
        finally:
            self._done()

    def _done(self) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            finish(self._accumulator.close())


class GovernedAsyncStream(httpx.AsyncByteStream):
    """An async response stream that settles through ``finish`` when it ends."""

    def __init__(
        self,
        inner: Any,  # noqa: ANN401 (an httpx or httpx2 stream)
        accumulator: StreamUsageAccumulator,
        finish: AsyncFinish,
    ) -> None:
        self._inner = inner
        self._accumulator = accumulator
        self._finish: AsyncFinish | None = finish

    async def __aiter__(self) -> AsyncIterator[bytes]:
        feed = self._accumulator.feed
        try:
            async for chunk in self._inner:
                feed(chunk)
                yield chunk
        except BaseException:
            await self._done()
            raise

    async def aclose(self) -> None:
        """Close the inner stream, then settle (once), even from a cancelled task."""
        try:
            await self._inner.aclose()
        finally:
            await self._done()

    async def _done(self) -> None:
        finish, self._finish = self._finish, None
        if finish is None:
            return
        task = asyncio.ensure_future(finish(self._accumulator.close()))
        try:
            # Shielded: a cancellation of the reader must not leave the reservation unsettled.
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task], timeout=_SETTLE_GRACE)  # let it land, then pass it on
            raise


_Httpx2SyncStream: type[GovernedSyncStream] = GovernedSyncStream
_Httpx2AsyncStream: type[GovernedAsyncStream] = GovernedAsyncStream
if _httpx2 is not None:
    _sync_base: Any = _httpx2.SyncByteStream
    _async_base: Any = _httpx2.AsyncByteStream
    _Httpx2SyncStream = type("GovernedSyncStream2", (GovernedSyncStream, _sync_base), {})
    _Httpx2AsyncStream = type("GovernedAsyncStream2", (GovernedAsyncStream, _async_base), {})


def _is_httpx2(stream: object) -> bool:
    return _httpx2 is not None and type(stream).__module__.split(".", 1)[0] == "httpx2"


def wrap_sync(inner: object, accumulator: StreamUsageAccumulator, finish: SyncFinish) -> Any:  # noqa: ANN401
    """Wrap a sync response stream of httpx or httpx2."""
    cls = _Httpx2SyncStream if _is_httpx2(inner) else GovernedSyncStream
    return cls(inner, accumulator, finish)


def wrap_async(inner: object, accumulator: StreamUsageAccumulator, finish: AsyncFinish) -> Any:  # noqa: ANN401
    """Wrap an async response stream of httpx or httpx2."""
    cls = _Httpx2AsyncStream if _is_httpx2(inner) else GovernedAsyncStream
    return cls(inner, accumulator, finish)
