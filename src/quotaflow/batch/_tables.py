"""The pre-flight and summary tables of ``quotaflow batch`` (rich)."""

from __future__ import annotations

from rich.table import Table

from quotaflow.batch._input import DEFAULT_MAX_TOKENS
from quotaflow.batch._preflight import ModelTotals, Preflight
from quotaflow.batch._summary import BatchSummary

__all__ = ["preflight_table", "summary_table", "usd"]


def usd(micros: int) -> str:
    """Micro-USD as dollars."""
    return f"${micros / 1e6:,.4f}"


def _cost(row: ModelTotals) -> str:
    if row.unpriced == row.lines and row.lines:
        return "unpriced"
    text = usd(row.cost)
    return f"{text} (+{row.unpriced:,} unpriced)" if row.unpriced else text


def preflight_table(report: Preflight) -> Table:
    """Lines, tokens and worst-case cost, per model and in total."""
    table = Table(title="quotaflow batch: pre-flight", title_justify="left")
    for name in ("model", "lines", "input tokens", "max output tokens", "worst-case cost"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for model, row in sorted(report.models.items()):
        table.add_row(
            model, f"{row.lines:,}", f"{row.input_tokens:,}", f"{row.output_tokens:,}", _cost(row)
        )
    total = report.total
    table.add_section()
    table.add_row(
        "total to send", f"{total.lines:,}", f"{total.input_tokens:,}",
        f"{total.output_tokens:,}", _cost(total), style="bold",
    )  # fmt: skip
    notes = [f"{report.lines:,} lines", f"{report.settled:,} already done"]
    notes.append(f"{report.invalid:,} invalid")
    if report.resume.redo:
        notes.append(f"{report.resume.redo:,} failed earlier, to redo")
    if report.resume.partial_bytes:
        notes.append("an unfinished last record in the output is cut away")
    if report.assumed_output:
        notes.append(
            f"{report.assumed_output:,} lines without an output cap counted at "
            f"{DEFAULT_MAX_TOKENS:,} tokens"
        )
    table.caption = "; ".join(notes)
    table.caption_justify = "left"
    return table


def summary_table(summary: BatchSummary) -> Table:
    """Every figure of the summary, one per row."""
    table = Table(title="quotaflow batch: summary", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("lines", f"{summary.lines:,}"),
        ("done now", f"{summary.done_now:,}"),
        ("skipped (already done)", f"{summary.skipped:,}"
         + (f" ({summary.skipped_failed:,} failed)" if summary.skipped_failed else "")),
        ("succeeded", f"{summary.succeeded:,}"),
        ("failed", f"{summary.failed_total:,}"),
        *((f"  {code}", f"{count:,}") for code, count in summary.failed.items()),
        ("invalid lines", f"{summary.invalid:,}"),
        ("not done" + (f" ({summary.stopped})" if summary.stopped else ""),
         f"{summary.not_done:,}"),
        ("tokens in / out", f"{summary.input_tokens:,} / {summary.output_tokens:,}"),
        ("cost" + (f" ({summary.unpriced:,} unpriced)" if summary.unpriced else ""),
         usd(summary.cost)),
        ("provider 429s", f"{summary.provider_429:,}"),
        ("retries", f"{summary.retries:,}"),
        ("elapsed", f"{summary.elapsed:.1f}s"),
        ("rate", f"{summary.rate:,.1f} lines/s"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table
