"""Two priority classes under saturation: the queue manager against the emulator.

The provider is quotaflow's emulator (``EmulatorProcess``: its own process, 127.0.0.1) with
``gpt-4o-mini`` limited to 24,000 tokens per minute (binding: 400 tokens/s) and 6,000
requests per minute, 0.2 s latency, outputs of 20-200 tokens. Like OpenAI it charges prompt +
``max_tokens`` at admission and refunds the unused part at the end of the response.

One ``QueueManager`` holds the model's queue on the memory store: ``ModelConfig(
"gpt-4o-mini", tpm=24_000, rpm=6_000, headroom=0.99, min_share={0: 0.25}, aging=None)``.
The processor posts the request with httpx and reports the usage from the response
(``request.actual_*``), so every reservation is settled with what the call used. The 1 %
headroom absorbs the refill a full bucket loses while a request travels to the provider.

A warm-up call (a ~23,000-token prompt) empties the token bucket first, so the run is
saturated from its start. Then two producers submit for ``--seconds`` (default 60): a *high*
class (priority 1) and a *low* class (priority 0), each offering 2.5 requests per second, a
user prompt of 5-60 words with ``max_tokens=200``: each class alone offers more than the limit
admits (~2.8 calls/s of ~145 tokens). At the end, requests still waiting are cancelled.

Two scenarios: with the minimum share (the configuration above), and without it
(``min_share={}``), to show what the share guarantees.

Reported per class: requests submitted and admitted, the wait from submission to admission
(p50 / p95; a request still waiting at the end counts with its wait so far, so a starved class
is not flattered by the few it got), and the share of the admitted work (estimated tokens, the
scheduler's measure, without the warm-up; and requests); for the run, provider 429s (the
emulator's count) and the tokens limit used (the emulator's charged / admissible over the span
of admissions).

Goals (the scenario with the share): the high class waits less (p50), the low class gets at
least its 25 % of the admitted tokens, within one request (admissions are whole requests, so a
run that ends just before the low class's next turn is short by up to one), and 0 provider
429s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from _common import Goal, goals_table, median, percentile, table, write_json
from quotaflow.providers import estimate_request_tokens
from quotaflow.queue import ModelConfig, QueueManager, QueueRequest, QueueResponse, RequestStatus

MODEL = "gpt-4o-mini"
TPM = 24_000
RPM = 6_000
MAX_TOKENS = 200
MIN_SHARE = 0.25
RATE_PER_CLASS = 2.5  # requests per second offered by each class
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")

Manager = QueueManager[dict[str, Any], dict[str, Any]]
Submitted = tuple[int, float, int, "asyncio.Future[QueueResponse[dict[str, Any]]]"]


def body(rng: random.Random, words: int | None = None) -> dict[str, Any]:
    count = words if words is not None else rng.randint(5, 60)
    prompt = " ".join(rng.choice(WORDS) for _ in range(count))
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
    }


def warm_up_body(tokens: int) -> dict[str, Any]:
    """A call whose prompt alone takes about ``tokens`` (at most), to empty the bucket."""
    words = 100
    for _ in range(30):  # grow the prompt until the estimate reaches the target
        payload = body(random.Random(9), words=words)
        payload["max_tokens"] = 20
        estimate = estimate_request_tokens("openai", payload).input_tokens + 20
        if estimate >= tokens * 0.97:
            break
        words = int(words * tokens / estimate * 0.99)
    while estimate > tokens:
        words -= max(1, words // 100)
        payload = body(random.Random(9), words=words)
        payload["max_tokens"] = 20
        estimate = estimate_request_tokens("openai", payload).input_tokens + 20
    return payload


def request(payload: dict[str, Any], priority: int) -> QueueRequest[dict[str, Any]]:
    return QueueRequest(
        MODEL, payload, priority=priority, estimated_output_tokens=payload["max_tokens"],
        estimated_input_tokens=estimate_request_tokens("openai", payload).input_tokens,
    )  # fmt: skip


async def produce(manager: Manager, priority: int, seconds: float, out: list[Submitted]) -> None:
    rng = random.Random(priority)
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        while sent < int(elapsed * RATE_PER_CLASS) + 1:
            queued = request(body(rng), priority)
            weight = queued.estimated_input_tokens + queued.estimated_output_tokens
            out.append((priority, time.monotonic(), weight, manager.submit_nowait(queued)))
            sent += 1
        await asyncio.sleep(0.02)


async def scenario(base_url: str, min_share: dict[int, float], seconds: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=60, trust_env=False,
        headers={"authorization": "Bearer bench"},
    ) as http:  # fmt: skip

        async def call(queued: QueueRequest[dict[str, Any]]) -> dict[str, Any]:
            response = await http.post("/chat/completions", json=queued.params)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            response.raise_for_status()
            data: dict[str, Any] = response.json()
            queued.actual_input_tokens = data["usage"]["prompt_tokens"]
            queued.actual_output_tokens = data["usage"]["completion_tokens"]
            return data

        manager: Manager = QueueManager()
        config = ModelConfig(
            MODEL, tpm=TPM, rpm=RPM, headroom=0.99, min_share=min_share, aging=None
        )
        await manager.register_queue(config, call)
        warm = warm_up_body(round(TPM * 0.99) - 200)
        warmed = await manager.submit(request(warm, 1))
        if not warmed.ok:
            raise RuntimeError(f"the warm-up call failed: {warmed.error_message}")
        submitted: list[Submitted] = []
        await asyncio.gather(
            produce(manager, 1, seconds, submitted), produce(manager, 0, seconds, submitted)
        )
        ended = time.monotonic()
        await manager.shutdown(drain=False, timeout=30)
    classes: dict[int, dict[str, Any]] = {}
    for priority in (1, 0):
        mine = [(at, w, f.result()) for p, at, w, f in submitted if p == priority]
        admitted = [r for _, _, r in mine if r.status is not RequestStatus.CANCELLED]
        # A request still waiting at the end counts with its wait so far.
        waits = [r.wait_time for r in admitted] + [
            ended - at for at, _, r in mine if r.status is RequestStatus.CANCELLED
        ]
        classes[priority] = {
            "submitted": len(mine),
            "admitted": len(admitted),
            "failed": sum(r.status is RequestStatus.FAILED for _, _, r in mine),
            "tokens": sum(w for _, w, r in mine if r.status is not RequestStatus.CANCELLED),
            "largest": max((w for _, w, _ in mine), default=0),
            "wait_p50": median(waits),
            "wait_p95": percentile(waits, 0.95),
        }
    tokens = sum(c["tokens"] for c in classes.values()) or 1
    shares = {p: c["tokens"] / tokens for p, c in classes.items()}
    return {"classes": classes, "shares": shares, "statuses": statuses}


async def run(seconds: float) -> dict[str, Any]:
    from quotaflow.emulator import EmulatorConfig, EmulatorProcess  # noqa: PLC0415

    config = EmulatorConfig(
        openai_rpm=RPM, openai_tpm=TPM, latency=0.2, output_tokens=(20, 200), seed=7
    )
    results: dict[str, Any] = {}
    with EmulatorProcess(config) as emulator:
        for name, share in (("with min_share", {0: MIN_SHARE}), ("without", {})):
            emulator.reset()
            result = await scenario(emulator.url + "/v1", share, seconds)
            stats = emulator.stats()["families"]["openai"][MODEL]
            tokens = stats["buckets"]["tokens"]
            result["provider_429"] = sum(stats["rate_limited"].values())
            result["tokens_used"] = tokens["charged"] / tokens["admissible"]
            result["span"] = stats["span_seconds"]
            results[name] = result
    return report(results)


def report(results: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name, result in results.items():
        classes = result["classes"]
        total = sum(c["admitted"] for c in classes.values())
        for priority, c in classes.items():
            rows.append((
                name, "high (1)" if priority == 1 else "low (0)", c["submitted"], c["admitted"],
                f"{c['wait_p50']:.1f} s", f"{c['wait_p95']:.1f} s",
                f"{result['shares'].get(priority, 0.0):.1%}",
                f"{c['admitted'] / total:.1%}" if total else "-",
            ))  # fmt: skip
    headers = ("scenario", "class", "submitted", "admitted", "wait p50", "wait p95",
               "share (tokens)", "share (requests)")  # fmt: skip
    print(table("Two priority classes under saturation", headers, rows))
    for name, result in results.items():
        print(
            f"{name}: provider 429s {result['provider_429']}; tokens limit used "
            f"{result['tokens_used']:.2%} of {TPM:,}/min over {result['span']:.1f} s of "
            f"admissions; HTTP statuses {result['statuses']}"
        )
    main = results["with min_share"]
    high, low = main["classes"][1], main["classes"][0]
    low_share = main["shares"].get(0, 0.0)
    admitted_tokens = sum(c["tokens"] for c in main["classes"].values()) or 1
    allowance = low["largest"] / admitted_tokens  # one request: the granularity
    goals = [
        Goal(
            "queue_priority", "high class waits less (p50)",
            f"{high['wait_p50']:.1f} s vs {low['wait_p50']:.1f} s",
            high["wait_p50"] < low["wait_p50"],
        ),
        Goal(
            "queue_priority",
            f"low class gets >= {MIN_SHARE:.0%} of admitted tokens (within one request)",
            f"{low_share:.1%} (one request: {allowance:.1%})",
            low_share >= MIN_SHARE - allowance,
        ),
        Goal(
            "queue_priority", "0 provider 429s", str(main["provider_429"]),
            main["provider_429"] == 0,
        ),
    ]  # fmt: skip
    print(goals_table(goals))
    return {"benchmark": "queue_priority", "results": results, "goals": goals}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (10 s each)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load (60)")
    args = parser.parse_args(argv)
    data = asyncio.run(run(10.0 if args.quick else args.seconds))
    write_json(args.json, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
