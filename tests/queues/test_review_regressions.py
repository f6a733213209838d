"""Regressions found by review: each test failed before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quotaflow import Limiter
from quotaflow.queue import (
    ModelConfig,
    QueueManager,
    QueueRequest,
    RateLimiterConfig,
    RateLimiterType,
    RequestStatus,
)
from quotaflow.testing import FakeClock, let_tasks_run

pytestmark = pytest.mark.asyncio


async def echo(request: QueueRequest[Any]) -> Any:
    return request.params


async def used(manager: QueueManager[Any, Any], metric: str) -> int:
    info = await manager.get_queue_info("m")
    return next(s.used for s in info.limits.limits if str(s.metric) == metric)


async def test_a_report_right_after_submit_is_charged_not_lost(clock: FakeClock) -> None:
    """With the default timeout the estimate is being settled: the report is late, not lost."""
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    await manager.register_queue(ModelConfig("m", tpm=10_000), echo)
    request = QueueRequest("m", "x", estimated_input_tokens=100, estimated_output_tokens=100)
    response = await manager.submit(request)
    assert not await manager.update_token_usage("m", request.id, 100, 3_000)
    await let_tasks_run(50)
    assert await used(manager, "tokens") == 3_100
    assert (response.input_tokens_used, response.output_tokens_used) == (100, 3_000)
    await manager.shutdown()


@pytest.mark.parametrize("turns", range(4))
async def test_a_shutdown_timeout_before_a_processor_starts_answers_and_releases(
    clock: FakeClock, turns: int
) -> None:
    limiter = Limiter({}, clock=clock)
    manager: QueueManager[int, int] = QueueManager(limiter=limiter, clock=clock)

    async def stuck(_: QueueRequest[int]) -> int:
        await asyncio.Event().wait()
        return 0

    one_per_second = RateLimiterConfig(RateLimiterType.RPM, 1, time_period=1.0)
    await manager.register_queue(ModelConfig("m", [one_per_second], concurrent=5), stuck)
    first = manager.submit_nowait(QueueRequest("m", 0))
    second = manager.submit_nowait(QueueRequest("m", 1))
    await let_tasks_run(50)
    stopping = asyncio.ensure_future(manager.shutdown(timeout=1.5))
    await let_tasks_run(50)
    clock.advance(1.0)  # the second is admitted...
    for _ in range(turns):
        await asyncio.sleep(0)
    clock.advance(0.5)  # ...and the timeout comes before (or as) its processor starts
    await let_tasks_run(200)
    assert stopping.done()
    await stopping
    assert first.result().status is RequestStatus.CANCELLED
    assert second.result().status is RequestStatus.CANCELLED
    status = await limiter.status("queue:m")
    assert next(s.used for s in status.limits if str(s.metric) == "concurrent") == 0
    await limiter.aclose()


@pytest.mark.parametrize("turns", range(4))
async def test_a_caller_leaving_while_its_admission_is_called_off_is_dropped(
    clock: FakeClock, turns: int
) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    await manager.register_queue(ModelConfig("m", tpm=6_000, aging=None), echo)
    await manager.submit(QueueRequest("m", "first", estimated_input_tokens=6_000))
    low = manager.submit_nowait(QueueRequest("m", "low", estimated_input_tokens=5_000))
    await let_tasks_run(50)
    high = manager.submit_nowait(QueueRequest("m", "high", priority=5, estimated_input_tokens=10))
    for _ in range(turns):
        await asyncio.sleep(0)
    low.cancel()
    await let_tasks_run(50)
    clock.advance(0.1)
    await let_tasks_run(50)
    assert high.done()
    info = await manager.get_queue_info("m")
    assert (info.depth, info.cancelled) == (0, 1)
    await manager.shutdown(drain=False)


@pytest.mark.parametrize("bad", [(12.0, 30), (-1, 5), "12/30", (1, 2, 3)])
async def test_bad_usage_settles_at_the_estimate_and_frees_the_slot(
    clock: FakeClock, bad: object
) -> None:
    manager: QueueManager[int, dict[str, Any]] = QueueManager(clock=clock)

    async def call(_: QueueRequest[int]) -> dict[str, Any]:
        return {"usage": bad}

    await manager.register_queue(
        ModelConfig("m", concurrent=1, tpm=100_000), call, usage_of=lambda r: r["usage"]
    )
    first = await manager.submit(
        QueueRequest("m", 1, estimated_input_tokens=10, estimated_output_tokens=10)
    )
    assert (first.input_tokens_used, first.output_tokens_used) == (None, None)
    second = await asyncio.wait_for(manager.submit(QueueRequest("m", 2)), 5)
    assert second.ok
    assert await used(manager, "tokens") == 20
    await manager.shutdown()


async def test_a_bad_actual_set_by_the_processor_settles_at_the_estimate(
    clock: FakeClock,
) -> None:
    manager: QueueManager[int, int] = QueueManager(clock=clock)

    async def call(request: QueueRequest[int]) -> int:
        request.actual_output_tokens = -5
        return 0

    await manager.register_queue(ModelConfig("m", concurrent=1, tpm=100_000), call)
    await manager.submit(QueueRequest("m", 1, estimated_output_tokens=40))
    await let_tasks_run(50)
    assert (await used(manager, "tokens"), await used(manager, "concurrent")) == (40, 0)
    await manager.shutdown()


async def test_a_period_the_engine_refuses_is_refused_by_the_model_config() -> None:
    from quotaflow import ConfigurationError  # noqa: PLC0415

    too_long = RateLimiterConfig(RateLimiterType.TPD, 10, time_period=400 * 86_400)
    with pytest.raises(ConfigurationError, match="366 days"):
        ModelConfig("m", [too_long])


async def test_a_manager_on_a_given_limiter_runs_on_its_clock(clock: FakeClock) -> None:
    limiter = Limiter({}, clock=clock)
    manager: QueueManager[str, str] = QueueManager(limiter=limiter)
    await manager.register_queue(ModelConfig("m", rpm=60), echo)
    doomed = QueueRequest("m", "x", deadline=clock.time() - 1)  # past on the fake clock only
    assert (await manager.submit(doomed)).status is RequestStatus.EXPIRED
    await manager.shutdown()
    await limiter.aclose()


async def test_the_last_ten_thousand_responses_are_remembered(clock: FakeClock) -> None:
    manager: QueueManager[int, int] = QueueManager(clock=clock)
    await manager.register_queue(ModelConfig("m", rpm=1_000_000), echo)
    requests = [QueueRequest("m", i) for i in range(10_001)]
    await asyncio.gather(*(manager.submit(r) for r in requests))
    await let_tasks_run(50)  # the last ones settle after answering
    known = [manager.get_status("m", r.id) for r in requests]
    assert known.count(RequestStatus.COMPLETED) == 10_000  # the one finished first is forgotten
    assert known.count(None) == 1
    await manager.shutdown()
