"""Overhead: microseconds per acquire and per settle, uncontended, quotaflow against its peers.

Every subject gets limits so large that nothing ever waits, and is driven the same way: a
batch of 256 acquires is timed, then the 256 settles (refunds) of that batch are timed, and so
on, so that no subject accumulates unbounded state. After a warm-up, each repeat runs as many
batches as fit in about a quarter of a second; repeats are interleaved across subjects (one
repeat of each, then the next round), and the reported figure is the median over repeats.
Garbage collection is collected before and disabled during each repeat, for every subject.

The call pattern is an LLM call that reserves 900 input tokens plus ``max_tokens`` = 4,096
output tokens (4,996 tokens) and is settled with 300 actual output tokens. Peers that cannot
give tokens back (aiolimiter, pyrate-limiter, throttled-py) are charged the reservation and
their settle is reported as n/a. Limits: 1 = tokens per minute; 2 = requests + tokens per
minute; 4 = requests, tokens, input and output tokens per minute. Peers with one limit per
limiter object are composed the way a user would compose them: one limiter per limit, awaited
in turn.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from _common import Goal, goals_table, median, run_main, table

BATCH = 256
INPUT, MAX_OUTPUT, OUTPUT = 900, 4_096, 300
RESERVED = INPUT + MAX_OUTPUT
HUGE = 10**12  # per minute: nothing ever waits

#: Amount each metric is charged per call, in the order limits are added.
METRICS = ("tokens", "requests", "input_tokens", "output_tokens")
AMOUNT = {"tokens": RESERVED, "requests": 1, "input_tokens": INPUT, "output_tokens": MAX_OUTPUT}
ACTUAL = {"tokens": INPUT + OUTPUT, "requests": 1, "input_tokens": INPUT, "output_tokens": OUTPUT}


def metrics_for(limits: int) -> tuple[str, ...]:
    """1 limit: tokens; 2: requests + tokens; 4: requests, tokens, input, output."""
    return {1: ("tokens",), 2: ("requests", "tokens"), 4: METRICS}[limits]


class Subject:
    """A limiter under test: acquire a batch, settle a batch."""

    name = ""
    can_settle = True

    def __init__(self, limits: int) -> None:
        self.limits = limits

    @property
    def label(self) -> str:
        """How the subject appears in tables."""
        return self.name

    async def acquire_batch(self, n: int) -> list[Any]:
        """Acquire ``n`` times; return what settling needs."""
        raise NotImplementedError

    async def settle_batch(self, handles: list[Any]) -> None:
        """Settle every handle with the actual usage."""

    async def close(self) -> None:
        """Release resources."""


class Quotaflow(Subject):
    """quotaflow's async Limiter on its default memory store."""

    name = "quotaflow"

    def __init__(self, limits: int, *, scopes: int = 1) -> None:
        super().__init__(limits)
        from quotaflow import Limiter, itpm, otpm, rpm, tpm  # noqa: PLC0415 (a missing peer is reported)

        make = {"tokens": tpm, "requests": rpm, "input_tokens": itpm, "output_tokens": otpm}
        per_scope = limits // scopes
        chosen = metrics_for(per_scope)
        names = ["openai:gpt-4o", "user:1"][:scopes]
        self.scopes: str | list[str] = names[0] if scopes == 1 else names
        self.limiter = Limiter({name: [make[m](HUGE) for m in chosen] for name in names})
        self.scope_count = scopes

    @property
    def label(self) -> str:
        """Name, plus the scope layout when it spans several."""
        if self.scope_count > 1:
            return f"quotaflow ({self.scope_count} scopes x {self.limits // self.scope_count})"
        return self.name

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await limiter.acquire(scope, input_tokens=..., output_tokens=...)``."""
        acquire, scopes = self.limiter.acquire, self.scopes
        return [
            await acquire(scopes, input_tokens=INPUT, output_tokens=MAX_OUTPUT) for _ in range(n)
        ]

    async def settle_batch(self, handles: list[Any]) -> None:
        """``await reservation.settle(output_tokens=...)``."""
        for reservation in handles:
            await reservation.settle(output_tokens=OUTPUT)


class AioLimiter(Subject):
    """aiolimiter.AsyncLimiter, one per limit, awaited in turn; cannot refund."""

    name = "aiolimiter"
    can_settle = False

    def __init__(self, limits: int) -> None:
        super().__init__(limits)
        from aiolimiter import AsyncLimiter  # noqa: PLC0415 (a missing peer is reported)

        self.pairs = [(AsyncLimiter(HUGE, 60), AMOUNT[m]) for m in metrics_for(limits)]

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await a.acquire(1); await b.acquire(tokens)``."""
        if len(self.pairs) == 2:  # the common case, written as a user would write it
            (a, amount_a), (b, amount_b) = self.pairs
            for _ in range(n):
                await a.acquire(amount_a)
                await b.acquire(amount_b)
        else:
            pairs = self.pairs
            for _ in range(n):
                for limiter, amount in pairs:
                    await limiter.acquire(amount)
        return []


