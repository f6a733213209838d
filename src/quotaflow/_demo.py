"""``quotaflow demo``: a few hundred concurrent calls through the governed client, live.

It starts the provider emulator on 127.0.0.1 with tight OpenAI limits, then sends the calls
through :class:`~quotaflow.client.AsyncQuotaflowTransport` on the memory store: with the
official ``openai`` SDK when it is installed, else with :class:`~quotaflow.client.ChatLimiter`.
Nothing is configured: the limits are learned from the emulator's headers. Each call asks for
``max_tokens`` far above what it gets, the way real applications do; the provider counts all
of it at admission and refunds the rest. The report shows the provider's 429s (zero), how
much of each limit was used, the waits, estimated against actual tokens, and the cost.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from quotaflow.client import AsyncQuotaflowTransport, ChatLimiter, ClientConfig, StatsSnapshot

__all__ = ["DemoSettings", "run_demo"]

_WORDS = (
    "rate",
    "limits",
    "tokens",
    "buckets",
    "refill",
    "queue",
    "admission",
    "settle",
    "reserve",
    "provider",
    "model",
    "request",
    "latency",
    "budget",
    "quota",
    "retry",
    "header",
    "stream",
    "usage",
    "cost",
    "worker",
    "scope",
    "fairness",
)


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What the demo sends and under which limits."""

    requests: int = 300
    concurrency: int = 64
    rpm: int = 1_000
    tpm: int = 30_000
    max_tokens: int = 400
    output: tuple[int, int] = (20, 200)
    latency: float = 0.2
    seed: int = 7
    sdk: bool | None = None  # None: the official SDK when installed, else ChatLimiter


def _prompts(settings: DemoSettings) -> list[str]:
    rng = random.Random(settings.seed)  # noqa: S311 (seeded demo traffic)
    return [
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 60)))
        for _ in range(settings.requests)
    ]


def _uses_sdk(settings: DemoSettings) -> bool:
    if settings.sdk is not None:
        return settings.sdk
    return all(importlib.util.find_spec(m) is not None for m in ("openai", "httpx2"))


class _Caller:
    """Sends one demo call: through the official SDK and the transport, or ChatLimiter."""

    def __init__(self, url: str, settings: DemoSettings, sdk: bool) -> None:
        self._settings = settings
        self._chat: ChatLimiter | None = None
        self._client: Any = None
        self._transport: AsyncQuotaflowTransport | None = None
        if sdk:
            import httpx2  # noqa: PLC0415 (only with the SDK)
            import openai  # noqa: PLC0415

            self._transport = AsyncQuotaflowTransport(config=ClientConfig(store=None))
            self._client = openai.AsyncOpenAI(
                base_url=url + "/v1", api_key="demo", max_retries=0,  # quotaflow retries
                http_client=httpx2.AsyncClient(transport=self._transport),  # type: ignore[arg-type]
            )  # fmt: skip
        else:
            self._chat = ChatLimiter(
                "openai", api_key="demo", base_url=url + "/v1", config=ClientConfig(store=None)
            )

    async def call(self, prompt: str) -> None:
        messages = [{"role": "user", "content": prompt}]
        if self._chat is not None:
            await self._chat.chat_completion(
                "gpt-4o-mini", messages, max_tokens=self._settings.max_tokens
            )
        else:
            await self._client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, max_tokens=self._settings.max_tokens
            )

    def stats(self) -> StatsSnapshot:
        if self._chat is not None:
            return self._chat.get_usage()
        assert self._transport is not None  # noqa: S101 (one of the two is set)
        return self._transport.stats

    async def aclose(self) -> None:
        if self._chat is not None:
            await self._chat.aclose()
        else:
            await self._client.close()
            assert self._transport is not None  # noqa: S101
            await self._transport.aclose()


async def _run_calls(
    caller: _Caller,
    settings: DemoSettings,
    progress: Progress,
    task: Any,  # noqa: ANN401
) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for prompt in _prompts(settings):
        queue.put_nowait(prompt)

    async def worker() -> None:
        while not queue.empty():
            await caller.call(queue.get_nowait())
            progress.advance(task)

    await asyncio.gather(*(worker() for _ in range(settings.concurrency)))


