"""The token bucket: exact integer refill, debt, rounding, and the admissible amount."""

from __future__ import annotations

from quotaflow.core import NS_PER_SECOND
from quotaflow.emulator._bucket import TokenBucket
from quotaflow.emulator._state import MINUTE_NS
from quotaflow.testing import FakeClock


def bucket(limit: int, clock: FakeClock) -> TokenBucket:
    return TokenBucket("tokens", limit, MINUTE_NS, clock.now_ns())


def test_full_at_start_and_full_again_after_a_whole_period() -> None:
    clock = FakeClock()
    b = bucket(60, clock)
    assert b.remaining(clock.now_ns()) == 60
    assert b.reset_after_ns(clock.now_ns()) == 0
    b.charge(60, clock.now_ns())
    assert b.remaining(clock.now_ns()) == 0
    assert b.reset_after_ns(clock.now_ns()) == 60 * NS_PER_SECOND
    clock.advance(60)
    assert b.remaining(clock.now_ns()) == 60
    clock.advance(3_600)  # a full bucket never overflows
    assert b.remaining(clock.now_ns()) == 60


def test_refill_is_continuous_and_exact() -> None:
    clock = FakeClock()
    b = bucket(7, clock)  # one unit every 60/7 s = 8_571_428_571.43 ns
    b.charge(7, clock.now_ns())
    assert b.wait_ns(1, clock.now_ns()) == 8_571_428_572  # rounded up
    clock.advance(8.571428571)
    assert b.remaining(clock.now_ns()) == 0
    assert not b.holds(1, clock.now_ns())
    clock.advance(1e-9)
    assert b.remaining(clock.now_ns()) == 1
    assert b.holds(1, clock.now_ns())
    for _ in range(6_999):  # a thousand periods in tiny steps: no drift
        clock.advance(60 / 7_000)
    clock.advance(1e-6)
    assert b.remaining(clock.now_ns()) == 7


def test_debt_is_paid_back_before_anything_fits() -> None:
    clock = FakeClock()
    b = bucket(60, clock)  # 1 unit per second
    b.charge(100, clock.now_ns())
    assert b.remaining(clock.now_ns()) == 0  # never negative
    assert b.level(clock.now_ns()) == -40
    assert b.used(clock.now_ns()) == 100
    assert b.wait_ns(1, clock.now_ns()) == 41 * NS_PER_SECOND
    assert b.reset_after_ns(clock.now_ns()) == 100 * NS_PER_SECOND
    clock.advance(40.5)
    assert b.remaining(clock.now_ns()) == 0
    assert b.level(clock.now_ns()) == 0.5
    clock.advance(0.5)
    assert b.remaining(clock.now_ns()) == 1


def test_refunds_never_fill_beyond_the_capacity() -> None:
    clock = FakeClock()
    b = bucket(100, clock)
    b.charge(30, clock.now_ns())
    b.refund(50, clock.now_ns())
    assert b.remaining(clock.now_ns()) == 100
    assert b.charged == -20  # the net charge is kept as counted


def test_a_clock_read_out_of_order_takes_no_time_back() -> None:
    clock = FakeClock()
    b = bucket(60, clock)
    b.charge(60, clock.now_ns())
    clock.advance(10)
    assert b.remaining(clock.now_ns()) == 10
    assert b.remaining(clock.now_ns() - 5 * NS_PER_SECOND) == 10


def test_admissible_is_capacity_plus_the_refill_between_first_and_last_admission() -> None:
    b = TokenBucket("tokens", 30_000, MINUTE_NS, 0)
    assert b.admissible(0, 0) == 30_000
    assert b.admissible(0, 30 * NS_PER_SECOND) == 45_000
    assert b.admissible(0, 1) == 30_000  # rounded down
