"""The thread-based limiter: the same FIFO waiting, with blocked threads and a fake clock."""

from __future__ import annotations

import threading

import pytest

from quotaflow import (
    AcquireTimeoutError,
    ConfigurationError,
    EventKind,
    Limiter,
    LimiterEvent,
    SyncLimiter,
    SyncReservation,
    Usage,
    concurrency,
    tpm,
)
from quotaflow.testing import FakeClock


class QueuedEvents:
    """A hook that lets the test thread wait until other threads have queued."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __call__(self, event: LimiterEvent) -> None:
        if event.kind is EventKind.QUEUED:
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count >= count, 10.0)


def test_threads_wait_fifo_and_wake_at_their_slots(clock: FakeClock) -> None:
    queued = QueuedEvents()
    limiter = SyncLimiter({"m": [tpm(6_000)]}, clock=clock, hooks=[queued])
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
        queued.wait_for(index + 1)  # arrivals in a known order
    clock.wait_for_timers(1)  # only the head has a timer
    clock.advance(30)
    clock.wait_for_timers(1)  # the head was admitted; the next one is waiting for its slot
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


def test_concurrent_threads_lose_no_update(clock: FakeClock) -> None:
    """Eight threads acquiring and settling at once leave exactly the sum of their usage."""
    # 10M tokens per minute: 6,000 ns per token, so no rounding blurs the sums.
    limiter = SyncLimiter({"m": [tpm(10**7)], "user:*": [tpm(10**7)]}, clock=clock)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for step in range(300):
                with limiter.reserve(["m", f"user:{index % 3}"], input_tokens=10) as held:
                    held.settle(input_tokens=step % 7)
        except BaseException as error:  # noqa: BLE001 (reported by the assertion below)
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    expected = 8 * sum(step % 7 for step in range(300))
    assert limiter.status("m").limit("tokens").used == expected
    assert sum(limiter.status(f"user:{u}").limit("tokens").used for u in range(3)) == expected
    assert limiter.store.reservation_count == 0  # type: ignore[attr-defined]


def test_sync_cancel_renew_and_repr(clock: FakeClock) -> None:
    limiter = SyncLimiter({"pool": [concurrency(1, ttl=10)]}, clock=clock)
    held = limiter.acquire("pool")
    assert "held" in repr(held)
    assert held.renew()
    held.cancel()
    held.cancel()
    assert held.state == "cancelled"
    assert not held.renew()
    with pytest.raises(RuntimeError), limiter.reserve("pool"):
        raise RuntimeError
    assert limiter.try_acquire("pool")
