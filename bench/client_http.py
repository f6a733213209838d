"""Client saturation over HTTP: the official openai SDK through the governed transport.

The provider is quotaflow's emulator (``EmulatorProcess``: its own process, 127.0.0.1, a free
port) with tight limits for ``gpt-4o-mini``: 90,000 tokens per minute (binding) and 10,000
requests per minute (never binding), a fixed latency of 0.2 s, outputs drawn uniformly in 20-200
tokens. Like OpenAI, it charges prompt + ``max_tokens`` at admission and refunds the unused part
when the response ends; a request that does not fit gets a 429 with ``retry-after``.

Every call is ``await client.chat.completions.create(model="gpt-4o-mini", messages=[user
prompt of 5-60 words], max_tokens=1000)`` on ``openai.AsyncOpenAI``: ``max_tokens`` is far above
the actual output (~110 tokens), as in real applications. Each task loops until the deadline
(``--seconds``, default 30); prompts come from a seeded generator per task.

Scenarios, each in fresh worker processes (``multiprocessing`` spawn), the emulator reset
between them:

* **quotaflow, 1 x 64**: one process, 64 asyncio tasks, ``AsyncQuotaflowTransport`` with
  ``ClientConfig()`` on the memory store: nothing configured, the limits are learned from the
  emulator's headers (headroom 0.98); the SDK's ``max_retries=0`` (quotaflow retries).
* **quotaflow, 4 x 16, Redis**: 4 processes x 16 tasks, each process with its own transport on
  ``ClientConfig(store=<$REDIS_URL>?namespace=bench-<random>)``: one shared limiter.
* **retry-only, 1 x 64** and **retry-only, 4 x 16**: the baseline, no limiter: the same SDK
  calls with the SDK's own retries (``max_retries=10``), which honour the ``retry-after`` hint
  (the emulator's exact wait, rounded up to whole seconds) and otherwise back off
  exponentially.

At the deadline, tasks still waiting for admission (quotaflow) are cancelled; calls already
sent (and, for the baseline, calls between retries) may finish within a grace period (15 s),
after which they are cancelled too. Connections are opened before the start (``GET /health``,
not governed). A tap between the transport and the network records each attempt (when it was
sent, when its response arrived, its status).

Reported per scenario: calls that succeeded; provider 429s as the emulator counted them (sum of
its ``rate_limited`` counters: the provider's own figure); retries (attempts - calls); the
utilisation of each bucket = charged / admissible, as the emulator computes it
(``admissible`` = limit + limit / 60 s x (last - first admission)); calls/s over that span;
quotaflow's admission wait p50 / p99; call latency p50 / p99 (from the SDK call to its return:
waits and retries included); client CPU (``process_time`` / wall, per process). *Ceiling* adds
back the ``max_tokens`` - actual output still reserved by calls in flight at the emulator's last
admission (from the tap's times): the emulator refunds it after that instant, so no client
could have used it within the span. *Used of usable* = charged / (admissible - that reserve):
the share of the limit used, free of the run's finite length; the goal is judged on it. (With
the default headroom of 0.98, 98% is the most quotaflow ever takes.)

Goals (the quotaflow scenarios): 0 provider 429s and >= 97% of the binding limit (tokens) used.
Redis keys live in a namespace unique to the run and are deleted at the end (SCAN + DEL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import multiprocessing
import os
import random
import secrets
import sys
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _common import (
    Goal,
    collect,
    cpu_model,
    goals_table,
    median,
    percentile,
    source_digest,
    stop_all,
    table,
    write_json,
)

MODEL = "gpt-4o-mini"
MAX_TOKENS = 1_000
TPM = 90_000
RPM = 10_000
LATENCY = 0.2
OUTPUT = (20, 200)
SEED = 20_250_101
GRACE = 15.0
GOAL_UTILISATION = 0.97
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = f"bench-{secrets.token_hex(4)}"
WORDS = (
    *("rate", "limits", "tokens", "buckets", "refill", "queue", "admission", "settle"),
    *("reserve", "provider", "model", "request", "latency", "budget", "quota", "retry"),
    *("header", "stream", "usage", "cost", "worker", "scope", "fairness"),
)


@dataclass(frozen=True)
class Scenario:
    """One case: governed or not, how many processes and tasks, which store."""

    name: str
    governed: bool
    processes: int
    tasks: int
    redis: bool = False
    correct_remaining: bool = True  # ClientConfig's: the diagnostic scenario turns it off


SCENARIOS = (
    Scenario("quotaflow, 1 x 64, memory", governed=True, processes=1, tasks=64),
    Scenario("quotaflow, 4 x 16, Redis", governed=True, processes=4, tasks=16, redis=True),
    Scenario("retry-only, 1 x 64", governed=False, processes=1, tasks=64),
    Scenario("retry-only, 4 x 16", governed=False, processes=4, tasks=16),
    Scenario(
        "diagnostic: quotaflow, 1 x 64, memory, correct_remaining=False",
        governed=True,
        processes=1,
        tasks=64,
        correct_remaining=False,
    ),
)


@dataclass(frozen=True)
class Job:
    """What one worker process runs (pickled to it)."""

    index: int
    url: str
    store: str | None
    governed: bool
    tasks: int
    seconds: float
    grace: float
    correct_remaining: bool = True


@dataclass
class Tally:
    """What one worker process counted."""

    index: int
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    in_flight: list[tuple[int, int, int]] = field(default_factory=list)  # sent, received, unused
    output_tokens: int = 0
    cancelled_waiting: int = 0
    abandoned: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    stats: dict[str, Any] | None = None  # the governed transport's StatsSnapshot


# The worker process ------------------------------------------------------------------------


def worker_main(job: Job, ready: Queue[Any], go: Event, results: Queue[Any]) -> None:
    """Process entry point: set up, say ready, wait for go, run, report (errors included)."""
    try:
        asyncio.run(_worker(job, ready, go, results))
    except BaseException:
        message = traceback.format_exc(limit=10)
        ready.put(("error", job.index, message))
        results.put(("error", job.index, message))


def _tap_class() -> Any:  # noqa: ANN401 (a class deriving from httpx2's transport)
    import httpx2  # noqa: PLC0415 (in the child)

    class Tap(httpx2.AsyncBaseTransport):
        """Between the (governed) client and the network: records every attempt."""

        def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
            self.inner = inner
            # per task: "sent" while an attempt is at the provider, then "done <status>"
            self.phase: dict[asyncio.Task[Any], str] = {}
            self.last: dict[asyncio.Task[Any], tuple[int, int]] = {}
            self.attempts = 0
            self.statuses: Counter[str] = Counter()

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            task = asyncio.current_task()
            if not request.url.path.endswith("/chat/completions") or task is None:
                return await self.inner.handle_async_request(request)
            self.phase[task] = "sent"
            sent = time.time_ns()
            try:
                response = await self.inner.handle_async_request(request)
            except BaseException:
                self.phase[task] = "done error"
                raise
            self.attempts += 1
            self.statuses[str(response.status_code)] += 1
            self.last[task] = (sent, time.time_ns())
            self.phase[task] = f"done {response.status_code}"
            return response

        def waiting(self, task: asyncio.Task[Any]) -> bool:
            """Whether ``task`` waits to send: admission, or a retry after an error."""
            phase = self.phase.get(task)
            return phase not in {"sent", "done 200"}

        async def aclose(self) -> None:
            await self.inner.aclose()

    return Tap


def _prompt(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))


class Client:
    """The tasks of one worker process: one SDK client, governed or not, and the tap."""

    def __init__(self, job: Job) -> None:
        import httpx2  # noqa: PLC0415 (in the child)
        import openai  # noqa: PLC0415

        from quotaflow.client import AsyncQuotaflowTransport, ClientConfig  # noqa: PLC0415

        self.job = job
        self.status_error = openai.APIStatusError
        limits = httpx2.Limits(
            max_connections=job.tasks + 4, max_keepalive_connections=job.tasks + 4
        )
        self.tap = _tap_class()(httpx2.AsyncHTTPTransport(limits=limits))
        self.governed = None
        if job.governed:
            config = ClientConfig(store=job.store, correct_remaining=job.correct_remaining)
            self.governed = AsyncQuotaflowTransport(self.tap, config=config)
        self.http = httpx2.AsyncClient(
            transport=self.governed or self.tap,  # type: ignore[arg-type]
            timeout=30.0,
        )
        self.client = openai.AsyncOpenAI(
            base_url=job.url + "/v1",
            api_key="bench",
            max_retries=0 if job.governed else 10,  # quotaflow retries; the baseline: the SDK
            timeout=30.0,
            http_client=self.http,
        )
        self.tally = Tally(job.index)
        self.deadline = 0.0

    async def task(self, number: int) -> None:
        """Call the emulator until the deadline."""
        me, tally, tap = asyncio.current_task(), self.tally, self.tap
        rng = random.Random(SEED * 1_000 + self.job.index * 100 + number)
        while time.monotonic() < self.deadline:
            prompt = _prompt(rng)
            began = time.perf_counter()
            try:
                completion = await self.client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=MAX_TOKENS,
                )
            except Exception as error:
                code = getattr(error, "status_code", None)
                key = (
                    f"HTTP {code}" if isinstance(error, self.status_error) else type(error).__name__
                )
                tally.failed[key] = tally.failed.get(key, 0) + 1
            else:
                tally.ok += 1
                tally.latencies.append(time.perf_counter() - began)
                used = completion.usage.completion_tokens if completion.usage else 0
                tally.output_tokens += used
                sent_received = tap.last.get(me)
                if sent_received is not None:
                    tally.in_flight.append((*sent_received, MAX_TOKENS - used))
            finally:
                if me is not None:
                    tap.phase.pop(me, None)

    async def run(self) -> None:
        """Run the tasks until the deadline, then let the calls at the provider finish."""
        job, tally = self.job, self.tally
        cpu0, start = time.process_time(), time.monotonic()
        self.deadline = start + job.seconds
        tasks = [asyncio.create_task(self.task(n)) for n in range(job.tasks)]
        await asyncio.wait(tasks, timeout=job.seconds)
        # The deadline: nothing new is sent. Tasks waiting for admission (quotaflow) or for a
        # retry (the baseline's SDK backoff) are cancelled, now or as soon as their attempt
        # ends; calls at the provider finish, within the grace period.
        cancelled: set[asyncio.Task[Any]] = set()
        grace_end = time.monotonic() + job.grace
        pending = {t for t in tasks if not t.done()}
        while pending and time.monotonic() < grace_end:
            for waiting in pending - cancelled:
                if self.tap.waiting(waiting):
                    waiting.cancel()
                    cancelled.add(waiting)
            _, pending = await asyncio.wait(pending, timeout=0.02)
        for late in pending:
            late.cancel()
            tally.abandoned += 1
        tally.cancelled_waiting = len(cancelled)
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                raise outcome
        tally.cpu_s, tally.wall_s = time.process_time() - cpu0, time.monotonic() - start
        tally.attempts = self.tap.attempts
        tally.statuses = dict(self.tap.statuses)
        if self.governed is not None:
            tally.waits = list(self.governed.governor.stats.waits)
            tally.stats = asdict(self.governed.stats)

    async def aclose(self) -> None:
        """Close the SDK client (and so the httpx2 client and its transports)."""
        await self.client.close()
        if self.governed is not None:
            await self.governed.aclose()


async def _worker(job: Job, ready: Queue[Any], go: Event, results: Queue[Any]) -> None:
    client = Client(job)
    try:
        # Open the connections before the start: a running service has them open.
        await asyncio.gather(*(client.http.get(job.url + "/health") for _ in range(job.tasks)))
        ready.put(("ready", job.index, None))
        if not await asyncio.to_thread(go.wait, 120):
            raise RuntimeError("no go within 120 s")
        await client.run()
    finally:
        await client.aclose()
    results.put(("result", job.index, asdict(client.tally)))


# The driver --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one scenario measured."""

    scenario: Scenario
    tallies: list[Tally]
    emulator: dict[str, Any]
    seconds: float

    @property
    def model(self) -> dict[str, Any]:
        """The emulator's figures for the model."""
        found: dict[str, Any] = self.emulator["families"].get("openai", {}).get(MODEL, {})
        return found

    @property
    def provider_429(self) -> int:
        """429s the emulator sent (its own count)."""
        return sum(self.model.get("rate_limited", {}).values())

    def utilisation(self, bucket: str) -> float:
        """Charged / admissible of one of the emulator's buckets."""
        data = self.model.get("buckets", {}).get(bucket)
        if not data or not data["admissible"]:
            return 0.0
        return float(data["charged"]) / float(data["admissible"])

    @property
    def binding(self) -> str:
        """The bucket used the most."""
        buckets = self.model.get("buckets", {})
        return max(buckets, key=self.utilisation) if buckets else "tokens"

    @property
    def unused_in_flight(self) -> int:
        """``max_tokens`` - actual output of the calls in flight at the last admission."""
        last = self.model.get("last_admission_ns")
        if last is None:
            return 0
        return sum(u for t in self.tallies for sent, got, u in t.in_flight if sent <= last <= got)

    @property
    def ceiling(self) -> float:
        """Utilisation of the tokens bucket, counting what was reserved in flight at the end."""
        data = self.model.get("buckets", {}).get("tokens")
        if not data or not data["admissible"]:
            return 0.0
        return float(data["charged"] + self.unused_in_flight) / float(data["admissible"])

    @property
    def usable(self) -> float:
        """Tokens charged / what any client could have used in the span.

        The admissible amount, less the unused ``max_tokens`` that calls in flight at the last
        admission still held (refunded after it, so usable by no one within the span): the
        share of the limit used, free of the run's finite length.
        """
        data = self.model.get("buckets", {}).get("tokens")
        if not data or not data["admissible"]:
            return 0.0
        return float(data["charged"]) / float(data["admissible"] - self.unused_in_flight)

    @property
    def ok(self) -> int:
        """Calls that succeeded."""
        return sum(t.ok for t in self.tallies)

    @property
    def calls(self) -> int:
        """Calls made (ended one way or another)."""
        return self.ok + sum(sum(t.failed.values()) for t in self.tallies)

    @property
    def attempts(self) -> int:
        """Requests sent to the provider."""
        return sum(t.attempts for t in self.tallies)

    @property
    def failed(self) -> Counter[str]:
        """Calls that failed, by error."""
        total: Counter[str] = Counter()
        for t in self.tallies:
            total.update(t.failed)
        return total

    def cpu(self) -> tuple[float, float]:
        """Mean and max share of a core per process."""
        shares = [t.cpu_s / t.wall_s for t in self.tallies if t.wall_s]
        return (sum(shares) / len(shares), max(shares)) if shares else (0.0, 0.0)


