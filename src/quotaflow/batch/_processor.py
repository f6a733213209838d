"""BatchProcessor: many items through one call each, bounded, retried, stoppable.

The async methods run the items as tasks, the sync ones on a pool of threads; both start an
item only when there is room under the (possibly adaptive) concurrency, so an input of any
size is consumed lazily and memory stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random as _random
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import aclosing, closing
from functools import partial
from typing import Any, Generic, TypeAlias, TypeVar

import httpx

from quotaflow._errors import AcquireTimeoutError, ConfigurationError, QuotaExhaustedError
from quotaflow.batch._config import BatchConfig
from quotaflow.batch._result import BatchResult, ItemT, ResultT
from quotaflow.client._routing import route_request
from quotaflow.providers import ErrorClass, ErrorKind, Provider, classify_error, classify_exception

__all__ = ["BatchProcessor", "Sleep"]

#: A sleep function: ``asyncio.sleep``-like for the async methods, ``time.sleep``-like for both.
Sleep: TypeAlias = Callable[[float], Awaitable[None] | None]
_T = TypeVar("_T")
_Pair: TypeAlias = tuple[int, _T]


class BatchProcessor(Generic[ItemT, ResultT]):
    """Run :meth:`process_item` (or :meth:`process_item_sync`) over many items.

    Subclass it and override the item method; the batch methods add bounded concurrency,
    retries with backoff, stopping, grouping by model and, optionally, adaptive concurrency.

    Args:
        config: the batch options (default: ``BatchConfig()``).
        sleep: waits before retries (default: ``asyncio.sleep`` for the async methods,
            ``time.sleep`` for the sync ones); tests pass a fake.
        clock: seconds, for durations (default: ``time.monotonic``).
        random: a number in [0, 1) for the retry jitter (default: ``random.random``).

    Attributes:
        provider: the provider whose error format classifies HTTP errors (``None``:
            recognised from the request's URL).
    """

    provider: Provider | None = None

    def __init__(
        self,
        config: BatchConfig | None = None,
        *,
        sleep: Sleep | None = None,
        clock: Callable[[], float] | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        if config is not None and not isinstance(config, BatchConfig):
            raise ConfigurationError(f"config must be a BatchConfig, got {config!r}")
        self.config = config if config is not None else BatchConfig()
        self._sleep = sleep
        self._clock = clock or time.monotonic
        self._random = random or _random.random
        self._concurrency = _Concurrency(self.config)
        self._runs: set[_Run] = set()
        self._lock = threading.Lock()
        self._counts = {"processed": 0, "succeeded": 0, "failed": 0, "retries": 0, "skipped": 0}

    # What subclasses override ----------------------------------------------------------------

    async def process_item(self, item: ItemT) -> ResultT:
        """Process one item (the async methods call this); raise to fail the try."""
        raise NotImplementedError(
            f"{type(self).__name__} must override process_item() to use the async methods"
        )

    def process_item_sync(self, item: ItemT) -> ResultT:
        """Process one item (the sync methods call this, from worker threads)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override process_item_sync() to use the sync methods"
        )

    def is_retryable(self, error: BaseException) -> bool:
        """Whether a failed try is worth another.

        Retried: HTTP errors the provider's error class calls retryable (rate limits,
        overload, server errors), network failures and timeouts, and an admission that timed
        out (:class:`~quotaflow.AcquireTimeoutError`). Never retried: bad input
        (``ConfigurationError``, ``ValueError``, ``TypeError``), an exhausted quota, and
        anything unrecognised.
        """
        if isinstance(error, ValueError | TypeError | QuotaExhaustedError):
            return False
        if isinstance(error, AcquireTimeoutError | httpx.TransportError):
            return True
        found = self.classify(error)
        return found is not None and found.retryable

    def classify(self, error: BaseException) -> ErrorClass | None:
        """The provider's class of an error, or ``None`` when it is not a provider failure."""
        if isinstance(error, httpx.HTTPStatusError):
            return self._classify_response(error)
        provider = self.provider or Provider.GENERIC
        if isinstance(error, QuotaExhaustedError):
            return ErrorClass(ErrorKind.QUOTA_EXHAUSTED, provider, message=str(error)[:200])
        if isinstance(error, ConfigurationError):
            return ErrorClass(ErrorKind.INVALID_REQUEST, provider, message=str(error)[:200])
        return classify_exception(provider, error)

    def model_of(self, item: ItemT) -> str | None:
        """The model an item calls, for ``group_by_model`` (``item["model"]`` or ``.model``)."""
        model = item.get("model") if isinstance(item, Mapping) else getattr(item, "model", None)
        return model if isinstance(model, str) else None

    # Statistics ------------------------------------------------------------------------------

    @property
    def processed(self) -> int:
        """Items finished (succeeded or failed), over every batch of this processor."""
        return self._counts["processed"]

    @property
    def succeeded(self) -> int:
        """Items that succeeded."""
        return self._counts["succeeded"]

    @property
    def failed(self) -> int:
        """Items that failed finally."""
        return self._counts["failed"]

    @property
    def retries(self) -> int:
        """Tries after the first, over all items."""
        return self._counts["retries"]

    @property
    def skipped(self) -> int:
        """Items never started because their batch was stopped."""
        return self._counts["skipped"]

    @property
    def concurrency(self) -> int:
        """The concurrency in force (below the maximum after rate limits, when adaptive)."""
        return self._concurrency.current

    # Running ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the running batches gracefully: no new item starts; started ones finish."""
        for run in list(self._runs):
            run.stop()

    async def process(self, items: Iterable[ItemT]) -> list[BatchResult[ItemT, ResultT]]:
        """Process every item; one result per item, in input order."""
        listed = list(items)
        found: dict[int, BatchResult[ItemT, ResultT]] = {}
        async with aclosing(self.stream(listed)) as results:
            async for result in results:
                found[result.index] = result
        return self._in_order(listed, found)

    def process_sync(self, items: Iterable[ItemT]) -> list[BatchResult[ItemT, ResultT]]:
        """:meth:`process` from synchronous code, on ``max_concurrent_requests`` threads."""
        listed = list(items)
        found: dict[int, BatchResult[ItemT, ResultT]] = {}
        with closing(self.stream_sync(listed)) as results:
            for result in results:
                found[result.index] = result
        return self._in_order(listed, found)

    async def stream(
        self, items: Iterable[ItemT] | AsyncIterable[ItemT]
    ) -> AsyncGenerator[BatchResult[ItemT, ResultT], None]:
        """Yield each item's result as it finishes, consuming ``items`` lazily.

        At most the concurrency's worth of items are taken from ``items`` ahead of their
        results (all of them first with ``group_by_model``, which must see every model).
        Closing the iterator early (``aclose()``, ``break`` inside ``contextlib.aclosing``,
        cancellation) cancels the items in flight and waits for them.
        """
        run = _Run()
        scheduler = _Scheduler(self, run, await self._source(items))
        self._runs.add(run)
        try:
            while (results := await scheduler.step()) is not None:
                for result in results:
                    yield result
        finally:
            self._runs.discard(run)
            await scheduler.close()

    def stream_sync(
        self, items: Iterable[ItemT]
    ) -> Generator[BatchResult[ItemT, ResultT], None, None]:
        """:meth:`stream` from synchronous code, on ``max_concurrent_requests`` threads.

        Closing the generator early starts no new item and waits for those in flight
        (threads cannot be cancelled).
        """
        run = _Run()
        pairs = self._pairs(items)
        pool = ThreadPoolExecutor(self.config.max_concurrent_requests, "quotaflow-batch")
        futures: set[Future[BatchResult[ItemT, ResultT]]] = set()
        self._runs.add(run)
        try:
            while True:
                while not run.stopping and len(futures) < self._concurrency.current:
                    pair = next(pairs, None)
                    if pair is None:
                        break
                    futures.add(pool.submit(self._run_item_sync, run, *pair))
                if not futures:
                    return
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                yield from sorted((f.result() for f in done), key=_index)
        finally:
            self._runs.discard(run)
            pool.shutdown(wait=True, cancel_futures=True)

    # One item --------------------------------------------------------------------------------

    async def _run_item(self, run: _Run, index: int, item: ItemT) -> BatchResult[ItemT, ResultT]:
        start, attempts = self._clock(), 0
        while True:
            attempts += 1
            generation = self._concurrency.generation
            try:
                result = await self.process_item(item)
            except Exception as error:  # noqa: BLE001 (an item's failure is its result)
                delay = self._retry_delay(error, attempts, generation)
                if delay is None:
                    return self._failure(run, index, item, error, attempts, start)
                await self._sleep_async(delay)
            else:
                return self._success(index, item, result, attempts, start)

    def _run_item_sync(self, run: _Run, index: int, item: ItemT) -> BatchResult[ItemT, ResultT]:
        start, attempts = self._clock(), 0
        while True:
            attempts += 1
            generation = self._concurrency.generation
            try:
                result = self.process_item_sync(item)
            except Exception as error:  # noqa: BLE001 (an item's failure is its result)
                delay = self._retry_delay(error, attempts, generation)
                if delay is None:
                    return self._failure(run, index, item, error, attempts, start)
                self._sleep_sync(delay)
            else:
                return self._success(index, item, result, attempts, start)

    def _retry_delay(self, error: Exception, attempts: int, generation: int) -> float | None:
        """The wait before the next try, or ``None`` when the item has failed finally."""
        found = self.classify(error)
        if found is not None and found.kind is ErrorKind.RATE_LIMITED:
            self._concurrency.on_rate_limited(generation)
        if attempts > self.config.max_retries_per_item or not self.is_retryable(error):
            return None
        self._count("retries")
        return self.config.retry_wait(attempts, self._random())

    def _success(
        self, index: int, item: ItemT, result: ResultT, attempts: int, start: float
    ) -> BatchResult[ItemT, ResultT]:
        self._concurrency.on_success()
        self._count("processed", "succeeded")
        return BatchResult(index, item, result, None, None, attempts, self._since(start), "ok")

    def _failure(
        self, run: _Run, index: int, item: ItemT, error: Exception, attempts: int, start: float
    ) -> BatchResult[ItemT, ResultT]:
        self._count("processed", "failed")
        if self.config.stop_on_first_error:
            run.stop()
        found = self.classify(error)
        error_class = found.kind.value if found is not None else type(error).__name__
        duration = self._since(start)
        return BatchResult(index, item, None, error, error_class, attempts, duration, "failed")

    def _skip(self, index: int, item: ItemT) -> BatchResult[ItemT, ResultT]:
        self._count("skipped")
        return BatchResult(index, item, None, None, None, 0, 0.0, "skipped")

    # Helpers ---------------------------------------------------------------------------------

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counts[name] += 1

    def _since(self, start: float) -> float:
        return max(0.0, self._clock() - start)

    async def _sleep_async(self, delay: float) -> None:
        if self._sleep is None:
            await asyncio.sleep(delay)
            return
        waited = self._sleep(delay)
        if inspect.isawaitable(waited):
            await waited

    def _sleep_sync(self, delay: float) -> None:
        if self._sleep is None:
            time.sleep(delay)
            return
        waited = self._sleep(delay)
        if inspect.isawaitable(waited):
            if inspect.iscoroutine(waited):
                waited.close()
            raise ConfigurationError(
                f"the sleep given to {type(self).__name__} is async; the sync methods need a "
                "sync one (or none)"
            )

    def _classify_response(self, error: httpx.HTTPStatusError) -> ErrorClass | None:
        response = error.response
        if not 400 <= response.status_code <= 599:  # noqa: PLR2004 (HTTP error statuses)
            return None
        provider = self.provider
        if provider is None:
            url = error.request.url
            route = route_request("POST", url.host, url.path, b"", None)
            provider = route.provider if route is not None else Provider.GENERIC
        try:
            body: bytes | None = response.content
        except httpx.ResponseNotRead:
            body = None
        return classify_error(provider, response.status_code, response.headers, body)

    def _pairs(self, items: Iterable[ItemT]) -> Iterator[_Pair[ItemT]]:
        if not self.config.group_by_model:
            return enumerate(items)
        return iter(self._grouped(list(enumerate(items))))

    def _grouped(self, pairs: list[_Pair[ItemT]]) -> list[_Pair[ItemT]]:
        """The items model by model, in the order of the models' first appearance."""
        rank: dict[str | None, int] = {}
        keys = [rank.setdefault(self.model_of(item), len(rank)) for _, item in pairs]
        order = sorted(range(len(pairs)), key=keys.__getitem__)
        return [pairs[i] for i in order]

    async def _source(self, items: Iterable[ItemT] | AsyncIterable[ItemT]) -> _Source[ItemT]:
        if not isinstance(items, AsyncIterable):
            return _Source(self._pairs(items), None)
        if not self.config.group_by_model:
            return _Source(None, aiter(items))
        listed = [item async for item in items]
        return _Source(iter(self._grouped(list(enumerate(listed)))), None)

    def _in_order(
        self, items: list[ItemT], found: dict[int, BatchResult[ItemT, ResultT]]
    ) -> list[BatchResult[ItemT, ResultT]]:
        return [found.get(i) or self._skip(i, item) for i, item in enumerate(items)]


