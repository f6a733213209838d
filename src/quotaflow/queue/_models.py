"""What the queue manager is configured with, takes and answers: models, requests, responses."""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Any, Final, Generic, TypeVar

from quotaflow._errors import ConfigurationError
from quotaflow.core import Limit, Rate
from quotaflow.core._limits import concurrency

__all__ = [
    "ModelConfig",
    "QueueRequest",
    "QueueResponse",
    "RateLimiterConfig",
    "RateLimiterType",
    "RequestStatus",
]

P = TypeVar("P")
T = TypeVar("T")

_IDS: Final = itertools.count(1)
_ID_PREFIX: Final = secrets.token_hex(4)


class RateLimiterType(StrEnum):
    """The kinds of limit a model queue enforces."""

    RPM = "rpm"  #: requests per minute
    RPD = "rpd"  #: requests per day (rolling)
    TPM = "tpm"  #: tokens (input + output) per minute
    TPD = "tpd"  #: tokens per day (rolling)
    ITPM = "itpm"  #: input tokens per minute
    OTPM = "otpm"  #: output tokens per minute
    CONCURRENT = "concurrent"  #: requests in flight at once


_DEFAULT_PERIOD: Final[dict[RateLimiterType, float]] = {
    RateLimiterType.RPM: 60.0,
    RateLimiterType.RPD: 86_400.0,
    RateLimiterType.TPM: 60.0,
    RateLimiterType.TPD: 86_400.0,
    RateLimiterType.ITPM: 60.0,
    RateLimiterType.OTPM: 60.0,
}

_METRIC: Final[dict[RateLimiterType, str]] = {
    RateLimiterType.RPM: "requests",
    RateLimiterType.RPD: "requests",
    RateLimiterType.TPM: "tokens",
    RateLimiterType.TPD: "tokens",
    RateLimiterType.ITPM: "input_tokens",
    RateLimiterType.OTPM: "output_tokens",
}