def store_url(namespace: str) -> str:
    """``$REDIS_URL`` with the run's namespace."""
    parts = urlsplit(REDIS_URL)
    extra = f"namespace={namespace}"
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def cleanup(namespaces: Sequence[str]) -> int:
    """Delete this run's Redis keys (SCAN + DEL on its namespaces only)."""
    if not namespaces:
        return 0
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(urlunsplit(urlsplit(REDIS_URL)._replace(query="")))
    deleted = 0
    try:
        for namespace in namespaces:
            keys = list(client.scan_iter(match=f"*{namespace}*", count=1_000))
            for start in range(0, len(keys), 500):
                deleted += int(client.delete(*keys[start : start + 500]))
    finally:
        client.close()
    return deleted


def run_scenario(
    emulator: Any,  # noqa: ANN401 (EmulatorProcess)
    scenario: Scenario,
    seconds: float,
    namespaces: list[str],
) -> Outcome:
    """Reset the emulator, run the workers of one scenario, stop them, read the emulator."""
    context = multiprocessing.get_context("spawn")
    store = None
    if scenario.redis:
        namespace = f"{RUN_ID}-{len(namespaces)}"
        namespaces.append(namespace)
        store = store_url(namespace)
    ready: Queue[Any] = context.Queue()
    results: Queue[Any] = context.Queue()
    go = context.Event()
    processes: list[multiprocessing.process.BaseProcess] = []
    try:
        for index in range(scenario.processes):
            job = Job(
                index=index,
                url=emulator.url,
                store=store,
                governed=scenario.governed,
                tasks=scenario.tasks,
                seconds=seconds,
                grace=GRACE,
                correct_remaining=scenario.correct_remaining,
            )
            process = context.Process(
                target=worker_main,
                args=(job, ready, go, results),
                name=f"quotaflow-bench-client-{index}",
                daemon=True,
            )
            process.start()
            processes.append(process)
        collect(ready, scenario.processes, 120, processes)
        emulator.reset()  # after the connections were opened: fresh buckets, zero counters
        started = time.monotonic()
        go.set()
        messages = collect(results, scenario.processes, seconds + GRACE + 60, processes)
        elapsed = time.monotonic() - started
        stats = emulator.stats()
    finally:
        go.set()  # a worker still waiting for the start returns at once
        stop_all(processes, grace=10)
        for channel in (ready, results):
            channel.close()
            channel.join_thread()
    tallies = [Tally(**data) for _, _, data in sorted(messages, key=lambda m: m[1])]
    return Outcome(scenario, tallies, stats, elapsed)


