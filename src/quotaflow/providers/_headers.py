"""Rate-limit response headers, read into one typed snapshot per response.

Each provider family has its own names and formats (see docs/providers.md, "Headers"); every
header is optional, and a missing, empty, negative or unreadable value is skipped and logged
(rate-limited), never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from quotaflow.core._metrics import Metric
from quotaflow.providers._durations import (
    parse_duration,
    parse_http_date,
    parse_rfc3339,
    parse_timestamp_or_delay,
    seconds_until,
)
from quotaflow.providers._log import note_ignored
from quotaflow.providers._provider import Provider
from quotaflow.providers._structured import BareItem, Item, parse_list

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from datetime import datetime

    from quotaflow.core._usage import Usage

__all__ = ["LimitState", "RateLimitSnapshot", "lower_headers", "parse_rate_limit_headers"]

_MINUTE: Final = 60.0
_DAY: Final = 86_400.0
_MAX_NUMBER_CHARS: Final = 18


@dataclass(frozen=True, slots=True)
class LimitState:
    """What one response says about one limit.

    Attributes:
        metric: what the limit counts.
        limit: the limit's size, when sent.
        remaining: units left now, when sent (Anthropic rounds token counts to thousands).
        reset_after: seconds until the bucket is full again (for IETF fields: the window ``t``
            within which ``remaining`` may be used).
        window: the period the limit is defined over, in seconds, when known.
        name: ``""`` for a provider's main bucket; ``"project"`` (OpenAI project tokens),
            ``"priority"`` (Anthropic Priority Tier) or an IETF policy name otherwise.
    """

    metric: Metric
    limit: int | None = None
    remaining: int | None = None
    reset_after: float | None = None
    window: float | None = None
    name: str = ""

    def wait_for(self, amount: int) -> float | None:
        """Seconds until ``amount`` units fit, assuming continuous refill; ``None`` if unknown.

        The refill rate is ``limit / window`` when both are known, else it is inferred from the
        units missing and ``reset_after``. Never more than ``reset_after`` for an amount that
        fits the limit (a full bucket holds it).
        """
        if self.remaining is None or amount <= self.remaining:
            return 0.0 if self.remaining is not None else None
        if self.limit is not None and amount > self.limit:
            return None
        rate: float | None = None
        if self.limit and self.window:
            rate = self.limit / self.window
        elif self.limit and self.reset_after and self.limit > self.remaining:
            rate = (self.limit - self.remaining) / self.reset_after
        if rate is None:
            return self.reset_after
        wait = (amount - self.remaining) / rate
        return wait if self.reset_after is None else min(wait, self.reset_after)


@dataclass(frozen=True, slots=True)
class RateLimitSnapshot:
    """Every limit state one response reported, with the response's ``Date`` when sent."""

    provider: Provider
    limits: tuple[LimitState, ...] = ()
    date: datetime | None = field(default=None, compare=False)

    def __iter__(self) -> Iterator[LimitState]:
        return iter(self.limits)

    def __len__(self) -> int:
        return len(self.limits)

    def get(self, metric: Metric | str, name: str = "") -> LimitState | None:
        """The state of the ``metric`` limit called ``name``, if the response reported it."""
        return next((s for s in self.limits if s.metric == metric and s.name == name), None)

    def exhausted(self) -> tuple[LimitState, ...]:
        """The limits with nothing left."""
        return tuple(s for s in self.limits if s.remaining == 0)

    def wait_for(self, usage: Usage | None = None) -> float | None:
        """Seconds until ``usage`` fits every reported limit; ``None`` if nothing tells.

        Without ``usage`` only the exhausted limits count, each until it is full again (a
        conservative reading: the size of the next call is unknown).
        """
        waits: list[float] = []
        for state in self.limits:
            if usage is None:
                wait = state.reset_after if state.remaining == 0 else None
            else:
                wait = state.wait_for(usage.amount(state.metric))
            if wait is not None:
                waits.append(wait)
        return max(waits) if waits else None


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Copy ``headers`` with lower-case names (httpx headers already compare case-insensitively)."""
    lowered: dict[str, str] = {}
    try:
        for name, value in headers.items():
            if isinstance(name, str) and isinstance(value, str):
                lowered[name.lower()] = value
    except (TypeError, AttributeError, ValueError):
        note_ignored("headers", type(headers).__name__, reason="not a mapping")
    return lowered


def parse_rate_limit_headers(
    provider: Provider | str,
    headers: Mapping[str, str],
    *,
    now: datetime | None = None,
) -> RateLimitSnapshot:
    """Read the rate-limit state a response reports.

    Args:
        provider: whose header conventions apply.
        headers: the response headers (any mapping; names are matched case-insensitively).
        now: when the response was received (aware). Absolute resets (Anthropic's RFC 3339
            times, epoch or date ``X-RateLimit-Reset`` values) are read against the response's
            ``Date`` header first, to avoid clock skew, then against ``now``; without either
            they are skipped.

    Returns:
        A snapshot with one :class:`LimitState` per reported limit; empty if none were sent.
    """
    provider = Provider.parse(provider)
    lowered = lower_headers(headers)
    date = parse_http_date(lowered.get("date"))
    reference = date or now
    states: list[LimitState] = []
    if provider in {Provider.OPENAI, Provider.AZURE, Provider.GROQ, Provider.GENERIC}:
        states += _openai_family(provider, lowered)
    if provider is Provider.ANTHROPIC:
        states += _anthropic(lowered, reference)
    if provider in {Provider.OPENROUTER, Provider.GENERIC}:
        states += _conventional(lowered, reference)
    states += _ietf(lowered)
    return RateLimitSnapshot(provider, tuple(s for s in states if _informative(s)), date)


def _informative(state: LimitState) -> bool:
    return state.limit is not None or state.remaining is not None or state.reset_after is not None


def _count(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    text = raw.strip()
    if text.isascii() and text.isdigit() and len(text) <= _MAX_NUMBER_CHARS:
        return int(text)
    note_ignored(name, raw, reason="non-count")
    return None


def _limit(headers: Mapping[str, str], name: str) -> int | None:
    value = _count(headers, name)
    return value or None  # 0 is Azure's placeholder (with -1), never a usable limit


def _duration(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    value = parse_duration(raw)
    if value is None:
        note_ignored(name, raw, reason="non-duration")
    return value


# OpenAI, Azure OpenAI, Groq and other clones: x-ratelimit-{limit,remaining,reset}-{suffix}.
_OPENAI_SUFFIXES: Final = (
    ("requests", Metric.REQUESTS, ""),
    ("tokens", Metric.TOKENS, ""),
    ("project-tokens", Metric.TOKENS, "project"),
)


_PLACEHOLDER_LIMITS: Final = frozenset({"0", "-1"})


def _openai_family(provider: Provider, headers: Mapping[str, str]) -> list[LimitState]:
    states = []
    for suffix, metric, name in _OPENAI_SUFFIXES:
        limit_header = f"x-ratelimit-limit-{suffix}"
        if headers.get(limit_header, "").strip() in _PLACEHOLDER_LIMITS:
            # Azure's Responses API sends limit -1 or 0 with remaining 0: no information.
            note_ignored(limit_header, headers[limit_header], reason="placeholder")
            continue
        # Groq copies OpenAI's names, but its -requests headers describe the daily limit.
        window = _DAY if provider is Provider.GROQ and metric is Metric.REQUESTS else _MINUTE
        states.append(
            LimitState(
                metric,
                limit=_limit(headers, limit_header),
                remaining=_count(headers, f"x-ratelimit-remaining-{suffix}"),
                reset_after=_duration(headers, f"x-ratelimit-reset-{suffix}"),
                window=window,
                name=name,
            )
        )
    return states


_ANTHROPIC_BUCKETS: Final = (
    ("anthropic-ratelimit-requests", Metric.REQUESTS, ""),
    ("anthropic-ratelimit-tokens", Metric.TOKENS, ""),
    ("anthropic-ratelimit-input-tokens", Metric.INPUT_TOKENS, ""),
    ("anthropic-ratelimit-output-tokens", Metric.OUTPUT_TOKENS, ""),
    ("anthropic-priority-input-tokens", Metric.INPUT_TOKENS, "priority"),
    ("anthropic-priority-output-tokens", Metric.OUTPUT_TOKENS, "priority"),
)


def _anthropic(headers: Mapping[str, str], reference: datetime | None) -> list[LimitState]:
    states = []
    for prefix, metric, name in _ANTHROPIC_BUCKETS:
        reset_after = None
        raw_reset = headers.get(f"{prefix}-reset")
        if raw_reset is not None:
            moment = parse_rfc3339(raw_reset)
            if moment is None:
                note_ignored(f"{prefix}-reset", raw_reset, reason="non-RFC-3339")
            elif reference is not None:
                reset_after = seconds_until(moment, reference)
        states.append(
            LimitState(
                metric,
                limit=_limit(headers, f"{prefix}-limit"),
                remaining=_count(headers, f"{prefix}-remaining"),
                reset_after=reset_after,
                window=_MINUTE,
                name=name,
            )
        )
    return states


def _conventional(headers: Mapping[str, str], reference: datetime | None) -> list[LimitState]:
    reset_after = None
    raw_reset = headers.get("x-ratelimit-reset")
    if raw_reset is not None:
        reset_after = parse_timestamp_or_delay(raw_reset, reference)
        if reset_after is None:
            note_ignored("x-ratelimit-reset", raw_reset, reason="non-reset")
    state = LimitState(
        Metric.REQUESTS,
        limit=_limit(headers, "x-ratelimit-limit"),
        remaining=_count(headers, "x-ratelimit-remaining"),
        reset_after=reset_after,
    )
    return [state]


# IETF draft-ietf-httpapi-ratelimit-headers (-08 and later): named policies with parameters.
_IETF_UNITS: Final = {
    "requests": Metric.REQUESTS,
    "concurrent-requests": Metric.CONCURRENT,
    # Not registered, but the natural spelling for LLM gateways that count tokens.
    "tokens": Metric.TOKENS,
    "input-tokens": Metric.INPUT_TOKENS,
    "output-tokens": Metric.OUTPUT_TOKENS,
}


def _non_negative_int(value: BareItem | None) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _ietf(headers: Mapping[str, str]) -> list[LimitState]:
    age = headers.get("age", "").strip()
    if age.isascii() and age.isdigit() and int(age[:_MAX_NUMBER_CHARS]) > 0:
        return []  # the draft: ignore the fields on a response served from a cache
    policies: dict[str, tuple[Metric, int | None, float | None]] = {}
    for item in _ietf_items(headers, "ratelimit-policy"):
        unit = item.params.get("qu", "requests")
        metric = _IETF_UNITS.get(unit) if isinstance(unit, str) else None
        quota = _non_negative_int(item.params.get("q"))
        if metric is None or quota is None or not isinstance(item.value, str):
            note_ignored("ratelimit-policy item", item, reason="unusable")
            continue
        seconds = _non_negative_int(item.params.get("w"))
        policies[item.value] = (metric, quota or None, float(seconds) if seconds else None)
    states = []
    for item in _ietf_items(headers, "ratelimit"):
        remaining = _non_negative_int(item.params.get("r"))
        if remaining is None or not isinstance(item.value, str):
            note_ignored("ratelimit item", item, reason="unusable")
            continue
        metric, quota, window = policies.pop(item.value, (Metric.REQUESTS, None, None))
        reset = _non_negative_int(item.params.get("t"))
        reset_after = None if reset is None else float(reset)
        states.append(LimitState(metric, quota, remaining, reset_after, window, item.value))
    states += [
        LimitState(metric, quota, window=window, name=name)
        for name, (metric, quota, window) in policies.items()
    ]
    return states


def _ietf_items(headers: Mapping[str, str], name: str) -> list[Item]:
    raw = headers.get(name)
    if raw is None:
        return []
    items = parse_list(raw)
    if items is None:
        note_ignored(name, raw, reason="malformed")
        return []
    return items
