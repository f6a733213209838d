"""``run_batch_file``: a JSONL file through the governed client, resumable, within a budget.

The run: read OUT into the on-disk index, pre-flight every line (refusing to start on a
changed input, bad lines under ``on_invalid="fail"``, or a worst case above ``max_cost``),
then read the input again and send its lines with at most ``workers`` in flight. Each
finished line is one record appended to OUT; memory stays flat for any file size.

A :class:`StopControl` stops a run: :meth:`~StopControl.stop` starts no new line and lets
in-flight ones finish (for ``grace`` seconds); :meth:`~StopControl.cancel` cancels them
(they are not written, and a rerun sends them again).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from typing import Any, Final

from quotaflow.batch._cost import Budget, Pricing
from quotaflow.batch._file_errors import (
    BatchRefusedError,
    BudgetExceededError,
    InvalidInputError,
)
from quotaflow.batch._index import WorkIndex
from quotaflow.batch._input import (
    InputDefaults,
    InvalidLine,
    RequestLine,
    line_hash,
    parse_line,
    read_lines,
)
from quotaflow.batch._limits import scope_limits
from quotaflow.batch._options import BatchFileOptions
from quotaflow.batch._output import INVALID_INPUT, OutputWriter, error_record
from quotaflow.batch._preflight import OTHER_MODELS, Preflight, estimate, preflight
from quotaflow.batch._progress import Reporter
from quotaflow.batch._resume import prepare_output, scan_output, with_counts
from quotaflow.batch._send import Outcome, send_line
from quotaflow.batch._summary import BatchSummary, RunCounters, Stopped
from quotaflow.batch._tables import usd
from quotaflow.client import ChatLimiter, ClientConfig, ProviderConfig
from quotaflow.core import Limit

__all__ = ["StopControl", "run_batch_file"]

_FIRST_PROBLEMS: Final = 100
_STATS_INTERVAL: Final = 0.25
_YIELD_EVERY: Final = 512


class StopControl:
    """Stops a run from outside (a signal handler, a test): gracefully, then at once."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._cancel = asyncio.Event()

    def stop(self) -> None:
        """Start no new line; in-flight lines finish (within the grace period)."""
        self._stop.set()

    def cancel(self) -> None:
        """Also cancel in-flight lines now (they are not written; a rerun redoes them)."""
        self._stop.set()
        self._cancel.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop.is_set()

    @property
    def cancelled(self) -> bool:
        """Whether in-flight lines are to be cancelled."""
        return self._cancel.is_set()

    async def wait_stop(self) -> None:
        """Return once a stop is asked for."""
        await self._stop.wait()

    async def wait_cancel(self) -> None:
        """Return once a cancellation is asked for."""
        await self._cancel.wait()


async def run_batch_file(
    options: BatchFileOptions,
    *,
    control: StopControl | None = None,
    reporter: Reporter | None = None,
) -> BatchSummary:
    """Run the batch of ``options.input`` into ``options.output``; see the module docstring.

    Raises:
        BatchRefusedError: the run cannot start (nothing was sent): a missing input, a
            changed input, bad lines with ``on_invalid="fail"``, a worst case above
            ``max_cost``, an output that is not a batch output, no API key.
        ConfigurationError: an option or ``QUOTAFLOW_*`` variable is invalid.
    """
    control = control or StopControl()
    reporter = reporter or Reporter()
    started = time.monotonic()
    provider = options.provider_enum
    pricing = Pricing(provider)
    _check_start(options, pricing)
    defaults = InputDefaults(
        provider, options.model, options.max_tokens, options.models,
        force_cap=options.max_cost is not None,
    )  # fmt: skip
    out_folder = options.output.resolve().parent
    folder = options.index_dir or out_folder
    with WorkIndex(folder, options.output.name, lock_folder=out_folder) as index:
        resume = scan_output(options.output, index, retry_failed=options.retry_failed)
        problems = _Problems(reporter)
        report = await preflight(
            options, defaults, index, pricing, problems.add, lambda: control.stopping
        )
        report.resume = resume = with_counts(resume, index)
        if report.interrupted:
            elapsed = time.monotonic() - started
            return BatchSummary.of(RunCounters(), report, stopped="interrupted", elapsed=elapsed)
        limits = _scope_limits(options, report)  # a bad preset refuses before OUT is touched
        reporter.preflight(report)
        _check_report(options, report, problems)
        if options.dry_run:
            elapsed = time.monotonic() - started
            return BatchSummary.of(
                RunCounters(), report, stopped=None, elapsed=elapsed, dry_run=True
            )
        prepare_output(options.output, index, resume)
        run = _Run(options, defaults, index, pricing, control, reporter)
        run.counters.to_do = report.lines - report.settled
        async with _client(options, limits) as chat:
            await run.execute(chat)
        elapsed = time.monotonic() - started
        return BatchSummary.of(run.counters, report, stopped=run.stopped, elapsed=elapsed)


