"""Readers for the duration and time formats providers put in headers and bodies.

Every reader returns ``None`` for anything it cannot read (empty, negative, garbage, absurdly
large): provider output is never trusted and never raises. Callers decide whether to log.
"""

from __future__ import annotations

import email.utils
import math
import re
from datetime import UTC, datetime
from typing import Final

__all__ = [
    "MAX_SECONDS",
    "parse_delay",
    "parse_duration",
    "parse_http_date",
    "parse_protobuf_duration",
    "parse_rfc3339",
    "parse_timestamp_or_delay",
    "seconds_until",
]

#: The longest duration accepted (366 days); anything longer is treated as garbage.
MAX_SECONDS: Final = 366 * 86_400.0
#: Longer strings are not read at all: no real header value comes close, and this bounds the
#: cost of reading hostile input (Python refuses to convert integers of >4,300 digits).
_MAX_CHARS: Final = 64

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_GO_DURATION: Final = re.compile(
    rf"(?:({_NUMBER})h)?(?:({_NUMBER})m(?!s))?(?:({_NUMBER})s)?(?:({_NUMBER})ms)?"
    rf"(?:({_NUMBER})(?:us|\u00b5s|\u03bcs))?(?:({_NUMBER})ns)?"
)
_GO_UNITS: Final = (3600.0, 60.0, 1.0, 1e-3, 1e-6, 1e-9)
_PLAIN_NUMBER: Final = re.compile(_NUMBER)
_PROTOBUF_DURATION: Final = re.compile(r"(\d+(?:\.\d{0,9})?|\.\d{1,9})s")
# Beyond these an integer "reset" is an epoch timestamp rather than a delay (see §6.2 of the
# reference: GitHub-style epoch seconds, or epoch milliseconds).
_EPOCH_SECONDS_FROM: Final = 10**9
_EPOCH_MILLISECONDS_FROM: Final = 10**12


def _clean(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    text = text.strip()
    if not text or len(text) > _MAX_CHARS:
        return None
    return text


def _checked(seconds: float) -> float | None:
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_SECONDS:
        return None
    return seconds


def parse_duration(text: object) -> float | None:
    """Read a Go-style duration (``6m0s``, ``12ms``, ``1h2m3.5s``) or plain seconds (``20``).

    OpenAI and its clones send Go ``time.Duration`` strings; Azure sends plain seconds.

    Returns:
        Seconds, or ``None`` when ``text`` is not a non-negative duration of at most a year.
    """
    value = _clean(text)
    if value is None:
        return None
    if _PLAIN_NUMBER.fullmatch(value):
        return _checked(float(value))
    match = _GO_DURATION.fullmatch(value)
    if match is None or not any(match.groups()):
        return None
    total = sum(
        float(part) * unit for part, unit in zip(match.groups(), _GO_UNITS, strict=True) if part
    )
    return _checked(total)


def parse_protobuf_duration(text: object) -> float | None:
    """Read a ``google.protobuf.Duration`` JSON string such as ``"59s"`` or ``"1.5s"``."""
    value = _clean(text)
    if value is None or not _PROTOBUF_DURATION.fullmatch(value):
        return None
    return _checked(float(value[:-1]))


def parse_http_date(text: object) -> datetime | None:
    """Read an HTTP-date (``Fri, 31 Dec 1999 23:59:59 GMT``) as an aware UTC datetime."""
    value = _clean(text)
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000" means UTC with unknown local zone
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_rfc3339(text: object) -> datetime | None:
    """Read an RFC 3339 timestamp (``2025-02-24T22:25:30Z``); one without an offset is ignored."""
    value = _clean(text)
    if value is None or len(value) < len("2000-01-01T00:00Z"):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def seconds_until(moment: datetime, reference: datetime) -> float | None:
    """Seconds from ``reference`` to ``moment``, at least 0; ``None`` if absurdly far."""
    return _checked(max(0.0, (moment - reference).total_seconds()))


def parse_delay(text: object, reference: datetime | None) -> float | None:
    """Read a ``Retry-After`` value: delay seconds (fractions tolerated) or an HTTP-date.

    Args:
        text: the header value.
        reference: the time the response was sent (its ``Date``) or received; needed only for
            the HTTP-date form, which is ignored without it. A date in the past means 0.
    """
    value = _clean(text)
    if value is None:
        return None
    if _PLAIN_NUMBER.fullmatch(value):
        return _checked(float(value))
    moment = parse_http_date(value)
    if moment is None or reference is None:
        return None
    return seconds_until(moment, reference)


def parse_timestamp_or_delay(text: object, reference: datetime | None) -> float | None:
    """Read a conventional ``X-RateLimit-Reset``: delay seconds, epoch seconds or ms, or a date.

    Implementations disagree on the unit, so magnitude decides: at least 10**12 is epoch
    milliseconds, at least 10**9 is epoch seconds, anything smaller is a delay. Epoch values and
    dates need ``reference`` (the response ``Date``, else the receive time).
    """
    value = _clean(text)
    if value is None:
        return None
    if _PLAIN_NUMBER.fullmatch(value):
        number = float(value)
        if number >= _EPOCH_SECONDS_FROM:
            if reference is None:
                return None
            epoch = number / 1000 if number >= _EPOCH_MILLISECONDS_FROM else number
            return _checked(max(0.0, epoch - reference.timestamp()))
        return _checked(number)
    moment = parse_http_date(value) or parse_rfc3339(value)
    if moment is None or reference is None:
        return None
    return seconds_until(moment, reference)