@dataclass(frozen=True, slots=True)
class RateLimiterConfig:
    """One limit of a model.

    Attributes:
        type: what is limited (:class:`RateLimiterType`).
        limit: the amount allowed per period (or in flight, for ``CONCURRENT``).
        time_period: the period in seconds; by default a minute or a day as the type says.
            Ignored for ``CONCURRENT``.
        burst: the bucket's capacity as a multiple of ``limit`` (rolling rates only).
    """

    type: RateLimiterType | str
    limit: int
    time_period: float | None = None
    burst: float = 1.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "type", RateLimiterType(self.type))
        except ValueError:
            kinds = ", ".join(t.value for t in RateLimiterType)
            raise ConfigurationError(
                f"RateLimiterConfig.type must be one of {kinds}, got {self.type!r}"
            ) from None
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit <= 0:
            raise ConfigurationError(
                f"RateLimiterConfig.limit must be a positive int, got {self.limit!r}"
            )
        period = self.time_period
        if period is not None and (
            isinstance(period, bool)
            or not isinstance(period, int | float)
            or not math.isfinite(period)
            or period <= 0
        ):
            raise ConfigurationError(
                f"RateLimiterConfig.time_period must be positive seconds, got {period!r}"
            )

    def to_limit(self, headroom: float = 1.0) -> Limit:
        """The engine's limit for this configuration, using ``headroom`` of a rate."""
        kind = RateLimiterType(self.type)
        if kind is RateLimiterType.CONCURRENT:
            return concurrency(self.limit)
        period = self.time_period or _DEFAULT_PERIOD[kind]
        return Rate(_METRIC[kind], self.limit, period, burst=self.burst, headroom=headroom)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """A model's queue: its limits and how it orders waiting requests.

    Give the limits as ``rate_limiters``, or with the shorthand keywords (``rpm=500,
    tpm=30_000``), or both.

    Attributes:
        model_id: the model (and queue) name.
        rate_limiters: the limits, all enforced together in one admission.
        rpm, rpd, tpm, tpd, itpm, otpm, concurrent: shorthand for one limit each.
        headroom: the fraction of each rolling limit to use. A request admitted into a full
            bucket reaches the provider a little later, and the provider's bucket, being full,
            loses the refill of that delay; when the limits are the provider's own, leave
            about 1 % (0.99) to absorb it.
        scope: the limiter scope holding the model's state (default ``"queue:<model_id>"``);
            queues of several processes sharing a store and a scope share the limits.
        aging: seconds of waiting that raise a request's priority by one, so that no request
            starves (``None``: no aging).
        min_share: the least share of the admitted work each priority class gets while it
            has requests waiting, e.g. ``{0: 0.2}``: priority 0 gets at least 20 %.
        share_window: seconds over which shares are measured (an exponential half-life).
        max_queue_size: requests that may wait at once; more are refused (``None``: no bound).
        usage_report_timeout: seconds a request whose usage is still unknown when its
            processor returns stays reserved (its concurrency slot too), waiting for
            :meth:`QueueManager.update_token_usage`; then it is settled at its estimate.
            0 (the default) settles at the estimate at once.
    """

    model_id: str
    rate_limiters: list[RateLimiterConfig] = field(default_factory=list)
    _: KW_ONLY
    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    tpd: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    concurrent: int | None = None
    headroom: float = 1.0
    scope: str | None = None
    aging: float | None = 30.0
    min_share: Mapping[int, float] = field(default_factory=dict)
    share_window: float = 60.0
    max_queue_size: int | None = None
    usage_report_timeout: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.model_id, str) or not self.model_id:
            raise ConfigurationError(
                f"ModelConfig.model_id must be a non-empty string, got {self.model_id!r}"
            )
        if not isinstance(self.rate_limiters, list | tuple) or not all(
            isinstance(r, RateLimiterConfig) for r in self.rate_limiters
        ):
            raise ConfigurationError(
                f"ModelConfig.rate_limiters must be a list of RateLimiterConfig, "
                f"got {self.rate_limiters!r}"
            )
        limiters = list(self.rate_limiters)
        for kind in RateLimiterType:
            name = "concurrent" if kind is RateLimiterType.CONCURRENT else kind.value
            value = getattr(self, name)
            if value is not None:
                limiters.append(RateLimiterConfig(kind, value))
        if not limiters:
            raise ConfigurationError(
                f"ModelConfig {self.model_id!r} has no limits: give rate_limiters or rpm=, tpm=..."
            )
        object.__setattr__(self, "rate_limiters", limiters)
        if self.scope is not None and (not isinstance(self.scope, str) or not self.scope):
            raise ConfigurationError(
                f"ModelConfig.scope must be a non-empty string, got {self.scope!r}"
            )
        if (
            isinstance(self.headroom, bool)
            or not isinstance(self.headroom, int | float)
            or not 0 < self.headroom <= 1
        ):
            raise ConfigurationError(
                f"ModelConfig.headroom must be a fraction in (0, 1], got {self.headroom!r}"
            )
        if self.aging is not None:
            _positive("aging", self.aging)
        _positive("share_window", self.share_window)
        _positive("usage_report_timeout", self.usage_report_timeout, zero=True)
        _check_count("max_queue_size", self.max_queue_size)
        shares = _check_shares(self.min_share)
        object.__setattr__(self, "min_share", shares)
        self.limits()  # the engine checks every limit now, not at register_queue

    @property
    def queue_scope(self) -> str:
        """The limiter scope of this model."""
        return self.scope or f"queue:{self.model_id}"

    def limits(self) -> tuple[Limit, ...]:
        """The engine's limits of this model."""
        return tuple(r.to_limit(self.headroom) for r in self.rate_limiters)

    def counts_tokens(self) -> bool:
        """Whether any limit of this model counts tokens."""
        return any(r.type in _TOKEN_TYPES for r in self.rate_limiters)


_TOKEN_TYPES: Final = frozenset(
    {RateLimiterType.TPM, RateLimiterType.TPD, RateLimiterType.ITPM, RateLimiterType.OTPM}
)


class RequestStatus(StrEnum):
    """Where a request is in its queue's life."""

    PENDING = "pending"  #: waiting in the queue
    PROCESSING = "processing"  #: admitted, its processor is running
    COMPLETED = "completed"  #: the processor returned
    FAILED = "failed"  #: the processor raised, or the limits can never admit it
    EXPIRED = "expired"  #: its deadline passed before it was admitted
    CANCELLED = "cancelled"  #: the queue shut down (or the caller cancelled) before it ran


def _new_id() -> str:
    return f"req_{_ID_PREFIX}{next(_IDS):x}"


