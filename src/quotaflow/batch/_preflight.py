"""The pre-flight pass: one streaming read that checks every line and prices the batch.

For each line: parse it, match it with OUT's record by id and content hash (a changed input
stops here; a bad line fixed in place is checked and sent again), claim its
id in the index (a duplicate is a bad line), refuse unpriced models under ``--max-cost``,
then estimate its input tokens (the provider-intelligence estimator), its worst-case output
(the body's cap, else ``--max-tokens``, else ``DEFAULT_MAX_TOKENS``) and its worst-case cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from quotaflow.batch._cost import Pricing
from quotaflow.batch._file_errors import InputChangedError
from quotaflow.batch._index import DoneRecord, WorkIndex
from quotaflow.batch._input import (
    DEFAULT_MAX_TOKENS,
    InputDefaults,
    InvalidLine,
    RequestLine,
    parse_line,
    read_lines,
)
from quotaflow.batch._options import BatchFileOptions
from quotaflow.batch._resume import ResumeState
from quotaflow.providers import Provider, estimate_request_tokens

__all__ = ["OTHER_MODELS", "LineEstimate", "ModelTotals", "Preflight", "estimate", "preflight"]

#: The row that gathers the models past the first ``_MAX_MODELS``.
OTHER_MODELS: Final = "(other models)"
_MAX_MODELS: Final = 1000
_YIELD_EVERY: Final = 512


@dataclass(frozen=True, slots=True)
class LineEstimate:
    """A line's worst case: input tokens, output tokens, cost (``None``: unpriced)."""

    input_tokens: int
    output_tokens: int
    cost: int | None
    assumed: bool


@dataclass(slots=True)
class ModelTotals:
    """The lines to send for one model, and their worst case."""

    lines: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0
    unpriced: int = 0

    def merge(self, other: ModelTotals) -> None:
        """Add ``other``'s lines."""
        self.lines += other.lines
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost += other.cost
        self.unpriced += other.unpriced

    def add(self, line: LineEstimate) -> None:
        """Count one line."""
        self.lines += 1
        self.input_tokens += line.input_tokens
        self.output_tokens += line.output_tokens
        if line.cost is None:
            self.unpriced += 1
        else:
            self.cost += line.cost


@dataclass(slots=True)
class Preflight:
    """What the batch holds and what sending it may cost.

    Attributes:
        lines: input lines (blank lines are not counted).
        settled: lines already done in OUT (skipped).
        settled_failed: those of them that failed for good.
        invalid: bad lines not already in OUT.
        assumed_output: lines with no output cap, counted at ``DEFAULT_MAX_TOKENS``.
        resume: what OUT held.
        models: the lines to send per model (``total`` sums them).
        interrupted: the pass was stopped before the end (its figures are partial).
    """

    lines: int = 0
    settled: int = 0
    settled_failed: int = 0
    invalid: int = 0
    assumed_output: int = 0
    resume: ResumeState = field(default_factory=ResumeState)
    models: dict[str, ModelTotals] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def total(self) -> ModelTotals:
        """The worst case of every line to send."""
        total = ModelTotals()
        for row in self.models.values():
            total.merge(row)
        return total

    def count(self, model: str, line: LineEstimate) -> None:
        """Count a line to send."""
        self.assumed_output += line.assumed
        if model not in self.models and len(self.models) >= _MAX_MODELS:
            model = OTHER_MODELS
        self.models.setdefault(model, ModelTotals()).add(line)


def estimate(provider: Provider, pricing: Pricing, item: RequestLine) -> LineEstimate:
    """The worst case of sending ``item``."""
    found = estimate_request_tokens(provider, item.body, model=item.model)
    output = found.max_output_tokens
    assumed = output is None
    output = DEFAULT_MAX_TOKENS if output is None else output
    cost = pricing.worst_case(item.model, found.input_tokens, output)
    return LineEstimate(found.input_tokens, output, cost, assumed)


