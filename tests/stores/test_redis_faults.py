"""Fault policies against a real Redis that is stopped, paused (SIGSTOP) and restarted mid-run.

Each test drives a private server. The limiter's clock is a FakeClock (it times the probes of
the fault policy); Redis keeps its own time.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import redis

from quotaflow import (
    EventKind,
    Limiter,
    LimiterEvent,
    StoreUnavailableError,
    SyncLimiter,
    rpm,
    tpm,
)
from quotaflow.stores import FailoverStore, FaultPolicy, RedisOptions, RedisStore
from quotaflow.testing import FakeClock
from tests.servers import RedisServer

FAST = RedisOptions(retries=1, socket_timeout=0.3, connect_timeout=0.3, backoff_base=0.01)


class Recorder:
    """A hook that keeps the store events."""

    def __init__(self) -> None:
        self.events: list[LimiterEvent] = []

    def __call__(self, event: LimiterEvent) -> None:
        if event.kind in {EventKind.STORE_UNAVAILABLE, EventKind.STORE_RECOVERED}:
            self.events.append(event)

    @property
    def kinds(self) -> list[EventKind]:
        return [event.kind for event in self.events]


@pytest.fixture
def namespace() -> str:
    return f"faults-{uuid.uuid4().hex}"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def make_limiter(
    server: RedisServer,
    namespace: str,
    clock: FakeClock,
    recorder: Recorder,
    policy: str | FaultPolicy,
    limits: dict[str, list[object]] | None = None,
) -> SyncLimiter:
    store = RedisStore(server.url, namespace=namespace, options=FAST)
    return SyncLimiter(
        limits or {"m": [rpm(8), tpm(10_000)]},  # type: ignore[arg-type]
        store=store, clock=clock, hooks=[recorder], fault_policy=policy,
    )  # fmt: skip


def reservations_left(server: RedisServer, namespace: str) -> list[bytes]:
    with redis.Redis.from_url(server.url) as client:
        return list(client.scan_iter(match=f"qf:{{{namespace}}}:r|*"))


def test_fail_closed_raises_a_typed_error_once_down_and_recovers_by_itself(
    redis_server: RedisServer, namespace: str, clock: FakeClock, recorder: Recorder
) -> None:
    limiter = make_limiter(redis_server, namespace, clock, recorder, "fail_closed")
    try:
        with limiter.reserve("m", tokens=100):
            pass
        redis_server.stop()
        for _ in range(3):
            with pytest.raises(StoreUnavailableError):
                limiter.acquire("m", tokens=100)
        assert recorder.kinds == [EventKind.STORE_UNAVAILABLE]  # reported once, not per call
        redis_server.start()
        # Until the next probe, calls fail fast without touching the store.
        with pytest.raises(StoreUnavailableError):
            limiter.acquire("m", tokens=100)
        clock.advance(1.0)
        with limiter.reserve("m", tokens=100):
            pass
        assert recorder.kinds == [EventKind.STORE_UNAVAILABLE, EventKind.STORE_RECOVERED]
        assert limiter.status("m").limits[0].used == 1  # the restarted server kept nothing
    finally:
        limiter.close()


def test_fail_open_admits_unrecorded_while_down(
    redis_server: RedisServer, namespace: str, clock: FakeClock, recorder: Recorder
) -> None:
    limiter = make_limiter(redis_server, namespace, clock, recorder, "fail_open")
    try:
        redis_server.stop()
        for _ in range(20):  # far beyond rpm(8): nothing is enforced while down
            with limiter.reserve("m", tokens=100) as reservation:
                reservation.settle(tokens=50)
        redis_server.start()
        clock.advance(1.0)
        for _ in range(8):
            with limiter.reserve("m", tokens=100):
                pass
        assert limiter.try_acquire("m", tokens=100).reservation is None  # limits hold again
        assert recorder.kinds == [EventKind.STORE_UNAVAILABLE, EventKind.STORE_RECOVERED]
        assert reservations_left(redis_server, namespace) == []
    finally:
        limiter.close()


def test_local_policy_admits_a_share_of_the_limit_while_down(
    redis_server: RedisServer, namespace: str, clock: FakeClock, recorder: Recorder
) -> None:
    policy = FaultPolicy("local", local_share=0.25)
    limiter = make_limiter(redis_server, namespace, clock, recorder, policy)
    try:
        redis_server.stop()
        granted = 0
        for _ in range(5):
            decision = limiter.try_acquire("m", tokens=100)
            if decision.reservation is not None:
                granted += 1
                decision.reservation.settle()
        assert granted == 2  # a quarter of rpm(8)
        assert limiter.status("m").limits[0].capacity == 2  # the local view while down
        redis_server.start()
        clock.advance(1.0)
        for _ in range(8):
            with limiter.reserve("m", tokens=100):
                pass
        assert limiter.try_acquire("m", tokens=100).reservation is None
        assert limiter.status("m").limits[0].capacity == 8
    finally:
        limiter.close()


def test_settlements_missed_during_a_pause_are_replayed(
    redis_server: RedisServer, namespace: str, clock: FakeClock, recorder: Recorder
) -> None:
    limiter = make_limiter(redis_server, namespace, clock, recorder, "fail_closed")
    try:
        held = [limiter.acquire("m", tokens=4_000) for _ in range(2)]
        assert limiter.try_acquire("m", tokens=4_000).reservation is None  # 8,000 of 10,000
        redis_server.pause()  # SIGSTOP: connections hang, then time out
        try:
            for reservation in held:
                reservation.settle(tokens=500)  # kept for replay: no exception
            with pytest.raises(StoreUnavailableError):
                limiter.acquire("m", tokens=100)
        finally:
            redis_server.resume()
        clock.advance(1.0)
        # The next call reaches the store, which replays the two settlements first.
        with limiter.reserve("m", tokens=100):
            pass
        tokens = limiter.status("m").limits[1]
        assert 800 <= tokens.used <= 1_100  # 2 x 500 (+ 100) settled, less the refill; not 8,000
        assert reservations_left(redis_server, namespace) == []  # nothing leaked
        assert recorder.kinds == [EventKind.STORE_UNAVAILABLE, EventKind.STORE_RECOVERED]
    finally:
        limiter.close()


def test_a_restart_in_the_middle_of_async_traffic_leaks_nothing(
    redis_server: RedisServer, namespace: str
) -> None:
    async def run() -> tuple[int, int, list[EventKind]]:
        clock = FakeClock()
        recorder = Recorder()
        store = RedisStore(redis_server.url, namespace=namespace, options=FAST)
        limiter = Limiter(
            {"m": [rpm(1_000)]}, store=store, clock=clock, hooks=[recorder],
            fault_policy=FaultPolicy("local", local_share=0.5, probe_interval=0.5),
        )  # fmt: skip
        done = failed = 0

        async def worker() -> None:
            nonlocal done, failed
            for _ in range(20):
                try:
                    async with limiter.reserve("m", timeout=0):
                        await asyncio.sleep(0)
                    done += 1
                except Exception:  # noqa: BLE001 (counted: the test requires none)
                    failed += 1

        first = [asyncio.create_task(worker()) for _ in range(4)]
        await asyncio.gather(*first)
        redis_server.stop()
        down = [asyncio.create_task(worker()) for _ in range(4)]
        await asyncio.gather(*down)
        redis_server.start()
        clock.advance(1.0)
        after = [asyncio.create_task(worker()) for _ in range(4)]
        await asyncio.gather(*after)
        await limiter.aclose()
        return done, failed, recorder.kinds

    done, failed, kinds = asyncio.run(run())
    assert failed == 0
    assert done == 240
    assert kinds == [EventKind.STORE_UNAVAILABLE, EventKind.STORE_RECOVERED]
    assert reservations_left(redis_server, namespace) == []


def test_the_failover_store_rejects_a_bad_policy() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        FaultPolicy("retry_forever")
    with pytest.raises(ValueError, match="local_share"):
        FaultPolicy("local", local_share=1.5)
    with pytest.raises(ValueError, match="probe_interval"):
        FailoverStore(RedisStore(), FaultPolicy("local", probe_interval=0))


def test_the_change_is_logged_once_each_way(
    redis_server: RedisServer,
    namespace: str,
    clock: FakeClock,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = make_limiter(redis_server, namespace, clock, recorder, "fail_open")
    try:
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="quotaflow"):
            for _ in range(5):
                with limiter.reserve("m", tokens=10):
                    pass
            redis_server.start()
            clock.advance(1.0)
            for _ in range(5):
                with limiter.reserve("m", tokens=10):
                    pass
        messages = [record.getMessage() for record in caplog.records]
        assert sum("unreachable" in message for message in messages) == 1, messages
        assert sum("reachable again" in message for message in messages) == 1, messages
    finally:
        limiter.close()
