"""Several OS processes hammering one shared store, and the check that the limit held."""

from __future__ import annotations

import multiprocessing
import random
import time
from typing import Any

from quotaflow import Rate, Usage
from quotaflow._clock import SystemClock
from quotaflow.core import NS_PER_SECOND, Route
from quotaflow.stores import open_store

S = NS_PER_SECOND
RATE = Rate("requests", 200, 1, burst=0.1)  # 20 at once, 200 per second
TOKENS = Rate("tokens", 3_000, 1, burst=0.2)  # 600 at once, 3,000 per second
DURATION = 1.5


class WallClock(SystemClock):
    """The system's real-time clock: one time line for every process of the host."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()


def hammer(url: str, seed: int, start: Any, results: Any) -> None:
    """Admit as fast as possible for DURATION seconds; report (time, tokens used) of grants.

    Embedded stores run on the host's wall clock (shared by the processes); Redis on its own.
    """
    embedded = url.startswith("sqlite:")
    store = open_store(url, clock=WallClock() if embedded else None)
    route = Route([("shared", (RATE, TOKENS))])
    rng = random.Random(seed)  # noqa: S311 (seeded on purpose)
    grants: list[tuple[int, int]] = []
    refusals = 0
    start.wait()
    stop = time.monotonic() + DURATION
    index = 0
    while time.monotonic() < stop:
        index += 1
        rid = f"{seed}:{index}"
        tokens = rng.randint(1, 60)
        result = store.reserve(rid, route.claims(Usage(input_tokens=tokens)), 10 * S)
        if not result.granted:
            refusals += 1
            continue
        actual = rng.randint(0, tokens)
        assert store.settle(rid, Usage(input_tokens=actual))
        grants.append((result.now, actual))
    store.close()
    results.put((grants, refusals))


def check_guarantee(grants: list[tuple[int, int]], rate: Rate, amounts: list[int]) -> None:
    """Over every interval between two admissions, at most capacity + refill * length."""
    times = [at for at, _ in grants]
    prefix = [0]
    for amount in amounts:
        prefix.append(prefix[-1] + amount)
    for first in range(len(times)):
        for last in range(first, len(times)):
            admitted = prefix[last + 1] - prefix[first]
            bound = rate.capacity * rate.period_ns + rate.refill * (times[last] - times[first])
            assert admitted * rate.period_ns <= bound, (first, last, admitted)


def hammer_and_check(url: str, processes: int = 4) -> None:
    """Run ``processes`` hammers on ``url`` at once; the limits must hold and bind."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    workers = [
        context.Process(target=hammer, args=(url, seed, start, results))
        for seed in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.2)
        start.set()
        outcomes = [results.get(timeout=30) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert all(worker.exitcode == 0 for worker in workers)
    grants = sorted(grant for outcome, _ in outcomes for grant in outcome)
    refusals = sum(refused for _, refused in outcomes)
    check_guarantee(grants, RATE, [1] * len(grants))
    check_guarantee(grants, TOKENS, [used for _, used in grants])
    # The limit was the bottleneck, not the store: most of the rate was used (capacity plus
    # what refilled over the run) and more requests were refused than admitted.
    elapsed = (grants[-1][0] - grants[0][0]) / S
    possible = RATE.capacity + RATE.limit * elapsed
    assert len(grants) >= 0.7 * possible, (len(grants), possible, refusals)
    assert refusals > len(grants), (len(grants), possible, refusals)
