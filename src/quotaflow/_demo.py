"""``quotaflow demo``: a burst of simulated LLM calls paced under RPM and TPM, shown live.

Each call reserves its input tokens plus ``max_tokens`` (what a provider's admission counts),
"runs" for a lognormal latency, then settles with the far smaller output it really produced.
A simulated provider with the same limits checks every call: the point of the demo is that
it rejects none, while the limiter keeps the token bucket close to empty.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from quotaflow._clock import SystemClock
from quotaflow._limiter import Limiter
from quotaflow._status import ScopeStatus
from quotaflow.core import Rate
from quotaflow.core._limits import rpm, tpm
from quotaflow.testing import SimulatedProvider

__all__ = ["DemoSettings", "run_demo"]


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What the demo sends and under which limits."""

    requests: int = 200
    concurrency: int = 64
    rpm: int = 1_200
    tpm: int = 360_000
    burst: float = 0.05  # a small bucket, so that pacing shows within seconds
    max_tokens: int = 512
    seed: int = 7


@dataclass
class _Stats:
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    in_flight: int = 0
    waits: list[float] = field(default_factory=list)
    reserved_tokens: int = 0
    actual_tokens: int = 0


def _percentile(values: list[float], q: float) -> float:
    if len(values) < 2:  # noqa: PLR2004
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _render(
    status: ScopeStatus, provider: SimulatedProvider, stats: _Stats, settings: DemoSettings
) -> Group:
    table = Table(title="quotaflow demo: one scope, memory store", expand=False)
    for column in ("limit", "bucket in use", "used", "capacity", "per second"):
        table.add_column(column, justify="right" if column != "bucket in use" else "left")
    for row in status.limits:
        limit = row.limit
        if not isinstance(limit, Rate):  # the demo configures rates only
            continue
        bar = ProgressBar(total=row.capacity, completed=min(row.used, row.capacity), width=30)
        table.add_row(
            str(limit), bar, f"{row.used:,}", f"{row.capacity:,}",
            f"{limit.refill / limit.period:,.0f}",
        )  # fmt: skip
    elapsed = time.monotonic() - stats.started
    summary = Text.assemble(
        (f"{stats.done}/{settings.requests} calls done", "bold"),
        f"   in flight {stats.in_flight}   waiting {status.queue_depth}   ",
        ("provider 429s ", "bold"),
        (str(len(provider.rejections)), "bold red" if provider.rejections else "bold green"),
        f"   wait p50 {_percentile(stats.waits, 0.5):.2f}s",
        f" p99 {_percentile(stats.waits, 0.99):.2f}s",
        f"   {elapsed:.1f}s",
    )
    return Group(table, summary)


async def run_demo(settings: DemoSettings, console: Console | None = None) -> dict[str, float]:
    """Run the demo and return its figures (also printed when ``console`` is given)."""
    console = console or Console()
    rng = random.Random(settings.seed)  # noqa: S311 (seeded simulated traffic)
    limits = [rpm(settings.rpm, burst=settings.burst), tpm(settings.tpm, burst=settings.burst)]
    clock = SystemClock()  # shared with the limiter's memory store: one timeline for both
    limiter = Limiter({"demo": limits}, clock=clock)
    provider = SimulatedProvider(
        {
            "requests": (limits[0].capacity, limits[0].capacity * 60 / settings.rpm),
            "tokens": (limits[1].capacity, limits[1].capacity * 60 / settings.tpm),
        }
    )
    stats = _Stats()
    pending: asyncio.Queue[tuple[int, int, float]] = asyncio.Queue()
    for _ in range(settings.requests):
        prompt = min(4_000, int(rng.lognormvariate(5.8, 0.6)))  # ~330 tokens
        output = min(settings.max_tokens, int(rng.lognormvariate(5.0, 0.5)))  # ~150 tokens
        pending.put_nowait((prompt, output, rng.lognormvariate(-1.2, 0.4)))  # ~0.3 s

    async def worker() -> None:
        while not pending.empty():
            prompt, output, latency = pending.get_nowait()
            async with limiter.reserve(
                "demo", input_tokens=prompt, output_tokens=settings.max_tokens
            ) as reservation:
                stats.in_flight += 1
                stats.waits.append(reservation.wait_time)
                stats.reserved_tokens += prompt + settings.max_tokens
                provider.call({"requests": 1, "tokens": prompt + output}, clock.now_ns())
                await asyncio.sleep(latency)
                await reservation.settle(output_tokens=output)
                stats.actual_tokens += prompt + output
                stats.in_flight -= 1
                stats.done += 1

    with Live(console=console, refresh_per_second=10, transient=False) as live:
        workers = [asyncio.create_task(worker()) for _ in range(settings.concurrency)]
        while not all(w.done() for w in workers):
            live.update(_render(await limiter.status("demo"), provider, stats, settings))
            await asyncio.wait(workers, timeout=0.1)
        live.update(_render(await limiter.status("demo"), provider, stats, settings))
        for task in workers:
            task.result()
    elapsed = time.monotonic() - stats.started
    admissible = provider.admissible("tokens", elapsed)
    figures = {
        "calls": float(stats.done),
        "provider_429s": float(len(provider.rejections)),
        "seconds": elapsed,
        "wait_p50": _percentile(stats.waits, 0.5),
        "wait_p99": _percentile(stats.waits, 0.99),
        "reserved_tokens": float(stats.reserved_tokens),
        "actual_tokens": float(stats.actual_tokens),
        "token_utilisation": provider.accepted["tokens"] / admissible,
    }
    refunded = stats.reserved_tokens - stats.actual_tokens
    console.print(
        f"\n{stats.done} calls in {elapsed:.1f}s, provider 429s: {len(provider.rejections)}. "
        f"Reserved {stats.reserved_tokens:,} tokens (input + max_tokens), used "
        f"{stats.actual_tokens:,}: refunds returned {refunded:,} "
        f"to the bucket. Tokens accepted by the provider: {provider.accepted['tokens']:,} of "
        f"{admissible:,} admissible ({figures['token_utilisation']:.0%}; the run ends with a "
        "tail of calls finishing)."
    )
    return figures
