"""One batch in progress, as its processor and its scheduler share it."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Run"]


class Run:
    """One batch in progress: whether it is stopping, and how to wake its scheduler."""

    __slots__ = ("stopping", "wake")

    def __init__(self) -> None:
        self.stopping = False
        self.wake: Callable[[], None] | None = None

    def stop(self) -> None:
        self.stopping = True
        if self.wake is not None:
            self.wake()
