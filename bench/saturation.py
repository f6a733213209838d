"""Saturation: 64 concurrent workers drive quotaflow against a simulated provider for 15 s.

The limiter has exactly the provider's limits. The provider is
``quotaflow.testing.SimulatedProvider``: continuous-refill buckets, exact arithmetic, the
actual usage charged when the call is made.
Each worker loops: reserve input + estimated output tokens, call the provider, wait for the
simulated latency, settle with the actual output. Token counts and latencies are lognormal
from a fixed seed. Tokens are the binding limit; the request limit is set well above need.

Cases:

* ``exact``: the output estimate equals the actual output (goal: zero rejections, >= 99% of
  admissible tokens used).
* ``max_tokens``: the worker reserves input + ``max_tokens`` (4,096) while the actual output
  is ~300, settled after the call (goal: zero rejections, >= 95% used).
* ``max_tokens, per minute``: the same with per-minute limits, as providers publish them.

Why a 10-second window for the first two: with per-minute limits a 15-second run is mostly the
initial burst (capacity = a minute's worth, against a quarter minute of refill), which any
limiter that does not waste capacity fills easily. With a 10 s window, 60% of the admissible
tokens come from the refill, so the steady state dominates. Admissible = capacity + refill rate
x duration either way; the per-minute case is reported too.

A limiter that reserves ``max_tokens`` holds the unused part of every call in flight until the
call is settled. At the end of the run those tokens are still reserved and were never sent, so
no such limiter can reach 100%; the table reports that in-flight over-reservation at the end
and the utilisation it leaves as a ceiling ("ceiling" = (accepted + reserved-unused at the end)
/ admissible), so that the limiter's own losses can be told apart from this structural one.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import Goal, goals_table, median, percentile, run_main, table
from quotaflow import AcquireTimeoutError, Limiter, Rate
from quotaflow.core import NS_PER_SECOND
from quotaflow.testing import SimulatedProvider

SCOPE = "openai:gpt-4o"
CONCURRENCY = 64
SEED = 20_250_101
MAX_TOKENS = 4_096


@dataclass(frozen=True)
class Scenario:
    """One saturation case."""

    name: str
    period: float  # seconds, for both limits
    tokens_limit: int
    requests_limit: int
    max_tokens: int | None  # reserve this as output; None: reserve the actual output
    goal: float  # utilisation to reach


SCENARIOS = (
    Scenario("exact estimate, 10 s window", 10.0, 100_000, 1_000, None, 0.99),
    Scenario("max_tokens=4096, 10 s window", 10.0, 100_000, 1_000, MAX_TOKENS, 0.95),
    Scenario("max_tokens=4096, per minute", 60.0, 600_000, 6_000, MAX_TOKENS, 0.95),
)


@dataclass(frozen=True)
class Job:
    """One simulated call."""

    index: int
    input_tokens: int
    output_tokens: int
    latency: float


def jobs(seed: int) -> Iterator[Job]:
    """Lognormal input (median 1,000), output (median 300) and latency (median 0.6 s)."""
    rng = random.Random(seed)
    index = 0
    while True:
        input_tokens = min(16_000, max(50, round(rng.lognormvariate(math.log(1_000), 0.6))))
        output_tokens = min(MAX_TOKENS, max(1, round(rng.lognormvariate(math.log(300), 0.5))))
        latency = min(3.0, max(0.05, rng.lognormvariate(math.log(0.6), 0.35)))
        yield Job(index, input_tokens, output_tokens, latency)
        index += 1


@dataclass
class Call:
    """A call the provider accepted: when it was made and settled, what it over-reserved."""

    made_ns: int
    settled_ns: int | None
    unused: int  # tokens reserved but not used


@dataclass(frozen=True)
class Sample:
    """The accounting of both sides at one instant of a run.

    ``overcount`` = provider free - limiter free - reserved-unused in flight: tokens the
    limiter counts as used although the provider has them (0 for exact accounting; positive
    when refunds are given back conservatively).
    """

    t: float
    provider_free: float
    limiter_free: int
    inflight_unused: int

    @property
    def overcount(self) -> float:
        """Tokens the limiter holds back beyond the reservations in flight."""
        return self.provider_free - self.limiter_free - self.inflight_unused


@dataclass
class Outcome:
    """What one case measured."""

    scenario: str
    duration_s: float
    accepted_tokens: int
    accepted_requests: int
    admissible_tokens: float
    unused_at_end: int
    rejections: int
    rejection_details: list[str]
    waits: list[float] = field(repr=False)
    samples: list[Sample] = field(repr=False)
    timeouts: int = 0

    @property
    def utilisation(self) -> float:
        """Tokens accepted by the provider / admissible tokens."""
        return self.accepted_tokens / self.admissible_tokens

    @property
    def ceiling(self) -> float:
        """Utilisation had the tokens reserved but unused at the end been sent."""
        return (self.accepted_tokens + self.unused_at_end) / self.admissible_tokens


async def run_case(scenario: Scenario, duration: float) -> Outcome:
    """Run one scenario for ``duration`` seconds."""
    limiter = Limiter(
        {
            SCOPE: [
                Rate("requests", scenario.requests_limit, scenario.period),
                Rate("tokens", scenario.tokens_limit, scenario.period),
            ]
        }
    )
    source = jobs(SEED)
    calls: list[Call] = []
    waits: list[float] = []
    timeouts = 0
    start = time.monotonic_ns()
    end = start + round(duration * NS_PER_SECOND)
    provider = SimulatedProvider(
        {
            "requests": (scenario.requests_limit, scenario.period),
            "tokens": (scenario.tokens_limit, scenario.period),
        }
    )

    async def worker() -> None:
        nonlocal timeouts
        while (now := time.monotonic_ns()) < end:
            job = next(source)
            estimate = job.output_tokens if scenario.max_tokens is None else scenario.max_tokens
            try:
                reservation = await limiter.acquire(
                    SCOPE,
                    input_tokens=job.input_tokens,
                    output_tokens=estimate,
                    timeout=(end - now) / NS_PER_SECOND,
                )
            except AcquireTimeoutError:
                timeouts += 1
                return
            made = time.monotonic_ns()
            if made >= end:
                await reservation.cancel()
                return
            waits.append(reservation.wait_time)
            actual = job.input_tokens + job.output_tokens
            if not provider.call({"requests": 1, "tokens": actual}, made):
                await reservation.cancel()  # a 429 is not charged: give everything back
                continue
            call = Call(made, None, estimate - job.output_tokens)
            calls.append(call)
            await asyncio.sleep(job.latency)
            await reservation.settle(output_tokens=job.output_tokens)
            call.settled_ns = time.monotonic_ns()

    samples: list[Sample] = []

    async def monitor() -> None:
        """Sample both sides' accounting once a second and at the end."""
        tick = start
        while tick < end:
            tick = min(end, tick + NS_PER_SECOND)
            await asyncio.sleep(max(0, tick - time.monotonic_ns()) / NS_PER_SECOND)
            status = await limiter.status(SCOPE)
            now = time.monotonic_ns()
            tokens = next(s for s in status.limits if s.metric == "tokens")
            inflight = sum(c.unused for c in calls if c.settled_ns is None)
            samples.append(
                Sample(
                    (now - start) / NS_PER_SECOND,
                    provider.level("tokens", now),
                    tokens.remaining,
                    inflight,
                )
            )

    await asyncio.gather(monitor(), *(worker() for _ in range(CONCURRENCY)))
    await limiter.aclose()
    unused_at_end = sum(
        c.unused for c in calls if c.made_ns < end and (c.settled_ns is None or c.settled_ns >= end)
    )
    details = [
        f"t={(r.at_ns - start) / NS_PER_SECOND:.3f}s {r.metric}: wanted {r.wanted}, "
        f"had {r.available:.3f}"
        for r in provider.rejections[:5]
    ]
    return Outcome(
        scenario=scenario.name,
        duration_s=(end - start) / NS_PER_SECOND,
        accepted_tokens=provider.accepted["tokens"],
        accepted_requests=provider.accepted["requests"],
        admissible_tokens=provider.admissible("tokens", (end - start) / NS_PER_SECOND),
        unused_at_end=unused_at_end,
        rejections=len(provider.rejections),
        rejection_details=details,
        waits=waits,
        samples=samples,
        timeouts=timeouts,
    )


