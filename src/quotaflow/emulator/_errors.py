"""Error responses in each provider's own body format (see the reference, sections 1.4 and 2.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from quotaflow.emulator._faults import Fault
from quotaflow.emulator._timefmt import ceil_seconds, go_duration
from quotaflow.providers import Provider

if TYPE_CHECKING:
    from quotaflow.emulator._admission import Refusal

__all__ = [
    "ORGANIZATION",
    "ErrorReply",
    "invalid_request",
    "quota_exhausted",
    "rate_limit_fault",
    "rate_limited",
    "server_fault",
    "unauthorized",
]

#: The organization OpenAI's messages name.
ORGANIZATION: Final = "org-emulator"
#: The ``retry-after`` of the ``rate_limit`` fault (another application took the capacity).
FAULT_RETRY_AFTER: Final = 1

_OPENAI_LIMIT_NAMES: Final = {
    "requests": ("requests", "requests per min (RPM)"),
    "requests_per_day": ("requests", "requests per day (RPD)"),
    "tokens": ("tokens", "tokens per min (TPM)"),
    "tokens_per_day": ("tokens", "tokens per day (TPD)"),
}
_ANTHROPIC_UNITS: Final = {
    "requests": "requests",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
}
_OPENAI_RATE_DOCS: Final = "Visit https://platform.openai.com/account/rate-limits to learn more."
_ANTHROPIC_RATE_DOCS: Final = (
    "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
    "response headers for current usage. Please reduce the prompt length or the maximum tokens "
    "requested, or try again later."
)


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A complete error response: status, JSON body and the headers particular to it."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


def _openai(
    message: str, kind: str, code: str | None = None, param: str | None = None
) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _anthropic(
    kind: str, message: str, request_id: str, details: dict[str, str] | None = None
) -> dict[str, object]:
    error: dict[str, object] = {"type": kind, "message": message}
    if details is not None:
        error["details"] = details
    return {"type": "error", "error": error, "request_id": request_id}


def invalid_request(
    family: Provider, message: str, request_id: str, param: str | None = None
) -> ErrorReply:
    """A 400 for a malformed request."""
    if family is Provider.ANTHROPIC:
        return ErrorReply(400, _anthropic("invalid_request_error", message, request_id))
    return ErrorReply(400, _openai(message, "invalid_request_error", None, param))


def unauthorized(family: Provider, request_id: str) -> ErrorReply:
    """A 401 for a missing or wrong API key."""
    if family is Provider.ANTHROPIC:
        return ErrorReply(401, _anthropic("authentication_error", "invalid x-api-key", request_id))
    message = (
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    return ErrorReply(401, _openai(message, "invalid_request_error", "invalid_api_key"))


def rate_limited(
    family: Provider, model: str, refusal: Refusal, now_ns: int, request_id: str
) -> ErrorReply:
    """The 429 for a refused admission, with ``retry-after`` when the request can ever fit.

    ``retry-after`` is the exact wait until the request fits, rounded up to whole seconds.
    """
    bucket = refusal.bucket
    wait = refusal.wait_ns
    headers = {} if wait is None else {"retry-after": str(max(1, ceil_seconds(wait)))}
    if family is Provider.ANTHROPIC:
        unit = _ANTHROPIC_UNITS[bucket.name]
        message = (
            f"This request would exceed your organization's rate limit of {bucket.limit:,} "
            f"{unit} per minute. {_ANTHROPIC_RATE_DOCS}"
        )
        return ErrorReply(429, _anthropic("rate_limit_error", message, request_id), headers)
    kind, limit_name = _OPENAI_LIMIT_NAMES[bucket.name]
    where = f"for {model} in organization {ORGANIZATION} on {limit_name}"
    if wait is None:
        message = (
            f"Request too large {where}: Limit {bucket.limit}, Requested {refusal.requested}. "
            f"The input or output tokens must be reduced in order to run successfully. "
            f"{_OPENAI_RATE_DOCS}"
        )
    else:
        message = (
            f"Rate limit reached {where}: Limit {bucket.limit}, Used {bucket.used(now_ns)}, "
            f"Requested {refusal.requested}. Please try again in {go_duration(wait)}. "
            f"{_OPENAI_RATE_DOCS}"
        )
    return ErrorReply(429, _openai(message, kind, "rate_limit_exceeded"), headers)


def rate_limit_fault(family: Provider, model: str, rpm: int, request_id: str) -> ErrorReply:
    """The ``rate_limit`` fault: a 429 on requests although the buckets admit."""
    headers = {"retry-after": str(FAULT_RETRY_AFTER)}
    if family is Provider.ANTHROPIC:
        message = (
            f"This request would exceed your organization's rate limit of {rpm:,} requests "
            f"per minute. {_ANTHROPIC_RATE_DOCS}"
        )
        return ErrorReply(429, _anthropic("rate_limit_error", message, request_id), headers)
    message = (
        f"Rate limit reached for {model} in organization {ORGANIZATION} on requests per min "
        f"(RPM): Limit {rpm}, Used {rpm}, Requested 1. Please try again in "
        f"{FAULT_RETRY_AFTER}s. {_OPENAI_RATE_DOCS}"
    )
    return ErrorReply(429, _openai(message, "requests", "rate_limit_exceeded"), headers)


def quota_exhausted(family: Provider, request_id: str) -> ErrorReply:
    """The family's quota (billing) 429, without ``retry-after``.

    OpenAI: ``insufficient_quota``. Anthropic: the monthly spend limit
    (``error.details.error_code = "enforced_spend_limit_reached"``).
    """
    if family is Provider.ANTHROPIC:
        message = (
            "You have reached your organization's monthly spend limit. "
            "API usage will resume at 00:00 UTC on the first day of next month."
        )
        details = {"error_code": "enforced_spend_limit_reached"}
        return ErrorReply(429, _anthropic("rate_limit_error", message, request_id, details))
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors."
    )
    return ErrorReply(429, _openai(message, "insufficient_quota", "insufficient_quota"))


_SERVER_FAULTS: Final = {
    Provider.OPENAI: {
        Fault.SERVER_ERROR: (
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        ),
        Fault.UNAVAILABLE: (
            "server_error",
            "The engine is currently overloaded, please try again later",
        ),
        Fault.OVERLOADED: ("overloaded_error", "Overloaded"),
    },
    Provider.ANTHROPIC: {
        Fault.SERVER_ERROR: ("api_error", "Internal server error"),
        Fault.UNAVAILABLE: ("overloaded_error", "Service unavailable"),
        Fault.OVERLOADED: ("overloaded_error", "Overloaded"),
    },
}


def server_fault(family: Provider, fault: Fault, request_id: str) -> ErrorReply:
    """A 500, 503 or 529 (the fault's name is the status) in the family's body format."""
    kind, message = _SERVER_FAULTS[family][fault]
    status = int(fault.value)
    if family is Provider.ANTHROPIC:
        return ErrorReply(status, _anthropic(kind, message, request_id))
    return ErrorReply(status, _openai(message, kind))
