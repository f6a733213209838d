"""BatchProcessor: order, bounds, laziness, retries, stopping, grouping, adaptive concurrency.

Time never passes for real: the retry waits go to a fake sleep that advances a fake clock, and
items "work" by yielding to the event loop a given number of times.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from quotaflow import AcquireTimeoutError, ConfigurationError, QuotaExhaustedError
from quotaflow.batch import BatchConfig, BatchProcessor, BatchResult
from quotaflow.providers import ErrorClass, ErrorKind, Provider


@dataclass
class Job:
    name: str
    ticks: int = 0  # loop iterations the item takes
    errors: list[Exception] = field(default_factory=list)  # raised by the successive tries
    model: str | None = None
    stop: bool = False  # the item calls processor.stop()
    wait_stop: bool = False  # the item (sync) finishes only once the processor was stopped
    block: bool = False  # the item never finishes on its own


def status_error(
    status: int,
    url: str = "https://api.openai.com/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> Any:
    request = httpx.Request("POST", url)
    body = {"error": {"type": "requests", "code": "rate_limit_exceeded", "message": "slow"}}
    json = body if status == 429 else {}
    response = httpx.Response(status, request=request, json=json, headers=headers)
    return httpx.HTTPStatusError(f"status {status}", request=request, response=response)


def rate_limited() -> Exception:
    error: Exception = status_error(429)
    return error


class Jobs(BatchProcessor[Job, str]):
    """Runs jobs; records starts, the peak concurrency, waits and cancellations."""

    def __init__(self, config: BatchConfig | None = None, *, jitter: float = 0.0) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        super().__init__(
            config, sleep=self.fake_sleep, clock=lambda: self.now, random=lambda: jitter
        )
        self.started: list[str] = []
        self.concurrency_at_start: list[int] = []
        self.cancelled: list[str] = []
        self.active = 0
        self.peak = 0
        self._guard = threading.Lock()

    async def fake_sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay

    def _enter(self, job: Job) -> None:
        with self._guard:
            self.started.append(job.name)
            self.concurrency_at_start.append(self.concurrency)
            self.active += 1
            self.peak = max(self.peak, self.active)

    def _leave(self) -> None:
        with self._guard:
            self.active -= 1

    def _finish(self, job: Job) -> str:
        if job.stop:
            self.stop()
        if job.errors:
            raise job.errors.pop(0)
        return job.name.upper()

    async def process_item(self, item: Job) -> str:
        self._enter(item)
        try:
            for _ in range(item.ticks):
                await asyncio.sleep(0)
            if item.block:
                await asyncio.Event().wait()
            return self._finish(item)
        except asyncio.CancelledError:
            self.cancelled.append(item.name)
            raise
        finally:
            self._leave()


def jobs(*ticks: int) -> list[Job]:
    return [Job(f"j{i}", t) for i, t in enumerate(ticks)]


async def collect(stream: AsyncIterator[BatchResult[Job, str]]) -> list[BatchResult[Job, str]]:
    return [result async for result in stream]


# Configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("max_concurrent_requests", 0),
        ("max_concurrent_requests", -3),
        ("max_concurrent_requests", True),
        ("max_concurrent_requests", 2.0),
        ("max_retries_per_item", -1),
        ("max_retries_per_item", False),
        ("retry_delay", -0.5),
        ("retry_delay", math.nan),
        ("retry_delay", math.inf),
        ("retry_delay", "1"),
        ("stop_on_first_error", 1),
        ("group_by_model", None),
        ("adaptive_concurrency", "yes"),
        ("min_concurrent_requests", 0),
        ("min_concurrent_requests", 17),  # above max_concurrent_requests (16)
    ],
)
def test_bad_config_values_name_the_field_and_the_value(field_name: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field_name) as raised:
        BatchConfig(**{field_name: value})  # type: ignore[arg-type]
    assert repr(value) in str(raised.value)


def test_config_defaults_and_retry_waits() -> None:
    config = BatchConfig()
    assert (config.max_concurrent_requests, config.max_retries_per_item, config.retry_delay) == (
        16, 2, 1.0,
    )  # fmt: skip
    assert not config.stop_on_first_error
    assert not config.group_by_model
    assert not config.adaptive_concurrency
    with pytest.raises(ConfigurationError, match="config must be a BatchConfig"):
        Jobs({"max_concurrent_requests": 2})  # type: ignore[arg-type]


# Order, bounds, laziness ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_process_keeps_input_order_and_stream_yields_in_completion_order() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=4))
    results = await processor.process(jobs(6, 1, 3, 0))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.result for r in results] == ["J0", "J1", "J2", "J3"]
    assert all(r.success and r.status == "ok" and r.attempts == 1 for r in results)
    assert all(r.error is None and r.error_class is None for r in results)

    streamed = await collect(Jobs(BatchConfig(max_concurrent_requests=4)).stream(jobs(12, 4, 8, 0)))
    assert [r.index for r in streamed] == [3, 1, 2, 0]
    assert (processor.processed, processor.succeeded, processor.failed) == (4, 4, 0)


@pytest.mark.asyncio
async def test_in_flight_items_never_exceed_the_limit() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=3))
    results = await processor.process(jobs(*[i % 4 for i in range(25)]))
    assert processor.peak == 3
    assert len(results) == 25
    assert all(r.success for r in results)


@pytest.mark.asyncio
async def test_stream_takes_items_lazily_from_an_endless_generator() -> None:
    pulled = 0

    def endless() -> Iterator[Job]:
        nonlocal pulled
        while True:
            pulled += 1
            yield Job(f"j{pulled}", ticks=1 + pulled % 3)

    processor = Jobs(BatchConfig(max_concurrent_requests=4))
    received = 0
    async with aclosing(processor.stream(endless())) as results:
        async for _ in results:
            received += 1
            assert pulled <= received + 4  # never more than the limit taken ahead
            if received == 50:
                break
    assert processor.peak == 4
    assert processor.active == 0  # the items in flight were cancelled and awaited


@pytest.mark.asyncio
async def test_stream_reads_an_async_iterable_and_counts_its_items() -> None:
    pulled = 0

    async def source() -> AsyncIterator[Job]:
        nonlocal pulled
        for i in range(12):
            pulled += 1
            await asyncio.sleep(0)
            yield Job(f"j{i}", ticks=10 + (5 - i) % 4)

    processor = Jobs(BatchConfig(max_concurrent_requests=3))
    seen: list[BatchResult[Job, str]] = []
    async for result in processor.stream(source()):
        assert pulled <= len(seen) + 1 + 3
        seen.append(result)
    assert sorted(r.index for r in seen) == list(range(12))
    assert all(r.item.name == f"j{r.index}" for r in seen)
    assert processor.peak == 3


@pytest.mark.asyncio
async def test_closing_the_stream_cancels_the_items_in_flight() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=3))
    items = [Job("quick"), Job("stuck1", block=True), Job("stuck2", block=True), Job("never")]
    stream = processor.stream(items)
    first = await anext(stream)
    assert first.item.name == "quick"
    await stream.aclose()
    assert sorted(processor.cancelled) == ["stuck1", "stuck2"]
    assert "never" not in processor.started
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.asyncio
async def test_cancelling_the_consumer_cancels_the_items_in_flight() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=2))
    consumer = asyncio.ensure_future(
        processor.process([Job("a", block=True), Job("b", block=True)])
    )
    for _ in range(5):
        await asyncio.sleep(0)
    assert processor.active == 2
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert sorted(processor.cancelled) == ["a", "b"]
    assert asyncio.all_tasks() == {asyncio.current_task()}


# Retries -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_retryable_failures_are_retried_with_doubling_jittered_waits() -> None:
    processor = Jobs(BatchConfig(max_retries_per_item=3, retry_delay=2.0), jitter=0.5)
    job = Job("flaky", errors=[httpx.ConnectError("refused"), status_error(500), status_error(429)])
    [result] = await processor.process([job])
    assert result.success
    assert result.attempts == 4
    assert processor.sleeps == [1.75, 3.5, 7.0]  # 2, 4, 8 s less 12.5% (jitter 0.5 of 25%)
    assert result.duration == pytest.approx(12.25)  # the fake clock moved with the waits
    assert processor.retries == 3


@pytest.mark.parametrize(
    ("retry_delay", "jitter", "waits"),
    [
        (1.0, 0.0, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),  # doubled, capped at 30 s
        (1.0, 1.0, [0.75, 1.5, 3.0, 6.0, 12.0, 22.5, 22.5]),  # the most jitter: 25% less
        (2.0, 0.5, [1.75, 3.5, 7.0, 14.0, 26.25, 26.25, 26.25]),
        (100.0, 0.0, [30.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0]),
        (0.0, 0.5, [0.0] * 7),
    ],
)
@pytest.mark.asyncio
async def test_the_retry_schedule_without_a_server_hint(
    retry_delay: float, jitter: float, waits: list[float]
) -> None:
    processor = Jobs(BatchConfig(max_retries_per_item=7, retry_delay=retry_delay), jitter=jitter)
    errors: list[Exception] = [httpx.ReadTimeout("slow") for _ in range(7)]
    [result] = await processor.process([Job("x", errors=errors)])
    assert (result.success, result.attempts) == (True, 8)
    assert processor.sleeps == waits


@pytest.mark.asyncio
async def test_a_server_retry_hint_replaces_the_schedule_and_jitter_only_lengthens_it() -> None:
    processor = Jobs(BatchConfig(max_retries_per_item=5, retry_delay=1.0), jitter=0.5)
    errors: list[Exception] = [
        status_error(429, headers={"retry-after": "7"}),
        status_error(503, headers={"retry-after": "120"}),  # longer than the 30 s cap
        status_error(500),  # no hint: the schedule, at the third retry
        status_error(429, headers={"retry-after-ms": "1500"}),
        status_error(503, headers={"retry-after": "1000"}),  # capped where read (5 minutes)
    ]
    [result] = await processor.process([Job("x", errors=errors)])
    assert (result.success, result.attempts) == (True, 6)
    # hint + min(hint, 30) * 25% * 0.5; 4 s less 12.5%.
    assert processor.sleeps == [7.875, 123.75, 3.5, 1.6875, 303.75]


@pytest.mark.asyncio
async def test_retries_stop_after_max_retries_per_item() -> None:
    processor = Jobs(BatchConfig(max_retries_per_item=2, retry_delay=20.0))
    errors: list[Exception] = [httpx.ReadTimeout("slow") for _ in range(5)]
    [result] = await processor.process([Job("down", errors=errors)])
    assert (result.status, result.attempts, result.error_class) == ("failed", 3, "timeout")
    assert isinstance(result.error, httpx.ReadTimeout)
    assert result.result is None
    assert processor.sleeps == [20.0, 30.0]  # capped at 30 s
    assert (processor.failed, processor.retries) == (1, 2)


@pytest.mark.parametrize(
    ("error", "error_class", "attempts"),
    [
        (ValueError("bad"), "ValueError", 1),
        (TypeError("bad"), "TypeError", 1),
        (ConfigurationError("bad option"), "invalid_request", 1),
        (KeyError("x"), "KeyError", 1),
        (status_error(400), "invalid_request", 1),
        (QuotaExhaustedError("openai:gpt", 0.0, "insufficient_quota"), "quota_exhausted", 1),
        (status_error(503), "overloaded", 2),
        (status_error(529, "https://api.anthropic.com/v1/messages"), "overloaded", 2),
        (AcquireTimeoutError(1.0, None), "AcquireTimeoutError", 2),
    ],
)
@pytest.mark.asyncio
async def test_errors_are_classified_and_only_transient_ones_retried(
    error: Exception, error_class: str, attempts: int
) -> None:
    processor = Jobs(BatchConfig(max_retries_per_item=1))
    [result] = await processor.process([Job("x", errors=[error, error])])
    assert (result.status, result.error_class, result.attempts) == ("failed", error_class, attempts)
    assert result.error is error
    assert len(processor.sleeps) == attempts - 1


@pytest.mark.asyncio
async def test_the_retry_decision_can_be_overridden() -> None:
    class Stubborn(Jobs):
        def is_retryable(self, error: BaseException) -> bool:
            return isinstance(error, KeyError)

    processor = Stubborn(BatchConfig(retry_delay=0.5))
    [result] = await processor.process([Job("x", errors=[KeyError("k")])])
    assert (result.success, result.attempts, processor.sleeps) == (True, 2, [0.5])

    class Cautious(Jobs):
        def is_retryable(self, error: BaseException) -> bool:
            return not isinstance(error, httpx.ConnectError) and super().is_retryable(error)

    cautious = Cautious(BatchConfig(retry_delay=0.5))
    errors: list[Exception] = [status_error(500), httpx.ConnectError("x")]
    [result] = await cautious.process([Job("x", errors=errors)])
    assert (result.status, result.attempts, result.error_class) == ("failed", 2, "network")
    assert cautious.sleeps == [0.5]

    # An instance attribute counts as an override too.
    def never(error: BaseException) -> bool:
        del error
        return False

    plain = Jobs(BatchConfig(retry_delay=0.5))
    plain.is_retryable = never  # type: ignore[method-assign]
    [result] = await plain.process([Job("x", errors=[status_error(500)])])
    assert (result.status, result.attempts, plain.sleeps) == ("failed", 1, [])


class Classified(Jobs):
    """Classifies a ``KeyError`` as a retryable server error with a hint; counts the calls."""

    def __init__(self, config: BatchConfig) -> None:
        super().__init__(config)
        self.classified: list[BaseException] = []

    def classify(self, error: BaseException) -> ErrorClass | None:
        self.classified.append(error)
        if isinstance(error, KeyError):
            return ErrorClass(ErrorKind.SERVER_ERROR, Provider.GENERIC, retryable=True,
                              retry_after=2.0)  # fmt: skip
        return super().classify(error)


@pytest.mark.asyncio
async def test_each_failure_is_classified_once() -> None:
    processor = Classified(BatchConfig(max_retries_per_item=2))
    errors: list[Exception] = [status_error(500), KeyError("a"), KeyError("b")]
    [result] = await processor.process([Job("x", errors=list(errors))])
    assert processor.classified == errors  # once per failure, the retried ones included
    assert (result.status, result.attempts, result.error_class) == ("failed", 3, "server_error")
    assert processor.sleeps == [1.0, 2.0]  # the schedule, then the overriding class's hint


def test_each_failure_is_classified_once_sync() -> None:
    processor = Classified(BatchConfig(max_retries_per_item=1))
    processor._sleep = processor.sleeps.append

    def finish(item: Job) -> str:
        return processor._finish(item)  # raises the job's errors in turn

    processor.process_item_sync = finish  # type: ignore[method-assign]
    errors: list[Exception] = [KeyError("a"), ValueError("b")]
    [result] = processor.process_sync([Job("x", errors=list(errors))])
    assert processor.classified == errors
    assert (result.status, result.attempts, result.error_class) == ("failed", 2, "ValueError")
    assert processor.sleeps == [2.0]


# Stopping ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stop_on_first_error_lets_in_flight_items_finish_and_skips_the_rest() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=2, stop_on_first_error=True))
    items = [Job("bad", errors=[ValueError("no")]), Job("slow", ticks=5), *jobs(0, 0, 0)]
    results = await processor.process(items)
    assert [r.status for r in results] == ["failed", "ok", "skipped", "skipped", "skipped"]
    assert processor.started == ["bad", "slow"]
    skipped = results[2]
    assert (skipped.attempts, skipped.result, skipped.error, skipped.duration) == (0, None, None, 0)
    assert (processor.failed, processor.succeeded, processor.skipped) == (1, 1, 3)


@pytest.mark.asyncio
async def test_a_retried_failure_does_not_stop_the_batch() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=1, stop_on_first_error=True))
    results = await processor.process([Job("flaky", errors=[status_error(500)]), *jobs(0, 0)])
    assert [r.status for r in results] == ["ok", "ok", "ok"]


@pytest.mark.asyncio
async def test_stop_finishes_started_items_and_skips_the_others() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=3))
    items = [Job("a", ticks=4), Job("stopper", stop=True), Job("c", ticks=2), *jobs(0, 0, 0)]
    results = await processor.process(items)
    assert [r.status for r in results] == ["ok", "ok", "ok", "skipped", "skipped", "skipped"]
    # A new batch starts afresh.
    assert all(r.success for r in await processor.process(jobs(0, 0)))


@pytest.mark.asyncio
async def test_stop_ends_a_stream_waiting_for_its_async_input() -> None:
    async def trickle() -> AsyncIterator[Job]:
        yield Job("a")
        yield Job("b")
        await asyncio.Event().wait()  # the input has nothing more for now
        yield Job("never")  # pragma: no cover

    processor = Jobs(BatchConfig(max_concurrent_requests=4))
    seen: list[str] = []
    async for result in processor.stream(trickle()):
        seen.append(result.item.name)
        if len(seen) == 2:
            processor.stop()
    assert seen == ["a", "b"]
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.asyncio
async def test_stop_from_another_task_wakes_a_stream_waiting_for_its_input() -> None:
    async def trickle() -> AsyncIterator[Job]:
        yield Job("a")
        await asyncio.Event().wait()
        yield Job("never")  # pragma: no cover

    processor = Jobs(BatchConfig(max_concurrent_requests=4))
    seen: list[str] = []
    first = asyncio.Event()

    async def stop_when_idle() -> None:
        await first.wait()
        for _ in range(10):  # the stream is back to waiting for its input
            await asyncio.sleep(0)
        processor.stop()

    stopper = asyncio.ensure_future(stop_when_idle())
    async with asyncio.timeout(10):  # only a broken wake-up takes this long
        async for result in processor.stream(trickle()):
            seen.append(result.item.name)
            first.set()
    await stopper
    assert seen == ["a"]


@pytest.mark.asyncio
async def test_stop_from_another_thread_wakes_a_stream_waiting_for_its_input() -> None:
    idle = threading.Event()

    async def trickle() -> AsyncIterator[Job]:
        yield Job("a")
        idle.set()  # the stream now waits for its input, which has nothing more
        await asyncio.Event().wait()
        yield Job("never")  # pragma: no cover

    processor = Jobs(BatchConfig(max_concurrent_requests=4))

    def stop_when_idle() -> None:
        if idle.wait(timeout=10):
            processor.stop()

    stopper = threading.Thread(target=stop_when_idle)
    stopper.start()
    try:
        async with asyncio.timeout(10):  # only a broken wake-up takes this long
            seen = [result.item.name async for result in processor.stream(trickle())]
    finally:
        stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert seen == ["a"]
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.asyncio
async def test_an_item_read_as_the_stream_stops_is_yielded_as_skipped() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=4))

    async def source() -> AsyncIterator[Job]:
        yield Job("a")
        processor.stop()  # the stop comes while the next item is being read
        yield Job("b")
        yield Job("never")  # pragma: no cover

    results = sorted(await collect(processor.stream(source())), key=lambda r: r.index)
    assert [(r.index, r.item.name, r.status) for r in results] == [
        (0, "a", "ok"), (1, "b", "skipped"),
    ]  # fmt: skip
    assert processor.started == ["a"]
    assert processor.skipped == 1


# Grouping by model ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_group_by_model_starts_items_model_by_model_and_keeps_input_order() -> None:
    models = ["gpt", "claude", "gpt", None, "claude", "gpt"]
    items = [Job(f"j{i}", model=m) for i, m in enumerate(models)]
    processor = Jobs(BatchConfig(max_concurrent_requests=1, group_by_model=True))
    results = await processor.process(items)
    assert processor.started == ["j0", "j2", "j5", "j1", "j4", "j3"]
    assert [r.index for r in results] == list(range(6))
    assert [r.item.name for r in results] == [f"j{i}" for i in range(6)]

    streamed = await collect(processor.stream(items))
    assert [r.index for r in streamed] == [0, 2, 5, 1, 4, 3]


def test_model_of_reads_mappings_and_attributes() -> None:
    processor: BatchProcessor[Any, Any] = BatchProcessor()
    assert processor.model_of({"model": "gpt-4o"}) == "gpt-4o"
    assert processor.model_of({"messages": []}) is None
    assert processor.model_of(Job("x", model="claude")) == "claude"
    assert processor.model_of(42) is None


# Adaptive concurrency ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_rate_limits_halve_the_concurrency_once_per_wave() -> None:
    config = BatchConfig(max_concurrent_requests=8, adaptive_concurrency=True, retry_delay=0)
    processor = Jobs(config)
    items = [Job(f"j{i}", ticks=1, errors=[rate_limited()]) for i in range(8)]
    results = await processor.process(items)
    assert all(r.success and r.attempts == 2 for r in results)
    assert all(r.error_class is None for r in results)
    # Eight 429s from tries sent together halve it once (8 -> 4); then 4 successes add one.
    assert processor.concurrency == 5
    assert processor.retries == 8


@pytest.mark.asyncio
async def test_adaptive_concurrency_falls_to_the_floor_and_grows_back() -> None:
    config = BatchConfig(
        max_concurrent_requests=4, min_concurrent_requests=1, adaptive_concurrency=True,
        max_retries_per_item=0,
    )  # fmt: skip
    processor = Jobs(config)
    failing = [Job(f"f{i}", ticks=1, errors=[rate_limited()]) for i in range(8)]
    results = await processor.process(failing)
    assert {r.error_class for r in results} == {"rate_limited"}
    assert processor.concurrency == 1
    assert processor.concurrency_at_start[:4] == [4, 4, 4, 4]
    assert processor.peak == 4

    await processor.process(jobs(0))
    assert processor.concurrency == 2  # one success at 1
    await processor.process(jobs(0, 0))
    assert processor.concurrency == 3
    await processor.process(jobs(0, 0, 0))
    assert processor.concurrency == 4
    await processor.process(jobs(*[0] * 20))
    assert processor.concurrency == 4  # never above the maximum


@pytest.mark.asyncio
async def test_fewer_items_run_at_once_after_a_rate_limit() -> None:
    config = BatchConfig(max_concurrent_requests=6, adaptive_concurrency=True, retry_delay=0)
    processor = Jobs(config)
    items = [Job("limited", ticks=1, errors=[rate_limited()]), *jobs(*[2] * 5)]
    items += [Job(f"late{i}", ticks=3) for i in range(6)]
    await processor.process(items)
    assert processor.concurrency_at_start[:6] == [6] * 6
    late = [c for name, c in zip(processor.started, processor.concurrency_at_start, strict=True)
            if name.startswith("late")]  # fmt: skip
    assert late[0] == 4  # halved to 3, one back after three successes
    assert max(late) < 6


@pytest.mark.asyncio
async def test_concurrency_is_fixed_when_not_adaptive() -> None:
    processor = Jobs(BatchConfig(max_concurrent_requests=4, retry_delay=0))
    await processor.process([Job(f"j{i}", ticks=1, errors=[rate_limited()]) for i in range(8)])
    assert processor.concurrency == 4
    assert processor.peak == 4


# Synchronous ---------------------------------------------------------------------------------


class SyncJobs(Jobs):
    """Jobs on threads: a barrier proves that the items really run together."""

    def __init__(self, config: BatchConfig, *, together: int = 1) -> None:
        super().__init__(config)
        self.recorded: list[float] = []
        self._sleep = self.record_sleep
        self.barrier = threading.Barrier(together, timeout=10)
        self.stopped = threading.Event()

    def stop(self) -> None:
        super().stop()
        self.stopped.set()

    def record_sleep(self, delay: float) -> None:
        self.recorded.append(delay)

    def process_item_sync(self, item: Job) -> str:
        self._enter(item)
        try:
            if item.ticks:
                self.barrier.wait()
            if item.wait_stop:
                assert self.stopped.wait(timeout=10)
            return self._finish(item)
        finally:
            self._leave()


def test_process_sync_runs_on_threads_in_input_order() -> None:
    processor = SyncJobs(BatchConfig(max_concurrent_requests=3), together=3)
    results = processor.process_sync(jobs(*[1] * 9))
    assert [r.result for r in results] == [f"J{i}" for i in range(9)]
    assert processor.peak == 3  # three at a time: the barrier let them through together


def test_process_sync_retries_and_stops_on_first_error() -> None:
    config = BatchConfig(max_concurrent_requests=1, retry_delay=0.25, stop_on_first_error=True)
    processor = SyncJobs(config)
    items = [Job("flaky", errors=[httpx.ConnectError("x")]), Job("bad", errors=[ValueError()])]
    results = processor.process_sync([*items, *jobs(0, 0)])
    assert [r.status for r in results] == ["ok", "failed", "skipped", "skipped"]
    assert results[0].attempts == 2
    assert processor.recorded == [0.25]
    assert (processor.processed, processor.skipped) == (2, 2)


def test_stream_sync_can_be_stopped_and_closed() -> None:
    processor = SyncJobs(BatchConfig(max_concurrent_requests=2))
    items = [Job("a", wait_stop=True), Job("stopper", stop=True), *jobs(0, 0, 0)]
    names = [r.item.name for r in processor.stream_sync(items)]
    assert sorted(names) == ["a", "stopper"]

    stream = processor.stream_sync(iter(jobs(*[0] * 100)))
    next(stream)
    stream.close()
    assert processor.active == 0
    assert len(processor.started) < 2 + 10


def test_stop_from_another_thread_stops_a_sync_batch() -> None:
    processor = SyncJobs(BatchConfig(max_concurrent_requests=2), together=3)
    items = [Job("a", ticks=1, wait_stop=True), Job("b", ticks=1, wait_stop=True), *jobs(0, 0)]
    found: list[BatchResult[Job, str]] = []
    worker = threading.Thread(target=lambda: found.extend(processor.process_sync(items)))
    worker.start()
    try:
        processor.barrier.wait()  # both items run (on the pool's threads) and wait for the stop
        processor.stop()  # from this thread, while process_sync waits in the worker thread
    finally:
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert [r.status for r in found] == ["ok", "ok", "skipped", "skipped"]
    assert sorted(processor.started) == ["a", "b"]


def test_stop_from_another_thread_ends_stream_sync() -> None:
    processor = SyncJobs(BatchConfig(max_concurrent_requests=1), together=2)
    items = [Job("a", ticks=1, wait_stop=True), *jobs(0, 0)]

    def stop_once_started() -> None:
        processor.barrier.wait()  # the item runs (on the pool's thread) and waits for the stop
        processor.stop()

    stopper = threading.Thread(target=stop_once_started)
    stopper.start()
    try:
        names = [r.item.name for r in processor.stream_sync(items)]
    finally:
        stopper.join(timeout=10)
    assert not stopper.is_alive()
    assert names == ["a"]  # the item in flight finished; the others never started
    assert processor.started == ["a"]


def test_the_sync_methods_refuse_an_async_sleep() -> None:
    processor = Jobs(BatchConfig(retry_delay=0))

    def fail(item: Job) -> str:
        del item
        raise httpx.ConnectError("x")

    processor.process_item_sync = fail  # type: ignore[method-assign]
    with pytest.raises(ConfigurationError, match="sync"):
        processor.process_sync([Job("x")])


@pytest.mark.asyncio
async def test_unimplemented_item_methods_name_the_subclass_and_the_method() -> None:
    class Nothing(BatchProcessor[int, int]):
        pass

    with pytest.raises(NotImplementedError, match=r"Nothing must override process_item\(\)"):
        await Nothing().process_item(1)
    with pytest.raises(NotImplementedError, match=r"Nothing must override process_item_sync"):
        Nothing().process_item_sync(1)
    # Through a batch, the missing override is a failed item naming it.
    [result] = await Nothing().process([1])
    assert (result.status, result.error_class) == ("failed", "NotImplementedError")
