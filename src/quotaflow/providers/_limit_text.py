"""Reading the limit a provider's error message names, where no structured field says it."""

from __future__ import annotations

import re
from typing import Final

from quotaflow.core._metrics import Metric
from quotaflow.providers._error_class import NamedLimit

__all__ = ["anthropic_limit", "azure_limit", "openai_limit"]

_UNITS: Final = {
    "requests": Metric.REQUESTS,
    "tokens": Metric.TOKENS,
    "input tokens": Metric.INPUT_TOKENS,
    "output tokens": Metric.OUTPUT_TOKENS,
}
# A count, with or without thousands separators ("30000", "50,000").
_COUNT: Final = r"\d{1,15}(?:,\d{3}){0,5}"
_PERIODS: Final = {"min": 60.0, "minute": 60.0, "hour": 3600.0, "day": 86_400.0}
# OpenAI names the limit, then its size, use and the request's size.
_OPENAI_LIMIT: Final = re.compile(
    r"on (requests|tokens|input tokens|output tokens) per (min|minute|hour|day)\b[^:]{0,40}:"
    rf"\s*Limit\s+({_COUNT})(?:,\s*Used\s+{_COUNT})?(?:,\s*Requested\s+({_COUNT}))?"
)
# Anthropic names the size and unit of the limit the request would exceed.
_ANTHROPIC_LIMIT: Final = re.compile(
    rf"of ({_COUNT}) (requests|tokens|input tokens|output tokens) per (minute|hour|day)\b"
)
# Azure names only the kind of limit (token or call rate).
_AZURE_LIMIT: Final = re.compile(r"exceeded (token|call|request) rate limit")


def _number(text: str | None) -> int | None:
    return None if text is None else int(text.replace(",", "") or "0")


def openai_limit(message: str) -> NamedLimit | None:
    """The limit an OpenAI (or clone) rate-limit message names, with the request size."""
    match = _OPENAI_LIMIT.search(message)
    if match is None:
        return None
    unit, per, limit, requested = match.groups()
    return NamedLimit(
        _UNITS[unit],
        limit=_number(limit),
        window=_PERIODS[per],
        requested=_number(requested),
        name=f"{unit} per {per}",
    )


def anthropic_limit(message: str) -> NamedLimit | None:
    """The limit an Anthropic rate-limit message names."""
    match = _ANTHROPIC_LIMIT.search(message)
    if match is None:
        return None
    limit, unit, per = match.groups()
    return NamedLimit(_UNITS[unit], _number(limit), _PERIODS[per], name=f"{unit} per {per}")


def azure_limit(message: str) -> NamedLimit | None:
    """The kind of limit an Azure OpenAI throttling message names (it gives no size)."""
    match = _AZURE_LIMIT.search(message)
    if match is None:
        return None
    metric = Metric.TOKENS if match.group(1) == "token" else Metric.REQUESTS
    return NamedLimit(metric, window=60.0, name=match.group(0))
