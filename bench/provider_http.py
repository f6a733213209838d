"""A local HTTP stand-in for an LLM provider that enforces rate limits the way providers do.

``POST /v1/chat/completions`` takes ``{"input_tokens": n, "max_tokens": m}``, and optionally
``"admitted_at"``: when the client's limiter admitted the call, seconds since the epoch. It
draws the actual output length (uniform in 10%-60% of ``m``, from a seeded generator), charges
1 request and ``n`` + that output to continuously refilling buckets
(``quotaflow.testing.SimulatedProvider``: exact integer arithmetic, full at the first call) at
the instant the request arrives, waits a simulated latency, and answers 200 with
``{"usage": {"prompt_tokens": n, "completion_tokens": k, "total_tokens": n + k}}``. When a
bucket lacks the amount it answers 429 at once and charges nothing.

``GET /stats`` returns what was accepted and rejected, and the admissible tokens and requests
over the run: capacity + rate x (last call - first call), the most any client could have had
accepted. Tokens accepted / admissible tokens is the utilisation. It also reports the first
rejections (when, which bucket, wanted / available), the delay from admission to arrival, and
how many calls a replay would reject had each accepted call arrived at the instant its limiter
admitted it (0: the limiter's decisions conform; the 429s come from that delay).
``GET /health`` answers 200 (to open connections before a run).

It listens on 127.0.0.1 only, on a free port chosen by the kernel. Run it by hand with
``python bench/provider_http.py [--tokens 100000 --requests 600 --period 10]``; the
distributed benchmark starts it in a process of its own with :class:`ProviderProcess`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import random
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Self

import uvicorn  # type: ignore[import-not-found, unused-ignore]
from starlette.applications import Starlette  # type: ignore[import-not-found, unused-ignore]
from starlette.requests import Request  # type: ignore[import-not-found, unused-ignore]
from starlette.responses import JSONResponse  # type: ignore[import-not-found, unused-ignore]
from starlette.routing import Route  # type: ignore[import-not-found, unused-ignore]

from quotaflow.core import NS_PER_SECOND
from quotaflow.testing import SimulatedProvider

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ProviderConfig:
    """The provider's limits, output draw and latency."""

    tokens: int = 100_000  # per period
    requests: int = 600  # per period
    period: float = 10.0  # seconds
    seed: int = 20_250_101
    output_low: float = 0.10  # actual output, as a share of max_tokens
    output_high: float = 0.60
    latency_low: float = 0.05  # seconds
    latency_high: float = 0.25


