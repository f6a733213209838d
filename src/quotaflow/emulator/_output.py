"""The generated answer: its length (drawn, forced or capped) and its text, one token per word."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import random

__all__ = ["OUTPUT_HEADER", "WORDS_PER_CHUNK", "Output", "draw_output"]

#: A request header forcing the output length (still capped by the request's maximum).
OUTPUT_HEADER: Final = "x-emulator-output-tokens"
#: Tokens (words) per streamed content chunk.
WORDS_PER_CHUNK: Final = 4
_WORDS: Final = ("lorem", "ipsum")


@dataclass(frozen=True, slots=True)
class Output:
    """An answer of ``tokens`` words; ``capped`` when it stopped at the request's maximum."""

    tokens: int
    capped: bool

    @property
    def words(self) -> tuple[str, ...]:
        """One word per token: ``lorem``, ``ipsum``, ``lorem``..."""
        return (_WORDS * (self.tokens // len(_WORDS) + 1))[: self.tokens]

    @property
    def text(self) -> str:
        """The whole answer: the words separated by spaces."""
        return " ".join(self.words)

    def chunks(self) -> list[tuple[int, str]]:
        """``(tokens, text)`` of each streamed chunk, :data:`WORDS_PER_CHUNK` words each.

        The chunks' texts add up to :attr:`text` (each one after the first starts with a space).
        """
        words = self.words
        return [
            (
                len(words[start : start + WORDS_PER_CHUNK]),
                (" " if start else "") + " ".join(words[start : start + WORDS_PER_CHUNK]),
            )
            for start in range(0, self.tokens, WORDS_PER_CHUNK)
        ]


def draw_output(
    rng: random.Random, bounds: tuple[int, int], max_tokens: int | None, forced: int | None
) -> Output:
    """The length of an answer: ``forced`` or a uniform draw in ``bounds``, capped by the max.

    An answer that reaches ``max_tokens`` is ``capped`` (finish_reason ``length``,
    stop_reason ``max_tokens``).
    """
    tokens = forced if forced is not None else rng.randint(*bounds)
    if max_tokens is not None and tokens >= max_tokens:
        return Output(max_tokens, capped=True)
    return Output(tokens, capped=False)
