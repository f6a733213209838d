"""What a file batch run tells as it goes: a :class:`Reporter`, and the rich one of the CLI.

The rich reporter prints the pre-flight table on stdout, and on stderr the bad lines, notices
and a progress bar (done/total, lines/s, tokens, spend, retries, provider 429s). The bar is
shown only on a terminal.
"""

from __future__ import annotations

from typing import Any, Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from quotaflow.batch._input import InvalidLine
from quotaflow.batch._preflight import Preflight
from quotaflow.batch._summary import RunCounters
from quotaflow.batch._tables import preflight_table, usd

__all__ = ["Reporter", "RichReporter"]


#: Bad lines printed when they are also recorded in OUT (all are printed otherwise).
_BAD_LINES_SHOWN: Final = 20


class Reporter:
    """Receives a run's events; every method does nothing here (subclass what you need)."""

    def preflight(self, report: Preflight) -> None:
        """The pre-flight pass is done."""

    def bad_line(self, problem: InvalidLine) -> None:
        """The pre-flight found a bad line."""

    def start(self, counters: RunCounters) -> None:
        """Sending starts."""

    def update(self, counters: RunCounters) -> None:
        """A line is done (called after each record is written)."""

    def notice(self, text: str) -> None:
        """Something the user should know (a stop, the budget)."""

    def finish(self, counters: RunCounters) -> None:
        """Sending is over."""


class RichReporter(Reporter):
    """The command line's reporter.

    Args:
        out: where the tables go (stdout).
        err: where bad lines, notices and the progress bar go (stderr).
        progress: show the bar (when ``err`` is a terminal).
        list_bad_lines: print every bad line as the pre-flight finds it (else the first 20).
    """

    def __init__(
        self, out: Console, err: Console, *, progress: bool = True, list_bad_lines: bool = True
    ) -> None:
        self._out = out
        self._err = err
        self._list_bad_lines = list_bad_lines
        self._bad_shown = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._show_bar = progress and err.is_terminal

    def preflight(self, report: Preflight) -> None:
        self._out.print(preflight_table(report))

    def bad_line(self, problem: InvalidLine) -> None:
        self._bad_shown += 1
        if self._list_bad_lines or self._bad_shown <= _BAD_LINES_SHOWN:
            self._err.print(
                f"invalid: {problem.message}", markup=False, highlight=False, soft_wrap=True
            )
        elif self._bad_shown == _BAD_LINES_SHOWN + 1:
            self._err.print(
                f"invalid: more bad lines than {_BAD_LINES_SHOWN}; each is recorded in OUT "
                "with its line number (error code invalid_input)"
            )

    def start(self, counters: RunCounters) -> None:
        if not self._show_bar:
            return
        self._bar = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            console=self._err,
            refresh_per_second=4,
        )
        self._task = self._bar.add_task("batch", total=counters.to_do, figures="")
        self._bar.start()

    def update(self, counters: RunCounters) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=counters.done, figures=_figures(counters))

    def notice(self, text: str) -> None:
        console: Any = self._bar.console if self._bar is not None else self._err
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    def finish(self, counters: RunCounters) -> None:
        if self._bar is not None:
            self.update(counters)
            self._bar.stop()
            self._bar = None


def _figures(counters: RunCounters) -> str:
    tokens = counters.input_tokens + counters.output_tokens
    failed = sum(counters.failed.values())
    return (
        f"{counters.rate:,.1f}/s  tokens {tokens:,}  spend {usd(counters.cost)}  "
        f"failed {failed:,}  retries {counters.retries:,}  429s {counters.provider_429:,}"
    )
