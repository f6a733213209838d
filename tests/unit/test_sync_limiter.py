"""The thread-based limiter: the same FIFO waiting, with blocked threads and a fake clock."""

from __future__ import annotations

import threading
import time

import pytest

from quotaflow import (
    AcquireTimeoutError,
    ConfigurationError,
    Limiter,
    SyncLimiter,
    SyncReservation,
    Usage,
    concurrency,
    tpm,
)
from quotaflow.testing import FakeClock


def wait_until(predicate: object, seconds: float = 5.0) -> None:
    """Poll (in real time, briefly) until other threads reached the expected state."""
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def test_threads_wait_fifo_and_wake_at_their_slots(clock: FakeClock) -> None:
    limiter = SyncLimiter({"m": [tpm(6_000)]}, clock=clock)
    limiter.acquire("m", tokens=6_000)
    results: dict[int, SyncReservation] = {}
    order: list[int] = []

    def worker(index: int, tokens: int) -> None:
        results[index] = limiter.acquire("m", tokens=tokens)
        order.append(index)

    threads = []
    for index, tokens in enumerate([3_000, 100, 100]):
        thread = threading.Thread(target=worker, args=(index, tokens))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=index + 1: limiter._room.depth("m") == n)
    wait_until(lambda: clock.pending_timers == 1)  # only the head has a timer
    clock.advance(30)
    wait_until(lambda: 0 in results)
    wait_until(lambda: clock.pending_timers == 1)
    clock.advance(2)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2]
    assert results[0].wait_time == pytest.approx(30.0)
    assert results[2].wait_time == pytest.approx(32.0)


def test_a_blocked_thread_times_out_with_retry_after(clock: FakeClock) -> None:
    limiter = SyncLimiter({"m": [tpm(6_000)]}, clock=clock)
    limiter.acquire("m", tokens=6_000)
    with pytest.raises(AcquireTimeoutError) as info:
        limiter.acquire("m", tokens=600, timeout=1)
    assert info.value.retry_after == pytest.approx(6.0)


def test_the_sync_reservation_is_a_context_manager(clock: FakeClock) -> None:
    limiter = SyncLimiter({"pool": [concurrency(1)], "m": [tpm(6_000)]}, clock=clock)
    with limiter.acquire(["pool", "m"], input_tokens=100, output_tokens=1_000) as reservation:
        assert not limiter.try_acquire("pool")
        reservation.settle(output_tokens=10)
    assert limiter.status("m").limit("tokens").used == 110
    assert limiter.try_acquire("pool")
    with pytest.raises(KeyError):
        limiter.status("m").limit("cost")


def test_settle_from_many_threads_counts_once(clock: FakeClock) -> None:
    limiter = SyncLimiter({"m": [tpm(6_000)]}, clock=clock)
    reservation = limiter.acquire("m", tokens=5_000)
    threads = [
        threading.Thread(target=reservation.settle, kwargs={"tokens": t}) for t in (1, 2, 3, 4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert limiter.status("m").limit("tokens").used in {1, 2, 3, 4}


def test_a_limiter_rejects_a_store_of_the_wrong_flavour() -> None:
    class NotAStore:
        pass

    with pytest.raises(ConfigurationError, match="must implement Store"):
        SyncLimiter({"m": [tpm(10)]}, store=NotAStore())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must implement AsyncStore"):
        Limiter({"m": [tpm(10)]}, store=NotAStore())  # type: ignore[arg-type]


def test_sync_and_async_limiters_share_one_surface() -> None:
    """The two flavours offer the same public methods, so switching is a rename."""
    public = {n for n in dir(SyncLimiter) if not n.startswith("_")}
    async_public = {n for n in dir(Limiter) if not n.startswith("_")}
    assert public - {"close"} == async_public - {"aclose"}
    assert Usage(tokens=1) == Usage(tokens=1)
