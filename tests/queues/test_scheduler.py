"""The scheduler alone: priorities, arrival order, aging, minimum shares."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quotaflow.core import NS_PER_SECOND
from quotaflow.queue._scheduler import PriorityScheduler

S = NS_PER_SECOND


def make(
    aging: float | None = None, min_share: dict[int, float] | None = None, window: float = 60.0
) -> PriorityScheduler[str]:
    return PriorityScheduler(aging=aging, min_share=min_share or {}, window=window)


def test_one_priority_is_served_in_arrival_order() -> None:
    scheduler = make()
    for name in "abc":
        scheduler.add(name, 0, 0, 1)
    assert [scheduler.take(0).item for _ in range(3)] == ["a", "b", "c"]  # type: ignore[union-attr]
    assert scheduler.take(0) is None
    assert len(scheduler) == 0


def test_a_higher_priority_goes_first_whatever_its_arrival() -> None:
    scheduler = make()
    scheduler.add("low", 0, 0, 1)
    scheduler.add("high", 5, 1, 1)
    scheduler.add("mid", 2, 2, 1)
    assert [scheduler.take(3).item for _ in range(3)] == ["high", "mid", "low"]  # type: ignore[union-attr]


def test_aging_lifts_a_long_waiting_request_above_newcomers() -> None:
    scheduler = make(aging=10.0)
    scheduler.add("old-low", 0, 0, 1)
    scheduler.add("new-high", 2, 19 * S, 1)
    # At 19 s the old request's effective priority is 1.9: the newcomer still wins.
    assert scheduler.peek(19 * S).item == "new-high"  # type: ignore[union-attr]
    # At 21 s it is 2.1 (the newcomer has aged 0.2 to 2.2): still the newcomer...
    assert scheduler.peek(21 * S).item == "new-high"  # type: ignore[union-attr]
    # ...but a newcomer arriving at 25 s (2.0) loses to 2.5.
    scheduler.add("newer-high", 2, 25 * S, 1)
    assert scheduler.take(25 * S).item == "new-high"  # type: ignore[union-attr]
    assert scheduler.take(25 * S).item == "old-low"  # type: ignore[union-attr]


def test_without_aging_a_low_priority_waits_for_every_higher_one() -> None:
    scheduler = make(aging=None)
    scheduler.add("low", 0, 0, 1)
    scheduler.add("high", 1, 3600 * S, 1)
    assert scheduler.take(7200 * S).item == "high"  # type: ignore[union-attr]


def take_all(scheduler: PriorityScheduler[str], count: int) -> list[int]:
    taken = []
    for _ in range(count):
        entry = scheduler.take(0)
        assert entry is not None
        scheduler.admitted(entry, 0)
        taken.append(entry.priority)
    return taken


def test_a_class_with_a_minimum_share_gets_it_while_it_waits() -> None:
    scheduler = make(min_share={0: 0.25})
    for i in range(400):
        scheduler.add(f"low{i}", 0, 0, 1)
        scheduler.add(f"high{i}", 9, 0, 1)
    taken = take_all(scheduler, 400)
    assert taken[:8] == [9, 9, 9, 0, 9, 9, 9, 0]  # it earns every fourth admission
    assert taken.count(0) / len(taken) == 0.25


def test_shares_are_earned_in_weight() -> None:
    scheduler = make(min_share={0: 0.5})
    for i in range(10):
        scheduler.add(f"big{i}", 0, 0, 300)
    for i in range(100):
        scheduler.add(f"small{i}", 9, 0, 100)
    taken = take_all(scheduler, 40)
    # A 300-weight request is due after 300 of admissions: half the weight each way.
    assert taken[:8] == [9, 9, 9, 0, 9, 9, 9, 0]


def test_an_idle_class_banks_no_credit() -> None:
    scheduler = make(min_share={0: 0.25})
    for i in range(20):
        scheduler.add(f"high{i}", 9, 0, 1)
    take_all(scheduler, 10)  # nothing of class 0 waits meanwhile
    for i in range(20):
        scheduler.add(f"low{i}", 0, 0, 1)
    assert take_all(scheduler, 5) == [9, 9, 9, 0, 9]  # no burst of low requests


def test_shares_are_weighted_and_decay() -> None:
    scheduler = make(window=10.0)
    a = scheduler.add("a", 0, 0, 300)
    b = scheduler.add("b", 1, 0, 100)
    scheduler.take(0)
    scheduler.take(0)
    scheduler.admitted(a, 0)
    scheduler.admitted(b, 0)
    assert scheduler.shares(0) == {0: 0.75, 1: 0.25}
    c = scheduler.add("c", 1, 0, 300)
    scheduler.take(0)
    scheduler.admitted(c, 10 * S)  # the earlier work counts half by now
    shares = scheduler.shares(10 * S)
    assert abs(shares[1] - (50 + 300) / (150 + 50 + 300)) < 1e-9


def test_put_back_restores_the_head_and_discard_forgets() -> None:
    scheduler = make()
    scheduler.add("a", 0, 0, 1)
    b = scheduler.add("b", 0, 0, 1)
    first = scheduler.take(0)
    assert first is not None
    scheduler.put_back(first)
    assert scheduler.peek(0) is first
    scheduler.discard(b)
    assert len(scheduler) == 1
    assert scheduler.depths() == {0: 1}
    assert list(scheduler.drain()) == ["a"]
    assert scheduler.take(0) is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=60),
)
def test_with_aging_nothing_starves(arrivals: list[tuple[int, int]]) -> None:
    """A request is taken before any request that arrives ``aging * spread`` seconds later."""
    scheduler = make(aging=1.0)
    now = 0
    waiting: dict[str, int] = {}
    order = []
    for i, (priority, gap) in enumerate(arrivals):
        now += gap * S
        scheduler.add(f"r{i}", priority, now, 1)
        waiting[f"r{i}"] = now
        if i % 2:  # serve one request every other arrival: the queue keeps growing
            entry = scheduler.take(now)
            assert entry is not None
            order.append((entry.item, now))
    while (entry := scheduler.take(now)) is not None:
        order.append((entry.item, now))
    # Priorities span 0..3, so a request is never overtaken by one arriving > 3 s later.
    position = {name: k for k, (name, _) in enumerate(order)}
    for a, arrived_a in waiting.items():
        for b, arrived_b in waiting.items():
            if arrived_b > arrived_a + 3 * S:
                assert position[a] < position[b], (a, b)