class PyrateLimiter(Subject):
    """pyrate-limiter: one Limiter per limit on an in-memory token bucket; cannot refund."""

    name = "pyrate-limiter"
    can_settle = False

    def __init__(self, limits: int) -> None:
        super().__init__(limits)
        from pyrate_limiter import Duration, Limiter, Rate, StateBucket, TokenBucket  # noqa: PLC0415 (a missing peer is reported)

        self.pairs: list[tuple[Any, int]] = [
            (
                Limiter(StateBucket([Rate(HUGE, Duration.MINUTE)], algorithm=TokenBucket())),
                AMOUNT[m],
            )
            for m in metrics_for(limits)
        ]

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await limiter.try_acquire_async(name, weight)`` per limit."""
        pairs = self.pairs
        for _ in range(n):
            for limiter, amount in pairs:
                if not await limiter.try_acquire_async("openai:gpt-4o", amount):
                    raise RuntimeError("pyrate-limiter refused an uncontended acquire")
        return []

    async def close(self) -> None:
        """Stop the leak threads."""
        for limiter, _ in self.pairs:
            limiter.close()


class ThrottledPy(Subject):
    """throttled-py's asyncio Throttled, token bucket on its memory store; cannot refund."""

    name = "throttled-py"
    can_settle = False

    def __init__(self, limits: int) -> None:
        super().__init__(limits)
        from throttled.asyncio import MemoryStore, RateLimiterType, Throttled, per_min  # noqa: PLC0415 (a missing peer is reported)

        store = MemoryStore()
        self.pairs = [
            (
                Throttled(
                    key=f"openai:gpt-4o:{m}",
                    using=RateLimiterType.TOKEN_BUCKET.value,
                    quota=per_min(HUGE, burst=HUGE),
                    store=store,
                    timeout=60,
                ),
                AMOUNT[m],
            )
            for m in metrics_for(limits)
        ]

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await throttle.limit(cost=...)`` per limit (waiting up to 60 s if limited)."""
        pairs = self.pairs
        for _ in range(n):
            for throttle, amount in pairs:
                if (await throttle.limit(cost=amount)).limited:
                    raise RuntimeError("throttled-py refused an uncontended acquire")
        return []


class TokenThrottle(Subject):
    """token-throttle's RateLimiter on its in-memory backend: acquire_capacity / refund."""

    name = "token-throttle"

    def __init__(self, limits: int) -> None:
        super().__init__(limits)
        from token_throttle import (  # noqa: PLC0415 (a missing peer is reported)
            MemoryBackendBuilder,
            PerModelConfig,
            Quota,
            RateLimiter,
            UsageQuotas,
        )

        chosen = metrics_for(limits)
        quotas = UsageQuotas([Quota(metric=m, limit=HUGE, per_seconds=60) for m in chosen])
        self.limiter = RateLimiter(PerModelConfig(quotas=quotas), backend=MemoryBackendBuilder())
        self.usage = {m: AMOUNT[m] for m in chosen}
        self.actual = {m: ACTUAL[m] for m in chosen}

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await limiter.acquire_capacity(usage=..., model=...)``."""
        acquire, usage = self.limiter.acquire_capacity, self.usage
        return [await acquire(usage=usage, model="gpt-4o") for _ in range(n)]

    async def settle_batch(self, handles: list[Any]) -> None:
        """``await limiter.refund_capacity(actual_usage=..., reservation=...)``."""
        refund, actual = self.limiter.refund_capacity, self.actual
        for reservation in handles:
            await refund(actual_usage=actual, reservation=reservation)

    async def close(self) -> None:
        """Close the limiter."""
        await self.limiter.aclose()


@dataclass
class Result:
    """Median microseconds per operation of one subject."""

    subject: str
    limits: int
    acquire_us: float
    settle_us: float | None
    repeats: int
    ops_per_repeat: int


async def _one_batch(subject: Subject) -> tuple[int, int]:
    start = time.perf_counter_ns()
    handles = await subject.acquire_batch(BATCH)
    middle = time.perf_counter_ns()
    await subject.settle_batch(handles)
    return middle - start, time.perf_counter_ns() - middle


async def calibrate(subject: Subject, *, repeat_s: float, warmup_s: float) -> int:
    """Warm ``subject`` up; return how many batches fill one repeat of ``repeat_s``."""
    start = time.perf_counter()
    batches = 0
    while batches < 2 or time.perf_counter() - start < warmup_s:
        await _one_batch(subject)
        batches += 1
    per_batch = (time.perf_counter() - start) / batches
    return max(1, round(repeat_s / per_batch))


async def one_repeat(subject: Subject, batches: int) -> tuple[float, float]:
    """Run ``batches`` batches with the collector off; return µs per acquire and per settle."""
    gc.collect()
    gc.disable()
    try:
        acquire_ns = settle_ns = 0
        for _ in range(batches):
            a, s = await _one_batch(subject)
            acquire_ns += a
            settle_ns += s
    finally:
        gc.enable()
    ops = batches * BATCH
    return acquire_ns / ops / 1_000, settle_ns / ops / 1_000


async def measure_all(
    subjects: Sequence[Subject], *, repeats: int, repeat_s: float, warmup_s: float
) -> list[Result]:
    """Time every subject, interleaving the repeats (subject 1, 2, ..., then again).

    Interleaving spreads any slow period of the machine over all subjects instead of
    penalising whichever ran at that time; each figure is the median over its repeats.
    """
    counts = [await calibrate(s, repeat_s=repeat_s, warmup_s=warmup_s) for s in subjects]
    acquires: list[list[float]] = [[] for _ in subjects]
    settles: list[list[float]] = [[] for _ in subjects]
    for _ in range(repeats):
        for i, (subject, count) in enumerate(zip(subjects, counts, strict=True)):
            acquire_us, settle_us = await one_repeat(subject, count)
            acquires[i].append(acquire_us)
            settles[i].append(settle_us)
    return [
        Result(
            subject=subject.label,
            limits=subject.limits,
            acquire_us=median(acquires[i]),
            settle_us=median(settles[i]) if subject.can_settle else None,
            repeats=repeats,
            ops_per_repeat=counts[i] * BATCH,
        )
        for i, subject in enumerate(subjects)
    ]


def subjects() -> list[Callable[[], Subject]]:
    """Every subject, in table order."""
    made: list[Callable[[], Subject]] = []
    for limits in (1, 2, 4):
        made.append(partial(Quotaflow, limits))
        if limits == 4:
            made.append(partial(Quotaflow, 4, scopes=2))
        peers: tuple[type[Subject], ...] = (AioLimiter, PyrateLimiter, ThrottledPy, TokenThrottle)
        made.extend(partial(peer, limits) for peer in peers)
    return made


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def evaluate(results: Sequence[Result]) -> list[Goal]:
    """Check the RPM+TPM goals against the peers' figures."""
    two = {r.subject: r for r in results if r.limits == 2}
    goals: list[Goal] = []
    ours = two.get("quotaflow")
    if ours is None:
        return goals
    aio = two.get("aiolimiter")
    if aio is not None:
        goals.append(
            Goal(
                "overhead",
                "RPM+TPM acquire no slower than 2 composed aiolimiters",
                f"{ours.acquire_us:.2f} µs vs {aio.acquire_us:.2f} µs "
                f"({ours.acquire_us / aio.acquire_us:.2f}x)",
                ours.acquire_us <= aio.acquire_us,
            )
        )
    for peer in ("pyrate-limiter", "throttled-py", "token-throttle"):
        other = two.get(peer)
        if other is None:
            continue
        speedup = other.acquire_us / ours.acquire_us
        goals.append(
            Goal(
                "overhead",
                f"RPM+TPM acquire ≥ 3x faster than {peer}",
                f"{speedup:.1f}x ({ours.acquire_us:.2f} vs {other.acquire_us:.2f} µs)",
                speedup >= 3,
            )
        )
    return goals