@dataclass(slots=True)
class QueueRequest(Generic[P]):
    """A request for a model's queue.

    Attributes:
        model_id: the queue to run in.
        params: anything the processor needs (the prompt, the body of an API call).
        estimated_input_tokens: input tokens to reserve before it runs.
        estimated_output_tokens: output tokens to reserve (usually ``max_tokens``).
        priority: larger runs first; waiting raises it (see ``ModelConfig.aging``).
        deadline: the latest admission time, seconds since the epoch on the manager's clock
            (``time.time()`` by default); a request not admitted by then expires.
        id: a unique id (generated when not given).
        actual_input_tokens, actual_output_tokens: the real usage, once known; a processor
            may set them, or report them with :meth:`QueueManager.update_token_usage`.
    """

    model_id: str
    params: P = None  # type: ignore[assignment]
    estimated_input_tokens: int = 0
    estimated_output_tokens: int = 0
    priority: int = 0
    deadline: float | None = None
    id: str = field(default_factory=_new_id)
    actual_input_tokens: int | None = None
    actual_output_tokens: int | None = None

    def check(self) -> None:
        """Raise :class:`ConfigurationError` naming the first bad field."""
        if not isinstance(self.model_id, str) or not self.model_id:
            raise ConfigurationError(
                f"QueueRequest.model_id must be a non-empty string, got {self.model_id!r}"
            )
        for name in ("estimated_input_tokens", "estimated_output_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(
                    f"QueueRequest.{name} must be a non-negative int, got {value!r}"
                )
        for name in ("actual_input_tokens", "actual_output_tokens"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ConfigurationError(
                    f"QueueRequest.{name} must be a non-negative int or None, got {value!r}"
                )
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ConfigurationError(f"QueueRequest.priority must be an int, got {self.priority!r}")
        deadline = self.deadline
        if deadline is not None and (
            isinstance(deadline, bool)
            or not isinstance(deadline, int | float)
            or not math.isfinite(deadline)
        ):
            raise ConfigurationError(
                f"QueueRequest.deadline must be seconds since the epoch or None, got {deadline!r}"
            )
        if not isinstance(self.id, str) or not self.id:
            raise ConfigurationError(f"QueueRequest.id must be a non-empty string, got {self.id!r}")


@dataclass(slots=True)
class QueueResponse(Generic[T]):
    """How a request ended.

    Attributes:
        request_id: the request's id.
        model_id: its queue.
        status: ``COMPLETED``, ``FAILED``, ``EXPIRED`` or ``CANCELLED``.
        result: what the processor returned.
        error: the exception, when it failed.
        input_tokens_used, output_tokens_used: the actual usage when known at completion
            (else ``None``: it may still be reported with ``update_token_usage``).
        wait_time: seconds from submission to admission.
        processing_time: seconds the processor ran.
        total_time: seconds from submission to the end.
        priority: the request's priority.
    """

    request_id: str
    model_id: str
    status: RequestStatus
    result: T | None = None
    error: BaseException | None = None
    input_tokens_used: int | None = None
    output_tokens_used: int | None = None
    wait_time: float = 0.0
    processing_time: float = 0.0
    total_time: float = 0.0
    priority: int = 0

    @property
    def ok(self) -> bool:
        """Whether the processor completed."""
        return self.status is RequestStatus.COMPLETED

    @property
    def error_message(self) -> str | None:
        """The error as text, when there is one."""
        return None if self.error is None else f"{type(self.error).__name__}: {self.error}"


def _positive(name: str, value: Any, *, zero: bool = False) -> None:  # noqa: ANN401
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        kind = "non-negative" if zero else "positive"
        raise ConfigurationError(f"ModelConfig.{name} must be {kind} seconds, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigurationError(
            f"ModelConfig.{name} must be a positive int or None, got {value!r}"
        )


def _check_shares(min_share: Mapping[int, float]) -> dict[int, float]:
    shares = dict(min_share)
    for priority, share in shares.items():
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ConfigurationError(
                f"ModelConfig.min_share keys are priorities (ints), got {priority!r}"
            )
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
            raise ConfigurationError(
                f"ModelConfig.min_share[{priority}] must be a fraction in (0, 1), got {share!r}"
            )
    if sum(shares.values()) >= 1:
        raise ConfigurationError(
            f"ModelConfig.min_share must add up to less than 1, got {shares!r}"
        )
    return shares
