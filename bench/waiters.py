"""Waiters: 10,000 tasks queued on a tight limit; CPU while waiting, grant lateness, fairness.

Setup, on one scope with a single token-bucket limit (1,000 units/s, capacity 200):

1. A first request takes the whole capacity and is settled with a 2,000-unit overrun, so the
   bucket owes ~2 s of refill and nothing can be admitted for ~2 s.
2. A request of 20 units (20x the others) queues first, then 10,000 requests of 1 unit queue
   behind it; each task records when it called ``acquire`` and when it resumed.
3. Pure waiting: from the moment all are queued until just before the first grant is due, the
   process's CPU time (``time.process_time``) is compared with the wall time.
4. Grants: the queue drains at 1,000 units/s (~10 s). Each grant's lateness is the time the
   task resumed minus its ideal slot, computed with the bucket's own arithmetic from the known
   state after step 1 and the arrival order: the earliest time at which a FIFO token bucket
   had room for it. The store-side lateness (``Reservation.slot_time`` minus ideal) is shown too.
5. Fairness: the 20-unit request must be granted before every 1-unit request (a limiter that
   admits whatever fits would let the small ones overtake it forever under load).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Sequence
from typing import Any

from _common import Goal, goals_table, median, percentile, run_main, table
from quotaflow import Limiter, Rate, SystemClock

SCOPE = "openai:gpt-4o"
RATE = 1_000  # units per second
CAPACITY = 200
BIG = 20
NS = 1_000_000_000


def ideal_slots(tat: int, amounts: Sequence[int], arrivals: Sequence[int]) -> list[int]:
    """FIFO token-bucket slots (ns) for ``amounts`` arriving at ``arrivals``, from ``tat``.

    The bucket (capacity ``CAPACITY``, ``RATE`` units per second) is kept as a theoretical
    arrival time: a request of ``n`` fits at ``t`` when ``max(tat, t) + n/RATE <= t + C/RATE``.
    """
    tolerance = CAPACITY * NS // RATE
    slots = []
    previous = 0
    for amount, arrival in zip(amounts, arrivals, strict=True):
        interval = -(-amount * NS // RATE)
        slot = max(arrival, previous, tat + interval - tolerance)
        tat = max(tat, slot) + interval
        slots.append(slot)
        previous = slot
    return slots


def spread(values: Sequence[float]) -> str:
    """p50 / p99 / max of ``values``."""
    return f"{median(values):.3f} / {percentile(values, 0.99):.3f} / {max(values):.3f}"


async def run(quick: bool) -> dict[str, Any]:
    """Queue the waiters, measure, and check the goals."""
    waiters = 1_000 if quick else 10_000
    debt = 1_000 if quick else 2_000  # units owed: ~1 s / ~2 s of pure waiting
    clock = SystemClock()
    limiter = Limiter({SCOPE: Rate("tokens", RATE, 1.0, burst=CAPACITY / RATE)}, clock=clock)

    drain = await limiter.acquire(SCOPE, tokens=CAPACITY)
    await drain.settle(tokens=CAPACITY + debt)
    status = await limiter.status(SCOPE)
    tat = round(status.time * NS) + round(status.limits[0].resets_in * NS)

    count = waiters + 1
    arrived = [0] * count
    resumed = [0] * count
    store_slot = [0.0] * count
    order: list[int] = []

    async def wait(index: int, amount: int) -> None:
        arrived[index] = clock.now_ns()
        reservation = await limiter.acquire(SCOPE, tokens=amount)
        resumed[index] = clock.now_ns()
        store_slot[index] = reservation.slot_time
        order.append(index)

    tasks = [asyncio.create_task(wait(0, BIG))]
    await asyncio.sleep(0)  # the big request queues first
    tasks += [asyncio.create_task(wait(i, 1)) for i in range(1, count)]
    for _ in range(1_000):  # every task queues in its first step; allow a few more
        if (await limiter.status(SCOPE)).queue_depth == count:
            break
        await asyncio.sleep(0)
    else:
        raise RuntimeError("the waiters did not all queue")
    queued = clock.now_ns()
    amounts = [BIG] + [1] * waiters
    slots = ideal_slots(tat, amounts, arrived)

    # Pure waiting: nothing is due until slots[0]; stop 50 ms before it.
    window_end = slots[0] - 50_000_000
    wall0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.sleep(max(0, window_end - clock.now_ns()) / NS)
    idle_wall, idle_cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    # Grants.
    wall1, cpu1 = time.perf_counter(), time.process_time()
    await asyncio.gather(*tasks)
    grant_wall, grant_cpu = time.perf_counter() - wall1, time.process_time() - cpu1
    await limiter.aclose()

    lateness = [(resumed[i] - slots[i]) / 1e6 for i in range(count)]
    store_lateness = [
        (round(store_slot[i] * NS) - slots[i]) / 1e6 for i in range(count)
    ]  # float epoch seconds: ~0.25 µs resolution
    big_first = order[0] == 0
    inversions = sum(1 for a, b in itertools.pairwise(order) if a > b)
    idle_share = idle_cpu / idle_wall if idle_wall > 0 else float("nan")

    print(
        table(
            f"Waiters: {waiters:,} queued behind a {BIG}-unit request; {RATE:,} units/s",
            ("measure", "value"),
            [
                ("time to queue all (s)", f"{(queued - arrived[0]) / NS:.3f}"),
                ("pure waiting window (s)", f"{idle_wall:.3f}"),
                ("CPU while waiting (% of one core)", f"{idle_share:.2%}"),
                ("grant phase (s)", f"{grant_wall:.3f}"),
                ("CPU during grants (% of one core)", f"{grant_cpu / grant_wall:.2%}"),
                ("lateness at resume p50 / p99 / max (ms)", spread(lateness)),
                ("lateness in the store p50 / p99 / max (ms)", spread(store_lateness)),
                ("earliest grant vs ideal (ms)", f"{min(lateness):.3f}"),
                ("big request served first", "yes" if big_first else "NO"),
                ("grants out of arrival order", inversions),
            ],
        )
    )
    p99 = percentile(lateness, 0.99)
    goals = [
        Goal(
            "waiters",
            f"CPU ≤ 5% of a core while {waiters:,} tasks wait",
            f"{idle_share:.2%} over {idle_wall:.2f} s",
            idle_share <= 0.05,
        ),
        Goal("waiters", "grant lateness p99 ≤ 5 ms", f"{p99:.3f} ms", p99 <= 5.0),
        Goal(
            "waiters",
            f"a {BIG}x larger request queued first is served first",
            f"{'first' if big_first else 'not first'}, {inversions} out-of-order grants",
            big_first and inversions == 0,
        ),
    ]
    print(goals_table(goals))
    return {
        "benchmark": "waiters",
        "waiters": waiters,
        "rate": RATE,
        "capacity": CAPACITY,
        "idle_wall_s": idle_wall,
        "idle_cpu_s": idle_cpu,
        "grant_wall_s": grant_wall,
        "grant_cpu_s": grant_cpu,
        "lateness_ms": {
            "p50": median(lateness),
            "p99": p99,
            "max": max(lateness),
            "min": min(lateness),
        },
        "store_lateness_ms": {
            "p50": median(store_lateness),
            "p99": percentile(store_lateness, 0.99),
            "max": max(store_lateness),
        },
        "big_first": big_first,
        "inversions": inversions,
        "goals": goals,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    return run_main(__doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