def evaluate(scenarios: Sequence[Scenario], outcomes: Sequence[Outcome]) -> list[Goal]:
    """Zero rejections and the utilisation goal of each case."""
    goals = []
    for scenario, outcome in zip(scenarios, outcomes, strict=True):
        goals.append(
            Goal(
                "saturation",
                f"{scenario.name}: 0 rejections, ≥ {scenario.goal:.0%} of admissible tokens",
                f"{outcome.rejections} rejections, {outcome.utilisation:.2%} "
                f"(ceiling {outcome.ceiling:.2%})",
                outcome.rejections == 0 and outcome.utilisation >= scenario.goal,
            )
        )
    return goals


async def run(quick: bool) -> dict[str, Any]:
    """Run every scenario; print and return the results."""
    duration = 3.0 if quick else 15.0
    outcomes = [await run_case(s, duration) for s in SCENARIOS]
    rows = [
        (
            o.scenario,
            f"{o.duration_s:.1f}",
            o.rejections,
            f"{o.accepted_tokens:,}",
            f"{o.admissible_tokens:,.0f}",
            f"{o.utilisation:.2%}",
            f"{o.unused_at_end:,}",
            f"{o.ceiling:.2%}",
            f"{o.accepted_requests / o.duration_s:.1f}",
            f"{o.accepted_tokens / o.duration_s:,.0f}",
            f"{o.samples[-1].overcount:,.0f}" if o.samples else "",
            f"{median(o.waits):.3f} / {percentile(o.waits, 0.99):.3f}",
        )
        for o in outcomes
    ]
    print(
        table(
            f"Saturation: {CONCURRENCY} workers, {duration:.0f} s per case, seed {SEED}",
            (
                "case",
                "s",
                "429s",
                "tokens accepted",
                "admissible",
                "utilisation",
                "reserved-unused at end",
                "ceiling",
                "req/s",
                "tokens/s",
                "limiter over-count at end",
                "wait p50 / p99 s",
            ),
            rows,
        )
    )
    for o in outcomes:
        for line in o.rejection_details:
            print(f"rejection in {o.scenario!r}: {line}")
    goals = evaluate(SCENARIOS, outcomes)
    print(goals_table(goals))
    return {
        "benchmark": "saturation",
        "concurrency": CONCURRENCY,
        "seed": SEED,
        "scenarios": [s.__dict__ for s in SCENARIOS],
        "results": [
            {
                "scenario": o.scenario,
                "duration_s": o.duration_s,
                "rejections": o.rejections,
                "rejection_details": o.rejection_details,
                "accepted_tokens": o.accepted_tokens,
                "accepted_requests": o.accepted_requests,
                "admissible_tokens": o.admissible_tokens,
                "utilisation": o.utilisation,
                "unused_at_end": o.unused_at_end,
                "ceiling": o.ceiling,
                "wait_p50_s": median(o.waits),
                "wait_p99_s": percentile(o.waits, 0.99),
                "timeouts": o.timeouts,
                "samples": [
                    {**sample.__dict__, "overcount": sample.overcount} for sample in o.samples
                ],
            }
            for o in outcomes
        ],
        "goals": goals,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    return run_main(__doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
