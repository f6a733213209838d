"""A logger that reports each kind of ignored provider value, but never floods the log.

Parsers of provider output never raise: they skip what they cannot read and say so here. A
provider that sends a malformed header sends it on every response, so each kind of problem is
logged on its 1st, 10th, 100th, ... occurrence (with the count), never once per response.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

__all__ = ["logger", "note_ignored"]

logger: Final = logging.getLogger("quotaflow.providers")

_MAX_KINDS: Final = 512
_MAX_VALUE_CHARS: Final = 80
_counts: dict[str, int] = {}
_lock = threading.Lock()


def note_ignored(kind: str, value: object, *, reason: str = "unreadable") -> None:
    """Record that a value of ``kind`` was ignored; log it on a decimal schedule.

    Args:
        kind: a short, bounded description of where the value came from (a header name,
            "anthropic usage"); never the value itself, so the set of kinds stays small.
        value: the offending value, shown truncated in the log line.
        reason: why it was ignored.
    """
    with _lock:
        if kind not in _counts and len(_counts) >= _MAX_KINDS:
            kind = "other"
        count = _counts.get(kind, 0) + 1
        _counts[kind] = count
    if _is_power_of_ten(count):
        text = repr(value)
        if len(text) > _MAX_VALUE_CHARS:
            text = text[: _MAX_VALUE_CHARS - 3] + "..."
        logger.warning("ignored %s %s: %s (occurrence %d)", reason, kind, text, count)


def _is_power_of_ten(count: int) -> bool:
    while count % 10 == 0:
        count //= 10
    return count == 1


def _reset_for_tests() -> None:
    with _lock:
        _counts.clear()
