"""The async limiter on a fake clock: FIFO waiting, timeouts, cancellation, hooks, status."""

from __future__ import annotations

import asyncio
import functools

import pytest

from quotaflow import (
    AcquireTimeoutError,
    BoundLimit,
    CapacityExceededError,
    ConfigurationError,
    EventKind,
    InvalidUsageError,
    Limiter,
    LimiterEvent,
    Reservation,
    Usage,
    concurrency,
    daily_quota,
    rpm,
    tpm,
)
from quotaflow.testing import FakeClock, let_tasks_run

pytestmark = pytest.mark.asyncio


def make(clock: FakeClock, **limits: object) -> Limiter:
    return Limiter({"m": [tpm(6_000)], **limits}, clock=clock)  # type: ignore[dict-item]


async def test_an_uncontended_acquire_is_granted_at_once(clock: FakeClock) -> None:
    limiter = make(clock)
    reservation = await limiter.acquire("m", input_tokens=1_000, output_tokens=500)
    assert reservation.wait_time == 0.0
    assert reservation.queue_position == 0
    assert reservation.slot_time == clock.time()
    assert reservation.requested == Usage(input_tokens=1_000, output_tokens=500)
    assert reservation.id


async def test_a_waiter_is_granted_exactly_at_its_slot(clock: FakeClock) -> None:
    limiter = make(clock)  # 100 tokens per second
    await limiter.acquire("m", tokens=6_000)
    task = asyncio.create_task(_acquire(limiter, 1_000))
    await let_tasks_run()
    clock.advance(9.999)
    await let_tasks_run()
    assert not task.done()
    clock.advance(0.001)
    await let_tasks_run()
    reservation = task.result()
    assert reservation.wait_time == pytest.approx(10.0)
    assert reservation.queue_position == 0


async def acquire_in_order(limiter: Limiter, sizes: list[int]) -> list[asyncio.Task[Reservation]]:
    tasks = []
    for size in sizes:
        tasks.append(asyncio.create_task(_acquire(limiter, size)))
        await let_tasks_run()
    return tasks


async def _acquire(limiter: Limiter, tokens: int, deadline: float | None = None) -> Reservation:
    return await limiter.acquire("m", tokens=tokens, timeout=deadline)


async def test_waiters_are_served_first_come_first_served(clock: FakeClock) -> None:
    limiter = make(clock)
    await limiter.acquire("m", tokens=6_000)
    # A big request first, then small ones: the big one must not be overtaken.
    tasks = await acquire_in_order(limiter, [4_000, 100, 100, 100])
    order: list[int] = []
    for task_index, task in enumerate(tasks):
        task.add_done_callback(functools.partial(lambda i, _: order.append(i), task_index))
    for _ in range(60):
        clock.advance(1)
        await let_tasks_run()
    assert order == [0, 1, 2, 3]
    assert [t.result().queue_position for t in tasks] == [0, 1, 2, 3]
    assert tasks[0].result().wait_time == pytest.approx(40.0)
    assert tasks[1].result().wait_time == pytest.approx(41.0)  # 100 more tokens: 1 s more


async def test_a_timeout_shorter_than_the_slot_fails_at_once_with_retry_after(
    clock: FakeClock,
) -> None:
    limiter = make(clock)
    await limiter.acquire("m", tokens=6_000)
    with pytest.raises(AcquireTimeoutError) as info:
        await limiter.acquire("m", tokens=3_000, timeout=5)
    assert info.value.retry_after == pytest.approx(30.0)
    assert info.value.limit == BoundLimit("m", limiter.limits_of("m")[0])
    assert info.value.reason == "timeout"
    assert limiter._room.depth("m") == 0


async def test_a_waiter_behind_others_times_out_at_its_deadline(clock: FakeClock) -> None:
    limiter = make(clock)
    await limiter.acquire("m", tokens=6_000)
    first = asyncio.create_task(_acquire(limiter, 3_000))
    await let_tasks_run()
    second = asyncio.create_task(_acquire(limiter, 10, deadline=2))
    await let_tasks_run()
    clock.advance(2)
    await let_tasks_run()
    with pytest.raises(AcquireTimeoutError) as info:
        second.result()
    assert info.value.retry_after == pytest.approx(28.0)  # the head expects its slot at 30 s
    assert not first.done()
    clock.advance(28)
    await let_tasks_run()
    assert first.done()