def _status_line(stats: StatsSnapshot, started: float) -> Text:
    return Text.assemble(
        ("provider 429s ", "bold"),
        (str(stats.provider_429), "bold red" if stats.provider_429 else "bold green"),
        f"   retries {stats.retries}   wait p50 {stats.wait_p50:.2f}s p99 {stats.wait_p99:.2f}s",
        f"   tokens {stats.input_tokens + stats.output_tokens:,}",
        f"   cost ${stats.cost / 1e6:.4f}   {time.monotonic() - started:.1f}s",
    )


def _report(
    stats: StatsSnapshot, emulator: dict[str, Any], elapsed: float, sdk: bool
) -> tuple[Table, dict[str, float]]:
    table = Table(title=f"quotaflow demo: {'openai SDK' if sdk else 'ChatLimiter'}, memory store")
    table.add_column("figure")
    table.add_column("value", justify="right")
    model = emulator["families"]["openai"]["gpt-4o-mini"]
    figures: dict[str, float] = {
        "calls": float(stats.calls),
        "calls_ok": float(stats.succeeded),
        "provider_429s": float(stats.provider_429),
        "seconds": elapsed,
        "wait_p50": stats.wait_p50,
        "wait_p99": stats.wait_p99,
        "estimated_input_tokens": float(stats.estimated_input_tokens),
        "input_tokens": float(stats.input_tokens),
        "reserved_output_tokens": float(stats.reserved_output_tokens),
        "output_tokens": float(stats.output_tokens),
        "cost_usd": stats.cost / 1e6,
    }
    rows = [
        ("calls ok", f"{stats.succeeded} of {stats.calls}"),
        ("provider 429s", str(stats.provider_429)),
        ("retries", str(stats.retries)),
    ]
    for name, bucket in model["buckets"].items():
        used = bucket["charged"] / bucket["admissible"] if bucket["admissible"] else 0.0
        figures[f"utilisation_{name}"] = used
        rows.append((f"{name} limit used", f"{used:.1%} of {bucket['limit']:,}/min over the run"))
    rows += [
        ("wait p50 / p99", f"{stats.wait_p50:.2f}s / {stats.wait_p99:.2f}s"),
        ("input tokens: estimated / actual",
         f"{stats.estimated_input_tokens:,} / {stats.input_tokens:,}"),
        ("output tokens: reserved / actual",
         f"{stats.reserved_output_tokens:,} / {stats.output_tokens:,}"),
        ("cost (gpt-4o-mini prices)", f"${stats.cost / 1e6:.4f}"),
        ("time", f"{elapsed:.1f}s"),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table, figures


async def run_demo(settings: DemoSettings, console: Console | None = None) -> dict[str, float]:
    """Run the demo and return its figures (also printed on ``console``)."""
    from quotaflow.emulator import EmulatorConfig, EmulatorServer  # noqa: PLC0415 (an extra)

    console = console or Console()
    emulator = EmulatorConfig(
        openai_rpm=settings.rpm, openai_tpm=settings.tpm, latency=settings.latency,
        output_tokens=settings.output, seed=settings.seed,
    )  # fmt: skip
    sdk = _uses_sdk(settings)
    with EmulatorServer(emulator) as server:
        caller = _Caller(server.url, settings, sdk)
        progress = Progress(
            TextColumn("[bold]calls"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        task = progress.add_task("calls", total=settings.requests)
        console.print(
            f"Emulator at {server.url}: {settings.rpm:,} RPM and {settings.tpm:,} TPM for "
            f"gpt-4o-mini (learned from its headers). Sending {settings.requests} calls, "
            f"{settings.concurrency} at a time, max_tokens={settings.max_tokens}, through "
            f"{'the openai SDK + AsyncQuotaflowTransport' if sdk else 'ChatLimiter'}."
        )
        started = time.monotonic()
        run = asyncio.create_task(_run_calls(caller, settings, progress, task))
        try:
            with Live(console=console, refresh_per_second=8) as live:
                while not run.done():
                    live.update(Group(progress, _status_line(caller.stats(), started)))
                    await asyncio.wait([run], timeout=0.125)
                live.update(Group(progress, _status_line(caller.stats(), started)))
            run.result()
        finally:
            if not run.done():
                run.cancel()
            await caller.aclose()
        elapsed = time.monotonic() - started
        table, figures = _report(caller.stats(), server.stats(), elapsed, sdk)
    console.print(table)
    return figures
