"""A batch's input: its items with their index, grouped by model if asked, sync or async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeAlias, TypeVar

__all__ = ["Pair", "Source", "grouped"]

_T = TypeVar("_T")
Pair: TypeAlias = tuple[int, _T]


class Source(Generic[_T]):
    """A batch's items with their index, taken one at a time from a sync or async input."""

    def __init__(self, pairs: Iterator[Pair[_T]] | None, items: AsyncIterator[_T] | None) -> None:
        self._pairs = pairs
        self._items = items
        self._taken = 0
        self.exhausted = False

    @property
    def is_async(self) -> bool:
        return self._items is not None

    def next_sync(self) -> Pair[_T] | None:
        pair = next(self._pairs, None) if self._pairs is not None else None
        self.exhausted = pair is None
        return pair

    async def next_async(self) -> Pair[_T] | None:
        if self._items is None:
            return None
        try:
            item = await anext(self._items)
        except StopAsyncIteration:
            return None
        index, self._taken = self._taken, self._taken + 1
        return index, item


def grouped(pairs: list[Pair[_T]], model_of: Callable[[_T], str | None]) -> list[Pair[_T]]:
    """The items model by model, in the order of the models' first appearance."""
    rank: dict[str | None, int] = {}
    keys = [rank.setdefault(model_of(item), len(rank)) for _, item in pairs]
    order = sorted(range(len(pairs)), key=keys.__getitem__)
    return [pairs[i] for i in order]