async def run(quick: bool) -> dict[str, Any]:
    """Measure every subject; return results and goals."""
    repeats, repeat_s, warmup_s = (3, 0.05, 0.02) if quick else (7, 0.25, 0.2)
    made: list[Subject] = []
    failures: dict[str, str] = {}
    for make in subjects():
        try:
            made.append(make())
        except Exception as error:  # a peer that is missing or broken is reported
            failures[repr(make)] = f"{type(error).__name__}: {error}"
    try:
        results = await measure_all(made, repeats=repeats, repeat_s=repeat_s, warmup_s=warmup_s)
    finally:
        for subject in made:
            await subject.close()
    base = {r.limits: r.acquire_us for r in results if r.subject == "quotaflow"}
    rows = [
        (
            r.subject,
            r.limits,
            _fmt(r.acquire_us),
            _fmt(r.settle_us),
            f"{r.acquire_us / base[r.limits]:.2f}x" if r.limits in base else "",
        )
        for r in results
    ]
    print(
        table(
            "Overhead: µs per operation, uncontended (median of repeats; lower is better)",
            ("limiter", "limits", "acquire µs", "settle µs", "acquire vs quotaflow"),
            rows,
        )
    )
    for name, message in failures.items():
        print(f"FAILED {name}: {message}")
    goals = evaluate(results)
    print(goals_table(goals))
    return {
        "benchmark": "overhead",
        "batch": BATCH,
        "results": [r.__dict__ for r in results],
        "failures": failures,
        "goals": goals,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    return run_main(__doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
