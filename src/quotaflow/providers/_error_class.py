"""The result of classifying a failure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from datetime import datetime

    from quotaflow.core._limits import QuotaPeriod
    from quotaflow.core._metrics import Metric
    from quotaflow.providers._provider import Provider
    from quotaflow.providers._retry import HintSource

__all__ = ["ErrorClass", "ErrorKind", "NamedLimit"]


class ErrorKind(StrEnum):
    """What a failure means for the caller."""

    RATE_LIMITED = "rate_limited"
    """A rate limit: retry after the hint."""
    QUOTA_EXHAUSTED = "quota_exhausted"
    """Credits, a spend cap or a daily quota: stop, and pause the scope until it resets."""
    REQUEST_TOO_LARGE = "request_too_large"
    """The request can never fit: shrink it, never retry it."""
    OVERLOADED = "overloaded"
    """The provider is short of capacity (503, 529): back off."""
    SERVER_ERROR = "server_error"
    """An internal error: retry with backoff."""
    NETWORK = "network"
    """No response (connection failed or dropped): retry with backoff."""
    TIMEOUT = "timeout"
    """The request timed out: retry with backoff."""
    INVALID_REQUEST = "invalid_request"
    """The request is wrong (or not allowed): never retry it unchanged."""

    @property
    def retryable(self) -> bool:
        """Whether retrying the same request can succeed."""
        return self in _RETRYABLE


_RETRYABLE: Final = frozenset(
    {
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.SERVER_ERROR,
        ErrorKind.NETWORK,
        ErrorKind.TIMEOUT,
    }
)


@dataclass(frozen=True, slots=True)
class NamedLimit:
    """The limit an error names, as far as the provider said.

    Attributes:
        metric: what the limit counts.
        limit: its size, when stated.
        window: the rate's period in seconds (60 for "per minute"), when stated.
        period: the calendar period of a quota (daily quota, monthly spend cap).
        requested: what the failed request asked for, when stated.
        name: the provider's own name for it (a Gemini quota id, an error code).
    """

    metric: Metric
    limit: int | None = None
    window: float | None = None
    period: QuotaPeriod | None = None
    requested: int | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class ErrorClass:
    """A classified failure.

    Attributes:
        kind: what it means.
        provider: who sent it.
        status: the HTTP status (``None`` for network failures and timeouts).
        retryable: whether to retry: ``kind.retryable``, unless the server's
            ``x-should-retry`` header says otherwise (it can veto a retry, and allow one for
            an invalid request, but never for an exhausted quota or a too-large request).
        retry_after: the server's hint in seconds (capped), when it gave one.
        hint_source: where ``retry_after`` came from.
        limit: the limit the error names, when known.
        resets_at: when an exhausted quota resets (UTC), when known.
        reduce_rate: the provider asked for less traffic, not just a pause (OpenAI's 503
            "Slow Down": return to the earlier rate and ramp up slowly).
        error_type: the provider's error type (``insufficient_quota``, ``rate_limit_error``).
        error_code: the provider's error code (``rate_limit_exceeded``,
            ``enforced_spend_limit_reached``, a Gemini status).
        message: the provider's message, truncated.
    """

    kind: ErrorKind
    provider: Provider
    status: int | None = None
    retryable: bool = False
    retry_after: float | None = None
    hint_source: HintSource | None = None
    limit: NamedLimit | None = None
    resets_at: datetime | None = None
    reduce_rate: bool = False
    error_type: str | None = None
    error_code: str | None = None
    message: str = ""
