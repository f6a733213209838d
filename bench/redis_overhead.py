"""Redis overhead: µs per admission on a shared Redis, quotaflow against its floor and peers.

Everything talks to the same Redis (``$REDIS_URL``, default ``redis://127.0.0.1:6379/0``),
sequentially from one asyncio task (or one thread for the sync rows), so the figures are
round-trip latency plus each library's own work. Every key this benchmark writes starts with a
prefix unique to the run; those keys, and only those, are deleted at the end (SCAN + DEL).

* **floor**: ``EVALSHA`` of a no-op script (``return 1``, loaded once), with
  ``redis.asyncio`` and with sync redis-py. Nothing that runs a Lua script per operation can
  be faster than this.
* **quotaflow**: ``RedisStore`` (one ``EVALSHA`` per operation) behind ``Limiter`` (async) and
  ``SyncLimiter``; case ``2`` = RPM + TPM on one scope, case ``4`` = 4 limits over 2 scopes
  (model: RPM + TPM, user: RPM + TPD). Every admission is an acquire (900 input tokens +
  ``max_tokens`` 4,096 reserved) then a settle (300 actual output tokens).
* **peers**, on the same Redis, limits so generous that nothing is refused, composed the way a
  user would compose them (one limiter per limit where the library has one limit per object):
  throttled-py (token bucket, Redis store), pyrate-limiter 4.x (``StateBucket`` + token
  bucket on ``RedisStateStore``), limits (``RedisStorage`` on redis-py; fixed window and
  sliding-window counter, one ``hit`` per limit with ``cost``), llmratelimiter (one Lua
  ``EVAL`` for RPM + TPM; ``adjust`` is its settle).

Batches of 100 acquires are timed, then the 100 settles of that batch; each repeat runs as
many batches as fit in ~0.3 s; repeats are interleaved across subjects; the figure is the
median of the repeats, with the garbage collector off during each repeat.

llmratelimiter keeps one sorted-set entry per request for the whole window and its script reads
them all on every acquire (O(requests in the window)); it also spaces requests 1 ms apart
(FIFO ``epsilon``) and sleeps until that slot. To measure its overhead rather than that
pacing, its ``_should_wait`` switch (meant for tests) is turned off, and its key is cleared
before each batch, so its window holds 0-99 entries while it is timed: a best case for it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _common import Goal, goals_table, median, run_main, table

BATCH = 100
INPUT, MAX_OUTPUT, OUTPUT = 900, 4_096, 300
RESERVED = INPUT + MAX_OUTPUT
HUGE = 10**12  # per minute / per day: nothing is ever refused
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
#: Every key of this run contains this (llmratelimiter's start with ``rate_limit:``).
PREFIX = f"qfbench-{os.getpid()}-{secrets.token_hex(3)}"
MODEL, USER = "openai:gpt-4o", "user:1"


def with_namespace(url: str, namespace: str) -> str:
    """``url`` with ``namespace=...`` added to its query."""
    parts = urlsplit(url)
    query = f"{parts.query}&namespace={namespace}" if parts.query else f"namespace={namespace}"
    return urlunsplit(parts._replace(query=query))


def peer(module: str) -> ModuleType:
    """Import a peer the type checker does not know (a missing one raises ImportError)."""
    return importlib.import_module(module)


class Subject:
    """A limiter under test: acquire a batch, settle a batch, on Redis."""

    name = ""
    path = "async"
    #: Redis round trips per acquire and per settle (0: cannot settle).
    trips = (1, 0)

    def __init__(self, case: int) -> None:
        self.case = case

    async def setup(self) -> None:
        """Connect, load scripts (untimed)."""

    async def before_batch(self) -> None:
        """Run before each timed batch (untimed)."""

    async def acquire_batch(self, n: int) -> list[Any]:
        """Acquire ``n`` times; return what settling needs."""
        raise NotImplementedError

    async def settle_batch(self, handles: list[Any]) -> None:
        """Settle every handle with the actual usage."""

    async def close(self) -> None:
        """Release connections."""

    @property
    def can_settle(self) -> bool:
        """Whether the subject can give back what was not used."""
        return self.trips[1] > 0


# The floor ---------------------------------------------------------------------------------

NOOP = "return 1"


class FloorAsync(Subject):
    """``await redis.evalsha(noop, 0)`` with redis.asyncio."""

    name = "floor: EVALSHA no-op"

    async def setup(self) -> None:
        """Load the script once."""
        import redis.asyncio  # noqa: PLC0415 (only when measured)

        self.client = redis.asyncio.Redis.from_url(REDIS_URL)
        self.sha = await self.client.script_load(NOOP)

    async def acquire_batch(self, n: int) -> list[Any]:
        """One EVALSHA per acquire."""
        evalsha, sha = self.client.evalsha, self.sha
        for _ in range(n):
            await evalsha(sha, 0)
        return []

    async def close(self) -> None:
        """Close the client."""
        await self.client.aclose()


class FloorSync(Subject):
    """``redis.evalsha(noop, 0)`` with sync redis-py."""

    name = "floor: EVALSHA no-op"
    path = "sync"

    async def setup(self) -> None:
        """Load the script once."""
        import redis  # noqa: PLC0415 (only when measured)

        self.client = redis.Redis.from_url(REDIS_URL)
        self.sha = self.client.script_load(NOOP)

    async def acquire_batch(self, n: int) -> list[Any]:
        """One EVALSHA per acquire."""
        evalsha, sha = self.client.evalsha, self.sha
        for _ in range(n):
            evalsha(sha, 0)
        return []

    async def close(self) -> None:
        """Close the client."""
        self.client.close()


# quotaflow ---------------------------------------------------------------------------------


def quotaflow_limits(case: int) -> dict[str, Any]:
    """Case 2: RPM + TPM on the model; case 4: plus RPM + TPD on the user."""
    from quotaflow import rpm, tpd, tpm  # noqa: PLC0415

    limits: dict[str, Any] = {MODEL: [rpm(HUGE), tpm(HUGE)]}
    if case == 4:
        limits[USER] = [rpm(HUGE), tpd(HUGE)]
    return limits


_namespaces = iter(range(1, 1_000))


class QuotaflowAsync(Subject):
    """``await limiter.acquire(...)`` / ``await reservation.settle(...)`` on ``RedisStore``."""

    name = "quotaflow"
    trips = (1, 1)

    async def setup(self) -> None:
        """Open a RedisStore in a namespace of its own."""
        from quotaflow import Limiter  # noqa: PLC0415
        from quotaflow.stores import open_store  # noqa: PLC0415 (lands with RedisStore)

        store = open_store(with_namespace(REDIS_URL, f"{PREFIX}-qf{next(_namespaces)}"))
        self.limiter = Limiter(quotaflow_limits(self.case), store=store)
        self.scopes: str | list[str] = MODEL if self.case == 2 else [MODEL, USER]

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await limiter.acquire(scopes, input_tokens=..., output_tokens=max_tokens)``."""
        acquire, scopes = self.limiter.acquire, self.scopes
        return [
            await acquire(scopes, input_tokens=INPUT, output_tokens=MAX_OUTPUT) for _ in range(n)
        ]

    async def settle_batch(self, handles: list[Any]) -> None:
        """``await reservation.settle(output_tokens=...)``."""
        for reservation in handles:
            await reservation.settle(output_tokens=OUTPUT)

    async def close(self) -> None:
        """Close the limiter and its store."""
        await self.limiter.aclose()


