"""The time formats providers put in headers: Go durations, RFC 3339 instants, HTTP dates."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Final

from quotaflow.core import NS_PER_SECOND

__all__ = ["ceil_seconds", "go_duration", "http_date", "rfc3339"]

_NS_PER_MS: Final = 1_000_000
_MS_PER_SECOND: Final = 1_000


def ceil_seconds(ns: int) -> int:
    """Whole seconds, rounded up."""
    return -(-ns // NS_PER_SECOND)


def go_duration(ns: int) -> str:
    """A duration as Go's ``time.Duration`` prints it, rounded up to the millisecond.

    ``0s``, ``12ms``, ``1.146s``, ``6m0s``, ``2m59.56s``, ``1h0m0s`` (OpenAI's reset format).
    """
    ms = -(-max(0, ns) // _NS_PER_MS)
    if ms == 0:
        return "0s"
    if ms < _MS_PER_SECOND:
        return f"{ms}ms"
    seconds, fraction = divmod(ms, _MS_PER_SECOND)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = str(seconds) + (f".{fraction:03d}".rstrip("0") if fraction else "") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def rfc3339(ns: int) -> str:
    """An instant (ns since the epoch) in RFC 3339, UTC, rounded up to the whole second."""
    moment = datetime.fromtimestamp(ceil_seconds(ns), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(ns: int) -> str:
    """An instant (ns since the epoch) as an HTTP-date (whole seconds, rounded down)."""
    return email.utils.formatdate(ns // NS_PER_SECOND, usegmt=True)