async def preflight(
    options: BatchFileOptions,
    defaults: InputDefaults,
    index: WorkIndex,
    pricing: Pricing,
    bad_line: Callable[[InvalidLine], None],
    stopping: Callable[[], bool] = lambda: False,
) -> Preflight:
    """Check and price every line; note bad lines in ``index`` and report each to ``bad_line``.

    It gives the event loop a turn every few hundred lines (so that a signal handler runs),
    and ends early, with ``interrupted`` set, once ``stopping()`` is true.

    Raises:
        InputChangedError: OUT has a record for a line that now has another id, or other
            content (unless the record is that of a bad line: the line is then redone), or
            no line.
    """
    report = Preflight()
    for count, (number, text) in enumerate(read_lines(options.input)):
        if count % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
            if stopping():
                report.interrupted = True
                return report
        report.lines += 1
        parsed = parse_line(number, text, defaults)
        settled = _settled(options, index, parsed)
        if settled is not None:
            report.settled += 1
            report.settled_failed += not settled.ok
            if parsed.custom_id is not None:
                index.claim_id(parsed.custom_id, number)
            continue
        parsed = _checked(options, index, pricing, parsed)
        if isinstance(parsed, InvalidLine):
            index.add_invalid(number, parsed.custom_id, parsed.message)
            report.invalid += 1
            bad_line(parsed)
            continue
        worst = estimate(defaults.provider, pricing, parsed)
        if options.max_cost is not None:  # the sending pass reads it instead of counting again
            index.set_worst(number, parsed.line_hash, worst.cost)
        report.count(parsed.model, worst)
    index.commit()
    missing = index.first_unmatched()
    if missing is not None:
        raise InputChangedError(
            f"the input changed since {options.output} was written: it has a record for line "
            f"{missing}, which {options.input} no longer has"
        )
    return report


def _settled(
    options: BatchFileOptions, index: WorkIndex, parsed: RequestLine | InvalidLine
) -> DoneRecord | None:
    """OUT's record if it settles ``parsed``'s line (checking that it is the same line).

    A record is matched by its id, and by the hash of the line's content when it has one
    (older records have none). A bad line's record whose line changed is reopened: the line
    was fixed in place, and is checked and sent again. Any other record whose line changed
    stops the run, unless the line is redone anyway (its record is a failure to redo).
    """
    number, custom_id = parsed.line, parsed.custom_id
    found = index.record_of(number)
    if found is None:
        return None
    index.mark_matched(number)
    changed = (
        found.line_hash is not None
        and parsed.line_hash is not None
        and found.line_hash != parsed.line_hash
    )
    if changed and found.invalid_input:
        index.reopen(number)
        return None
    recorded = found.custom_id
    if recorded is not None and recorded != custom_id:
        raise InputChangedError(
            f"the input changed since the output was written: line {number} is now "
            f"{custom_id!r}, and the output's record for it is {recorded!r}"
        )
    if changed and found.final:
        raise InputChangedError(
            f"the input changed since {options.output} was written: line {number} of "
            f"{options.input} is not the line its record was written for (its content "
            "changed, or lines were inserted or removed before it); restore the input, or "
            "write to another output"
        )
    return found if found.final else None


def _checked(
    options: BatchFileOptions, index: WorkIndex, pricing: Pricing, parsed: RequestLine | InvalidLine
) -> RequestLine | InvalidLine:
    """``parsed``, or the problem of a duplicate id or an unpriced model under a budget."""
    number, custom_id = parsed.line, parsed.custom_id
    first = None if custom_id is None else index.claim_id(custom_id, number)
    if isinstance(parsed, InvalidLine):
        return parsed
    if first is not None:
        message = f"line {number}: duplicate custom_id {custom_id!r} (first on line {first})"
        return InvalidLine(number, custom_id, message, parsed.line_hash)
    if options.max_cost is not None and not pricing.knows(parsed.model):
        message = (
            f"line {number}: unknown model {parsed.model!r}: no price is known for it, and "
            "--max-cost needs one"
        )
        return InvalidLine(number, custom_id, message, parsed.line_hash)
    return parsed
