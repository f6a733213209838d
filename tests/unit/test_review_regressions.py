"""Regressions found by review: each test failed before its fix."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from quotaflow import (
    CapacityExceededError,
    ConfigurationError,
    Limiter,
    MemoryStore,
    Rate,
    Usage,
    concurrency,
    tpd,
    tpm,
)
from quotaflow.core import NS_PER_SECOND, Claim, Engine, ReserveResult, Route
from quotaflow.testing import FakeClock, let_tasks_run

S = NS_PER_SECOND
T0 = 1_767_225_600 * S


class GatedStore(MemoryStore):
    """A store whose ``areserve`` answers only when the test opens the gate (like I/O)."""

    nonblocking = False

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.gate = asyncio.Event()
        self.gate.set()

    async def areserve(self, rid: str, claims: Sequence[Claim], ttl_ns: int) -> ReserveResult:
        result = self.reserve(rid, claims, ttl_ns)
        await self.gate.wait()
        return result


@pytest.mark.asyncio
async def test_waiters_are_held_to_limits_changed_while_they_wait(clock: FakeClock) -> None:
    limiter = Limiter({"api": [concurrency(4)], "m": [tpm(60_000)]}, clock=clock)
    held = [await limiter.acquire("api") for _ in range(4)]
    waiters = [asyncio.create_task(limiter.acquire("api")) for _ in range(4)]
    await let_tasks_run()
    limiter.set_limits("api", [concurrency(1)])
    for reservation in held[:3]:
        await reservation.settle()
    await let_tasks_run()
    assert not any(task.done() for task in waiters)  # one lease is still held: cap is 1
    await limiter.acquire("m", tokens=60_000)
    big = asyncio.create_task(limiter.acquire("m", tokens=50_000))
    await let_tasks_run()
    limiter.set_limits("m", [tpm(6_000)])
    clock.advance(50)
    await let_tasks_run()
    with pytest.raises(CapacityExceededError):
        big.result()
    for task in waiters:
        task.cancel()
    await let_tasks_run()


@pytest.mark.asyncio
async def test_a_release_during_a_refusal_is_not_missed(clock: FakeClock) -> None:
    store = GatedStore(clock)
    limiter = Limiter({"api": [concurrency(1)]}, store=store, clock=clock)
    holder = await limiter.acquire("api")
    store.gate.clear()
    waiter = asyncio.create_task(limiter.acquire("api"))
    await let_tasks_run()  # the store refused; its answer is on the way back
    await holder.settle()  # the lease comes back before the waiter has queued
    store.gate.set()
    await let_tasks_run()
    assert waiter.done()  # admitted now, not when the first lease would have expired


@pytest.mark.asyncio
async def test_cancelling_acquire_during_the_store_call_leaks_nothing(clock: FakeClock) -> None:
    store = GatedStore(clock)
    limiter = Limiter({"api": [concurrency(1)]}, store=store, clock=clock)
    store.gate.clear()
    task = asyncio.create_task(limiter.acquire("api"))
    await let_tasks_run()  # admitted by the store, answer not yet back
    task.cancel()
    await let_tasks_run()
    store.gate.set()
    await limiter.aclose()
    assert store.reservation_count == 0
    assert (await limiter.try_acquire("api")).allowed


def test_an_overrun_settled_after_the_reservation_expired_is_charged() -> None:
    engine = Engine(sweep_interval_ns=S)
    limits = (tpd(10_000),)
    route = Route([("m", limits)])
    engine.reserve("a", route.claims(Usage(tokens=1_000)), T0, 60 * S)
    engine.sweep(T0 + 61 * S)
    assert not engine.settle("a", Usage(tokens=10_000), T0 + 61 * S)
    assert engine.snapshot("m", limits, T0 + 61 * S)[0].used >= 9_990
    assert not engine.reserve("b", route.claims(Usage(tokens=9_000)), T0 + 61 * S, S).granted


def test_leases_outlive_an_expired_reservation_until_their_own_ttl() -> None:
    engine = Engine(sweep_interval_ns=S)
    route = Route([("pool", (concurrency(1, ttl=600),))])
    engine.reserve("a", route.claims(Usage()), T0, 30 * S)
    engine.sweep(T0 + 31 * S)
    assert not engine.reserve("b", route.claims(Usage()), T0 + 31 * S, S).granted
    # The late settlement (within one more TTL of the expiry) ends the lease.
    engine.settle("a", Usage(), T0 + 32 * S)
    assert engine.reserve("b", route.claims(Usage()), T0 + 32 * S, S).granted


@pytest.mark.asyncio
async def test_settling_one_part_keeps_an_explicit_token_total(clock: FakeClock) -> None:
    limiter = Limiter({"m": [tpm(60_000)]}, clock=clock)
    reservation = await limiter.acquire("m", tokens=9_000)
    await reservation.settle(output_tokens=400)
    assert reservation.actual == Usage(output_tokens=400, tokens=9_400)


@pytest.mark.parametrize(
    "build", [lambda: Rate("requests", 1, 1e-10), lambda: concurrency(1, ttl=1e-10)]
)
def test_durations_too_short_to_count_are_refused(build: object) -> None:
    with pytest.raises(ConfigurationError, match="at least 1 microsecond"):
        build()  # type: ignore[operator]


def test_the_fake_clock_forgets_cancelled_timers() -> None:
    clock = FakeClock()
    for _ in range(10_000):
        clock.call_later(5, lambda: None).cancel()
    assert clock.pending_timers == 0
    assert len(clock._timers) <= 128
