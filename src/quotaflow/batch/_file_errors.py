"""Why ``quotaflow batch`` refuses to start (exit code 2); nothing is sent when these raise.

::

    QuotaflowError
    └── BatchRefusedError           "batch_refused"
        ├── InvalidInputError       "invalid_input"    --on-invalid fail and some lines are bad
        ├── InputChangedError       "input_changed"    OUT was written for another input
        ├── OutputFormatError       "output_format"    OUT holds something else than records
        ├── OutputBusyError         "output_busy"      another run is writing the same OUT
        └── BudgetExceededError     "budget_exceeded"  the worst case is above --max-cost
"""

from __future__ import annotations

from quotaflow._errors import QuotaflowError

__all__ = [
    "BatchRefusedError",
    "BudgetExceededError",
    "InputChangedError",
    "InvalidInputError",
    "OutputBusyError",
    "OutputFormatError",
]


class BatchRefusedError(QuotaflowError):
    """The batch cannot start; the message says why."""

    reason = "batch_refused"


class InvalidInputError(BatchRefusedError):
    """Some input lines are bad and ``on_invalid="fail"``.

    Attributes:
        count: how many lines are bad.
        first: the first problems (line number and message), at most 100.
    """

    reason = "invalid_input"

    def __init__(self, message: str, count: int, first: tuple[tuple[int, str], ...]) -> None:
        super().__init__(message)
        self.count = count
        self.first = first


class InputChangedError(BatchRefusedError):
    """A record in OUT does not match the input line it names."""

    reason = "input_changed"


class OutputFormatError(BatchRefusedError):
    """OUT has a line that is not a record of ``quotaflow batch``."""

    reason = "output_format"


class OutputBusyError(BatchRefusedError):
    """Another ``quotaflow batch`` run is writing the same OUT."""

    reason = "output_busy"


class BudgetExceededError(BatchRefusedError):
    """The worst-case cost of the batch is above ``max_cost``."""

    reason = "budget_exceeded"