class _Scheduler(Generic[ItemT, ResultT]):
    """The async loop of one batch: starts items while there is room, collects results.

    An async input is read by a task of its own, so results keep flowing while it waits for
    its next item; a stop cancels that read.
    """

    def __init__(
        self, processor: BatchProcessor[ItemT, ResultT], run: _Run, source: _Source[ItemT]
    ) -> None:
        self._processor = processor
        self._run = run
        self._source = source
        self._tasks: set[asyncio.Task[BatchResult[ItemT, ResultT]]] = set()
        self._pull: asyncio.Task[_Pair[ItemT] | None] | None = None
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
        return results + sorted((task.result() for task in finished), key=_index)

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
        pull, self._pull = self._pull, None
        pair = None if pull is None or pull.cancelled() else pull.result()
        if pair is None:
            self._source.exhausted = True
            return []
        if self._run.stopping:
            return [self._processor._skip(*pair)]  # noqa: SLF001
        self._start(pair)
        return []

    def _start(self, pair: _Pair[ItemT]) -> None:
        run_item = self._processor._run_item  # noqa: SLF001
        self._tasks.add(asyncio.ensure_future(run_item(self._run, *pair)))


class _Run:
    """One batch in progress: whether it is stopping, and how to wake its scheduler."""

    __slots__ = ("stopping", "wake")

    def __init__(self) -> None:
        self.stopping = False
        self.wake: Callable[[], None] | None = None

    def stop(self) -> None:
        self.stopping = True
        if self.wake is not None:
            self.wake()