class _Problems:
    """Bad lines found by the pre-flight: reported one by one, the first few kept."""

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self.first: list[tuple[int, str]] = []

    def add(self, problem: InvalidLine) -> None:
        if len(self.first) < _FIRST_PROBLEMS:
            self.first.append((problem.line, problem.message))
        self._reporter.bad_line(problem)


def _check_start(options: BatchFileOptions, pricing: Pricing) -> None:
    if not options.input.is_file():
        raise BatchRefusedError(f"no input file {options.input}")
    if not options.output.resolve().parent.is_dir():
        raise BatchRefusedError(f"the folder of {options.output} does not exist")
    if options.max_cost is not None and not pricing.available:
        raise BatchRefusedError(
            "--max-cost needs prices: pip install 'quotaflow[providers]' (genai-prices)"
        )
    key_env = ProviderConfig.for_provider(options.provider_enum).api_key_env
    if (
        not options.dry_run
        and options.api_key is None
        and options.base_url is None
        and not os.environ.get(key_env)
    ):
        raise BatchRefusedError(f"no API key: pass --api-key or set {key_env}")


def _check_report(options: BatchFileOptions, report: Preflight, problems: _Problems) -> None:
    if options.on_invalid == "fail" and report.invalid:
        raise InvalidInputError(
            f"{report.invalid:,} invalid lines (listed above); nothing was sent",
            report.invalid,
            tuple(problems.first),
        )
    limit = options.max_cost_micros
    worst = report.total.cost
    if limit is not None and worst > limit and not options.allow_partial:
        raise BudgetExceededError(
            f"the worst-case cost {usd(worst)} is above --max-cost {usd(limit)}; nothing was "
            "sent (lower max_tokens, split the input, or pass --allow-partial to stop at the "
            "budget)"
        )


def _scope_limits(options: BatchFileOptions, report: Preflight) -> dict[str, tuple[Limit, ...]]:
    """The configured limits of the models to send (checked even with a ``client_config``).

    Raises:
        ConfigurationError: a limit is invalid, or the preset has no table for a model.
    """
    models = [m for m in report.models if m != OTHER_MODELS]
    return scope_limits(options.provider_enum, options.limits, options.preset, models)


def _client(options: BatchFileOptions, limits: dict[str, tuple[Limit, ...]]) -> ChatLimiter:
    config = options.client_config
    if config is None:
        overrides: dict[str, Any] = {}
        if limits:
            overrides["limits"] = limits
        if options.store is not None:
            overrides["store"] = options.store
        if options.headroom is not None:
            overrides["headroom"] = options.headroom
        config = ClientConfig.from_env(**overrides)
        if options.max_retries is not None:
            config = replace(config, retry=replace(config.retry, max_retries=options.max_retries))
    return ChatLimiter(
        options.provider_enum, api_key=options.api_key, base_url=options.base_url,
        config=config, timeout=options.timeout,
    )  # fmt: skip


