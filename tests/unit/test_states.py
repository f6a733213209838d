"""The per-limit state machines: token buckets, calendar quotas and leases."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from quotaflow import Rate, concurrency, daily_quota, monthly_quota, rpm, tpm
from quotaflow.core import NS_PER_SECOND, LeaseState, QuotaState, RateState, period_bounds

S = NS_PER_SECOND
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * S


def test_a_full_bucket_admits_its_capacity_then_refills_continuously() -> None:
    bucket = RateState(rpm(60))
    for _ in range(60):
        assert bucket.available_at(1, T0) == T0
        bucket.take(1, T0, "r")
    assert bucket.available_at(1, T0) == T0 + 1 * S  # one request refills per second
    assert bucket.available_at(30, T0) == T0 + 30 * S
    assert bucket.available_at(1, T0 + S) == T0 + S


def test_the_slot_is_exact_for_large_requests() -> None:
    bucket = RateState(tpm(30_000))
    bucket.take(30_000, T0, "r")
    # 12,000 tokens need 12,000 / 500 per second = 24 s of refill.
    assert bucket.available_at(12_000, T0) == T0 + 24 * S
    snap = bucket.snapshot(T0 + 6 * S)
    assert (snap.used, snap.remaining, snap.resets_in_ns) == (27_000, 3_000, 54 * S)


def test_refunding_the_latest_reservation_restores_its_capacity() -> None:
    bucket = RateState(tpm(60_000))
    mark = bucket.take(50_000, T0, "r")
    bucket.settle(50_000, 10_000, mark, T0 + S, "r")
    assert bucket.snapshot(T0 + S).used == 9_000  # 10,000 used, 1,000 refilled in 1 s


def test_a_refund_never_reopens_capacity_used_by_later_admissions() -> None:
    # A takes the whole bucket at t=0; half refills by t=30 s, where B takes 30,000. If A then
    # refunds everything, the bucket must still hold B's 30,000 less 1 s of refill: crediting
    # A's full reservation would admit 60,000 more at t=31 s, 2x the limit within one second.
    bucket = RateState(tpm(60_000))
    mark_a = bucket.take(60_000, T0, "a")
    assert bucket.available_at(30_000, T0 + 30 * S) == T0 + 30 * S
    bucket.take(30_000, T0 + 30 * S, "b")
    bucket.settle(60_000, 0, mark_a, T0 + 31 * S, "a")
    assert bucket.snapshot(T0 + 31 * S).used == 29_000
    assert bucket.available_at(31_001, T0 + 31 * S) > T0 + 31 * S


def test_refunds_during_a_burst_are_exact() -> None:
    # 19 reservations of 5,200 at t=0 in a 100,000-per-10 s bucket, each settled at 1,400 after
    # 0.6 s: the bucket must hold exactly 19 x 1,400 - 6,000 refilled = 20,600.
    bucket = RateState(Rate("tokens", 100_000, 10))
    marks = [bucket.take(5_200, T0, str(i)) for i in range(19)]
    for mark in marks:
        bucket.settle(5_200, 1_400, mark, T0 + 6 * S // 10, "r")
    assert bucket.snapshot(T0 + 6 * S // 10).used == 20_600


def test_a_refund_after_a_rate_change_is_conservative() -> None:
    bucket = RateState(tpm(60_000))
    mark = bucket.take(60_000, T0, "a")
    bucket.reconfigure(tpm(30_000), T0 + 30 * S)
    bucket.take(10_000, T0 + 30 * S, "b")
    bucket.settle(60_000, 0, mark, T0 + 30 * S, "a")
    assert bucket.snapshot(T0 + 30 * S).used == 10_000


def test_an_overrun_is_charged_as_debt_that_delays_later_admissions() -> None:
    bucket = RateState(tpm(6_000))  # 100 tokens/s
    mark = bucket.take(1_000, T0, "r")
    bucket.settle(1_000, 7_000, mark, T0, "r")
    assert bucket.snapshot(T0).used == 7_000  # above capacity: in debt
    assert bucket.available_at(1, T0) == T0 + 10 * S + S // 100


def test_changing_the_rate_keeps_the_usage_recorded() -> None:
    bucket = RateState(tpm(60_000))
    bucket.take(30_000, T0, "r")
    bucket.reconfigure(tpm(120_000), T0)
    snap = bucket.snapshot(T0)
    assert (snap.used, snap.remaining) == (30_000, 90_000)
    assert bucket.available_at(90_000, T0) == T0


def test_daily_quota_periods_follow_local_midnight_across_dst() -> None:
    quota = daily_quota("requests", 10, timezone="America/Los_Angeles")
    pacific = ZoneInfo("America/Los_Angeles")
    # 2026-03-08 is the spring-forward day in the US: it lasts 23 hours.
    start, end = period_bounds(quota, _ns(datetime(2026, 3, 8, 12, tzinfo=pacific)))
    assert start == _ns(datetime(2026, 3, 8, tzinfo=pacific))
    assert end == _ns(datetime(2026, 3, 9, tzinfo=pacific))
    assert end - start == 23 * 3600 * S


def test_monthly_quota_periods_roll_over_the_year() -> None:
    quota = monthly_quota("cost", 10)
    start, end = period_bounds(quota, _ns(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)))
    assert start == _ns(datetime(2026, 12, 1, tzinfo=UTC))
    assert end == _ns(datetime(2027, 1, 1, tzinfo=UTC))


def test_a_quota_admits_its_total_then_waits_for_the_next_period() -> None:
    state = QuotaState(daily_quota("cost", 1_000))
    noon = T0 + 12 * 3600 * S
    mark = state.take(800, noon, "a")
    assert state.available_at(200, noon) == noon
    assert state.available_at(201, noon) == T0 + 86_400 * S
    state.settle(800, 500, mark, noon, "a")  # refund 300 within the same day
    assert state.available_at(500, noon) == noon
    state.settle(0, 0, mark, noon, "x")
    tomorrow = T0 + 86_400 * S + 1
    assert state.available_at(1_000, tomorrow) == tomorrow
    assert state.snapshot(tomorrow).used == 0


def test_a_refund_from_an_earlier_period_credits_nothing() -> None:
    state = QuotaState(daily_quota("cost", 1_000))
    mark = state.take(900, T0, "a")
    next_day = T0 + 86_400 * S
    state.take(1_000, next_day, "b")
    state.settle(900, 0, mark, next_day, "a")
    assert state.snapshot(next_day).used == 1_000


def test_a_quota_overrun_is_charged_to_the_current_period() -> None:
    state = QuotaState(daily_quota("cost", 1_000))
    mark = state.take(100, T0, "a")
    state.settle(100, 1_500, mark, T0, "a")
    assert state.snapshot(T0).used == 1_500
    assert state.snapshot(T0).remaining == 0


def test_leases_cap_calls_in_flight_and_expire_without_renewal() -> None:
    state = LeaseState(concurrency(2, ttl=10))
    state.take(1, T0, "a")
    state.take(1, T0 + S, "b")
    assert state.available_at(1, T0 + S) == T0 + 10 * S  # when lease "a" expires
    assert state.renew("a", T0 + 5 * S)
    assert state.available_at(1, T0 + 5 * S) == T0 + 11 * S  # now "b" expires first
    state.settle(1, 1, 0, T0 + 6 * S, "b")
    assert state.available_at(1, T0 + 6 * S) == T0 + 6 * S
    assert not state.renew("b", T0 + 6 * S)
    assert state.snapshot(T0 + 16 * S).used == 0
    assert state.is_idle(T0 + 16 * S)


def test_refunds_stay_exact_through_many_later_admissions() -> None:
    # A is held while many more admissions arrive faster than the bucket refills, most of them
    # settled at once (so the bucket compacts what it keeps); A's refund must still be exact.
    from fractions import Fraction  # noqa: PLC0415

    from quotaflow.core._rate_state import SLACK  # noqa: PLC0415

    bucket = RateState(tpm(1_000_000))  # 1,000,000 / 60 s: 50 tokens every 3 ms
    first = bucket.take(1_000, T0, "a")
    followers: list[tuple[int, int]] = []
    for k in range(3 * SLACK):
        time = T0 + (k + 1) * S // 1000
        mark = bucket.take(100, time, str(k))
        if k % 5:
            bucket.settle(100, 60, mark, time, str(k))
            followers.append((time, 60))
        else:
            followers.append((time, 100))
    assert len(bucket._q) <= SLACK + len(bucket._held)
    now = followers[-1][0]
    before = bucket.snapshot(now).used
    bucket.settle(1_000, 0, first, now, "a")
    rate = Fraction(1_000_000, 60 * S)
    still_held: Fraction = max(
        sum(amount for _, amount in followers[k:]) - rate * (now - followers[k][0])
        for k in range(len(followers))
    )
    exact = max(Fraction(before - 1_000), still_held)
    assert bucket.snapshot(now).used == -(-exact.numerator // exact.denominator)


def test_a_refund_counts_later_reservations_at_what_they_still_hold() -> None:
    # The steady state of reserving max_tokens: B, admitted after A, is settled (and refunded)
    # first. A's refund must then see B at the 1,000 it really used, not the 5,000 it reserved.
    bucket = RateState(tpm(60_000))  # 1,000 tokens per second
    mark_a = bucket.take(5_000, T0, "a")
    mark_b = bucket.take(5_000, T0 + S, "b")
    bucket.settle(5_000, 1_000, mark_b, T0 + 2 * S, "b")
    bucket.settle(5_000, 1_000, mark_a, T0 + 2 * S, "a")
    # Really used: 1,000 at t=0 and 1,000 at t=1 s, both refilled by t=2 s.
    assert bucket.snapshot(T0 + 2 * S).used == 0


def test_a_refund_between_two_reservations_keeps_the_later_one_counted() -> None:
    # A, B, C admitted in turn; B refunds everything, then A does. C's 5,000 (less its refill)
    # must still be counted: B's refund may not be credited a second time through A's.
    bucket = RateState(tpm(60_000))  # 1,000 tokens per second
    mark_a = bucket.take(5_000, T0, "a")
    mark_b = bucket.take(5_000, T0 + S, "b")
    bucket.take(5_000, T0 + 3 * S // 2, "c")
    bucket.settle(5_000, 0, mark_b, T0 + 2 * S, "b")
    bucket.settle(5_000, 0, mark_a, T0 + 2 * S, "a")
    assert bucket.snapshot(T0 + 2 * S).used == 4_500


def test_an_absorbed_refund_does_not_shrink_what_later_admissions_hold() -> None:
    # The bucket refills completely after "old", so old's refund is absorbed. It must not make
    # the bucket forget any of what "b", admitted later, still holds when "a" is refunded.
    bucket = RateState(tpm(6_000))  # 100 tokens per second
    old = bucket.take(2_000, T0, "old")
    later = T0 + 30 * S
    mark_a = bucket.take(1_000, later, "a")
    bucket.take(500, later + S // 10, "b")
    bucket.settle(2_000, 0, old, later + S // 10, "old")
    bucket.settle(1_000, 0, mark_a, later + 2 * S // 10, "a")
    assert bucket.snapshot(later + 2 * S // 10).used == 490  # b's 500, less 0.1 s of refill
