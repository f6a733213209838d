"""The outcome of one item of a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = ["BatchResult", "ItemT", "ResultT", "Status"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: ``"ok"``: it succeeded; ``"failed"``: it failed finally; ``"skipped"``: it never started.
Status = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class BatchResult(Generic[ItemT, ResultT]):
    """What became of one item.

    Attributes:
        index: the item's position in the input (counted as items are consumed).
        item: the item itself.
        result: what processing returned (``None`` unless ``status`` is ``"ok"``).
        error: the last error, when the item failed.
        error_class: the provider's :class:`~quotaflow.providers.ErrorKind` value
            (``"rate_limited"``, ``"invalid_request"``…) when the error could be classified,
            else the exception's class name.
        attempts: tries made (0 for a skipped item).
        duration: seconds from the first try to the end, retry waits included.
        status: ``"ok"``, ``"failed"``, or ``"skipped"`` (never started because the batch
            was stopped).
    """

    index: int
    item: ItemT
    result: ResultT | None
    error: BaseException | None
    error_class: str | None
    attempts: int
    duration: float
    status: Status

    @property
    def success(self) -> bool:
        """Whether the item succeeded."""
        return self.status == "ok"
