"""The faults the emulator injects, and how one is chosen for a request."""

from __future__ import annotations

import random
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

__all__ = ["AFTER_ADMISSION", "FAULT_HEADER", "Fault", "draw_fault"]

#: A request header naming the fault to inject into that request (tests use it to force one).
FAULT_HEADER: Final = "x-emulator-fault"


class Fault(StrEnum):
    """A failure the emulator can inject (the values are the names ``fault_rates`` takes)."""

    SERVER_ERROR = "500"
    """A 500 in the provider's format (``server_error`` / ``api_error``)."""
    UNAVAILABLE = "503"
    """A 503: OpenAI's "The engine is currently overloaded"; Anthropic's ``overloaded_error``."""
    OVERLOADED = "529"
    """A 529 ``overloaded_error`` (in OpenAI's body shape on the OpenAI paths)."""
    INSUFFICIENT_QUOTA = "insufficient_quota"
    """The quota (billing) 429: OpenAI ``insufficient_quota``, Anthropic's spend limit."""
    RATE_LIMIT = "rate_limit"
    """A 429 with ``retry-after`` although the buckets admit (another application on the key)."""
    DROP = "drop"
    """The response headers are sent, then the connection is dropped."""
    CUT_STREAM = "cut_stream"
    """A stream stops after a few chunks, without its terminal events (no effect otherwise)."""


#: Faults that strike after admission: the request counted, as it would at a real provider.
AFTER_ADMISSION: Final = frozenset({Fault.DROP, Fault.CUT_STREAM})


def draw_fault(rng: random.Random, rates: Mapping[Fault, float]) -> Fault | None:
    """Pick at most one fault: one uniform draw against the rates stacked in declaration order."""
    if not rates:
        return None
    point = rng.random()
    for fault in Fault:
        point -= rates.get(fault, 0.0)
        if point < 0:
            return fault
    return None