class Provider:
    """The state behind the HTTP endpoints (one event loop: no locking needed)."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.sim = SimulatedProvider(
            {"requests": (config.requests, config.period), "tokens": (config.tokens, config.period)}
        )
        self.rng = random.Random(config.seed)
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.bad_requests = 0
        self.delays: list[float] = []  # seconds from the client's admission to the arrival
        self.delay_times: list[int] = []
        self.admitted: list[tuple[int, int]] = []  # (admitted at, µs; tokens) of accepted calls
        self.started_cpu = time.process_time()
        self.started_wall = time.monotonic()

    def call(
        self, input_tokens: int, max_tokens: int, admitted_at: float | None = None
    ) -> tuple[int, float] | None:
        """Charge one call now; the actual output and latency, or ``None`` for a 429.

        ``admitted_at`` (seconds since the epoch), when the client sends it, is when its
        limiter admitted the call: the delay to the arrival here is recorded.
        """
        now = time.monotonic_ns()
        if admitted_at is not None:
            self.delays.append(time.time() - admitted_at)
            self.delay_times.append(now)
        if self.first_ns is None:
            self.first_ns = now
        self.last_ns = max(now, self.last_ns or now)
        config = self.config
        low = max(1, round(max_tokens * config.output_low))
        high = max(low, round(max_tokens * config.output_high))
        output = self.rng.randint(low, high)
        latency = self.rng.uniform(config.latency_low, config.latency_high)
        if not self.sim.call({"requests": 1, "tokens": input_tokens + output}, now):
            return None
        if admitted_at is not None:
            self.admitted.append((round(admitted_at * 1e6), input_tokens + output))
        return output, latency

    def max_delay_by_second(self) -> list[float]:
        """The longest admission-to-arrival delay (ms) of each second of the run."""
        start = self.first_ns or 0
        by_second: dict[int, float] = {}
        for at, delay in zip(self.delay_times, self.delays, strict=True):
            second = (at - start) // NS_PER_SECOND
            by_second[second] = max(by_second.get(second, 0.0), delay * 1e3)
        return [round(by_second.get(i, 0.0), 1) for i in range(max(by_second, default=-1) + 1)]

    def replay(self) -> int | None:
        """Rejections had every accepted call arrived at the instant its limiter admitted it.

        0 means the limiter's admissions conform to the buckets; the 429s of the run then come
        from the delay between admission and arrival. ``None`` without admission times.
        """
        if not self.admitted:
            return None
        config = self.config
        shadow = SimulatedProvider(
            {"requests": (config.requests, config.period), "tokens": (config.tokens, config.period)}
        )
        for at_us, tokens in sorted(self.admitted):
            shadow.call({"requests": 1, "tokens": tokens}, at_us * 1_000)
        return len(shadow.rejections)

    def stats(self) -> dict[str, Any]:
        """Counts, and what was admissible between the first and the last call."""
        sim = self.sim
        elapsed = 0.0
        if self.first_ns is not None and self.last_ns is not None:
            elapsed = (self.last_ns - self.first_ns) / NS_PER_SECOND
        first = sim.rejections[0].at_ns if sim.rejections else None
        start = self.first_ns or 0
        delays = sorted(self.delays)
        return {
            "config": asdict(self.config),
            "calls": sim.calls,
            "accepted_calls": sim.accepted["requests"],
            "accepted_tokens": sim.accepted["tokens"],
            "rejections": len(sim.rejections),
            "rejections_by_metric": {
                metric: sum(1 for r in sim.rejections if r.metric == metric)
                for metric in ("requests", "tokens")
            },
            "first_rejection_after_s": (
                None
                if first is None or self.first_ns is None
                else (first - self.first_ns) / NS_PER_SECOND
            ),
            "rejection_details": [
                {
                    "t_s": (r.at_ns - start) / NS_PER_SECOND,
                    "metric": r.metric,
                    "wanted": r.wanted,
                    "available": r.available,
                }
                for r in sim.rejections[:10]
            ],
            "admission_to_arrival_ms": {
                "p50": _quantile(delays, 0.5) * 1e3,
                "p99": _quantile(delays, 0.99) * 1e3,
                "max": (delays[-1] if delays else math.nan) * 1e3,
            },
            "rejections_at_admission_time": self.replay(),
            "max_delay_ms_by_second": self.max_delay_by_second(),
            "bad_requests": self.bad_requests,
            "elapsed_s": elapsed,
            "admissible_tokens": sim.admissible("tokens", elapsed),
            "admissible_requests": sim.admissible("requests", elapsed),
            "cpu_s": time.process_time() - self.started_cpu,
            "wall_s": time.monotonic() - self.started_wall,
        }


def _quantile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank quantile of sorted values; NaN when empty."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def make_app(config: ProviderConfig) -> Any:  # noqa: ANN401 (a Starlette application)
    """The Starlette application serving one :class:`Provider`."""
    provider = Provider(config)

    async def completions(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            input_tokens, max_tokens = int(body["input_tokens"]), int(body["max_tokens"])
            admitted = body.get("admitted_at")
            admitted_at = None if admitted is None else float(admitted)
            if input_tokens < 0 or max_tokens < 1:
                raise ValueError("negative input_tokens or max_tokens < 1")  # noqa: TRY301
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            provider.bad_requests += 1
            return JSONResponse({"error": {"message": str(error)}}, status_code=400)
        outcome = provider.call(input_tokens, max_tokens, admitted_at)
        if outcome is None:
            return JSONResponse(
                {"error": {"type": "rate_limit_exceeded", "message": "Rate limit reached"}},
                status_code=429,
            )
        output, latency = outcome
        await asyncio.sleep(latency)
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output,
            "total_tokens": input_tokens + output,
        }
        return JSONResponse({"object": "chat.completion", "usage": usage})

    async def stats(_: Request) -> JSONResponse:
        return JSONResponse(provider.stats())

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def serve(config: ProviderConfig, ready: Connection | None = None, port: int = 0) -> None:
    """Serve on 127.0.0.1 (``port`` 0: a free one); send the port on ``ready`` once listening."""
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # TCP_NODELAY by asyncio
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(1_024)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(config), log_level="warning", access_log=False, lifespan="off", loop="asyncio"
        )
    )
    if ready is not None:
        ready.send(bound)
        ready.close()
    else:
        print(f"provider listening on http://{HOST}:{bound}", flush=True)
    server.run(sockets=[sock])


class ProviderProcess:
    """The provider in a process of its own (spawned); always stopped on exit.

    Example:
        >>> with ProviderProcess(ProviderConfig()) as provider:
        ...     httpx.post(provider.url + "/v1/chat/completions", json={...})
    """

    def __init__(self, config: ProviderConfig, *, start_timeout: float = 30.0) -> None:
        self.config = config
        self.start_timeout = start_timeout
        self.process: multiprocessing.process.BaseProcess | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Start the process and wait until it listens."""
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        self.process = context.Process(
            target=serve, args=(self.config, send), name="quotaflow-bench-provider", daemon=True
        )
        self.process.start()
        send.close()
        try:
            started = receive.poll(self.start_timeout)
            if started:
                self.port = int(receive.recv())
        except BaseException:
            self.stop()
            raise
        finally:
            receive.close()
        if not started:
            self.stop()
            raise RuntimeError(f"the provider did not start within {self.start_timeout} s")

    def stop(self) -> None:
        """Stop the process: SIGTERM (uvicorn shuts down), then SIGKILL if it lingers."""
        process = self.process
        if process is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
        with contextlib.suppress(ValueError):
            process.close()
        self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    defaults = ProviderConfig()
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--tokens", type=int, default=defaults.tokens, help="tokens per period")
    parser.add_argument("--requests", type=int, default=defaults.requests, help="per period")
    parser.add_argument("--period", type=float, default=defaults.period, help="seconds")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    config = ProviderConfig(
        tokens=args.tokens, requests=args.requests, period=args.period, seed=args.seed
    )
    serve(config, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