async def test_a_cancelled_waiter_leaves_the_queue_and_wakes_the_next(clock: FakeClock) -> None:
    limiter = make(clock)
    await limiter.acquire("m", tokens=6_000)
    big, small = await acquire_in_order(limiter, [5_000, 100])
    big.cancel()
    await let_tasks_run()
    assert big.cancelled()
    clock.advance(1)
    await let_tasks_run()
    assert small.done()
    assert small.result().wait_time == pytest.approx(1.0)
    assert limiter._room.depth("m") == 0


async def test_a_refund_wakes_the_head_before_its_slot(clock: FakeClock) -> None:
    limiter = make(clock)
    first = await limiter.acquire("m", tokens=6_000)
    waiter = asyncio.create_task(_acquire(limiter, 2_000))
    await let_tasks_run()
    await first.settle(tokens=1_000)  # 5,000 back
    await let_tasks_run()
    assert waiter.done()
    assert waiter.result().wait_time == 0.0


async def test_cancel_frees_capacity(clock: FakeClock) -> None:
    limiter = make(clock)
    reservation = await limiter.acquire("m", tokens=6_000)
    await reservation.cancel()
    assert reservation.state == "cancelled"
    decision = await limiter.try_acquire("m", tokens=6_000)
    assert decision.allowed


async def test_the_context_manager_settles_on_success_and_cancels_on_error(
    clock: FakeClock,
) -> None:
    limiter = make(clock)
    async with limiter.reserve("m", input_tokens=2_000, output_tokens=1_000) as reservation:
        await reservation.settle(output_tokens=200)
        await reservation.settle(output_tokens=999)  # ignored: the first settle counts
    assert reservation.actual == Usage(input_tokens=2_000, output_tokens=200)
    assert (await limiter.status("m")).limit("tokens").used == 2_200

    with pytest.raises(RuntimeError):
        async with limiter.reserve("m", tokens=3_000) as failed:
            raise RuntimeError
    assert failed.state == "cancelled"
    assert (await limiter.status("m")).limit("tokens").used == 2_200

    async with limiter.reserve("m", tokens=100) as kept:
        pass
    assert kept.state == "settled"
    assert kept.actual == kept.requested


async def test_try_acquire_never_waits_and_never_jumps_the_queue(clock: FakeClock) -> None:
    limiter = make(clock)
    await limiter.acquire("m", tokens=5_000)
    refused = await limiter.try_acquire("m", tokens=2_000)
    assert not refused
    assert refused.retry_after == pytest.approx(10.0)
    assert refused.limit is not None
    waiting = asyncio.create_task(_acquire(limiter, 2_000))
    await let_tasks_run()
    clock.advance(5)
    # 1,500 tokens are free now, but a waiter is first in line.
    queued = await limiter.try_acquire("m", tokens=100)
    assert not queued.allowed
    assert queued.limit is None
    assert queued.retry_after == pytest.approx(5.0)
    clock.advance(5)
    await let_tasks_run()
    assert waiting.done()


async def test_status_reports_every_limit_and_the_queue(clock: FakeClock) -> None:
    limiter = Limiter({"m": [rpm(10), tpm(6_000)]}, clock=clock)
    await limiter.acquire("m", input_tokens=1_000, output_tokens=2_000)
    task = asyncio.create_task(_acquire(limiter, 5_000))
    await let_tasks_run()
    status = await limiter.status("m")
    requests, tokens = status.limits
    assert (requests.used, requests.remaining, requests.capacity) == (1, 9, 10)
    assert (tokens.used, tokens.remaining) == (3_000, 3_000)
    assert tokens.resets_in == pytest.approx(30.0)
    assert status.queue_depth == 1
    assert status.time == clock.time()
    task.cancel()
    await let_tasks_run()


async def test_a_request_spans_scopes_all_or_nothing(clock: FakeClock) -> None:
    limiter = Limiter(
        {"model": [tpm(6_000)], "user:*": [daily_quota("tokens", 1_000)]}, clock=clock
    )
    await limiter.acquire(["user:1", "model"], tokens=900)
    with pytest.raises(AcquireTimeoutError) as info:
        await limiter.acquire(["user:1", "model"], tokens=200, timeout=60)
    assert info.value.limit is not None
    assert info.value.limit.scope == "user:1"
    # Another user is unaffected, and the model bucket was not charged by the refusal.
    await limiter.acquire(["user:2", "model"], tokens=1_000)
    assert (await limiter.status("model")).limit("tokens").used == 1_900


