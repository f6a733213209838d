"""BatchProcessor: many items through one call each, bounded, retried, stoppable.

The async methods run the items as tasks, the sync ones on a pool of threads; both start an
item only when there is room under the (possibly adaptive) concurrency, so an input of any
size is consumed lazily and memory stays flat.
"""

from __future__ import annotations

import random as _random
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import aclosing, closing
from typing import Generic

import httpx

from quotaflow._errors import AcquireTimeoutError, ConfigurationError, QuotaExhaustedError
from quotaflow.batch._classify import classify
from quotaflow.batch._concurrency import AdaptiveConcurrency
from quotaflow.batch._config import MAX_RETRY_DELAY, RETRY_JITTER, BatchConfig
from quotaflow.batch._result import BatchResult, ItemT, ResultT
from quotaflow.batch._run import Run
from quotaflow.batch._scheduler import Scheduler, by_index
from quotaflow.batch._sleep import Sleep, sleep_async, sleep_sync
from quotaflow.batch._source import Pair, Source, grouped
from quotaflow.providers import ErrorClass, ErrorKind, Provider, backoff

__all__ = ["BatchProcessor", "Sleep"]


class BatchProcessor(Generic[ItemT, ResultT]):
    """Run :meth:`process_item` (or :meth:`process_item_sync`) over many items.

    Subclass it and override the item method; the batch methods add bounded concurrency,
    retries with backoff, stopping, grouping by model and, optionally, adaptive concurrency.

    Args:
        config: the batch options (default: ``BatchConfig()``).
        sleep: waits before retries (default: ``asyncio.sleep`` for the async methods,
            ``time.sleep`` for the sync ones); tests pass a fake.
        clock: seconds, for durations (default: ``time.monotonic``).
        random: a number in [0, 1) for the retry jitter (default: ``random.random``); passed to
            :func:`quotaflow.providers.backoff`.

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
        self._concurrency = AdaptiveConcurrency(self.config)
        self._runs: set[Run] = set()
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

        The batch classifies each failure once, with :meth:`classify`, and uses that class
        here unless this method is overridden (an override is called with the error alone).
        """
        return _retryable(error, self.classify(error))

    def classify(self, error: BaseException) -> ErrorClass | None:
        """The provider's class of an error, or ``None`` when it is not a provider failure."""
        return classify(error, self.provider)

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
        cancellation) cancels the items in flight and waits for them. After :meth:`stop`, the
        items in flight finish and the stream ends; an item read from an async input just as
        the stop came is yielded as ``"skipped"``.
        """
        run = Run()
        scheduler = Scheduler(self, run, await self._source(items))
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
        run = Run()
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
                yield from sorted((f.result() for f in done), key=by_index)
        finally:
            self._runs.discard(run)
            pool.shutdown(wait=True, cancel_futures=True)

    # One item --------------------------------------------------------------------------------

    async def _run_item(self, run: Run, index: int, item: ItemT) -> BatchResult[ItemT, ResultT]:
        start, attempts = self._clock(), 0
        while True:
            attempts += 1
            generation = self._concurrency.generation
            try:
                result = await self.process_item(item)
            except Exception as error:  # noqa: BLE001 (an item's failure is its result)
                found = self.classify(error)
                delay = self._retry_delay(error, found, attempts, generation)
                if delay is None:
                    return self._failure(run, index, item, error, found, attempts, start)
                await sleep_async(self._sleep, delay)
            else:
                return self._success(index, item, result, attempts, start)

    def _run_item_sync(self, run: Run, index: int, item: ItemT) -> BatchResult[ItemT, ResultT]:
        start, attempts = self._clock(), 0
        while True:
            attempts += 1
            generation = self._concurrency.generation
            try:
                result = self.process_item_sync(item)
            except Exception as error:  # noqa: BLE001 (an item's failure is its result)
                found = self.classify(error)
                delay = self._retry_delay(error, found, attempts, generation)
                if delay is None:
                    return self._failure(run, index, item, error, found, attempts, start)
                sleep_sync(self._sleep, delay, type(self).__name__)
            else:
                return self._success(index, item, result, attempts, start)

    def _retry_delay(
        self, error: Exception, found: ErrorClass | None, attempts: int, generation: int
    ) -> float | None:
        """The wait before the next try, or ``None`` when the item has failed finally.

        ``found`` is the error's class, from :meth:`classify`; a server's retry hint in it
        replaces the exponential schedule (see :func:`quotaflow.providers.backoff`).
        """
        if found is not None and found.kind is ErrorKind.RATE_LIMITED:
            self._concurrency.on_rate_limited(generation)
        if attempts > self.config.max_retries_per_item or not self._is_retryable(error, found):
            return None
        self._count("retries")
        return backoff(
            attempts - 1,
            hint=found.retry_after if found is not None else None,
            base=self.config.retry_delay,
            cap=MAX_RETRY_DELAY,
            jitter=RETRY_JITTER,
            random=self._random,
        )

    def _is_retryable(self, error: Exception, found: ErrorClass | None) -> bool:
        """:meth:`is_retryable`, with the class already found unless it is overridden."""
        if getattr(self.is_retryable, "__func__", None) is BatchProcessor.is_retryable:
            return _retryable(error, found)
        return self.is_retryable(error)

    def _success(
        self, index: int, item: ItemT, result: ResultT, attempts: int, start: float
    ) -> BatchResult[ItemT, ResultT]:
        self._concurrency.on_success()
        self._count("processed", "succeeded")
        return BatchResult(index, item, result, None, None, attempts, self._since(start), "ok")

    def _failure(
        self,
        run: Run,
        index: int,
        item: ItemT,
        error: Exception,
        found: ErrorClass | None,
        attempts: int,
        start: float,
    ) -> BatchResult[ItemT, ResultT]:
        self._count("processed", "failed")
        if self.config.stop_on_first_error:
            run.stop()
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

    def _pairs(self, items: Iterable[ItemT]) -> Iterator[Pair[ItemT]]:
        if not self.config.group_by_model:
            return enumerate(items)
        return iter(grouped(list(enumerate(items)), self.model_of))

    async def _source(self, items: Iterable[ItemT] | AsyncIterable[ItemT]) -> Source[ItemT]:
        if not isinstance(items, AsyncIterable):
            return Source(self._pairs(items), None)
        if not self.config.group_by_model:
            return Source(None, aiter(items))
        listed = [item async for item in items]
        return Source(iter(grouped(list(enumerate(listed)), self.model_of)), None)

    def _in_order(
        self, items: list[ItemT], found: dict[int, BatchResult[ItemT, ResultT]]
    ) -> list[BatchResult[ItemT, ResultT]]:
        return [found.get(i) or self._skip(i, item) for i, item in enumerate(items)]


def _retryable(error: BaseException, found: ErrorClass | None) -> bool:
    """The default retry decision (:meth:`BatchProcessor.is_retryable`), given the class."""
    if isinstance(error, ValueError | TypeError | QuotaExhaustedError):
        return False
    if isinstance(error, AcquireTimeoutError | httpx.TransportError):
        return True
    return found is not None and found.retryable