class _Concurrency:
    """The concurrency in force: the maximum, or adapted by AIMD after rate-limit errors.

    A rate-limit error halves it (down to the minimum) once per decrease: errors of tries
    started before the last decrease were sent at the old concurrency and are not counted
    again. Every ``current`` consecutive successes add one back, up to the maximum.
    """

    def __init__(self, config: BatchConfig) -> None:
        self._adaptive = config.adaptive_concurrency
        self._min = config.min_concurrent_requests
        self._max = config.max_concurrent_requests
        self.current = self._max
        self.generation = 0
        self._successes = 0
        self._lock = threading.Lock()

    def on_success(self) -> None:
        if not self._adaptive:
            return
        with self._lock:
            self._successes += 1
            if self._successes >= self.current:
                self._successes = 0
                self.current = min(self._max, self.current + 1)

    def on_rate_limited(self, generation: int) -> None:
        if not self._adaptive:
            return
        with self._lock:
            if generation != self.generation:
                return
            self.generation += 1
            self._successes = 0
            self.current = max(self._min, self.current // 2)


class _Source(Generic[_T]):
    """A batch's items with their index, taken one at a time from a sync or async input."""

    def __init__(self, pairs: Iterator[_Pair[_T]] | None, items: AsyncIterator[_T] | None) -> None:
        self._pairs = pairs
        self._items = items
        self._taken = 0
        self.exhausted = False

    @property
    def is_async(self) -> bool:
        return self._items is not None

    def next_sync(self) -> _Pair[_T] | None:
        pair = next(self._pairs, None) if self._pairs is not None else None
        self.exhausted = pair is None
        return pair

    async def next_async(self) -> _Pair[_T] | None:
        if self._items is None:
            return None
        try:
            item = await anext(self._items)
        except StopAsyncIteration:
            return None
        index, self._taken = self._taken, self._taken + 1
        return index, item


def _index(result: BatchResult[Any, Any]) -> int:
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