async def test_a_user_out_of_budget_does_not_block_others_on_a_shared_scope(
    clock: FakeClock,
) -> None:
    limiter = Limiter({"model": [tpm(6_000)], "user:*": [daily_quota("tokens", 100)]}, clock=clock)
    await limiter.acquire(["user:1", "model"], tokens=100)
    stuck = asyncio.create_task(limiter.acquire(("user:1", "model"), Usage(tokens=50)))
    await let_tasks_run()
    assert limiter._room.depth("user:1") == 1
    assert limiter._room.depth("model") == 0
    other = await limiter.acquire(["user:2", "model"], tokens=100)
    assert other.wait_time == 0.0
    stuck.cancel()
    await let_tasks_run()


async def test_concurrency_leases_are_released_by_settle(clock: FakeClock) -> None:
    limiter = Limiter({"pool": [concurrency(2)]}, clock=clock)
    first = await limiter.acquire("pool")
    await limiter.acquire("pool")
    third = asyncio.create_task(limiter.acquire("pool", Usage()))
    await let_tasks_run()
    assert not third.done()
    await first.settle()
    await let_tasks_run()
    assert third.done()


async def test_hooks_see_every_step_and_a_failing_hook_changes_nothing(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[LimiterEvent] = []

    def broken(event: LimiterEvent) -> None:
        raise ValueError(event.kind)

    limiter = Limiter({"m": [tpm(6_000)]}, clock=clock, hooks=[events.append, broken])
    first = await limiter.acquire("m", tokens=6_000)
    waiter = asyncio.create_task(limiter.acquire("m", Usage(tokens=600)))
    await let_tasks_run()
    await first.settle(tokens=5_000)
    clock.advance(6)
    await let_tasks_run()
    await waiter.result().cancel()
    with pytest.raises(CapacityExceededError):
        await limiter.acquire("m", tokens=7_000)
    kinds = [e.kind for e in events]
    assert kinds == [
        EventKind.ACQUIRED,
        EventKind.QUEUED,
        EventKind.SETTLED,
        EventKind.ACQUIRED,
        EventKind.CANCELLED,
        EventKind.REJECTED,
    ]
    assert events[3].wait_time == pytest.approx(6.0)
    assert events[2].actual == Usage(tokens=5_000)
    assert "hook" in caplog.text


async def test_bad_input_fails_before_anything_is_reserved(clock: FakeClock) -> None:
    limiter = make(clock)
    with pytest.raises(ConfigurationError, match="no limits are configured for scope 'x'"):
        await limiter.acquire("x")
    with pytest.raises(InvalidUsageError, match="input_tokens must not be negative"):
        await limiter.acquire("m", input_tokens=-1)
    with pytest.raises(ConfigurationError, match="timeout must not be negative"):
        await limiter.acquire("m", timeout=-1)
    with pytest.raises(ConfigurationError, match="a request names a scope twice"):
        await limiter.acquire(["m", "m"])
    with pytest.raises(ConfigurationError, match="either a Usage or keyword amounts"):
        await limiter.acquire("m", Usage(tokens=1), tokens=2)
    assert (await limiter.status("m")).limit("tokens").used == 0


async def test_limits_can_change_at_run_time_keeping_usage(clock: FakeClock) -> None:
    limiter = make(clock)
    await limiter.acquire("m", tokens=6_000)
    limiter.set_limits("m", [tpm(12_000)])
    status = await limiter.status("m")
    assert (status.limit("tokens").used, status.limit("tokens").remaining) == (6_000, 6_000)
    await limiter.acquire("m", tokens=6_000, timeout=0)


async def test_a_cancelled_acquire_during_a_store_call_gives_its_reservation_back(
    clock: FakeClock,
) -> None:
    class SlowStore:
        """A store whose reserve blocks until released, like a network round trip."""

        def __init__(self) -> None:
            from quotaflow import MemoryStore  # noqa: PLC0415

            self.inner = MemoryStore(clock=clock)
            self.gate = asyncio.Event()

        async def areserve(self, *args: object) -> object:
            result = self.inner.reserve(*args)  # type: ignore[arg-type]
            await self.gate.wait()
            return result

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    store = SlowStore()
    limiter = Limiter({"m": [tpm(6_000)]}, store=store, clock=clock)  # type: ignore[arg-type]
    store.gate.set()
    await limiter.acquire("m", tokens=6_000)  # fill the bucket
    store.gate.clear()
    task = asyncio.create_task(limiter.acquire("m", Usage(tokens=100)))
    await let_tasks_run()
    clock.advance(1)  # the head wakes and asks the store, which admits and then stalls
    await let_tasks_run()
    task.cancel()
    await let_tasks_run()
    await limiter.aclose()
    assert task.cancelled()
    assert store.inner.snapshot("m", limiter.limits_of("m"))[1][0].used == 5_900


async def test_a_waiter_moves_to_the_queue_of_the_scope_that_binds_it(clock: FakeClock) -> None:
    """Held back by a second scope, a waiter moves to its queue and holds both scopes."""
    limiter = Limiter({"a": [tpm(6_000)], "b": [tpm(6_000)]}, clock=clock)  # 100/s each
    await limiter.acquire("a", tokens=6_000)
    debt = await limiter.acquire("b", tokens=6_000)
    await debt.settle(tokens=9_000)  # b owes 3,000 more: 1,000 fit only at t=40 s
    first = asyncio.create_task(limiter.acquire("a", tokens=100))
    await let_tasks_run()
    both = asyncio.create_task(limiter.acquire(["a", "b"], tokens=1_000))
    await let_tasks_run()
    assert (limiter._room.depth("a"), limiter._room.depth("b")) == (2, 0)
    clock.advance(1)  # "first" gets a's 100 tokens; "both" is next in a, but b binds it
    await let_tasks_run()
    assert first.done()
    assert (limiter._room.depth("a"), limiter._room.depth("b")) == (0, 1)
    # Admitted by a's queue but held back by b, "both" now holds a and b: a request for a
    # alone waits behind it, so that single-scope traffic cannot starve it.
    only_a = asyncio.create_task(limiter.acquire("a", tokens=10))
    await let_tasks_run()
    clock.advance(0.1)
    await let_tasks_run()
    assert not only_a.done()
    clock.advance(38.9)
    await let_tasks_run()
    assert both.done()
    assert both.result().wait_time == pytest.approx(40.0)
    assert only_a.done()
    assert only_a.result().slot_time >= both.result().slot_time


async def test_renew_and_remove_limits(clock: FakeClock) -> None:
    limiter = Limiter({"pool": [concurrency(1, ttl=10)], "tmp": [tpm(60)]}, clock=clock)
    held = await limiter.acquire("pool")
    clock.advance(8)
    assert await held.renew()
    clock.advance(8)  # 16 s after the start, 8 s after the renewal: still leased
    assert not await limiter.try_acquire("pool")
    await held.settle()
    assert not await held.renew()
    limiter.remove_limits("tmp")
    with pytest.raises(ConfigurationError, match="no limits are configured for scope 'tmp'"):
        await limiter.acquire("tmp")
    with pytest.raises(ConfigurationError, match="at least one scope"):
        await limiter.acquire([])
    assert (await limiter.acquire(["pool"])).scopes == ("pool",)  # a list is fine too


async def test_a_request_spanning_two_busy_scopes_is_not_starved(clock: FakeClock) -> None:
    """Single-scope traffic on each of two saturated scopes cannot starve a request for both."""
    limiter = Limiter({"x": [rpm(60)], "y": [rpm(60)]}, clock=clock)  # 1 request/s each

    async def single(scope: str) -> None:
        reservation = await limiter.acquire(scope)
        await reservation.settle()

    tasks: list[asyncio.Task[None]] = []
    both: asyncio.Task[Reservation] | None = None
    arrived = 0
    for second in range(1, 400):
        tasks += [asyncio.create_task(single("x")), asyncio.create_task(single("y"))]
        if second % 2:  # 1.5 requests per second per scope: more than either refills
            tasks += [asyncio.create_task(single("x")), asyncio.create_task(single("y"))]
        if second == 120:
            both = asyncio.create_task(limiter.acquire(["x", "y"], requests=5))
            arrived = second
        for _ in range(4):
            clock.advance(0.25)
            await let_tasks_run(30)
        if both is not None and both.done():
            break
    assert both is not None
    assert both.done()
    assert second - arrived <= 60
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
