"""Run every benchmark (each in its own process) and summarise the goals.

Usage: ``python bench/run.py [--quick] [--json PATH] [--only overhead,saturation,...]``.

``redis_overhead`` and ``distributed`` need a Redis server (``$REDIS_URL``, default
``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import Goal, goals_table, machine, table

BENCHMARKS = (
    "overhead",
    "saturation",
    "waiters",
    "redis_overhead",
    "distributed",
    "client_overhead",
    "client_http",
    "batch_file",
    "queue_priority",
)
HERE = Path(__file__).resolve().parent


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; exits non-zero when a benchmark fails to run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="a short smoke run of each")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write all results as JSON")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    facts = machine()
    print(table("Machine", ("fact", "value"), list(facts.items())))
    results: dict[str, Any] = {}
    goals: list[Goal] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            out = Path(tmp) / f"{name}.json"
            command = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out)]
            if args.quick:
                command.append("--quick")
            print(f"## {name}\n\n$ python bench/{name}.py{' --quick' if args.quick else ''}\n")
            started = time.perf_counter()
            code = subprocess.run(command, check=False).returncode  # noqa: S603
            print(f"({name} took {time.perf_counter() - started:.1f} s)\n")
            if code != 0 or not out.exists():
                failed.append(name)
            if out.exists():
                data = json.loads(out.read_text(encoding="utf-8"))
                results[name] = data
                goals += [Goal(**g) for g in data.get("goals", [])]

    print("## Summary\n")
    print(goals_table(goals))
    met = sum(g.met for g in goals)
    print(f"{met} of {len(goals)} goals met.")
    if failed:
        print(f"Benchmarks that failed: {', '.join(failed)}")
    if args.json is not None:
        payload = {
            "machine": facts,
            "quick": args.quick,
            "results": results,
            "goals": [g.__dict__ for g in goals],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
