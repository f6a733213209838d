"""How much of each metric one call uses (or is estimated to use)."""

from __future__ import annotations

from typing import Final

from quotaflow._errors import InvalidUsageError
from quotaflow.core._metrics import Metric

__all__ = ["MAX_AMOUNT", "Usage", "check_amount", "make_usage", "usage_index"]

#: The largest amount quotaflow accepts for one metric of one call: 10**15 (a quadrillion
#: tokens, or a billion USD in micro-USD). Anything larger is a bug in the caller.
MAX_AMOUNT: Final = 10**15


def check_amount(name: str, value: object) -> int:
    """Return ``value`` if it is a valid amount; raise ``InvalidUsageError`` naming it otherwise.

    A valid amount is a non-negative ``int`` (not ``bool``, not a float, even an integral one:
    token counts and micro-USD are exact) no larger than :data:`MAX_AMOUNT`.
    """
    if type(value) is int and 0 <= value <= MAX_AMOUNT:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidUsageError(
            f"{name} must be an integer number of units, got {value!r} ({type(value).__name__})"
        )
    if value < 0:
        raise InvalidUsageError(f"{name} must not be negative, got {value}")
    raise InvalidUsageError(f"{name}={value} exceeds the maximum of {MAX_AMOUNT}")


class Usage(tuple[int, int, int, int, int]):
    """The amounts one call uses, per metric. Immutable and hashable.

    ``tokens`` defaults to ``input_tokens + output_tokens``; pass it explicitly only when the
    split is unknown (a combined-TPM limit then counts it; split limits count the parts).
    ``cost`` is in integer micro-USD.

    Example:
        >>> Usage(input_tokens=1200, output_tokens=300).tokens
        1500
    """

    __slots__ = ()

    def __new__(  # noqa: PYI034 (validation builds the instance in make_usage)
        cls,
        *,
        requests: int = 1,
        input_tokens: int = 0,
        output_tokens: int = 0,
        tokens: int | None = None,
        cost: int = 0,
    ) -> Usage:
        return make_usage(requests, input_tokens, output_tokens, tokens, cost)

    @property
    def requests(self) -> int:
        """Requests (1 per call)."""
        return self[0]

    @property
    def input_tokens(self) -> int:
        """Input (prompt) tokens."""
        return self[1]

    @property
    def output_tokens(self) -> int:
        """Output (completion) tokens, reasoning included."""
        return self[2]

    @property
    def tokens(self) -> int:
        """Tokens counted by a combined limit: input + output unless given explicitly."""
        return self[3]

    @property
    def cost(self) -> int:
        """Cost in micro-USD."""
        return self[4]

    def amount(self, metric: Metric) -> int:
        """Return the amount of ``metric``; a call always holds one ``concurrent`` slot."""
        return self[_INDEX[metric]] if metric in _INDEX else 1

    def __repr__(self) -> str:
        requests, input_tokens, output_tokens, tokens, cost = self
        parts = [f"requests={requests}"]
        if input_tokens or output_tokens:
            parts += [f"input_tokens={input_tokens}", f"output_tokens={output_tokens}"]
        if tokens != input_tokens + output_tokens:
            parts.append(f"tokens={tokens}")
        if cost:
            parts.append(f"cost={cost}")
        return f"Usage({', '.join(parts)})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_usage_from_values, tuple(self))


_FIELDS: Final = ("requests", "input_tokens", "output_tokens", "tokens", "cost")

#: Position of each metric's amount in a :class:`Usage` (``concurrent`` is always 1).
_INDEX: Final[dict[Metric, int]] = {Metric(name): index for index, name in enumerate(_FIELDS)}


def make_usage(
    requests: int, input_tokens: int, output_tokens: int, tokens: int | None, cost: int
) -> Usage:
    """Validate the amounts and build a :class:`Usage`: the fast path behind ``Usage(...)``."""
    # One cheap test for the common case; the precise error only when it fails.
    if (
        type(requests) is int
        and type(input_tokens) is int
        and type(output_tokens) is int
        and type(cost) is int
        and 0 <= requests <= MAX_AMOUNT
        and 0 <= input_tokens <= MAX_AMOUNT
        and 0 <= output_tokens <= MAX_AMOUNT
        and 0 <= cost <= MAX_AMOUNT
    ):
        if tokens is None:
            tokens = input_tokens + output_tokens
        if type(tokens) is int and 0 <= tokens <= MAX_AMOUNT:
            return _new_usage(Usage, (requests, input_tokens, output_tokens, tokens, cost))
    values = (requests, input_tokens, output_tokens, tokens, cost)
    for name, value in zip(_FIELDS, values, strict=True):
        if value is not None or name != "tokens":
            check_amount(name, value)
    check_amount("tokens", input_tokens + output_tokens if tokens is None else tokens)
    raise AssertionError("unreachable: one of the amounts is invalid")  # pragma: no cover


_new_usage = tuple.__new__


def usage_index(metric: Metric) -> int:
    """Position of ``metric`` in a :class:`Usage`, or -1 for ``concurrent`` (always 1)."""
    return _INDEX.get(metric, -1)


def _usage_from_values(
    requests: int, input_tokens: int, output_tokens: int, tokens: int, cost: int
) -> Usage:
    return Usage(
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        tokens=tokens,
        cost=cost,
    )