class QuotaflowSync(Subject):
    """``SyncLimiter.acquire`` / ``SyncReservation.settle`` on ``RedisStore``."""

    name = "quotaflow"
    path = "sync"
    trips = (1, 1)

    async def setup(self) -> None:
        """Open a RedisStore in a namespace of its own."""
        from quotaflow import SyncLimiter  # noqa: PLC0415
        from quotaflow.stores import open_store  # noqa: PLC0415 (lands with RedisStore)

        store = open_store(with_namespace(REDIS_URL, f"{PREFIX}-qf{next(_namespaces)}"))
        self.limiter = SyncLimiter(quotaflow_limits(self.case), store=store)
        self.scopes: str | list[str] = MODEL if self.case == 2 else [MODEL, USER]

    async def acquire_batch(self, n: int) -> list[Any]:
        """``limiter.acquire(scopes, input_tokens=..., output_tokens=max_tokens)``."""
        acquire, scopes = self.limiter.acquire, self.scopes
        return [acquire(scopes, input_tokens=INPUT, output_tokens=MAX_OUTPUT) for _ in range(n)]

    async def settle_batch(self, handles: list[Any]) -> None:
        """``reservation.settle(output_tokens=...)``."""
        for reservation in handles:
            reservation.settle(output_tokens=OUTPUT)

    async def close(self) -> None:
        """Close the limiter and its store."""
        self.limiter.close()