# Reporting ---------------------------------------------------------------------------------


def _seconds(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{median(values):.2f} / {percentile(values, 0.99):.2f}"


def report(outcomes: Sequence[Outcome], seconds: float, tpm: int, latency: float) -> None:
    """Print the tables."""
    rows = []
    for o in outcomes:
        model = o.model
        span = float(model.get("span_seconds") or 0.0)
        waits = [w for t in o.tallies for w in t.waits]
        latencies = [x for t in o.tallies for x in t.latencies]
        cpu_mean, cpu_max = o.cpu()
        failed = o.failed
        rows.append(
            (
                o.scenario.name,
                f"{o.ok} / {o.calls}",
                o.provider_429,
                o.attempts - o.calls,
                f"{o.utilisation('tokens'):.2%}",
                f"{o.ceiling:.2%}",
                f"{o.usable:.2%}",
                f"{o.utilisation('requests'):.2%}",
                o.binding,
                f"{o.ok / span:.1f}" if span else "n/a",
                _seconds(waits) if o.scenario.governed else "n/a",
                _seconds(latencies),
                f"{cpu_mean:.1%}" if len(o.tallies) == 1 else f"{cpu_mean:.1%} / {cpu_max:.1%}",
                ", ".join(f"{k}: {v}" for k, v in sorted(failed.items())) or "0",
                (
                    f"{sum(t.cancelled_waiting for t in o.tallies)} / "
                    f"{sum(t.abandoned for t in o.tallies)}"
                ),
            )
        )
    print(
        table(
            f"Client saturation over HTTP: openai SDK -> emulator, {MODEL} {tpm:,} TPM + "
            f"{RPM:,} RPM, latency {latency} s, max_tokens {MAX_TOKENS:,}, {seconds:.0f} s",
            (
                "scenario",
                "calls ok",
                "provider 429s",
                "retries",
                "tokens used",
                "ceiling",
                "tokens used of usable",
                "requests used",
                "binding",
                "calls/s",
                "wait p50 / p99 s",
                "latency p50 / p99 s",
                "client CPU (mean / max)",
                "failed calls",
                "cancelled waiting / abandoned",
            ),
            rows,
        )
    )
    detail = []
    for o in outcomes:
        model = o.model
        tokens = model.get("buckets", {}).get("tokens", {})
        requests = model.get("buckets", {}).get("requests", {})
        statuses = Counter[str]()
        for t in o.tallies:
            statuses.update(t.statuses)
        detail.append(
            (
                o.scenario.name,
                f"{model.get('span_seconds', 0.0):.2f}",
                model.get("admitted", 0),
                ", ".join(f"{k}: {v}" for k, v in sorted(model.get("rate_limited", {}).items()))
                or "0",
                f"{tokens.get('charged', 0):,} / {tokens.get('admissible', 0):,}",
                f"{requests.get('charged', 0):,} / {requests.get('admissible', 0):,}",
                f"{o.unused_in_flight:,}",
                f"{model.get('input_tokens', 0):,} / {model.get('output_tokens', 0):,}",
                ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
            )
        )
    print(
        table(
            "What the emulator counted (per scenario)",
            (
                "scenario",
                "span s",
                "admitted",
                "429s by bucket",
                "tokens charged / admissible",
                "requests charged / admissible",
                "reserved-unused in flight at last admission",
                "input / output tokens",
                "statuses seen by the client",
            ),
            detail,
        )
    )
    for o in outcomes:
        for t in o.tallies:
            stats = t.stats
            if stats is None:
                continue
            print(
                f"{o.scenario.name}, process {t.index}: quotaflow stats: calls {stats['calls']}, "
                f"succeeded {stats['succeeded']}, failed {stats['failed']}, attempts "
                f"{stats['attempts']}, provider_429 {stats['provider_429']}, corrections "
                f"{stats['corrections']}, pauses {stats['pauses']}, wait p50/p99/max "
                f"{stats['wait_p50']:.2f}/{stats['wait_p99']:.2f}/{stats['wait_max']:.2f} s, "
                f"errors {stats['errors'] or '{}'}"
            )
    print()


def evaluate(outcomes: Sequence[Outcome]) -> list[Goal]:
    """For the quotaflow scenarios: 0 provider 429s, >= 97% of the binding limit used."""
    goals = []
    for o in outcomes:
        if not o.scenario.governed or not o.scenario.correct_remaining:
            continue  # the baseline, and the diagnostic scenario, have no goal
        goals.append(
            Goal(
                "client_http",
                f"{o.scenario.name}: 0 provider 429s",
                str(o.provider_429),
                o.provider_429 == 0,
            )
        )
        used = o.usable if o.binding == "tokens" else o.utilisation(o.binding)
        goals.append(
            Goal(
                "client_http",
                f"{o.scenario.name}: ≥ {GOAL_UTILISATION:.0%} of the binding limit "
                f"({o.binding}) used, of what was usable",
                f"{used:.2%} (raw {o.utilisation(o.binding):.2%}, ceiling {o.ceiling:.2%})",
                used >= GOAL_UTILISATION,
            )
        )
    return goals


def run_all(
    config: Any,  # noqa: ANN401 (EmulatorConfig)
    scenarios: Sequence[Scenario],
    seconds: float,
) -> tuple[list[Outcome], dict[str, str]]:
    """Start the emulator, run each scenario, stop it, delete the run's Redis keys."""
    from quotaflow.emulator import EmulatorProcess  # noqa: PLC0415 (an extra)

    outcomes: list[Outcome] = []
    failures: dict[str, str] = {}
    namespaces: list[str] = []
    emulator = EmulatorProcess(config)
    try:
        emulator.start()
        for scenario in scenarios:
            print(f"running {scenario.name} for {seconds:.0f} s ...", flush=True)
            try:
                outcomes.append(run_scenario(emulator, scenario, seconds, namespaces))
            except Exception as error:
                failures[scenario.name] = f"{type(error).__name__}: {error}"
                print(f"FAILED {scenario.name}: {failures[scenario.name]}", flush=True)
    finally:
        emulator.stop()
        with contextlib.suppress(Exception):
            deleted = cleanup(namespaces)
            if deleted:
                print(f"(deleted the {deleted} Redis keys of this run)")
    return outcomes, failures


def result_json(o: Outcome) -> dict[str, Any]:
    """One scenario's figures, for ``--json``."""
    waits = [w for t in o.tallies for w in t.waits]
    latencies = [x for t in o.tallies for x in t.latencies]
    return {
        "scenario": asdict(o.scenario),
        "seconds": o.seconds,
        "calls_ok": o.ok,
        "calls": o.calls,
        "attempts": o.attempts,
        "provider_429": o.provider_429,
        "utilisation": {b: o.utilisation(b) for b in o.model.get("buckets", {})},
        "binding": o.binding,
        "ceiling": o.ceiling,
        "usable": o.usable,
        "unused_in_flight": o.unused_in_flight,
        "failed": dict(o.failed),
        "wait_p50_s": median(waits),
        "wait_p99_s": percentile(waits, 0.99),
        "latency_p50_s": median(latencies),
        "latency_p99_s": percentile(latencies, 0.99),
        "cpu_mean": o.cpu()[0],
        "cpu_max": o.cpu()[1],
        "emulator": o.model,
        "quotaflow_stats": [t.stats for t in o.tallies],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (6 s per case)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per scenario (30)")
    parser.add_argument("--tpm", type=int, default=TPM, help=f"the emulator's TPM ({TPM:,})")
    parser.add_argument("--latency", type=float, default=LATENCY, help="emulator latency, s")
    parser.add_argument(
        "--only", default="", help="comma-separated scenario numbers (1-5), default all"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 2 when a goal is not met (default: 0)"
    )
    args = parser.parse_args(argv)
    seconds = 6.0 if args.quick else args.seconds
    chosen = [int(n) for n in args.only.split(",") if n.strip()] or list(
        range(1, len(SCENARIOS) + 1)
    )
    scenarios = [SCENARIOS[n - 1] for n in chosen]
    missing = [m for m in ("openai", "httpx2") if importlib.util.find_spec(m) is None]
    if missing:
        message = (
            f"needs {' and '.join(missing)} (the official SDK), which the bench group does not "
            f"install: {sys.executable} -m pip install openai httpx2"
        )
        print(f"FAILED client_http: {message}")
        write_json(args.json, {"benchmark": "client_http", "failures": {"setup": message}})
        return 1

    from quotaflow.emulator import EmulatorConfig  # noqa: PLC0415 (an extra)

    config = EmulatorConfig(
        openai_rpm=RPM, openai_tpm=args.tpm, latency=args.latency, output_tokens=OUTPUT, seed=SEED
    )
    load = os.getloadavg()
    print(
        f"cpu {cpu_model()}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}; quotaflow source sha256 {source_digest()}; Redis {REDIS_URL}, "
        f"namespace {RUN_ID}-*",
        flush=True,
    )
    started = time.monotonic()
    outcomes, failures = run_all(config, scenarios, seconds)
    print(f"(all scenarios took {time.monotonic() - started:.0f} s)\n")
    report(outcomes, seconds, args.tpm, args.latency)
    for name, message in failures.items():
        print(f"FAILED {name}: {message}")
    goals = evaluate(outcomes)
    if goals:
        print(goals_table(goals))
    met = all(g.met for g in goals) and not failures
    print(
        f"client_http: goals {'MET' if met else 'NOT met'} "
        f"({sum(g.met for g in goals)} of {len(goals)})"
    )
    write_json(
        args.json,
        {
            "benchmark": "client_http",
            "seconds": seconds,
            "emulator": {
                "openai_tpm": args.tpm,
                "openai_rpm": RPM,
                "latency": args.latency,
                "output_tokens": OUTPUT,
                "seed": SEED,
            },
            "max_tokens": MAX_TOKENS,
            "results": [result_json(o) for o in outcomes],
            "failures": failures,
            "goals": goals,
        },
    )
    if failures:
        return 1
    return 2 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
