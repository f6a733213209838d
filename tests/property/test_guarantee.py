"""The promise, checked on random histories: never exceed a limit, whatever the sequence.

A random history of admissions, settlements (under and over the estimate), cancellations and
waits runs against the engine. Afterwards the history is replayed through an exact model of
the provider (``Fraction`` arithmetic) that sees only what each call really used: actual usage
at admission time, overruns at settlement time. Every admission must find room there. That is
the same as "usage in any interval of length T is at most C + r*T" and it also proves that no
refund minted capacity: a minted refund would let a later admission overdraw the provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from quotaflow import Quota, Rate, Usage, daily_quota
from quotaflow.core import NS_PER_SECOND, Engine, Route
from quotaflow.core._quota_state import period_bounds

S = NS_PER_SECOND
T0 = 1_767_225_600 * S
TTL = 10**6 * S


@dataclass
class Call:
    start: int
    reserved: int
    order: int  # position in the history, to order events that share a timestamp
    actual: int | None = None  # None: never settled (counts as reserved)
    settled_at: int | None = None
    settle_order: int = 0
    cancelled: bool = False


@dataclass
class History:
    calls: list[Call] = field(default_factory=list)


# Amounts are per mille of the limit's capacity, so that single calls can fill the bucket and
# settlements range from nothing used to a 50% overrun.
op = st.one_of(
    st.tuples(st.just("wait"), st.integers(1, 40_000)),  # milliseconds
    st.tuples(
        st.just("reserve"),
        st.sampled_from([0, 1, 10, 100, 300, 500, 900, 1_000]) | st.integers(0, 1_000),
    ),
    st.tuples(
        st.just("settle"), st.integers(0, 10**6), st.sampled_from([0, 0, 1, 100, 500, 1_000, 1_500])
    ),
    st.tuples(st.just("cancel"), st.integers(0, 10**6)),
)


def run(
    limit: Rate | Quota,
    ops: Sequence[tuple[Any, ...]],
    *,
    sweep: bool = True,
) -> History:
    """Run ``ops``; without ``sweep`` idle state is never dropped (states then see every case)."""
    engine = Engine(sweep_interval_ns=60 * S if sweep else 10**9 * S)
    route = Route([("s", (limit,))])
    now = T0
    history = History()
    open_calls: list[int] = []
    for position, step in enumerate(ops):
        kind = step[0]
        if kind == "wait":
            now += int(step[1]) * S // 1000
        elif kind == "reserve":
            amount = int(step[1]) * limit.capacity // 1_000
            rid = str(len(history.calls))
            if engine.reserve(rid, route.claims(Usage(tokens=amount)), now, TTL).granted:
                history.calls.append(Call(now, amount, position))
                open_calls.append(len(history.calls) - 1)
        elif open_calls:
            index = open_calls.pop(int(step[1]) % len(open_calls))
            call = history.calls[index]
            call.settled_at, call.settle_order = now, position
            if kind == "settle":
                call.actual = int(step[2]) * call.reserved // 1_000
                engine.settle(str(index), Usage(tokens=call.actual), now)
            else:
                call.cancelled = True
                engine.settle(str(index), None, now)
    return history


def events(history: History) -> list[tuple[int, int, int, int]]:
    """(time, order, admitted, debt): admissions carry what was really used, overruns follow."""
    out = []
    for call in history.calls:
        used = 0 if call.cancelled else call.reserved if call.actual is None else call.actual
        out.append((call.start, call.order, min(used, call.reserved), 0))
        if used > call.reserved and call.settled_at is not None:
            out.append((call.settled_at, call.settle_order, 0, used - call.reserved))
    return sorted(out)


@settings(max_examples=500, deadline=None)
@given(
    sweep=st.booleans(),
    limit=st.sampled_from(
        [
            Rate("tokens", 6_000, 60),
            Rate("tokens", 60_000, 60),
            Rate("tokens", 1_000, 7),
            Rate("tokens", 1_200, 60, burst=0.5),
        ]
    ),
    ops=st.lists(op, max_size=80),
)
# The history that a naive refund gets wrong: a full-bucket reservation refunded after a later
# admission used the capacity that had refilled meanwhile.
@example(
    limit=Rate("tokens", 6_000, 60),
    ops=[("reserve", 1000), ("wait", 30000), ("reserve", 500), ("settle", 0, 0), ("reserve", 1000)],
    sweep=False,
)
# A refund between two other reservations must not be credited twice through the earlier one.
@example(
    limit=Rate("tokens", 60_000, 60),
    ops=[
        *[("reserve", 83), ("wait", 1000), ("reserve", 83), ("wait", 500), ("reserve", 83)],
        *[("wait", 500), ("settle", 1, 0), ("settle", 0, 0), ("reserve", 933)],
    ],
    sweep=False,
)
def test_a_rolling_rate_never_admits_more_than_the_provider_bucket_holds(
    limit: Rate, ops: list[tuple[str, int]], sweep: bool
) -> None:
    history = run(limit, ops, sweep=sweep)
    rate = Fraction(limit.refill, limit.period_ns)
    level = Fraction(limit.capacity)
    last = T0
    for time, _, admitted, debt in events(history):
        level = min(Fraction(limit.capacity), level + rate * (time - last))
        last = time
        # A call that uses nothing never overdraws (zero amounts are admitted even in debt).
        assert admitted == 0 or level >= admitted, f"overdrawn by {admitted - level} at {time - T0}"
        level -= admitted + debt


@settings(max_examples=500, deadline=None)
@given(ops=st.lists(op, max_size=80), sweep=st.booleans())
@example(ops=[("reserve", 1000), ("reserve", 1)], sweep=True)  # one unit past the total
# A refund of yesterday's reservation must not credit today's spending.
@example(
    ops=[
        ("reserve", 500),
        *[("wait", 40_000)] * 5,
        ("reserve", 1000),
        ("settle", 0, 0),
        ("reserve", 500),
    ],
    sweep=False,
)
def test_a_calendar_quota_never_admits_more_than_its_period_total(
    ops: list[tuple[str, int]], sweep: bool
) -> None:
    quota = daily_quota("tokens", 1_001)  # odd, so that sums can land one past the total
    scaled = [(o[0], o[1] * 500) if o[0] == "wait" else o for o in ops]  # waits of up to 5.5 h
    history = run(quota, scaled, sweep=sweep)
    spent: dict[int, int] = {}
    for time, _, admitted, debt in events(history):
        period = period_bounds(quota, time)[0]
        if admitted:
            assert spent.get(period, 0) + admitted <= quota.limit
        spent[period] = spent.get(period, 0) + admitted + debt


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(1, 6_000),
    others=st.lists(st.integers(1, 6_000), max_size=5),
    wait_ms=st.integers(0, 120_000),
)
def test_cancelling_frees_exactly_what_was_reserved(
    first: int, others: list[int], wait_ms: int
) -> None:
    """After a cancel the state is as if the reservation had never been made."""
    limit = Rate("tokens", 6_000, 60)
    route = Route([("s", (limit,))])
    with_cancel, without = Engine(), Engine()
    now = T0
    with_cancel.reserve("x", route.claims(Usage(tokens=first)), now, TTL)
    now += wait_ms * S // 1000
    with_cancel.settle("x", None, now)
    for index, amount in enumerate(others):
        a = with_cancel.reserve(str(index), route.claims(Usage(tokens=amount)), now, TTL)
        b = without.reserve(str(index), route.claims(Usage(tokens=amount)), now, TTL)
        assert a == b
