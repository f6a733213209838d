"""Distributed saturation: 4 processes x 16 tasks share one store in front of an HTTP provider.

The provider is ``bench/provider_http.py`` in a process of its own: continuously refilling
request and token buckets in exact arithmetic, the actual usage charged when a call arrives,
429 when a bucket would overflow. Every worker process opens the same store URL (Redis by
default, SQLite too) with a ``Limiter`` that has the provider's limits, and runs 16
asyncio tasks that each loop:

1. ``acquire(scope, input_tokens=n, output_tokens=max_tokens)``: reserve input + the maximum
   output (n uniform in 200-1,600 from a seeded generator, ``max_tokens`` = 1,024);
2. ``POST /v1/chat/completions`` with httpx; the provider draws the actual output (uniform in
   10%-60% of ``max_tokens``) and answers after a simulated latency of 50-250 ms;
3. ``settle`` with the usage the provider reports (``cancel`` on a 429: nothing was charged).

Cases, for each store:

* **exact limits**: the provider has 100,000 tokens and 600 requests per 10 s (tokens bind;
  about 14 calls/s) and the limiter exactly the same. Over 15 s the admissible tokens
  (capacity + refill) are 2.5 buckets, 60% of them refill. Goals: no 429, utilisation (tokens
  the provider accepted / admissible between its first and last call) >= 98% on Redis, worker
  CPU <= 10% of a core (``process_time`` / wall, each worker process, over the run).
* **burst 0.97**: the same provider, the limiter's buckets 3% smaller (``Rate(...,
  burst=0.97)``: 300 ms of refill). A call reaches the provider some time after its admission;
  while the provider's bucket is full (at the start), a late arrival wastes refill that the
  limiter counted, and that gap stays. The provider replays the accepted calls at their
  admission instants (``429s at admission time``: 0 means the limiter's own decisions conform)
  and reports the admission-to-arrival delays, so the two causes can be told apart.
* **store-bound** (the throughput ceiling): limits of 10^12 per minute and no HTTP call (each
  task acquires and settles at once), so the store is the only bottleneck; reported as
  admissions per second over all processes.

Every process started (provider, workers) is stopped at the end of its case, also on error;
every loop stops at its deadline. Redis keys live in a namespace unique to the run and are
deleted at the end (SCAN + DEL on that namespace only); the default SQLite file is a temporary
one, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx  # type: ignore[import-not-found, unused-ignore]

from _common import Goal, collect, goals_table, median, percentile, stop_all, table, write_json
from provider_http import ProviderConfig, ProviderProcess

WORKERS, TASKS = 4, 16
MAX_TOKENS = 1_024
INPUT_LOW, INPUT_HIGH = 200, 1_600
SEED = 20_250_101
HUGE = 10**12
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = f"qfbench-dist-{os.getpid()}-{secrets.token_hex(3)}"
SCOPE = "openai:gpt-4o"


@dataclass(frozen=True)
class Scenario:
    """One case: the provider's (and the limiter's) limits, and whether calls go over HTTP."""

    name: str
    tokens: int
    requests: int
    period: float
    http: bool
    burst: float = 1.0  # the limiter's bucket, as a multiple of the provider's


#: The limiter has exactly the provider's limits.
EXACT = Scenario("exact limits", 100_000, 600, 10.0, http=True)
#: The limiter's buckets are 3% smaller: 300 ms of refill, for the admission-to-arrival delay.
MARGIN = Scenario("burst 0.97", 100_000, 600, 10.0, http=True, burst=0.97)
#: No provider: the store is the bottleneck.
STORE_BOUND = Scenario("store-bound", HUGE, HUGE, 60.0, http=False)
SCENARIOS = (EXACT, MARGIN, STORE_BOUND)


@dataclass(frozen=True)
class Job:
    """What one worker process runs (pickled to it)."""

    index: int
    store_url: str
    scope: str
    scenario: Scenario
    provider_url: str | None
    tasks: int
    duration: float


@dataclass
class WorkerResult:
    """What one worker process measured."""

    index: int
    admitted: int = 0  # reservations granted and used (a call made, or settled at once)
    ok: int = 0  # 200s
    rejected: int = 0  # 429s
    errors: int = 0
    timeouts: int = 0
    tokens: int = 0  # as reported by the provider (or settled, store-bound)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    waits: list[float] = field(default_factory=list)
    first_error: str | None = None

    @property
    def cpu_share(self) -> float:
        """CPU time / wall time: the share of one core."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


