"""The queue manager on a fake clock: admission under every limit, priorities, usage, drain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quotaflow import CapacityExceededError, ConfigurationError, Limiter
from quotaflow.queue import (
    ModelConfig,
    ModelNotRegisteredError,
    QueueClosedError,
    QueueFullError,
    QueueInfo,
    QueueManager,
    QueueRequest,
    QueueResponse,
    RateLimiterConfig,
    RateLimiterType,
    RequestStatus,
)
from quotaflow.testing import FakeClock, let_tasks_run

pytestmark = pytest.mark.asyncio

#: A bucket of one request refilled every second: a rate that binds from the first call.
ONE_PER_SECOND = [RateLimiterConfig(RateLimiterType.RPM, 1, time_period=1.0)]


async def echo(request: QueueRequest[Any]) -> Any:
    return request.params


def used(info: QueueInfo, metric: str) -> int:
    return next(s.used for s in info.limits.limits if str(s.metric) == metric)


def tokens_used(response: QueueResponse[Any]) -> tuple[int | None, int | None]:
    return response.input_tokens_used, response.output_tokens_used


async def settle_all(rounds: int = 3) -> None:
    for _ in range(rounds):
        await let_tasks_run(30)


async def test_a_request_runs_and_reports_its_usage_and_times(clock: FakeClock) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)

    async def work(request: QueueRequest[str]) -> str:
        request.actual_input_tokens = 90
        request.actual_output_tokens = 40
        return request.params.upper()

    await manager.register_queue(ModelConfig("m", rpm=60, tpm=10_000), work)
    response = await manager.submit(
        QueueRequest("m", "hi", estimated_input_tokens=100, estimated_output_tokens=500)
    )
    assert response.status is RequestStatus.COMPLETED
    assert response.ok
    assert response.result == "HI"
    assert (response.input_tokens_used, response.output_tokens_used) == (90, 40)
    assert response.wait_time == 0.0
    await settle_all()
    info = await manager.get_queue_info("m")
    assert used(info, "tokens") == 130  # settled with the actual usage
    assert (info.completed, info.depth, info.in_flight) == (1, 0, 0)
    await manager.shutdown()


async def test_every_limit_of_the_model_admits_in_one_step(clock: FakeClock) -> None:
    manager: QueueManager[int, int] = QueueManager(clock=clock)
    config = ModelConfig(
        "m",
        rate_limiters=[
            RateLimiterConfig(RateLimiterType.RPM, 60),  # one per second
            RateLimiterConfig(RateLimiterType.TPM, 6_000),  # 100 tokens per second
        ],
    )
    await manager.register_queue(config, echo)
    futures = [
        manager.submit_nowait(QueueRequest("m", i, estimated_input_tokens=3_000)) for i in range(4)
    ]
    await settle_all()
    assert [f.done() for f in futures] == [True, True, False, False]  # the tokens bind
    clock.advance(29.9)
    await settle_all()
    assert not futures[2].done()
    clock.advance(0.1)
    await settle_all()
    assert futures[2].done()
    assert futures[2].result().wait_time == pytest.approx(30.0)
    clock.advance(30)
    await settle_all()
    assert [f.result().result for f in futures] == [0, 1, 2, 3]
    await manager.shutdown()


async def test_a_later_high_priority_request_overtakes_a_waiting_low_one(
    clock: FakeClock,
) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    await manager.register_queue(ModelConfig("m", ONE_PER_SECOND, aging=None), echo)
    first = manager.submit_nowait(QueueRequest("m", "first"))
    low = manager.submit_nowait(QueueRequest("m", "low", priority=0))
    await settle_all()
    high = manager.submit_nowait(QueueRequest("m", "high", priority=5))
    await settle_all()
    assert first.done()
    assert not low.done()
    assert not high.done()
    clock.advance(1.0)
    await settle_all()
    assert high.done()
    assert not low.done()  # displaced, not admitted
    clock.advance(1.0)
    await settle_all()
    assert low.done()
    info = await manager.get_queue_info("m")
    assert info.completed == 3
    await manager.shutdown()


@pytest.mark.parametrize("aging", [2.0, None])
async def test_aging_keeps_a_low_priority_request_from_starving(
    clock: FakeClock, aging: float | None
) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    order: list[str] = []

    async def note(request: QueueRequest[str]) -> str:
        order.append(request.params)
        return request.params

    await manager.register_queue(ModelConfig("m", ONE_PER_SECOND, aging=aging), note)
    await manager.submit(QueueRequest("m", "first"))  # the bucket is empty from now on
    manager.submit_nowait(QueueRequest("m", "low", priority=0))
    for second in range(12):  # a fresh priority-3 request every second, one admitted per second
        manager.submit_nowait(QueueRequest("m", f"high{second}", priority=3))
        await settle_all()
        clock.advance(1.0)
        await settle_all()
    if aging is None:
        assert "low" not in order  # starved by the steady stream of higher priorities
    else:
        # At 7 s its effective priority (3.5) ties the oldest waiting newcomer's: it goes.
        assert order.index("low") == 7
    await manager.shutdown(drain=False)


async def test_the_low_class_gets_its_minimum_share_under_saturation(clock: FakeClock) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    config = ModelConfig("m", ONE_PER_SECOND, aging=None, min_share={0: 0.25})
    await manager.register_queue(config, echo)
    order: list[int] = []

    async def note(request: QueueRequest[str]) -> str:
        order.append(request.priority)
        return request.params

    manager.queue("m")._processor = note
    for i in range(40):
        manager.submit_nowait(QueueRequest("m", f"low{i}", priority=0))
        manager.submit_nowait(QueueRequest("m", f"high{i}", priority=1))
    for _ in range(40):
        await settle_all()
        clock.advance(1.0)
    await settle_all()
    low = order[:40].count(0) / 40
    assert 0.2 <= low <= 0.3  # a turn every fourth admission, once earned
    await manager.shutdown(drain=False)


async def test_a_deadline_expires_a_waiting_request(clock: FakeClock) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    one_per_ten = RateLimiterConfig(RateLimiterType.RPM, 1, time_period=10.0)
    await manager.register_queue(ModelConfig("m", [one_per_ten]), echo)
    await manager.submit(QueueRequest("m", "first"))
    blocked = manager.submit_nowait(QueueRequest("m", "second"))
    doomed = manager.submit_nowait(QueueRequest("m", "third", deadline=clock.time() + 5))
    hopeless = manager.submit_nowait(QueueRequest("m", "fourth", priority=9,
                                                 deadline=clock.time() + 3))  # fmt: skip
    await settle_all()
    # Its admission would come after its deadline: the limiter says so at once.
    assert hopeless.result().status is RequestStatus.EXPIRED
    clock.advance(5.0)
    await settle_all()
    assert doomed.result().status is RequestStatus.EXPIRED
    assert not blocked.done()
    clock.advance(5.0)
    await settle_all()
    assert blocked.result().status is RequestStatus.COMPLETED
    info = await manager.get_queue_info("m")
    assert info.expired == 2
    await manager.shutdown()


async def test_a_usage_report_after_completion_settles_the_reservation(clock: FakeClock) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    config = ModelConfig("m", tpm=10_000, concurrent=1, usage_report_timeout=30)
    await manager.register_queue(config, echo)
    request = QueueRequest("m", "x", estimated_input_tokens=100, estimated_output_tokens=900)
    response = await manager.submit(request)
    assert response.input_tokens_used is None  # not known yet
    await settle_all()
    info = await manager.get_queue_info("m")
    assert info.awaiting_usage == 1
    assert used(info, "concurrent") == 1  # in flight until its usage is known
    assert await manager.update_token_usage("m", request.id, 80, 20)
    await settle_all()
    info = await manager.get_queue_info("m")
    assert (used(info, "tokens"), used(info, "concurrent")) == (100, 0)
    assert tokens_used(response) == (80, 20)
    assert not await manager.update_token_usage("m", request.id, 1, 1)  # already settled
    await manager.shutdown()


async def test_without_a_report_the_estimate_stands_after_the_timeout(clock: FakeClock) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    config = ModelConfig("m", tpm=1_000, usage_report_timeout=30)
    await manager.register_queue(config, echo)
    await manager.submit(QueueRequest("m", "x", estimated_input_tokens=100,
                                      estimated_output_tokens=900))  # fmt: skip
    await settle_all()
    clock.advance(30)
    await settle_all()
    info = await manager.get_queue_info("m")
    assert info.awaiting_usage == 0
    assert used(info, "tokens") == 1_000 - 500  # the whole estimate, less 30 s of refill
    await manager.shutdown()


async def test_a_late_report_charges_what_exceeds_the_estimate(clock: FakeClock) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    await manager.register_queue(ModelConfig("m", tpm=10_000), echo)  # settles at once
    small = QueueRequest("m", "x", estimated_input_tokens=100, estimated_output_tokens=100)
    large = QueueRequest("m", "y", estimated_input_tokens=100, estimated_output_tokens=100)
    await manager.submit(small)
    response = await manager.submit(large)
    await settle_all()
    assert used(await manager.get_queue_info("m"), "tokens") == 400
    assert not await manager.update_token_usage("m", small.id, 50, 50)  # no refund
    assert not await manager.update_token_usage("m", large.id, 100, 700)  # 600 more
    assert used(await manager.get_queue_info("m"), "tokens") == 1_000
    assert response.output_tokens_used == 700
    await manager.shutdown()


async def test_usage_of_reads_the_usage_from_the_result(clock: FakeClock) -> None:
    manager: QueueManager[str, dict[str, int]] = QueueManager(clock=clock)

    async def call(_: QueueRequest[str]) -> dict[str, int]:
        return {"prompt_tokens": 7, "completion_tokens": 3}

    await manager.register_queue(
        ModelConfig("m", tpm=10_000), call,
        usage_of=lambda r: (r["prompt_tokens"], r["completion_tokens"]),
    )  # fmt: skip
    response = await manager.submit(QueueRequest("m", "x", estimated_output_tokens=500))
    assert (response.input_tokens_used, response.output_tokens_used) == (7, 3)
    await settle_all()
    assert used(await manager.get_queue_info("m"), "tokens") == 10
    await manager.shutdown()


async def test_a_failing_processor_fails_only_its_request(clock: FakeClock) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)

    async def work(request: QueueRequest[str]) -> str:
        if request.params == "bad":
            raise RuntimeError("boom")
        return request.params

    await manager.register_queue(ModelConfig("m", rpm=600), work)
    responses = await asyncio.gather(
        *(manager.submit(QueueRequest("m", p)) for p in ("a", "bad", "c"))
    )
    assert [r.status for r in responses] == [
        RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.COMPLETED,
    ]  # fmt: skip
    assert responses[1].error_message == "RuntimeError: boom"
    await manager.shutdown()


async def test_a_request_no_limit_can_admit_fails_with_the_reason(clock: FakeClock) -> None:
    manager: QueueManager[str, str] = QueueManager(clock=clock)
    await manager.register_queue(ModelConfig("m", tpm=1_000), echo)
    response = await manager.submit(QueueRequest("m", "x", estimated_input_tokens=5_000))
    assert response.status is RequestStatus.FAILED
    assert isinstance(response.error, CapacityExceededError)
    assert (await manager.submit(QueueRequest("m", "y"))).ok  # the queue goes on
    await manager.shutdown()


async def test_the_concurrency_limit_bounds_the_processors_running(clock: FakeClock) -> None:
    manager: QueueManager[int, int] = QueueManager(clock=clock)
    running = 0
    peak = 0
    release = asyncio.Event()

    async def work(request: QueueRequest[int]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        request.actual_input_tokens = 0
        return request.params

    await manager.register_queue(ModelConfig("m", concurrent=2), work)
    futures = [manager.submit_nowait(QueueRequest("m", i)) for i in range(6)]
    await settle_all()
    assert peak == 2
    info = await manager.get_queue_info("m")
    assert (info.in_flight, info.depth) == (2, 4)
    release.set()
    await settle_all(6)
    assert all(f.done() for f in futures)
    assert peak == 2
    await manager.shutdown()


async def test_drain_runs_every_accepted_request_and_refuses_new_ones(clock: FakeClock) -> None:
    manager: QueueManager[int, int] = QueueManager(clock=clock)
    await manager.register_queue(ModelConfig("m", rpm=60), echo)
    futures = [manager.submit_nowait(QueueRequest("m", i)) for i in range(3)]
    stopping = asyncio.ensure_future(manager.shutdown())
    await settle_all()
    with pytest.raises(QueueClosedError):
        manager.submit_nowait(QueueRequest("m", 9))
    for _ in range(3):
        clock.advance(1.0)
        await settle_all()
    await stopping
    assert [f.result().status for f in futures] == [RequestStatus.COMPLETED] * 3


async def test_shutdown_without_drain_cancels_the_waiting_and_finishes_the_running(
    clock: FakeClock,
) -> None:
    manager: QueueManager[int, int] = QueueManager(clock=clock)
    release = asyncio.Event()

    async def work(request: QueueRequest[int]) -> int:
        await release.wait()
        return request.params

    await manager.register_queue(ModelConfig("m", ONE_PER_SECOND), work)
    futures = [manager.submit_nowait(QueueRequest("m", i)) for i in range(4)]
    await settle_all()
    stopping = asyncio.ensure_future(manager.shutdown(drain=False))
    await settle_all()
    assert [f.done() for f in futures] == [False, True, True, True]
    release.set()
    await stopping
    statuses = [f.result().status for f in futures]
    assert statuses == [RequestStatus.COMPLETED] + [RequestStatus.CANCELLED] * 3


async def test_shutdown_timeout_cancels_what_is_left_and_releases_everything(
    clock: FakeClock,
) -> None:
    limiter = Limiter({}, clock=clock)
    manager: QueueManager[int, int] = QueueManager(limiter=limiter, clock=clock)

    async def stuck(_: QueueRequest[int]) -> int:
        await asyncio.Event().wait()
        return 0

    await manager.register_queue(ModelConfig("m", concurrent=1, rpm=600), stuck)
    futures = [manager.submit_nowait(QueueRequest("m", i)) for i in range(3)]
    await settle_all()
    stopping = asyncio.ensure_future(manager.shutdown(timeout=10))
    await settle_all()
    clock.advance(10)
    await settle_all()
    await stopping
    assert [f.result().status for f in futures] == [RequestStatus.CANCELLED] * 3
    status = await limiter.status("queue:m")
    assert next(s.used for s in status.limits if str(s.metric) == "concurrent") == 0
    await limiter.aclose()


async def test_a_caller_that_gives_up_withdraws_its_waiting_request(clock: FakeClock) -> None:
    manager: QueueManager[int, int] = QueueManager(clock=clock)
    seen: list[int] = []

    async def work(request: QueueRequest[int]) -> int:
        seen.append(request.params)
        return request.params

    await manager.register_queue(ModelConfig("m", ONE_PER_SECOND), work)
    await manager.submit(QueueRequest("m", 0))
    waiting = asyncio.ensure_future(manager.submit(QueueRequest("m", 1)))  # being admitted
    queued = manager.submit_nowait(QueueRequest("m", 2))  # behind it
    await settle_all()
    waiting.cancel()
    queued.cancel()
    await settle_all()
    clock.advance(5)
    await settle_all()
    assert seen == [0]
    info = await manager.get_queue_info("m")
    assert (info.depth, info.cancelled) == (0, 2)
    assert used(info, "requests") == 0  # refilled, and nothing charged for the withdrawn
    await manager.shutdown()


async def test_bad_input_is_refused_with_a_clear_error(clock: FakeClock) -> None:
    manager: QueueManager[int, int] = QueueManager(clock=clock)
    await manager.register_queue(ModelConfig("m", ONE_PER_SECOND, max_queue_size=1), echo)
    with pytest.raises(ModelNotRegisteredError, match=r"'other'.*registered: 'm'"):
        manager.submit_nowait(QueueRequest("other", 1))
    with pytest.raises(ConfigurationError, match=r"estimated_input_tokens.*-1"):
        manager.submit_nowait(QueueRequest("m", 1, estimated_input_tokens=-1))
    with pytest.raises(ConfigurationError, match=r"priority.*'high'"):
        manager.submit_nowait(QueueRequest("m", 1, priority="high"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="already registered"):
        await manager.register_queue(ModelConfig("m", rpm=1), echo)
    request = QueueRequest("m", 1)
    await manager.submit(request)
    manager.submit_nowait(QueueRequest("m", 2))
    await settle_all()  # being admitted
    manager.submit_nowait(QueueRequest("m", 3))  # waits
    await settle_all()
    with pytest.raises(QueueFullError, match="max_queue_size"):
        manager.submit_nowait(QueueRequest("m", 4))
    with pytest.raises(ConfigurationError, match="no request 'nope'"):
        await manager.update_token_usage("m", "nope", 1, 1)
    with pytest.raises(ConfigurationError, match=r"output_tokens.*-3"):
        await manager.update_token_usage("m", request.id, 1, -3)
    await manager.shutdown(drain=False)


async def test_model_config_is_validated_and_shorthand_adds_limits() -> None:
    config = ModelConfig("m", rate_limiters=[RateLimiterConfig("rpd", 1_000)], tpm=5, otpm=7)
    assert [str(limit) for limit in config.limits()] == [
        "1000 requests/d", "5 tokens/min", "7 output_tokens/min",
    ]  # fmt: skip
    assert config.queue_scope == "queue:m"
    with pytest.raises(ConfigurationError, match="no limits"):
        ModelConfig("m")
    with pytest.raises(ConfigurationError, match="type must be one of"):
        RateLimiterConfig("rph", 1)
    with pytest.raises(ConfigurationError, match="limit must be a positive int, got 0"):
        RateLimiterConfig(RateLimiterType.RPM, 0)
    with pytest.raises(ConfigurationError, match=r"min_share\[0\]"):
        ModelConfig("m", rpm=1, min_share={0: 1.5})
    with pytest.raises(ConfigurationError, match="add up to less than 1"):
        ModelConfig("m", rpm=1, min_share={0: 0.5, 1: 0.5})
    with pytest.raises(ConfigurationError, match="aging"):
        ModelConfig("m", rpm=1, aging=0)
    custom = RateLimiterConfig(RateLimiterType.TPM, 1_000, time_period=10)
    assert str(custom.to_limit()) == "1000 tokens/10s"
    spared = ModelConfig("m", tpm=1_000, concurrent=3, headroom=0.99).limits()
    assert [getattr(limit, "capacity", None) for limit in spared] == [990, 3]
    with pytest.raises(ConfigurationError, match=r"headroom must be a fraction in \(0, 1\], got 0"):
        ModelConfig("m", rpm=1, headroom=0)


async def test_queues_of_two_managers_share_limits_through_redis(redis_url: str) -> None:
    """Two processes' managers on one Redis scope admit no more than the limit together."""
    import secrets  # noqa: PLC0415

    scope = f"test-queue-{secrets.token_hex(4)}"
    config = ModelConfig("m", rpm=600, scope=scope)  # bucket of 600: 10 per second after
    managers: list[QueueManager[int, int]] = [QueueManager(store=redis_url) for _ in range(2)]
    for manager in managers:
        await manager.register_queue(config, echo)
    futures = [managers[i % 2].submit_nowait(QueueRequest("m", i)) for i in range(620)]
    done, _ = await asyncio.wait(futures, timeout=30)
    assert len(done) == 620
    status = await managers[0].limiter.status(scope)
    assert next(s.used for s in status.limits) <= 600
    for manager in managers:
        await manager.shutdown()
