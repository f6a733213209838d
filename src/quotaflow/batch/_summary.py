"""What a file batch run did: live counters, and the final :class:`BatchSummary`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from quotaflow.batch._output import INVALID_INPUT
from quotaflow.batch._preflight import Preflight

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "BatchSummary", "RunCounters", "Stopped"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_INTERRUPTED: Final = 130
#: Why a run ended with lines not done: ``"interrupted"`` (a stop, Ctrl-C) or ``"max_cost"``.
Stopped = Literal["interrupted", "max_cost"]


@dataclass(slots=True)
class RunCounters:
    """Counters a run keeps while it goes (the progress display reads them)."""

    to_do: int = 0
    done: int = 0
    succeeded: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0
    unpriced: int = 0
    retries: int = 0
    provider_429: int = 0
    in_flight: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started sending."""
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Lines done per second."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """The outcome of :func:`~quotaflow.batch.run_batch_file`.

    Attributes:
        lines: input lines (blank lines are not counted).
        done_now: records this run wrote.
        skipped: lines skipped as already done in OUT.
        skipped_failed: those of them whose record in OUT is a (final) failure.
        succeeded: lines that succeeded in this run.
        failed: lines that failed in this run, by error code (bad lines excluded).
        invalid: bad lines recorded in this run (code ``invalid_input``).
        not_done: lines neither in OUT nor written now (a rerun does them).
        stopped: why lines were left, if the run stopped early.
        input_tokens: input tokens reported by the provider.
        output_tokens: output tokens reported by the provider.
        cost: micro-USD, for the answers whose model has a price.
        unpriced: answers whose cost is unknown (a model without a price, or no usage).
        provider_429: rate-limit responses from the provider (retried ones included).
        retries: requests sent again after a failure.
        elapsed: seconds, from the start to the end of the run.
        estimated_cost: the pre-flight's worst case for the lines to send, micro-USD.
        dry_run: only the pre-flight ran.
    """

    lines: int
    done_now: int
    skipped: int
    skipped_failed: int
    succeeded: int
    failed: dict[str, int]
    invalid: int
    not_done: int
    stopped: Stopped | None
    input_tokens: int
    output_tokens: int
    cost: int
    unpriced: int
    provider_429: int
    retries: int
    elapsed: float
    estimated_cost: int
    dry_run: bool = False

    @classmethod
    def of(
        cls,
        counters: RunCounters,
        report: Preflight,
        *,
        stopped: Stopped | None,
        elapsed: float,
        dry_run: bool = False,
    ) -> BatchSummary:
        """The summary of a run from its pre-flight and its counters."""
        failed = {k: v for k, v in sorted(counters.failed.items()) if k != INVALID_INPUT}
        lines, skipped = report.lines, report.settled
        return cls(
            lines=lines,
            done_now=counters.done,
            skipped=skipped,
            skipped_failed=report.settled_failed,
            succeeded=counters.succeeded,
            failed=failed,
            invalid=counters.failed[INVALID_INPUT],
            not_done=lines - skipped - counters.done,
            stopped=stopped,
            input_tokens=counters.input_tokens,
            output_tokens=counters.output_tokens,
            cost=counters.cost,
            unpriced=counters.unpriced,
            provider_429=counters.provider_429,
            retries=counters.retries,
            elapsed=elapsed,
            estimated_cost=report.total.cost,
            dry_run=dry_run,
        )

    @property
    def failed_total(self) -> int:
        """Lines that failed in this run (bad lines excluded)."""
        return sum(self.failed.values())

    @property
    def rate(self) -> float:
        """Lines done per second."""
        return self.done_now / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """130 if interrupted; 1 if OUT has failed or bad lines or lines are left; else 0."""
        if self.stopped == "interrupted":
            return EXIT_INTERRUPTED
        if self.dry_run:
            return EXIT_OK
        if self.failed_total or self.invalid or self.not_done or self.skipped_failed:
            return EXIT_FAILED
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready values (costs also in USD)."""
        data = asdict(self)
        data.update(
            failed_total=self.failed_total,
            rate=round(self.rate, 3),
            elapsed=round(self.elapsed, 3),
            cost_usd=self.cost / 1e6,
            estimated_cost_usd=self.estimated_cost / 1e6,
            exit_code=self.exit_code,
        )
        return data