# The worker process ------------------------------------------------------------------------


def worker_main(job: Job, ready: Queue[Any], go: Event, results: Queue[Any]) -> None:
    """Process entry point: set up, say ready, wait for go, run, report (errors included)."""
    try:
        asyncio.run(_worker(job, ready, go, results))
    except BaseException:
        message = traceback.format_exc(limit=8)
        ready.put(("error", job.index, message))
        results.put(("error", job.index, message))


class Worker:
    """The tasks of one worker process, sharing one limiter and one HTTP client."""

    def __init__(self, job: Job, limiter: Any, client: Any, deadline: float) -> None:  # noqa: ANN401 (Limiter, httpx.AsyncClient)
        from quotaflow import AcquireTimeoutError  # noqa: PLC0415 (in the child)

        self.job, self.limiter, self.client, self.deadline = job, limiter, client, deadline
        self.timeout_error = AcquireTimeoutError
        self.result = WorkerResult(job.index)

    async def task(self, number: int) -> None:
        """Loop until the deadline: acquire, call (or not), settle."""
        job, result, deadline = self.job, self.result, self.deadline
        rng = random.Random(SEED * 1_000 + job.index * 100 + number)
        while (now := time.monotonic()) < deadline:
            input_tokens = rng.randint(INPUT_LOW, INPUT_HIGH)
            try:
                reservation = await self.limiter.acquire(
                    job.scope,
                    input_tokens=input_tokens,
                    output_tokens=MAX_TOKENS,
                    timeout=deadline - now,
                )
            except self.timeout_error:
                result.timeouts += 1
                return
            except Exception as error:  # a store error: count it, go on until the deadline
                self.error(repr(error))
                await asyncio.sleep(0.01)
                continue
            if time.monotonic() >= deadline:
                await reservation.cancel()
                return
            result.waits.append(reservation.wait_time)
            result.admitted += 1
            if self.client is None:  # store-bound: settle at once with a drawn output
                output = rng.randint(MAX_TOKENS // 10, MAX_TOKENS * 6 // 10)
                await reservation.settle(input_tokens=input_tokens, output_tokens=output)
                result.tokens += input_tokens + output
            else:
                await self.call(reservation, input_tokens)

    async def call(self, reservation: Any, input_tokens: int) -> None:  # noqa: ANN401 (Reservation)
        """Call the provider; settle with its usage, or cancel when it charged nothing."""
        result = self.result
        try:
            response = await self.client.post(
                "/v1/chat/completions",
                json={
                    "input_tokens": input_tokens,
                    "max_tokens": MAX_TOKENS,
                    "admitted_at": reservation.slot_time,
                },
            )
        except httpx.HTTPError as error:
            self.error(repr(error))
            await reservation.cancel()
            return
        if response.status_code != 200:
            if response.status_code == 429:
                result.rejected += 1
            else:
                self.error(f"HTTP {response.status_code}")
            await reservation.cancel()
            return
        usage = response.json()["usage"]
        prompt, completion = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        await reservation.settle(input_tokens=prompt, output_tokens=completion)
        result.ok += 1
        result.tokens += prompt + completion

    def error(self, message: str) -> None:
        """Count an error; keep the first message."""
        self.result.errors += 1
        self.result.first_error = self.result.first_error or message


async def _worker(job: Job, ready: Queue[Any], go: Event, results: Queue[Any]) -> None:
    from quotaflow import Limiter, Rate  # noqa: PLC0415 (in the child)
    from quotaflow.stores import open_store  # noqa: PLC0415

    scenario = job.scenario
    limits = [
        Rate("requests", scenario.requests, scenario.period, burst=scenario.burst),
        Rate("tokens", scenario.tokens, scenario.period, burst=scenario.burst),
    ]
    limiter = Limiter({job.scope: limits}, store=open_store(job.store_url))
    client = None
    if job.provider_url is not None:
        client = httpx.AsyncClient(
            base_url=job.provider_url,
            timeout=30.0,
            limits=httpx.Limits(max_connections=job.tasks, max_keepalive_connections=job.tasks),
        )
    try:
        await limiter.status(job.scope)  # connect (and create the schema) before the start
        if client is not None:  # open the connections: a running service has them open
            await asyncio.gather(*(client.get("/health") for _ in range(job.tasks)))
        ready.put(("ready", job.index, None))
        if not await asyncio.to_thread(go.wait, 120):
            raise RuntimeError("no go within 120 s")
        cpu0, start = time.process_time(), time.monotonic()
        worker = Worker(job, limiter, client, start + job.duration)
        tasks = asyncio.gather(*(worker.task(n) for n in range(job.tasks)))
        await asyncio.wait_for(tasks, job.duration + 60)
        result = worker.result
        result.cpu_s, result.wall_s = time.process_time() - cpu0, time.monotonic() - start
    finally:
        if client is not None:
            await client.aclose()
        await limiter.aclose()
    results.put(("result", job.index, asdict(result)))


# The driver --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one case measured, over all worker processes."""

    store: str
    scenario: str
    duration_s: float
    workers: list[WorkerResult]
    provider: dict[str, Any] | None

    @property
    def admitted(self) -> int:
        """Admissions over all workers."""
        return sum(w.admitted for w in self.workers)

    @property
    def wall_s(self) -> float:
        """The longest worker's run."""
        return max((w.wall_s for w in self.workers), default=0.0)

    @property
    def rejections(self) -> int:
        """429s, as the provider counted them."""
        return int(self.provider["rejections"]) if self.provider else 0

    @property
    def utilisation(self) -> float | None:
        """Tokens the provider accepted / admissible tokens."""
        if not self.provider or not self.provider["admissible_tokens"]:
            return None
        return float(self.provider["accepted_tokens"]) / float(self.provider["admissible_tokens"])

    @property
    def cpu_max(self) -> float:
        """The busiest worker's share of a core."""
        return max((w.cpu_share for w in self.workers), default=0.0)

    @property
    def cpu_mean(self) -> float:
        """The mean worker's share of a core."""
        return sum(w.cpu_share for w in self.workers) / len(self.workers) if self.workers else 0.0

    @property
    def waits(self) -> list[float]:
        """Every admission's wait, seconds."""
        return [wait for w in self.workers for wait in w.waits]


class StoreTarget:
    """A store URL under test: a fresh namespace (Redis) or file (SQLite) per case."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scheme = urlsplit(url).scheme
        self.namespaces: list[str] = []

    @property
    def label(self) -> str:
        """How the store appears in tables."""
        return "Redis" if self.scheme.startswith("redis") else self.scheme.capitalize()

    def for_case(self, scenario: Scenario) -> str:
        """The URL the workers of ``scenario`` open."""
        if self.scheme.startswith("redis"):
            namespace = f"{RUN_ID}-{scenario.name}"
            self.namespaces.append(namespace)
            parts = urlsplit(self.url)
            extra = f"namespace={namespace}"
            query = f"{parts.query}&{extra}" if parts.query else extra
            return urlunsplit(parts._replace(query=query))
        return self.url

    def cleanup(self) -> int:
        """Delete this run's Redis keys (SCAN + DEL on its namespaces only)."""
        if not self.namespaces:
            return 0
        import redis  # noqa: PLC0415

        parts = urlsplit(self.url)
        client = redis.Redis.from_url(urlunsplit(parts._replace(query="")))
        deleted = 0
        try:
            for namespace in self.namespaces:
                keys = list(client.scan_iter(match=f"*{namespace}*", count=1_000))
                for start in range(0, len(keys), 500):
                    deleted += int(client.delete(*keys[start : start + 500]))
        finally:
            client.close()
        self.namespaces.clear()
        return deleted


def run_case(
    target: StoreTarget, scenario: Scenario, duration: float, workers: int, tasks: int
) -> Outcome:
    """Start the provider (if any) and the workers, run one case, stop everything."""
    context = multiprocessing.get_context("spawn")
    provider = None
    if scenario.http:
        provider = ProviderProcess(
            ProviderConfig(
                tokens=scenario.tokens,
                requests=scenario.requests,
                period=scenario.period,
                seed=SEED,
            )
        )
    ready: Queue[Any] = context.Queue()
    results: Queue[Any] = context.Queue()
    go = context.Event()
    processes: list[multiprocessing.process.BaseProcess] = []
    started = time.monotonic()
    try:
        if provider is not None:
            provider.start()
        url = target.for_case(scenario)
        scope = f"{SCOPE}:{RUN_ID}:{scenario.name}"
        for index in range(workers):
            provider_url = None if provider is None else provider.url
            job = Job(index, url, scope, scenario, provider_url, tasks, duration)
            process = context.Process(
                target=worker_main,
                args=(job, ready, go, results),
                name=f"quotaflow-bench-worker-{index}",
                daemon=True,
            )
            process.start()
            processes.append(process)
        collect(ready, workers, 120, processes)
        go.set()
        started = time.monotonic()
        messages = collect(results, workers, duration + 90, processes)
        stats = None
        if provider is not None:
            stats = httpx.get(f"{provider.url}/stats", timeout=10).json()
    finally:
        go.set()  # a worker still waiting for the start returns at once
        stop_all(processes, grace=10)
        if provider is not None:
            provider.stop()
        for channel in (ready, results):
            channel.close()
            channel.join_thread()
    reports = []
    for _, _, data in sorted(messages, key=lambda m: m[1]):
        reports.append(WorkerResult(**data))
    return Outcome(target.label, scenario.name, time.monotonic() - started, reports, stats)


# Reporting ---------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def report(outcomes: Sequence[Outcome], duration: float, ceiling_s: float) -> None:
    """Print the two tables."""
    bound = [o for o in outcomes if o.provider is not None]
    if bound:
        rows = []
        for o in bound:
            stats = o.provider or {}
            delay = stats["admission_to_arrival_ms"]
            rows.append(
                (
                    o.store,
                    o.scenario,
                    f"{o.wall_s:.1f}",
                    o.rejections,
                    stats["rejections_at_admission_time"],
                    f"{delay['p99']:.0f} / {delay['max']:.0f}",
                    f"{stats['accepted_tokens']:,}",
                    f"{stats['admissible_tokens']:,}",
                    _pct(o.utilisation),
                    f"{sum(w.ok for w in o.workers) / o.wall_s:.1f}" if o.wall_s else "",
                    f"{o.cpu_mean:.1%} / {o.cpu_max:.1%}",
                    _pct(stats["cpu_s"] / stats["wall_s"]),
                    f"{median(o.waits):.3f} / {percentile(o.waits, 0.99):.3f}",
                    f"{sum(w.errors for w in o.workers)} / {sum(w.timeouts for w in o.workers)}",
                )
            )
        print(
            table(
                f"Distributed, provider-bound: {WORKERS} processes x {TASKS} tasks, "
                f"{duration:.0f} s, provider {EXACT.tokens:,} tokens + {EXACT.requests:,} "
                f"requests per {EXACT.period:.0f} s over HTTP",
                (
                    "store",
                    "limiter",
                    "s",
                    "429s",
                    "429s at admission time",
                    "admission→arrival p99 / max ms",
                    "tokens accepted",
                    "admissible",
                    "utilisation",
                    "calls/s",
                    "worker CPU mean / max",
                    "provider CPU",
                    "wait p50 / p99 s",
                    "errors / timeouts",
                ),
                rows,
            )
        )
    ceiling = [o for o in outcomes if o.provider is None]
    if ceiling:
        ceiling_rows = [
            (
                o.store,
                f"{o.wall_s:.1f}",
                f"{o.admitted:,}",
                f"{o.admitted / o.wall_s:,.0f}" if o.wall_s else "",
                f"{o.cpu_mean:.0%} / {o.cpu_max:.0%}",
                sum(w.errors for w in o.workers),
            )
            for o in ceiling
        ]
        print(
            table(
                f"Distributed, store-bound (throughput ceiling): {WORKERS} processes x {TASKS} "
                f"tasks, {ceiling_s:.0f} s, acquire + settle, no HTTP",
                (
                    "store",
                    "s",
                    "admissions",
                    "admissions/s",
                    "worker CPU mean / max",
                    "errors",
                ),
                ceiling_rows,
            )
        )
    for o in outcomes:
        for worker in o.workers:
            if worker.first_error:
                where = f"{o.store} {o.scenario} worker {worker.index}"
                print(f"{where}: first error {worker.first_error}")


def evaluate(outcomes: Sequence[Outcome]) -> list[Goal]:
    """No 429 in each provider-bound case; exact limits: >= 98% on Redis, CPU <= 10%."""
    goals = []
    for o in outcomes:
        if o.provider is None:
            continue
        replayed = o.provider["rejections_at_admission_time"]
        goals.append(
            Goal(
                "distributed",
                f"{o.store}, {o.scenario}: 0 provider rejections",
                f"{o.rejections} ({replayed} at admission time)",
                not o.rejections,
            )
        )
        if o.scenario != EXACT.name:
            continue
        if o.store == "Redis":
            value = o.utilisation or 0.0
            goals.append(
                Goal(
                    "distributed",
                    "Redis, exact limits: utilisation ≥ 98% of admissible tokens",
                    f"{value:.2%}",
                    value >= 0.98,
                )
            )
        goals.append(
            Goal(
                "distributed",
                f"{o.store}: CPU per worker process ≤ 10% of a core",
                f"max {o.cpu_max:.1%} (mean {o.cpu_mean:.1%})",
                o.cpu_max <= 0.10,
            )
        )
    return goals


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (4 s per case)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    parser.add_argument(
        "--store",
        action="append",
        metavar="URL",
        help="store URL shared by the workers; repeat for several "
        "(default: $REDIS_URL or redis://127.0.0.1:6379/0, and a temporary sqlite:/// file)",
    )
    parser.add_argument("--duration", type=float, help="seconds of each provider-bound case")
    parser.add_argument("--workers", type=int, default=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, default=TASKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    duration = args.duration or (4.0 if args.quick else 15.0)
    ceiling_s = 2.0 if args.quick else 5.0

    scratch = Path(tempfile.mkdtemp(prefix="quotaflow-bench-"))
    urls = args.store or [REDIS_URL, f"sqlite:///{scratch / 'distributed.db'}"]
    outcomes: list[Outcome] = []
    failures: dict[str, str] = {}
    try:
        for url in urls:
            target = StoreTarget(url)
            try:
                for scenario in SCENARIOS:
                    seconds = duration if scenario.http else ceiling_s
                    label = f"{target.label} {scenario.name}"
                    print(f"running {label} for {seconds:.0f} s ...", flush=True)
                    try:
                        outcomes.append(
                            run_case(target, scenario, seconds, args.workers, args.tasks)
                        )
                    except Exception as error:
                        failures[label] = f"{type(error).__name__}: {error}"
                        print(f"FAILED {label}: {failures[label]}", flush=True)
            finally:
                with contextlib.suppress(Exception):
                    deleted = target.cleanup()
                    if deleted:
                        print(f"(deleted the {deleted} Redis keys of this run)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    report(outcomes, duration, ceiling_s)
    for label, message in failures.items():
        print(f"FAILED {label}: {message.splitlines()[0] if message else ''}")
    goals = evaluate(outcomes)
    if goals:
        print(goals_table(goals))
    write_json(
        args.json,
        {
            "benchmark": "distributed",
            "workers": args.workers,
            "tasks": args.tasks,
            "duration_s": duration,
            "ceiling_s": ceiling_s,
            "seed": SEED,
            "scenarios": [asdict(scenario) for scenario in SCENARIOS],
            "results": [
                {
                    "store": o.store,
                    "scenario": o.scenario,
                    "wall_s": o.wall_s,
                    "admitted": o.admitted,
                    "rejections": o.rejections,
                    "utilisation": o.utilisation,
                    "cpu_mean": o.cpu_mean,
                    "cpu_max": o.cpu_max,
                    "wait_p50_s": median(o.waits),
                    "wait_p99_s": percentile(o.waits, 0.99),
                    "provider": o.provider,
                    "workers": [
                        {k: v for k, v in asdict(w).items() if k != "waits"} for w in o.workers
                    ],
                }
                for o in outcomes
            ],
            "failures": failures,
            "goals": goals,
        },
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
