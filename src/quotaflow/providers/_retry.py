"""When to retry: the server's hints, in order of authority, and the shared backoff.

Precedence (first readable wins): ``retry-after-ms`` / ``x-ms-retry-after-ms``, then
``Retry-After`` (seconds or HTTP-date), then a hint in the body (Gemini's
``RetryInfo.retryDelay``, "try again in 1.146s"), then what the rate headers imply.
"""

from __future__ import annotations

import math
import random as _random
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from quotaflow._errors import ConfigurationError
from quotaflow.providers._bodies import as_json, as_str, get
from quotaflow.providers._durations import (
    parse_delay,
    parse_duration,
    parse_http_date,
    parse_protobuf_duration,
)
from quotaflow.providers._headers import RateLimitSnapshot, lower_headers
from quotaflow.providers._log import note_ignored

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from quotaflow.core._usage import Usage

__all__ = [
    "DEFAULT_MAX_DELAY",
    "HintSource",
    "RetryHint",
    "backoff",
    "body_retry_delay",
    "retry_hint",
]

#: The longest wait a hint may ask for by default (5 minutes). Longer waits are quota resets,
#: which error classification reports separately (``ErrorClass.resets_at``).
DEFAULT_MAX_DELAY: Final = 300.0

#: Beyond this many doublings every delay is the cap (and 2.0**attempt would overflow).
_MAX_EXPONENT: Final = 64
_MS_HEADERS: Final = ("retry-after-ms", "x-ms-retry-after-ms")
_MAX_SCAN_CHARS: Final = 4096
# "Please try again in 1.146s", "Please retry in 59.628721472s.", "retry after 37 seconds".
_TEXT_HINT: Final = re.compile(
    r"(?:try again|retry)\s+(?:in|after)\s+"
    r"((?:\d+(?:\.\d+)?(?:h|ms|m|s|us|\u00b5s|ns))+|\d+(?:\.\d+)?)"
    r"(?:\s*(milliseconds?|seconds?|secs?)\b)?",
    re.IGNORECASE,
)


class HintSource(StrEnum):
    """Where a retry hint came from, most authoritative first."""

    RETRY_AFTER_MS = "retry-after-ms"
    RETRY_AFTER = "retry-after"
    BODY = "body"
    RATE_HEADERS = "rate-headers"


@dataclass(frozen=True, slots=True)
class RetryHint:
    """A server-given minimum wait before the next attempt, in seconds (capped, non-negative)."""

    delay: float
    source: HintSource


def retry_hint(
    headers: Mapping[str, str] | None = None,
    body: object = None,
    *,
    snapshot: RateLimitSnapshot | None = None,
    needed: Usage | None = None,
    now: datetime | None = None,
    max_delay: float = DEFAULT_MAX_DELAY,
) -> RetryHint | None:
    """Return the most authoritative retry hint a failed response carries.

    Args:
        headers: the response headers.
        body: the response body (bytes, text or decoded JSON).
        snapshot: the rate-limit state parsed from the same response, the last resort.
        needed: what the retried call will use, so the rate headers can say when it fits;
            without it, exhausted limits are waited on until full.
        now: when the response was received; an HTTP-date ``Retry-After`` is read against the
            response ``Date`` first, then this.
        max_delay: the cap applied to every hint.

    Returns:
        The hint, or ``None`` if the response gives none.
    """
    if not max_delay >= 0:
        raise ConfigurationError(f"max_delay must be non-negative, got {max_delay!r}")
    lowered = lower_headers(headers or {})
    found = _header_hint(lowered, now)
    if found is None:
        delay = body_retry_delay(body)
        found = None if delay is None else RetryHint(delay, HintSource.BODY)
    if found is None and snapshot is not None:
        delay = snapshot.wait_for(needed)
        found = None if delay is None else RetryHint(delay, HintSource.RATE_HEADERS)
    if found is None:
        return None
    return RetryHint(min(max(found.delay, 0.0), max_delay), found.source)


def _header_hint(headers: Mapping[str, str], now: datetime | None) -> RetryHint | None:
    for name in _MS_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        seconds = parse_delay(raw, None)
        if seconds is not None:
            return RetryHint(seconds / 1000, HintSource.RETRY_AFTER_MS)
        note_ignored(name, raw, reason="non-delay")
    raw = headers.get("retry-after")
    if raw is not None:
        reference = parse_http_date(headers.get("date")) or now
        seconds = parse_delay(raw, reference)
        if seconds is not None:
            return RetryHint(seconds, HintSource.RETRY_AFTER)
        note_ignored("retry-after", raw, reason="non-delay")
    return None


def body_retry_delay(body: object) -> float | None:
    """Seconds a response body asks to wait: Gemini ``RetryInfo``, else a "try again in" text.

    Accepts bytes, text or decoded JSON; returns ``None`` when the body names no delay.
    """
    data = as_json(body)
    if isinstance(data, list) and data:  # Vertex AI wraps some errors in a list
        data = data[0]
    details = get(data, "error", "details")
    for detail in details if isinstance(details, list) else ():
        kind = as_str(get(detail, "@type"))
        if kind is not None and kind.endswith("RetryInfo"):
            delay = parse_protobuf_duration(get(detail, "retryDelay"))
            if delay is not None:
                return delay
    message = as_str(get(data, "error", "message")) or as_str(get(data, "message"))
    if message is None and isinstance(data, str):
        message = data[:_MAX_SCAN_CHARS]
    return None if message is None else _text_delay(message)


def _text_delay(text: str) -> float | None:
    match = _TEXT_HINT.search(text)
    if match is None:
        return None
    amount, unit = match.groups()
    seconds = parse_duration(amount)
    if seconds is not None and unit is not None and unit.lower().startswith("milli"):
        seconds /= 1000
    return seconds


def backoff(
    attempt: int,
    *,
    hint: float | RetryHint | None = None,
    base: float = 0.5,
    cap: float = 30.0,
    jitter: float = 0.25,
    random: Callable[[], float] = _random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Without a hint: exponential ``min(cap, base * 2**attempt)``, shortened by a random fraction
    of up to ``jitter`` (1.0 gives "full jitter"). With a server hint, the hint replaces the
    schedule and jitter only lengthens it (by up to ``jitter`` of the hint, itself at most
    ``cap``), so the retry never comes before the server said and a crowd of clients that got
    the same hint does not return in the same instant.

    Args:
        attempt: how many retries came before this one.
        hint: a server hint in seconds (or a :class:`RetryHint`), if there is one.
        base: the first delay.
        cap: the longest scheduled delay (hints are capped where they are read).
        jitter: the randomised fraction, in [0, 1].
        random: a source of floats in [0, 1); inject a seeded one for reproducible delays.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ConfigurationError(f"attempt must be a non-negative integer, got {attempt!r}")
    for name, value in (("base", base), ("cap", cap)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigurationError(f"{name} must be a finite, non-negative number, got {value!r}")
    if not 0 <= jitter <= 1:
        raise ConfigurationError(f"jitter must be in [0, 1], got {jitter!r}")
    draw = min(max(random(), 0.0), 1.0)
    if isinstance(hint, RetryHint):
        hint = hint.delay
    if hint is not None and math.isfinite(hint) and hint >= 0:
        return hint + min(hint, cap) * jitter * draw
    scheduled = cap if attempt >= _MAX_EXPONENT else min(cap, base * 2.0**attempt)
    return scheduled * (1 - jitter * draw)
