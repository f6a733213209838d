"""FIFO holds for any arrival pattern: grants follow arrival order, cancellations included."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from quotaflow import Limiter, Reservation, tpm
from quotaflow.testing import FakeClock, let_tasks_run


def record(granted: list[int], index: int) -> Callable[[asyncio.Task[Reservation]], None]:
    def done(task: asyncio.Task[Reservation]) -> None:
        if not task.cancelled():
            granted.append(index)

    return done


@settings(max_examples=100, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.integers(1, 6_000), st.integers(0, 3_000), st.booleans()),
        min_size=1,
        max_size=25,
    )
)
def test_grants_follow_arrival_order(arrivals: list[tuple[int, int, bool]]) -> None:
    """Each arrival is (tokens, milliseconds after the previous one, cancelled while waiting)."""

    async def scenario() -> None:
        clock = FakeClock()
        limiter = Limiter({"m": [tpm(6_000)]}, clock=clock)
        await limiter.acquire("m", tokens=6_000)  # start saturated
        granted: list[int] = []
        tasks: list[asyncio.Task[Reservation]] = []
        for index, (tokens, gap_ms, _) in enumerate(arrivals):
            clock.advance(gap_ms / 1000)
            await let_tasks_run()
            task = asyncio.create_task(limiter.acquire("m", tokens=tokens))
            task.add_done_callback(record(granted, index))
            tasks.append(task)
            await let_tasks_run()
        for task, (_, _, cancel) in zip(tasks, arrivals, strict=True):
            if cancel and not task.done():
                task.cancel()
        await let_tasks_run()
        for _ in range(2_000):  # bounded: at most 25 x 6,000 tokens at 100 tokens/s
            if all(task.done() for task in tasks):
                break
            clock.advance(1)
            await let_tasks_run()
        assert all(task.done() for task in tasks)
        assert granted == sorted(granted)
        assert limiter._room.depth("m") == 0

    asyncio.run(scenario())