# Peers -------------------------------------------------------------------------------------

#: (scope, metric, amount per call, per-day?) of each limit, per case.
LIMITS: dict[int, list[tuple[str, str, int, bool]]] = {
    2: [(MODEL, "requests", 1, False), (MODEL, "tokens", RESERVED, False)],
    4: [
        (MODEL, "requests", 1, False),
        (MODEL, "tokens", RESERVED, False),
        (USER, "requests", 1, False),
        (USER, "tokens", RESERVED, True),
    ],
}


class ThrottledPy(Subject):
    """throttled-py: one token-bucket ``Throttled`` per limit on its async Redis store."""

    name = "throttled-py"

    async def setup(self) -> None:
        """One Throttled per limit, all on one RedisStore."""
        from throttled.asyncio import (  # noqa: PLC0415 (a missing peer is reported)
            RateLimiterType,
            RedisStore,
            Throttled,
            per_day,
            per_min,
        )

        store = RedisStore(server=REDIS_URL)
        self.pairs = [
            (
                Throttled(
                    key=f"{scope}:{metric}",
                    using=RateLimiterType.TOKEN_BUCKET.value,
                    quota=(per_day if daily else per_min)(HUGE, burst=HUGE),
                    store=store,
                    key_prefix=PREFIX,
                    timeout=60,
                ),
                amount,
            )
            for scope, metric, amount, daily in LIMITS[self.case]
        ]
        self.trips = (len(self.pairs), 0)

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await throttle.limit(cost=...)`` per limit."""
        pairs = self.pairs
        for _ in range(n):
            for throttle, amount in pairs:
                if (await throttle.limit(cost=amount)).limited:
                    raise RuntimeError("throttled-py refused an uncontended acquire")
        return []


class PyrateLimiter(Subject):
    """pyrate-limiter 4.x: one ``Limiter(StateBucket(TokenBucket, RedisStateStore))`` per limit."""

    name = "pyrate-limiter"

    async def setup(self) -> None:
        """One limiter per limit (one bucket's rates all take the same weight)."""
        import redis.asyncio  # noqa: PLC0415
        from pyrate_limiter import (  # noqa: PLC0415 (a missing peer is reported)
            Duration,
            Limiter,
            Rate,
            RedisStateStore,
            StateBucket,
            TokenBucket,
        )

        self.client = redis.asyncio.Redis.from_url(REDIS_URL)
        self.pairs: list[tuple[Any, int]] = []
        for scope, metric, amount, daily in LIMITS[self.case]:
            rate = Rate(HUGE, Duration.DAY if daily else Duration.MINUTE)
            store = RedisStateStore(self.client, f"{PREFIX}:pyrate:{scope}:{metric}")
            bucket = StateBucket([rate], algorithm=TokenBucket(), store=store)
            self.pairs.append((Limiter(bucket), amount))
        self.trips = (len(self.pairs), 0)

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await limiter.try_acquire_async(name, weight)`` per limit."""
        pairs = self.pairs
        for _ in range(n):
            for limiter, amount in pairs:
                if not await limiter.try_acquire_async(MODEL, amount):
                    raise RuntimeError("pyrate-limiter refused an uncontended acquire")
        return []

    async def close(self) -> None:
        """Stop the leak threads, close the client."""
        for limiter, _ in self.pairs:
            limiter.close()
        await self.client.aclose()


class Limits(Subject):
    """limits: ``limits.aio`` RedisStorage (redis-py), one ``hit(item, cost=...)`` per limit."""

    name = "limits"

    def __init__(self, case: int, strategy: str) -> None:
        super().__init__(case)
        self.strategy = strategy
        self.name = f"limits ({'fixed window' if strategy == 'fixed' else 'sliding counter'})"

    async def setup(self) -> None:
        """One RateLimitItem per limit, one strategy over one storage."""
        limits = peer("limits")
        aio = peer("limits.aio")
        storage = aio.storage.RedisStorage(
            f"async+{REDIS_URL}", implementation="redispy", key_prefix=f"{PREFIX}:limits"
        )
        strategy = (
            aio.strategies.FixedWindowRateLimiter
            if self.strategy == "fixed"
            else aio.strategies.SlidingWindowCounterRateLimiter
        )
        self.limiter = strategy(storage)
        self.storage = storage
        self.items = [
            (
                (limits.RateLimitItemPerDay if daily else limits.RateLimitItemPerMinute)(HUGE),
                f"{scope}:{metric}",
                amount,
            )
            for scope, metric, amount, daily in LIMITS[self.case]
        ]
        self.trips = (len(self.items), 0)

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await limiter.hit(item, key, cost=...)`` per limit."""
        hit, items = self.limiter.hit, self.items
        for _ in range(n):
            for item, key, amount in items:
                if not await hit(item, key, cost=amount):
                    raise RuntimeError("limits refused an uncontended hit")
        return []

    async def close(self) -> None:
        """Close its client."""
        await self.storage.bridge.storage.aclose()


class LlmRateLimiter(Subject):
    """llmratelimiter: one ``RateLimiter`` (RPM + TPM in one Lua EVAL); ``adjust`` settles.

    Case 4: the model's RPM + TPM, the user's RPM (60 s window) and the user's TPD (a
    second limiter with an 86,400 s window): 3 EVALs per acquire.
    """

    name = "llmratelimiter"

    async def setup(self) -> None:
        """Limiters on one redis.asyncio client; waiting off (see the module docstring)."""
        import redis.asyncio  # noqa: PLC0415

        rate_limiter = peer("llmratelimiter").RateLimiter
        self.client = redis.asyncio.Redis.from_url(REDIS_URL)
        made = [rate_limiter(redis=self.client, model=f"{PREFIX}:{MODEL}", tpm=HUGE, rpm=HUGE)]
        if self.case == 4:
            made.append(rate_limiter(redis=self.client, model=f"{PREFIX}:{USER}", rpm=HUGE))
            made.append(
                rate_limiter(
                    redis=self.client, model=f"{PREFIX}:{USER}:day", tpm=HUGE, window_seconds=86_400
                )
            )
        for limiter in made:
            limiter._should_wait = False  # noqa: SLF001 (its switch for tests: no 1 ms pacing)
        self.limiters = made
        self.keys = [limiter.consumption_key for limiter in made]
        self.trips = (len(made), len(made))

    async def before_batch(self) -> None:
        """Empty its windows, so that its O(entries) scripts run on at most one batch."""
        await self.client.delete(*self.keys)

    async def acquire_batch(self, n: int) -> list[Any]:
        """``await limiter.acquire(input_tokens=..., output_tokens=...)`` per limiter."""
        limiters = self.limiters
        handles = []
        for _ in range(n):
            for limiter in limiters:
                result = await limiter.acquire(input_tokens=INPUT, output_tokens=MAX_OUTPUT)
                handles.append((limiter, result.record_id))
        return handles

    async def settle_batch(self, handles: list[Any]) -> None:
        """``await limiter.adjust(record_id, actual_output=...)``."""
        for limiter, record_id in handles:
            await limiter.adjust(record_id, actual_output=OUTPUT)

    async def check(self) -> None:
        """It lets requests through when Redis fails: make sure it really recorded them."""
        await self.before_batch()
        await self.acquire_batch(3)
        counts = [await self.client.zcard(key) for key in self.keys]
        if counts != [3] * len(self.keys):
            raise RuntimeError(f"llmratelimiter did not record its acquires: {counts}")

    async def close(self) -> None:
        """Close the client."""
        await self.client.aclose()


# Measurement -------------------------------------------------------------------------------


@dataclass
class Result:
    """Median microseconds per operation of one subject."""

    subject: str
    path: str
    case: int
    trips: tuple[int, int]
    acquire_us: float
    settle_us: float | None
    vs_floor: float  # acquire / the floor measured just before, median over repeats
    admission_vs_floor: float  # (acquire + settle) / the floor, likewise
    repeats: int
    ops_per_repeat: int

    @property
    def admission_us(self) -> float:
        """Acquire plus settle (acquire alone for a subject that cannot settle)."""
        return self.acquire_us + (self.settle_us or 0.0)


async def _one_batch(subject: Subject) -> tuple[int, int]:
    await subject.before_batch()
    start = time.perf_counter_ns()
    handles = await subject.acquire_batch(BATCH)
    middle = time.perf_counter_ns()
    await subject.settle_batch(handles)
    return middle - start, time.perf_counter_ns() - middle


async def calibrate(subject: Subject, *, repeat_s: float, warmup_s: float) -> int:
    """Warm ``subject`` up; return how many batches fill one repeat of ``repeat_s``."""
    spent = 0
    batches = 0
    start = time.perf_counter()
    while batches < 2 or time.perf_counter() - start < warmup_s:
        acquire_ns, settle_ns = await _one_batch(subject)
        spent += acquire_ns + settle_ns
        batches += 1
    return max(1, round(repeat_s * 1e9 * batches / spent))


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
    """Time every subject, interleaving the repeats; each figure is the median of repeats.

    Each repeat of a subject is preceded by a short repeat of the floor of its path (async or
    sync), and the subject's ratio to the floor is taken from that pair: on a shared machine
    whose speed drifts over seconds, the ratios are steadier than the raw microseconds.
    """
    counts = [await calibrate(s, repeat_s=repeat_s, warmup_s=warmup_s) for s in subjects]
    floors = {
        s.path: (i, max(1, c // 3))
        for i, (s, c) in enumerate(zip(subjects, counts, strict=True))
        if isinstance(s, FloorAsync | FloorSync)
    }
    acquires: list[list[float]] = [[] for _ in subjects]
    settles: list[list[float]] = [[] for _ in subjects]
    ratios: list[list[float]] = [[] for _ in subjects]
    admission_ratios: list[list[float]] = [[] for _ in subjects]
    for _ in range(repeats):
        for i, (subject, count) in enumerate(zip(subjects, counts, strict=True)):
            floor_us = None
            pair = floors.get(subject.path)
            if pair is not None and pair[0] != i:
                floor_us, _ = await one_repeat(subjects[pair[0]], pair[1])
                acquires[pair[0]].append(floor_us)
            acquire_us, settle_us = await one_repeat(subject, count)
            acquires[i].append(acquire_us)
            settles[i].append(settle_us)
            if floor_us is not None:
                ratios[i].append(acquire_us / floor_us)
                admission = acquire_us + (settle_us if subject.can_settle else 0.0)
                admission_ratios[i].append(admission / floor_us)
    return [
        Result(
            subject=subject.name,
            path=subject.path,
            case=subject.case,
            trips=subject.trips,
            acquire_us=median(acquires[i]),
            settle_us=median(settles[i]) if subject.can_settle else None,
            vs_floor=median(ratios[i]) if ratios[i] else 1.0,
            admission_vs_floor=median(admission_ratios[i]) if admission_ratios[i] else 1.0,
            repeats=repeats,
            ops_per_repeat=counts[i] * BATCH,
        )
        for i, subject in enumerate(subjects)
    ]


def subjects() -> list[Callable[[], Subject]]:
    """Every subject, in table order."""
    made: list[Callable[[], Subject]] = [partial(FloorAsync, 1), partial(FloorSync, 1)]
    for case in (2, 4):
        made += [partial(QuotaflowAsync, case), partial(QuotaflowSync, case)]
        made += [
            partial(ThrottledPy, case),
            partial(PyrateLimiter, case),
            partial(Limits, case, "fixed"),
            partial(Limits, case, "sliding"),
            partial(LlmRateLimiter, case),
        ]
    return made


async def cleanup() -> int:
    """Delete every key of this run (SCAN for its unique prefix + DEL); nothing else."""
    import redis.asyncio  # noqa: PLC0415

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    deleted = 0
    try:
        batch: list[Any] = []
        async for key in client.scan_iter(match=f"*{PREFIX}*", count=1_000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.delete(*batch)
                batch = []
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def evaluate(results: Sequence[Result]) -> list[Goal]:
    """Goals: quotaflow within 1.3x of the floor; at least 2x faster than each peer (RPM + TPM).

    Ratios come from the paired floor measurements (see :func:`measure_all`); a peer's speed
    relative to quotaflow is the ratio of their ratios to the floor.
    """
    goals: list[Goal] = []
    floor = {r.path: r.acquire_us for r in results if r.subject.startswith("floor")}
    ours = {(r.path, r.case): r for r in results if r.subject == "quotaflow"}
    for path, case in (("async", 2), ("async", 4), ("sync", 2)):
        mine = ours.get((path, case))
        if mine is None or path not in floor:
            continue
        goals.append(
            Goal(
                "redis_overhead",
                f"{path} acquire, {case} limits: ≤ 1.3x a no-op EVALSHA",
                f"{mine.vs_floor:.2f}x ({mine.acquire_us:.0f} vs {floor[path]:.0f} µs)",
                mine.vs_floor <= 1.3,
            )
        )
        if case == 2 and path == "async":
            ratio = mine.admission_vs_floor / 2
            goals.append(
                Goal(
                    "redis_overhead",
                    "async acquire + settle, 2 limits: ≤ 1.3x two no-op EVALSHAs",
                    f"{ratio:.2f}x ({mine.admission_us:.0f} vs {2 * floor[path]:.0f} µs)",
                    ratio <= 1.3,
                )
            )
    mine = ours.get(("async", 2))
    if mine is not None:
        for other in results:
            if other.case != 2 or other.subject.startswith(("floor", "quotaflow")):
                continue
            speedup = other.vs_floor / mine.vs_floor
            goals.append(
                Goal(
                    "redis_overhead",
                    f"RPM+TPM acquire ≥ 2x faster than {other.subject}",
                    f"{speedup:.2f}x ({mine.acquire_us:.0f} vs {other.acquire_us:.0f} µs)",
                    speedup >= 2,
                )
            )
    return goals


async def run(quick: bool) -> dict[str, Any]:
    """Measure every subject; return results and goals."""
    repeats, repeat_s, warmup_s = (3, 0.08, 0.03) if quick else (7, 0.3, 0.2)
    made: list[Subject] = []
    failures: dict[str, str] = {}
    notes: dict[str, str] = {}
    try:
        for make in subjects():
            subject = make()
            label = f"{subject.name} ({subject.path}, {subject.case} limits)"
            try:
                await subject.setup()
                check = getattr(subject, "check", None)
                if check is not None:
                    await check()
                made.append(subject)
            except ImportError as error:  # a peer (or RedisStore) not installed: a note
                notes[label] = f"{type(error).__name__}: {error}"
            except Exception as error:  # a peer that is broken is reported as a failure
                failures[label] = f"{type(error).__name__}: {error}"
                with contextlib.suppress(Exception):  # half set up: release what was
                    await subject.close()
        results = await measure_all(made, repeats=repeats, repeat_s=repeat_s, warmup_s=warmup_s)
    finally:
        for subject in made:
            await subject.close()
        deleted = await cleanup()
    base = {(r.path, r.case): r.vs_floor for r in results if r.subject == "quotaflow"}
    rows = [
        (
            r.subject,
            r.path,
            "-" if r.subject.startswith("floor") else r.case,
            f"{r.trips[0]} + {r.trips[1]}",
            _fmt(r.acquire_us),
            _fmt(r.settle_us),
            _fmt(r.admission_us),
            f"{r.vs_floor:.2f}x",
            f"{r.vs_floor / base[r.path, r.case]:.2f}x" if (r.path, r.case) in base else "",
        )
        for r in results
    ]
    print(
        table(
            f"Redis overhead: µs per operation, sequential, {REDIS_URL} (median of {repeats} "
            "repeats; lower is better)",
            (
                "limiter",
                "path",
                "limits",
                "round trips (acquire + settle)",
                "acquire µs",
                "settle µs",
                "acquire + settle µs",
                "acquire vs floor",
                "acquire vs quotaflow",
            ),
            rows,
        )
    )
    for name, message in notes.items():
        print(f"not measured (not installed) {name}: {message}")
    for name, message in failures.items():
        print(f"FAILED {name}: {message}")
    print(f"(deleted the {deleted} keys of this run, prefix {PREFIX})\n")
    goals = evaluate(results)
    if goals:
        print(goals_table(goals))
    return {
        "benchmark": "redis_overhead",
        "redis_url": REDIS_URL,
        "batch": BATCH,
        "results": [{**r.__dict__, "admission_us": r.admission_us} for r in results],
        "failures": failures,
        "not_installed": notes,
        "goals": goals,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    return run_main(__doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
