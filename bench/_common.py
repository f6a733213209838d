"""Helpers shared by the benchmark scripts: arguments, machine facts, tables, goals, JSON."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import multiprocessing
import os
import platform
import queue
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

#: Every package whose version the results depend on.
PACKAGES = (
    "quotaflow",
    "aiolimiter",
    "pyrate-limiter",
    "throttled-py",
    "token-throttle",
    "limits",
    "llmratelimiter",
    "redis",
    "httpx",
    "starlette",
    "uvicorn",
)


@dataclass(frozen=True)
class Goal:
    """One goal of the issue, and whether this run met it."""

    benchmark: str
    goal: str
    value: str
    met: bool


def stop_all(processes: Sequence[multiprocessing.process.BaseProcess], grace: float) -> None:
    """Join each process for ``grace`` seconds, then SIGTERM, then SIGKILL."""
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


def collect(
    source: Queue[Any],
    count: int,
    timeout: float,
    processes: Sequence[multiprocessing.process.BaseProcess],
) -> list[tuple[str, int, Any]]:
    """``count`` messages from ``source``; raise on an error message, a death or a timeout."""
    deadline = time.monotonic() + timeout
    messages: list[tuple[str, int, Any]] = []
    while len(messages) < count:
        try:
            message = source.get(timeout=0.5)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(messages)} of {count} workers answered") from None
            dead = [p.name for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"worker process(es) died: {', '.join(dead)}") from None
            continue
        if message[0] == "error":
            raise RuntimeError(f"worker {message[1]} failed:\n{message[2]}")
        messages.append(message)
    return messages


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the options every benchmark script accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    return parser.parse_args(argv)


def cpu_model() -> str:
    """The processor's model name, as the kernel reports it (Linux), else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def source_digest() -> str:
    """A short digest of quotaflow's source files, to tell which code a run measured."""
    import quotaflow  # noqa: PLC0415 (only when asked)

    root = Path(quotaflow.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> dict[str, str]:
    """Facts about the machine and the environment the numbers were taken on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **versions,
        "quotaflow source sha256": source_digest(),
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    """The median, NaN when empty."""
    return statistics.median(values) if values else math.nan


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a Markdown table (readable as plain text too)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(items: Sequence[str]) -> str:
        return (
            "| " + " | ".join(item.ljust(w) for item, w in zip(items, widths, strict=True)) + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"### {title}", "", line(headers), rule, *(line(r) for r in cells), ""])


def goals_table(goals: Sequence[Goal]) -> str:
    """Render the goals and whether they were met."""
    rows = [(g.benchmark, g.goal, g.value, "met" if g.met else "**NOT met**") for g in goals]
    return table("Goals", ("benchmark", "goal", "measured", "result"), rows)


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    """Write ``data`` (goals converted) to ``path`` when one was given."""
    if path is None:
        return
    goals = [asdict(g) if isinstance(g, Goal) else g for g in data.get("goals", [])]
    payload = {**data, "goals": goals, "machine": machine()}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def run_main(
    doc: str | None,
    run: Callable[[bool], Coroutine[Any, Any, dict[str, Any]]],
    argv: Sequence[str] | None = None,
) -> int:
    """A benchmark's command line: parse the options, run it, write the JSON.

    Exits 1 when the run lists failures (a peer that could not be measured).
    """
    args = parse_args(doc.splitlines()[0] if doc else "", argv)
    data = asyncio.run(run(args.quick))
    write_json(args.json, data)
    return 1 if data.get("failures") else 0
