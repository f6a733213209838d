"""Scheduling a batch: the async loop that starts items while there is room."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Generic

from quotaflow.batch._result import BatchResult, ItemT, ResultT
from quotaflow.batch._run import Run
from quotaflow.batch._source import Pair, Source

if TYPE_CHECKING:
    from quotaflow.batch._processor import BatchProcessor

__all__ = ["Scheduler", "by_index"]


class Scheduler(Generic[ItemT, ResultT]):
    """The async loop of one batch: starts items while there is room, collects results.

    An async input is read by a task of its own, so results keep flowing while it waits for
    its next item; a stop cancels that read.
    """

    def __init__(
        self, processor: BatchProcessor[ItemT, ResultT], run: Run, source: Source[ItemT]
    ) -> None:
        self._processor = processor
        self._run = run
        self._source = source
        self._tasks: set[asyncio.Task[BatchResult[ItemT, ResultT]]] = set()
        self._pull: asyncio.Task[Pair[ItemT] | None] | None = None
        woken = asyncio.Event()
        run.wake = partial(_call_threadsafe, asyncio.get_running_loop(), woken.set)
        self._stopped = asyncio.ensure_future(woken.wait())

    async def step(self) -> list[BatchResult[ItemT, ResultT]] | None:
        """Start what fits, wait for something to finish; ``None`` when the batch is over."""
        self._fill()
        waiting: set[asyncio.Future[Any]] = set(self._tasks)
        if self._pull is not None:
            if self._run.stopping:
                self._pull.cancel()
            else:
                waiting.add(self._stopped)
            waiting.add(self._pull)
        if not waiting:
            return None
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        results = self._take_pulled() if self._pull in done else []
        finished = [task for task in self._tasks if task in done]
        self._tasks.difference_update(finished)
        return results + sorted((task.result() for task in finished), key=by_index)

    async def close(self) -> None:
        """Cancel whatever still runs and wait for it."""
        pull = [self._pull] if self._pull is not None else []
        await _cancel_all([*self._tasks, self._stopped, *pull])

    def _fill(self) -> None:
        source, limit = self._source, self._processor._concurrency  # noqa: SLF001
        while not self._run.stopping and self._pull is None and not source.exhausted and (
            len(self._tasks) < limit.current
        ):  # fmt: skip
            if source.is_async:
                self._pull = asyncio.ensure_future(source.next_async())
            elif (pair := source.next_sync()) is not None:
                self._start(pair)

    def _take_pulled(self) -> list[BatchResult[ItemT, ResultT]]:
        """Start the item just read; if the batch stopped meanwhile, report it as skipped.

        An item read from an async input as the stop came was taken from the input already:
        it is yielded as ``"skipped"`` rather than silently lost.
        """
        pull, self._pull = self._pull, None
        pair = None if pull is None or pull.cancelled() else pull.result()
        if pair is None:
            self._source.exhausted = True
            return []
        if self._run.stopping:
            return [self._processor._skip(*pair)]  # noqa: SLF001
        self._start(pair)
        return []

    def _start(self, pair: Pair[ItemT]) -> None:
        run_item = self._processor._run_item  # noqa: SLF001
        self._tasks.add(asyncio.ensure_future(run_item(self._run, *pair)))


def by_index(result: BatchResult[Any, Any]) -> int:
    """A result's index, to order the results that finished together."""
    return result.index


def _call_threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to wake
        loop.call_soon_threadsafe(callback)


async def _cancel_all(futures: list[asyncio.Future[Any]]) -> None:
    """Cancel what is still running and wait for it; mark finished failures as retrieved."""
    pending = [f for f in futures if not f.done()]
    for future in pending:
        future.cancel()
    if pending:
        await asyncio.wait(pending)
    for future in futures:
        if not future.cancelled():
            future.exception()