class _Run:
    """The sending pass: a bounded window of in-flight lines over a streaming read."""

    def __init__(
        self,
        options: BatchFileOptions,
        defaults: InputDefaults,
        index: WorkIndex,
        pricing: Pricing,
        control: StopControl,
        reporter: Reporter,
    ) -> None:
        self.options = options
        self.defaults = defaults
        self.index = index
        self.pricing = pricing
        self.control = control
        self.reporter = reporter
        self.budget = Budget(options.max_cost_micros)
        self.counters = RunCounters()
        self.stopped: Stopped | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stats_at = 0.0
        self._chat: ChatLimiter | None = None
        self._writer: OutputWriter | None = None

    async def execute(self, chat: ChatLimiter) -> None:
        """Send every line not done yet, write each record; stop when told."""
        self._chat = chat
        self.counters.started = time.monotonic()
        self.reporter.start(self.counters)
        waiters = (
            asyncio.create_task(self.control.wait_stop()),
            asyncio.create_task(self.control.wait_cancel()),
        )
        try:
            with OutputWriter(self.options.output) as self._writer:
                try:
                    await self._feed(waiters[0])
                    await self._drain(waiters)
                finally:
                    await self._cancel_all()
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            self._refresh_stats(force=True)
            self.reporter.finish(self.counters)
        if self.control.stopping:
            self.stopped = "interrupted"

    async def _feed(self, stop: asyncio.Task[None]) -> None:
        for count, (number, text) in enumerate(read_lines(self.options.input)):
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let signals, progress and finished lines through
            if self.control.stopping:
                return
            found = self.index.record_of(number)
            if found is not None and found.final:
                continue
            item = self._item(number, text)
            if isinstance(item, InvalidLine):
                record = error_record(
                    number, item.custom_id, INVALID_INPUT, item.message, line_hash=item.line_hash
                )
                self._write(record, INVALID_INPUT)
                continue
            worst = self._worst(item)
            if not await self._slot(worst, stop):
                return
            self._start(item, worst)

    def _item(self, number: int, text: str) -> RequestLine | InvalidLine:
        """The line to send, or its problem (the pre-flight's, else a new one)."""
        bad = self.index.invalid(number)
        if bad is not None:
            return InvalidLine(number, bad[0], bad[1], line_hash(text))
        return parse_line(number, text, self.defaults)

    def _worst(self, item: RequestLine) -> int:
        """The line's worst-case cost under a budget: the pre-flight's, kept in the index."""
        if self.budget.limit is None:
            return 0
        cost = self.index.worst(item.line, item.line_hash)
        if cost is None:  # not priced by the pre-flight (never for a valid line of it)
            cost = estimate(self.defaults.provider, self.pricing, item).cost
        return self.budget.limit + 1 if cost is None else cost  # unpriced: never fits

    async def _slot(self, worst: int, stop: asyncio.Task[None]) -> bool:
        """Wait for room in the window and the budget; ``False`` if the run must stop."""
        while not self.control.stopping:
            if len(self._tasks) < self.options.workers and self.budget.fits(worst):
                return True
            if not self._tasks:  # nothing in flight will free any budget
                self.stopped = "max_cost"
                spent = usd(self.budget.spent)
                self.reporter.notice(
                    f"stopping: the next line could bring the spend ({spent}) above --max-cost; "
                    "a rerun continues from here"
                )
                return False
            await self._wait_some(stop)
        return False

    async def _wait_some(self, *extra: asyncio.Task[None], timeout: float | None = None) -> None:
        done, _ = await asyncio.wait(
            {*self._tasks, *extra}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if not task.cancelled():
                task.result()  # a bug in a line's task surfaces here

    def _start(self, item: RequestLine, worst: int) -> None:
        self.budget.reserve(worst)
        task = asyncio.create_task(self._line(item, worst))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.counters.in_flight = len(self._tasks)

    async def _line(self, item: RequestLine, worst: int) -> None:
        assert self._chat is not None  # noqa: S101 (set by execute)
        hook = self.options.request_headers
        headers = dict(hook(item)) if hook is not None else None
        try:
            outcome = await send_line(self._chat, self.defaults.provider, item, headers)
        except asyncio.CancelledError:
            self.budget.release(worst)
            raise
        self.budget.settle(worst, self._charge(item, outcome, worst))
        self._write(outcome.record, outcome.code)

    def _charge(self, item: RequestLine, outcome: Outcome, worst: int) -> int:
        """What the line cost: its worst case when the provider may have billed it unseen.

        Only an error answer (4xx, 5xx) costs nothing; a 2xx answer without a usage (a
        gateway that strips it, a body that is not JSON) and a lost answer cost the worst case.
        """
        counters = self.counters
        if outcome.usage is None:
            if outcome.error_answer:
                return 0
            if outcome.status is not None:  # answered, but its cost is unknown
                counters.unpriced += 1
            return worst
        counters.input_tokens += outcome.usage.input_tokens
        counters.output_tokens += outcome.usage.output_tokens
        cost = self.pricing.cost(outcome.usage.model or item.model, outcome.usage)
        if cost is None:
            counters.unpriced += 1
            return worst
        counters.cost += cost
        return cost

    def _write(self, record: dict[str, Any], code: str | None) -> None:
        assert self._writer is not None  # noqa: S101 (set by execute)
        self._writer.write(record)
        counters = self.counters
        counters.done += 1
        if code is None:
            counters.succeeded += 1
        else:
            counters.failed[code] += 1
        counters.in_flight = len(self._tasks)
        self._refresh_stats()
        self.reporter.update(counters)

    def _refresh_stats(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._chat is None or (not force and now - self._stats_at < _STATS_INTERVAL):
            return
        self._stats_at = now
        usage = self._chat.get_usage()
        self.counters.retries = usage.retries
        self.counters.provider_429 = usage.provider_429

    async def _drain(self, waiters: tuple[asyncio.Task[None], asyncio.Task[None]]) -> None:
        """Let in-flight lines finish; after a stop, for ``grace`` seconds at most."""
        stop, cancel = waiters
        while self._tasks and not self.control.stopping:
            await self._wait_some(stop)
        if not self._tasks:
            return
        self.reporter.notice(
            f"stopping: waiting up to {self.options.grace:g}s for {len(self._tasks)} lines in "
            "flight (interrupt again to cancel them; a rerun sends them again)"
        )
        deadline = time.monotonic() + self.options.grace
        while self._tasks and not self.control.cancelled:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await self._wait_some(cancel, timeout=left)

    async def _cancel_all(self) -> None:
        """Cancel what is still in flight: not written, its hold on the budget released."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                raise result  # a bug in a line's task
