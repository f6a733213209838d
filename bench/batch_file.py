"""The JSONL batch runner (``run_batch_file``) against the emulator: limits, memory, resume.

The provider is quotaflow's emulator (``EmulatorProcess``: its own process, 127.0.0.1, a free
port). Like OpenAI, it charges prompt + ``max_tokens`` to its token bucket at admission and
refunds the unused part when the response ends; a request that does not fit gets a 429.
Outputs are drawn uniformly in 20-200 tokens (capped by the line's ``max_tokens``).

The input is generated into a temporary directory (deleted at the end): N lines in OpenAI's
batch format, ``{"custom_id": "item-<i>", "method": "POST", "url": "/v1/chat/completions",
"body": {"model": "gpt-4o-mini", "messages": [user prompt of 5-60 seeded random words],
"max_tokens": 100-200 (seeded)}}``: about 39 input tokens and, once refunded, about 140 tokens
per line in all.

Every run of the runner is a **child process** (``python bench/batch_file.py --child SPEC``)
calling ``run_batch_file(BatchFileOptions(input, output, base_url=<emulator>/v1, api_key=...,
workers=64, limits=..., headroom=...))``, so that its memory is its own: the peak RSS is the
child's ``ru_maxrss`` (``os.wait4`` on that child only; the child's ``VmHWM`` agrees), and the
child samples its ``VmRSS`` as it goes (after the pre-flight, at 10 / 50 / 100 % of the lines).

Scenarios (the emulator is reset between them: full buckets, zero counters):

* **limits**: N = 20,000 lines, the emulator at 800,000 tokens per minute (binding) and
  30,000 requests per minute, latency 0.1 s. The runner is given the same numbers
  (``limits={"tpm": 800_000, "rpm": 30_000}``) and the default headroom. A second case gives
  ``headroom=1.0`` (a diagnostic: the learned limits then equal the configured ones). Reported:
  lines ok / failed; provider 429s (the emulator's own ``rate_limited`` count); the
  utilisation of each bucket = charged / admissible over the span of admissions
  (``admissible`` = limit + limit / 60 s x (last - first admission)); *used of usable*, which
  also deducts an upper bound on the unused ``max_tokens`` still reserved by calls in flight at
  the last admission (the last ``workers`` records of OUT: refunded after the span, usable by
  no client within it); lines/s over the span and over the whole run; the child's CPU and peak
  RSS.
* **memory**: the same runner over M and 10 x M lines (default M = 5,000; ``--memory-lines``)
  against an emulator whose limits never bind (latency 0.05 s): real runs, every line sent.
  Reported: the peak RSS of each, and the RSS samples.
* **resume**: N lines against the fast emulator. Run 1 is stopped gracefully
  (``StopControl.stop()`` from the child's reporter after N / 2 records: in-flight lines
  finish and are written); run 2 is the same call again. A ``request_headers`` hook logs each
  line as its call starts (before admission). Checked: no line with a record in OUT before run
  2 is started by run 2, the
  emulator admitted exactly N requests over both runs, and OUT holds N records with N distinct
  ids, all successes. A second chain (N / 4 lines) kills run 1 with SIGKILL after a third of
  its records (a lost machine): the calls it had in flight were admitted and never recorded,
  so run 2 sends them again; no recorded line may be. (The emulator logs one
  ``ClientDisconnect`` traceback then: a request body cut by the kill.)

Goals: 0 provider 429s and >= 97 % of the binding limit used (limits, default headroom,
judged on the raw charged / admissible); the peak RSS at 10 x M lines within 10 % of that at
M lines; a resumed run redoes no finished line (and the graceful chain admits exactly N).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import Goal, cpu_model, goals_table, source_digest, table, write_json

MODEL = "gpt-4o-mini"
LINES = 20_000
MEMORY_LINES = 5_000
TPM = 800_000
RPM = 30_000
LATENCY = 0.1
FAST_LATENCY = 0.05
OUTPUT = (20, 200)
MAX_TOKENS = (100, 200)
WORKERS = 64
SEED = 20_250_101
GOAL_UTILISATION = 0.97
GOAL_MEMORY = 0.10
CHILD_TIMEOUT = 1_800.0
WORDS = (
    *("rate", "limits", "tokens", "buckets", "refill", "queue", "admission", "settle"),
    *("reserve", "provider", "model", "request", "latency", "budget", "quota", "retry"),
    *("header", "stream", "usage", "cost", "worker", "scope", "fairness"),
)


# The input --------------------------------------------------------------------------------


def generate(path: Path, lines: int, seed: int = SEED) -> list[int]:
    """Write ``lines`` OpenAI batch lines to ``path``; their ``max_tokens``, in order."""
    rng = random.Random(seed)
    caps = []
    with path.open("w", encoding="utf-8") as file:
        for i in range(lines):
            prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
            cap = rng.randint(*MAX_TOKENS)
            caps.append(cap)
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": cap,
            }
            line = {
                "custom_id": f"item-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
            file.write(json.dumps(line, separators=(",", ":")) + "\n")
    return caps


# The child: one run of the runner ---------------------------------------------------------


def _status_kb(name: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``); 0 if unavailable."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def child_main(spec_path: Path) -> int:
    """Entry point of ``--child SPEC``: run the runner as SPEC says, write the result JSON."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    result = asyncio.run(_child(spec))
    Path(spec["result"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def _probe(
    control: Any,  # noqa: ANN401 (StopControl)
    samples: list[tuple[str, int]],
    stop_after: int | None,
    kill_after: int | None,
) -> Any:  # noqa: ANN401 (a Reporter)
    """A reporter that samples RSS at milestones and stops (or kills) the run after a count."""
    from quotaflow.batch._progress import Reporter  # noqa: PLC0415 (in the child)

    class Probe(Reporter):
        def __init__(self) -> None:
            self.marks: list[int] = []

        def preflight(self, report: Any) -> None:  # noqa: ANN401, ARG002 (Preflight)
            samples.append(("after pre-flight", _status_kb("VmRSS")))

        def start(self, counters: Any) -> None:  # noqa: ANN401 (RunCounters)
            todo = max(1, counters.to_do)
            self.marks = sorted({max(1, todo // 10), max(1, todo // 2)}, reverse=True)

        def update(self, counters: Any) -> None:  # noqa: ANN401
            done = counters.done
            if self.marks and done >= self.marks[-1]:
                self.marks.pop()
                share = done / max(1, counters.to_do)
                samples.append((f"{share:.0%} of lines", _status_kb("VmRSS")))
            if kill_after is not None and done >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # a lost machine: no clean-up at all
            if stop_after is not None and done >= stop_after and not control.stopping:
                control.stop()

    return Probe()


class _SentLog:
    """The ``request_headers`` hook: logs each line's id as its call starts, line-buffered."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8", buffering=1)

    def __call__(self, item: Any) -> dict[str, str]:  # noqa: ANN401 (RequestLine)
        self._file.write(item.custom_id + "\n")
        return {}

    def close(self) -> None:
        self._file.close()


async def _child(spec: dict[str, Any]) -> dict[str, Any]:
    from quotaflow.batch._options import BatchFileOptions  # noqa: PLC0415 (in the child)
    from quotaflow.batch._runner import StopControl, run_batch_file  # noqa: PLC0415

    control = StopControl()
    samples: list[tuple[str, int]] = [("start", _status_kb("VmRSS"))]
    reporter = _probe(control, samples, spec.get("stop_after"), spec.get("kill_after"))
    log = _SentLog(Path(spec["sent_log"])) if spec.get("sent_log") else None
    options = BatchFileOptions(
        input=Path(spec["input"]),
        output=Path(spec["output"]),
        base_url=spec["base_url"],
        api_key="bench",
        workers=spec["workers"],
        limits=spec.get("limits") or {},
        headroom=spec.get("headroom"),
        request_headers=log,
    )
    cpu0, wall0 = time.process_time(), time.monotonic()
    stop_sampling = threading.Event()
    peak_seen = [0]

    def sample() -> None:  # the RSS every 0.2 s, in case a spike falls between milestones
        while not stop_sampling.wait(0.2):
            peak_seen[0] = max(peak_seen[0], _status_kb("VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        summary = await run_batch_file(options, control=control, reporter=reporter)
    finally:
        stop_sampling.set()
        sampler.join(2)
        if log is not None:
            log.close()
    samples.append(("end", _status_kb("VmRSS")))
    return {
        "summary": summary.to_json(),
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.monotonic() - wall0,
        "vm_hwm_kb": _status_kb("VmHWM"),
        "rss_sampled_max_kb": peak_seen[0],
        "samples": samples,
    }


# The driver -------------------------------------------------------------------------------


@dataclass
class ChildRun:
    """What one child process did."""

    exit_code: int
    max_rss_kb: int
    result: dict[str, Any] | None
    stderr: str
    seconds: float

    @property
    def summary(self) -> dict[str, Any]:
        """The runner's ``BatchSummary.to_json()`` (empty if the child died)."""
        found: dict[str, Any] = (self.result or {}).get("summary", {})
        return found


def run_child(folder: Path, name: str, spec: dict[str, Any]) -> ChildRun:
    """Run one child to its end (bounded by ``CHILD_TIMEOUT``); its own peak RSS via wait4."""
    spec = {**spec, "result": str(folder / f"{name}.result.json")}
    spec_path = folder / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    err_path = folder / f"{name}.stderr"
    started = time.monotonic()
    with err_path.open("wb") as err:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            status, usage = _wait(process, started + CHILD_TIMEOUT)
        finally:
            if process.returncode is None:  # a timeout or an interrupt: do not leave it
                process.kill()
                _, status = os.waitpid(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    result_path = Path(spec["result"])
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else None
    stderr = err_path.read_text(encoding="utf-8", errors="replace")[-2_000:]
    return ChildRun(code, usage.ru_maxrss, result, stderr, time.monotonic() - started)


def _wait(process: subprocess.Popen[bytes], deadline: float) -> tuple[int, Any]:
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        if time.monotonic() > deadline:
            raise TimeoutError(f"the runner's process did not end within {CHILD_TIMEOUT:.0f} s")
        time.sleep(0.1)


def model_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """The emulator's figures for the model."""
    found: dict[str, Any] = stats["families"].get("openai", {}).get(MODEL, {})
    return found


def read_output(path: Path) -> list[dict[str, Any]]:
    """OUT's records (only what the checks need: id, line, error, completion tokens)."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records
    with path.open("rb") as file:
        for raw in file:
            record = json.loads(raw)
            body = (record.get("response") or {}).get("body") or {}
            usage = body.get("usage") if isinstance(body, dict) else None
            records.append(
                {
                    "custom_id": record["custom_id"],
                    "line": record["line"],
                    "error": record["error"],
                    "completion_tokens": (usage or {}).get("completion_tokens"),
                }
            )
    return records


@dataclass
class LimitsCase:
    """One case of the limits scenario and what it measured."""

    name: str
    headroom: float | None
    run: ChildRun | None = None
    emulator: dict[str, Any] = field(default_factory=dict)
    reserve_bound: int = 0  # unused max_tokens of the last `workers` records

    def utilisation(self, bucket: str) -> float:
        """Charged / admissible of one of the emulator's buckets."""
        data = self.emulator.get("buckets", {}).get(bucket)
        if not data or not data["admissible"]:
            return 0.0
        return float(data["charged"]) / float(data["admissible"])

    @property
    def binding(self) -> str:
        """The bucket used the most."""
        buckets = self.emulator.get("buckets", {})
        return max(buckets, key=self.utilisation) if buckets else "tokens"

    @property
    def usable(self) -> float:
        """Tokens charged / (admissible - the bound on what calls in flight still held)."""
        data = self.emulator.get("buckets", {}).get("tokens")
        if not data or not data["admissible"]:
            return 0.0
        return float(data["charged"]) / float(data["admissible"] - self.reserve_bound)

    @property
    def provider_429(self) -> int:
        """429s the emulator sent (its own count)."""
        return sum(self.emulator.get("rate_limited", {}).values())


def limits_scenario(
    folder: Path, lines: int, tpm: int, headrooms: Sequence[float | None]
) -> list[LimitsCase]:
    """N lines against the tight emulator, once per headroom."""
    from quotaflow.emulator import EmulatorConfig, EmulatorProcess  # noqa: PLC0415 (an extra)

    source = folder / "limits.in.jsonl"
    caps = generate(source, lines)
    config = EmulatorConfig(
        openai_rpm=RPM, openai_tpm=tpm, latency=LATENCY, output_tokens=OUTPUT, seed=SEED
    )
    cases: list[LimitsCase] = []
    with EmulatorProcess(config) as emulator:
        for headroom in headrooms:
            name = "default headroom" if headroom is None else f"headroom={headroom:g}"
            case = LimitsCase(name, headroom)
            out = folder / f"limits-{len(cases)}.out.jsonl"
            emulator.reset()
            print(f"running limits, {name}: {lines:,} lines ...", flush=True)
            case.run = run_child(
                folder,
                f"limits-{len(cases)}",
                {
                    "input": str(source),
                    "output": str(out),
                    "base_url": emulator.url + "/v1",
                    "workers": WORKERS,
                    "limits": {"tpm": tpm, "rpm": RPM},
                    "headroom": headroom,
                },
            )
            case.emulator = model_stats(emulator.stats())
            records = read_output(out)
            case.reserve_bound = sum(
                caps[r["line"] - 1] - (r["completion_tokens"] or 0) for r in records[-WORKERS:]
            )
            out.unlink(missing_ok=True)
            cases.append(case)
    source.unlink()
    return cases


def memory_scenario(folder: Path, lines: int) -> list[tuple[int, ChildRun]]:
    """The runner over ``lines`` and 10 x ``lines`` lines, limits that never bind."""
    from quotaflow.emulator import EmulatorConfig, EmulatorProcess  # noqa: PLC0415

    config = EmulatorConfig(
        openai_rpm=10**8, openai_tpm=10**10, latency=FAST_LATENCY, output_tokens=OUTPUT, seed=SEED
    )
    runs = []
    with EmulatorProcess(config) as emulator:
        for count in (lines, 10 * lines):
            source, out = folder / f"memory-{count}.in.jsonl", folder / f"memory-{count}.out.jsonl"
            generate(source, count)
            emulator.reset()
            print(f"running memory: {count:,} lines ...", flush=True)
            run = run_child(
                folder,
                f"memory-{count}",
                {
                    "input": str(source),
                    "output": str(out),
                    "base_url": emulator.url + "/v1",
                    "workers": WORKERS,
                },
            )
            runs.append((count, run))
            source.unlink()
            out.unlink(missing_ok=True)
    return runs


@dataclass
class ResumeChain:
    """A run interrupted part-way, then run again to the end, and what was checked."""

    name: str
    lines: int
    runs: list[ChildRun] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)  # by the emulator, per run
    recorded_before: list[int] = field(default_factory=list)  # OUT's records before each run
    sent: list[int] = field(default_factory=list)  # lines sent, per run (the hook's log)
    redone_finished: int = 0  # lines sent again although OUT had their record
    resent_unfinished: int = 0  # lines sent again that had no record (in flight at a kill)
    records: int = 0
    distinct_ids: int = 0
    ok: int = 0

    @property
    def admitted_total(self) -> int:
        """Requests the emulator admitted over the chain."""
        return sum(self.admitted)


def resume_chain(
    folder: Path,
    emulator: Any,  # noqa: ANN401 (EmulatorProcess)
    name: str,
    lines: int,
    interrupt: dict[str, int],
) -> ResumeChain:
    """Run 1 with ``interrupt`` (``stop_after`` / ``kill_after``), then run 2 to the end."""
    source, out = folder / f"resume-{name}.in.jsonl", folder / f"resume-{name}.out.jsonl"
    generate(source, lines)
    chain = ResumeChain(name, lines)
    emulator.reset()
    admitted_so_far = 0
    ever_sent: set[str] = set()
    for number, extra in enumerate((interrupt, {}), start=1):
        before = {r["custom_id"] for r in read_output(out)}
        chain.recorded_before.append(len(before))
        log = folder / f"resume-{name}-{number}.sent"
        print(f"running resume ({name}), run {number} ...", flush=True)
        run = run_child(
            folder,
            f"resume-{name}-{number}",
            {
                "input": str(source),
                "output": str(out),
                "base_url": emulator.url + "/v1",
                "workers": WORKERS,
                "sent_log": str(log),
                **extra,
            },
        )
        chain.runs.append(run)
        admitted = model_stats(emulator.stats()).get("admitted", 0)
        chain.admitted.append(admitted - admitted_so_far)
        admitted_so_far = admitted
        sent = log.read_text(encoding="utf-8").split() if log.exists() else []
        chain.sent.append(len(sent))
        for custom_id in sent:
            if custom_id in before:
                chain.redone_finished += 1
            elif custom_id in ever_sent:
                chain.resent_unfinished += 1
        ever_sent.update(sent)
    records = read_output(out)
    chain.records = len(records)
    chain.distinct_ids = len({r["custom_id"] for r in records})
    chain.ok = sum(r["error"] is None for r in records)
    source.unlink()
    out.unlink(missing_ok=True)
    return chain


def resume_scenario(folder: Path, lines: int) -> list[ResumeChain]:
    """A graceful stop at half of ``lines``; a SIGKILL at a third of ``lines`` / 4."""
    from quotaflow.emulator import EmulatorConfig, EmulatorProcess  # noqa: PLC0415

    config = EmulatorConfig(
        openai_rpm=10**8, openai_tpm=10**10, latency=FAST_LATENCY, output_tokens=OUTPUT, seed=SEED
    )
    with EmulatorProcess(config) as emulator:
        small = max(4, lines // 4)
        return [
            resume_chain(folder, emulator, "stop", lines, {"stop_after": lines // 2}),
            resume_chain(folder, emulator, "sigkill", small, {"kill_after": small // 3}),
        ]


# Reporting --------------------------------------------------------------------------------


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def _samples(run: ChildRun) -> str:
    samples = (run.result or {}).get("samples", [])
    return ", ".join(f"{label} {_mb(kb)}" for label, kb in samples)


def report_limits(cases: Sequence[LimitsCase], lines: int, tpm: int) -> None:
    """Print the limits scenario's tables."""
    rows = []
    for c in cases:
        assert c.run is not None  # noqa: S101
        s, model = c.run.summary, c.emulator
        span = float(model.get("span_seconds") or 0.0)
        cpu = (c.run.result or {}).get("cpu_s", 0.0)
        rows.append(
            (
                c.name,
                f"{s.get('succeeded', 0):,} / {s.get('failed_total', 0):,}",
                c.provider_429,
                s.get("retries", "n/a"),
                f"{c.utilisation('tokens'):.2%}",
                f"{c.usable:.2%}",
                f"{c.utilisation('requests'):.2%}",
                c.binding,
                f"{model.get('admitted', 0) / span:.1f}" if span else "n/a",
                f"{s.get('elapsed', 0.0):.1f}",
                f"{s.get('rate', 0.0):.1f}",
                f"{cpu:.1f}",
                _mb(c.run.max_rss_kb),
            )
        )
    print(
        table(
            f"Batch runner under tight limits: {lines:,} lines, emulator {MODEL} {tpm:,} TPM + "
            f"{RPM:,} RPM, latency {LATENCY} s, workers {WORKERS}, runner limits = the emulator's",
            (
                "case",
                "lines ok / failed",
                "provider 429s",
                "retries",
                "tokens used",
                "tokens used of usable",
                "requests used",
                "binding",
                "lines/s (span)",
                "elapsed s",
                "lines/s (run)",
                "runner CPU s",
                "peak RSS MB",
            ),
            rows,
        )
    )
    detail = []
    for c in cases:
        model = c.emulator
        tokens = model.get("buckets", {}).get("tokens", {})
        requests = model.get("buckets", {}).get("requests", {})
        detail.append(
            (
                c.name,
                f"{model.get('span_seconds', 0.0):.2f}",
                f"{model.get('admitted', 0):,}",
                ", ".join(f"{k}: {v}" for k, v in sorted(model.get("rate_limited", {}).items()))
                or "0",
                f"{tokens.get('charged', 0):,} / {tokens.get('admissible', 0):,}",
                f"{requests.get('charged', 0):,} / {requests.get('admissible', 0):,}",
                f"{c.reserve_bound:,}",
                f"{model.get('input_tokens', 0):,} / {model.get('output_tokens', 0):,}",
            )
        )
    print(
        table(
            "What the emulator counted",
            (
                "case",
                "span s",
                "admitted",
                "429s by bucket",
                "tokens charged / admissible",
                "requests charged / admissible",
                f"reserve bound (last {WORKERS} records)",
                "input / output tokens",
            ),
            detail,
        )
    )
    for c in cases:
        assert c.run is not None  # noqa: S101
        print(f"{c.name}: RSS MB: {_samples(c.run)}")
    print()


def report_memory(runs: Sequence[tuple[int, ChildRun]]) -> None:
    """Print the memory scenario's table."""
    rows = []
    for count, run in runs:
        s = run.summary
        result = run.result or {}
        rows.append(
            (
                f"{count:,}",
                f"{s.get('succeeded', 0):,} / {s.get('failed_total', 0):,}",
                f"{s.get('elapsed', 0.0):.1f}",
                f"{s.get('rate', 0.0):.1f}",
                _mb(run.max_rss_kb),
                _mb(result.get("vm_hwm_kb", 0)),
                _samples(run),
            )
        )
    print(
        table(
            f"Batch runner memory: limits that never bind, latency {FAST_LATENCY} s, workers "
            f"{WORKERS}",
            (
                "lines",
                "ok / failed",
                "elapsed s",
                "lines/s",
                "peak RSS MB (ru_maxrss)",
                "VmHWM MB",
                "RSS MB as it went",
            ),
            rows,
        )
    )


def report_resume(chains: Sequence[ResumeChain]) -> None:
    """Print the resume scenario's table."""
    rows = []
    for c in chains:
        for index, run in enumerate(c.runs):
            s = run.summary
            rows.append(
                (
                    f"{c.name} ({c.lines:,} lines)",
                    index + 1,
                    run.exit_code,
                    f"{c.recorded_before[index]:,}",
                    f"{s.get('skipped', 0):,}" if s else "(killed)",
                    f"{s.get('done_now', 0):,}" if s else "(killed)",
                    s.get("stopped") or "-",
                    f"{c.sent[index]:,}",
                    f"{c.admitted[index]:,}",
                )
            )
    print(
        table(
            "Batch runner resume: a run interrupted, then run again",
            (
                "chain",
                "run",
                "exit code",
                "records in OUT before",
                "skipped",
                "written",
                "stopped",
                "lines started (hook)",
                "admitted by the emulator",
            ),
            rows,
        )
    )
    checks = [
        (
            f"{c.name} ({c.lines:,} lines)",
            f"{c.admitted_total:,}",
            c.redone_finished,
            c.resent_unfinished,
            f"{c.records:,} / {c.distinct_ids:,} / {c.ok:,}",
        )
        for c in chains
    ]
    print(
        table(
            "Resume checks",
            (
                "chain",
                "admitted in all",
                "finished lines started again",
                "unfinished lines started again",
                "OUT records / distinct ids / successes",
            ),
            checks,
        )
    )


def evaluate(
    cases: Sequence[LimitsCase],
    memory: Sequence[tuple[int, ChildRun]],
    chains: Sequence[ResumeChain],
    lines: int,
) -> list[Goal]:
    """The issue's goals, from the runs that were made."""
    goals = []
    main = next((c for c in cases if c.headroom is None), None)
    if main is not None and main.run is not None:
        goals.append(
            Goal(
                "batch_file",
                f"{lines:,} lines, tight limits: 0 provider 429s",
                str(main.provider_429),
                main.provider_429 == 0,
            )
        )
        used = main.utilisation(main.binding)
        goals.append(
            Goal(
                "batch_file",
                f"{lines:,} lines, tight limits: ≥ {GOAL_UTILISATION:.0%} of the binding limit "
                f"({main.binding}) used",
                f"{used:.2%} (of usable {main.usable:.2%})",
                used >= GOAL_UTILISATION,
            )
        )
        ok = main.run.summary.get("succeeded", 0)
        goals.append(
            Goal("batch_file", f"{lines:,} lines: every line succeeded", f"{ok:,}", ok == lines)
        )
    if len(memory) == 2:
        (small, one), (big, ten) = memory
        growth = ten.max_rss_kb / one.max_rss_kb - 1 if one.max_rss_kb else float("inf")
        goals.append(
            Goal(
                "batch_file",
                f"peak RSS flat when the input grows 10x (≤ +{GOAL_MEMORY:.0%})",
                f"{_mb(one.max_rss_kb)} MB at {small:,} lines, {_mb(ten.max_rss_kb)} MB at "
                f"{big:,} ({growth:+.1%})",
                growth <= GOAL_MEMORY
                and ten.summary.get("succeeded") == big
                and one.summary.get("succeeded") == small,
            )
        )
    for c in chains:
        graceful = c.name == "stop"
        value = f"{c.redone_finished} finished lines started again; "
        value += f"admitted {c.admitted_total:,}"
        met = c.redone_finished == 0 and c.records == c.lines == c.distinct_ids == c.ok
        if graceful:
            met = met and c.admitted_total == c.lines
        else:
            value += f" ({c.resent_unfinished} unfinished at the kill, started again)"
        goals.append(
            Goal(
                "batch_file",
                f"resume after a {'graceful stop' if graceful else 'SIGKILL'} ({c.lines:,} "
                f"lines): no finished line redone, OUT = {c.lines:,} distinct records"
                + (f", admitted = {c.lines:,}" if graceful else ""),
                value,
                met,
            )
        )
    return goals


def failures_of(
    cases: Sequence[LimitsCase],
    memory: Sequence[tuple[int, ChildRun]],
    chains: Sequence[ResumeChain],
) -> dict[str, str]:
    """Child processes that failed unexpectedly (a SIGKILL that was asked for is expected)."""
    found = {}
    runs = [(f"limits, {c.name}", c.run) for c in cases]
    runs += [(f"memory, {n:,} lines", r) for n, r in memory]
    for c in chains:
        runs += [(f"resume {c.name}, run {i + 1}", r) for i, r in enumerate(c.runs)]
    for name, run in runs:
        if run is None:
            continue
        killed = name.startswith("resume sigkill, run 1") and run.exit_code == -signal.SIGKILL
        if (run.result is None and not killed) or run.exit_code not in (0, -signal.SIGKILL):
            found[name] = f"exit code {run.exit_code}: {run.stderr.strip()[-500:]}"
    return found


def payload(
    args: argparse.Namespace,
    sizes: tuple[int, int, int],
    cases: Sequence[LimitsCase],
    memory: Sequence[tuple[int, ChildRun]],
    chains: Sequence[ResumeChain],
    failures: dict[str, str],
    goals: list[Goal],
) -> dict[str, Any]:
    """Every figure, for ``--json``."""
    lines, memory_lines, tpm = sizes
    return {
        "benchmark": "batch_file",
        "quick": args.quick,
        "lines": lines,
        "memory_lines": memory_lines,
        "emulator": {
            "openai_tpm": tpm,
            "openai_rpm": RPM,
            "latency": LATENCY,
            "fast_latency": FAST_LATENCY,
            "output_tokens": OUTPUT,
            "seed": SEED,
        },
        "workers": WORKERS,
        "limits": [
            {
                "case": c.name,
                "headroom": c.headroom,
                "provider_429": c.provider_429,
                "utilisation": {b: c.utilisation(b) for b in c.emulator.get("buckets", {})},
                "binding": c.binding,
                "usable": c.usable,
                "reserve_bound": c.reserve_bound,
                "max_rss_kb": c.run.max_rss_kb if c.run else None,
                "child": c.run.result if c.run else None,
                "emulator": c.emulator,
            }
            for c in cases
        ],
        "memory": [{"lines": n, "max_rss_kb": r.max_rss_kb, "child": r.result} for n, r in memory],
        "resume": [
            {
                "chain": c.name,
                "lines": c.lines,
                "admitted": c.admitted,
                "recorded_before": c.recorded_before,
                "sent": c.sent,
                "redone_finished": c.redone_finished,
                "resent_unfinished": c.resent_unfinished,
                "records": c.records,
                "distinct_ids": c.distinct_ids,
                "ok": c.ok,
                "runs": [
                    {"exit_code": r.exit_code, "max_rss_kb": r.max_rss_kb, "child": r.result}
                    for r in c.runs
                ],
            }
            for c in chains
        ],
        "failures": failures,
        "goals": goals,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    parser.add_argument("--lines", type=int, default=LINES, help=f"N ({LINES:,})")
    parser.add_argument(
        "--memory-lines", type=int, default=MEMORY_LINES, help=f"M ({MEMORY_LINES:,}); 10 x M too"
    )
    parser.add_argument("--tpm", type=int, default=TPM, help=f"the emulator's TPM ({TPM:,})")
    parser.add_argument(
        "--only", default="limits,memory,resume", help="comma-separated: limits,memory,resume"
    )
    parser.add_argument("--no-diagnostic", action="store_true", help="skip the headroom=1.0 case")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser


def report_all(
    sizes: tuple[int, int, int],
    cases: Sequence[LimitsCase],
    memory: Sequence[tuple[int, ChildRun]],
    chains: Sequence[ResumeChain],
) -> None:
    """Print every table that has figures."""
    lines, _, tpm = sizes
    if cases:
        report_limits(cases, lines, tpm)
    if memory:
        report_memory(memory)
    if chains:
        report_resume(chains)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    args = _parser().parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    lines, memory_lines, tpm = args.lines, args.memory_lines, args.tpm
    if args.quick:
        lines, memory_lines, tpm = 2_000, 500, 200_000
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    headrooms: list[float | None] = [None] if args.no_diagnostic or args.quick else [None, 1.0]

    load = os.getloadavg()
    print(
        f"cpu {cpu_model()}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}; quotaflow source sha256 {source_digest()}; "
        f"python {sys.version.split()[0]}",
        flush=True,
    )
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="quotaflow-bench-batch-"))
    cases: list[LimitsCase] = []
    memory: list[tuple[int, ChildRun]] = []
    chains: list[ResumeChain] = []
    try:
        if "limits" in chosen:
            cases = limits_scenario(folder, lines, tpm, headrooms)
        if "memory" in chosen:
            memory = memory_scenario(folder, memory_lines)
        if "resume" in chosen:
            chains = resume_scenario(folder, lines)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"(batch_file took {time.monotonic() - started:.0f} s)\n")
    report_all((lines, memory_lines, tpm), cases, memory, chains)
    failures = failures_of(cases, memory, chains)
    for name, message in failures.items():
        print(f"FAILED {name}: {message}")
    goals = evaluate(cases, memory, chains, lines)
    if goals:
        print(goals_table(goals))
    met = all(g.met for g in goals) and not failures
    print(
        f"batch_file: goals {'MET' if met else 'NOT met'} "
        f"({sum(g.met for g in goals)} of {len(goals)})"
    )
    write_json(
        args.json, payload(args, (lines, memory_lines, tpm), cases, memory, chains, failures, goals)
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
