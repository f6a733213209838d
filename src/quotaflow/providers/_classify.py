"""Error classification: what a failed call means, and what to do about it.

Decided by status, error type and code per provider (message text only where a provider
gives nothing better, as documented per rule in docs/providers.md).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from quotaflow._errors import ConfigurationError
from quotaflow.core._limits import QuotaPeriod
from quotaflow.core._metrics import Metric
from quotaflow.providers._bodies import as_json, as_mapping, as_str, get
from quotaflow.providers._clock import PACIFIC, next_reset
from quotaflow.providers._error_class import ErrorClass, ErrorKind, NamedLimit
from quotaflow.providers._headers import lower_headers, parse_rate_limit_headers
from quotaflow.providers._limit_text import anthropic_limit, azure_limit, openai_limit
from quotaflow.providers._provider import Provider
from quotaflow.providers._retry import DEFAULT_MAX_DELAY, retry_hint

if TYPE_CHECKING:
    from datetime import datetime

    from quotaflow.core._usage import Usage

__all__ = [
    "ErrorClass",
    "ErrorKind",
    "NamedLimit",
    "classify_error",
    "classify_exception",
    "classify_stream_error",
]

_MESSAGE_CHARS: Final = 500
_LOWEST_ERROR: Final = 400
_HIGHEST_ERROR: Final = 599
#: Anthropic's "overloaded" status, which the HTTP registry does not name.
OVERLOADED_STATUS: Final = 529
_MAX_QUOTA_DIGITS: Final = 15


@dataclass(frozen=True, slots=True)
class _Fields:
    type: str | None = None
    code: str | None = None
    message: str = ""
    detail_code: str | None = None  # Anthropic error.details.error_code
    google_status: str | None = None
    limit_source: str | None = None  # OpenRouter error.metadata.limit_source
    reason: str | None = None  # OpenRouter error.metadata.reason
    violations: tuple[Mapping[str, object], ...] = ()


def _fields(data: object) -> _Fields:
    if isinstance(data, list) and data:
        data = data[0]
    error = get(data, "error")
    if isinstance(error, str):
        return _Fields(message=error[:_MESSAGE_CHARS])
    if error is None and isinstance(data, Mapping) and {"type", "code", "message"} & data.keys():
        error = data  # an SDK exception's ``body`` is the unwrapped error object
    if error is None and isinstance(data, str):
        return _Fields(message=data[:_MESSAGE_CHARS])
    details = get(error, "details")
    violations: list[Mapping[str, object]] = []
    for detail in details if isinstance(details, list) else ():
        kind = as_str(get(detail, "@type")) or ""
        if kind.endswith("QuotaFailure"):
            found = get(detail, "violations")
            violations += (
                [v for v in found if isinstance(v, Mapping)] if isinstance(found, list) else []
            )
    return _Fields(
        type=as_str(get(error, "type")),
        code=as_str(get(error, "code")),
        message=(as_str(get(error, "message")) or "")[:_MESSAGE_CHARS],
        detail_code=as_str(get(error, "details", "error_code")),
        google_status=as_str(get(error, "status")),
        limit_source=as_str(get(error, "metadata", "limit_source")),
        reason=as_str(get(error, "metadata", "reason")),
        violations=tuple(violations),
    )


@dataclass(frozen=True, slots=True)
class _Verdict:
    kind: ErrorKind
    limit: NamedLimit | None = None
    resets_at: datetime | None = None
    reduce_rate: bool = False


def classify_error(
    provider: Provider | str,
    status: int,
    headers: Mapping[str, str] | None = None,
    body: object = None,
    *,
    now: datetime | None = None,
    needed: Usage | None = None,
    max_delay: float = DEFAULT_MAX_DELAY,
) -> ErrorClass:
    """Classify an HTTP error response.

    Args:
        provider: who answered.
        status: the HTTP status, 400 to 599.
        headers: the response headers.
        body: the response body (bytes, text or decoded JSON; an SDK's unwrapped error too).
        now: when the response arrived (aware); used, after the response ``Date``, to date
            quota resets and HTTP-date hints.
        needed: what the retried call will use, to read a wait from the rate headers.
        max_delay: the cap on the retry hint.

    Raises:
        ConfigurationError: ``status`` is not an error status (the caller's mistake).
    """
    provider = Provider.parse(provider)
    if isinstance(status, bool) or not isinstance(status, int) or not _is_error_status(status):
        raise ConfigurationError(f"status must be an HTTP error status (400-599), got {status!r}")
    lowered = lower_headers(headers or {})
    data = as_json(body)
    snapshot = parse_rate_limit_headers(provider, lowered, now=now)
    hint = retry_hint(lowered, data, snapshot=snapshot, needed=needed, now=now, max_delay=max_delay)
    fields = _fields(data)
    verdict = _decide(provider, status, fields, snapshot.date or now)
    return ErrorClass(
        kind=verdict.kind,
        provider=provider,
        status=status,
        retryable=_retryable(verdict.kind, lowered.get("x-should-retry")),
        retry_after=None if hint is None else hint.delay,
        hint_source=None if hint is None else hint.source,
        limit=verdict.limit,
        resets_at=verdict.resets_at,
        reduce_rate=verdict.reduce_rate,
        error_type=fields.type,
        error_code=fields.detail_code or fields.google_status or fields.code,
        message=fields.message,
    )


def _retryable(kind: ErrorKind, should_retry: str | None) -> bool:
    verdict = (should_retry or "").strip().lower()
    if verdict == "false":
        return False
    if verdict == "true":
        return kind not in {ErrorKind.QUOTA_EXHAUSTED, ErrorKind.REQUEST_TOO_LARGE}
    return kind.retryable


def _is_error_status(status: int) -> bool:
    return _LOWEST_ERROR <= status <= _HIGHEST_ERROR


# Statuses whose meaning does not depend on the provider or the body. 409 is retried, as the
# SDKs do (lock conflicts).
_BY_STATUS: Final = {
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: ErrorKind.REQUEST_TOO_LARGE,
    HTTPStatus.REQUEST_TIMEOUT: ErrorKind.TIMEOUT,
    HTTPStatus.GATEWAY_TIMEOUT: ErrorKind.TIMEOUT,
    HTTPStatus.CONFLICT: ErrorKind.SERVER_ERROR,
}


def _decide(provider: Provider, status: int, fields: _Fields, now: datetime | None) -> _Verdict:
    if status == HTTPStatus.PAYMENT_REQUIRED:
        return _payment(provider, fields)
    if status == HTTPStatus.TOO_MANY_REQUESTS or fields.google_status == "RESOURCE_EXHAUSTED":
        return _too_many(provider, fields, now)
    if status in _BY_STATUS:
        return _Verdict(_BY_STATUS[HTTPStatus(status)])
    if status in {HTTPStatus.SERVICE_UNAVAILABLE, OVERLOADED_STATUS}:
        slow_down = "slow down" in fields.message.lower()
        return _Verdict(ErrorKind.OVERLOADED, reduce_rate=slow_down)
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return _Verdict(ErrorKind.SERVER_ERROR)
    return _client_error(provider, status, fields, now)


_TOO_LONG_CODES: Final = frozenset({"context_length_exceeded", "string_above_max_length"})


def _client_error(
    provider: Provider, status: int, fields: _Fields, now: datetime | None
) -> _Verdict:
    message = fields.message.lower()
    if fields.code in _TOO_LONG_CODES or (
        provider is Provider.ANTHROPIC and "prompt is too long" in message
    ):
        return _Verdict(ErrorKind.REQUEST_TOO_LARGE)
    if provider is Provider.ANTHROPIC and "api usage limits" in message:
        # A user-set (workspace) spend limit arrives as a 400 invalid_request_error whose only
        # distinguishing mark is the text; it lifts when the month turns.
        spend = NamedLimit(Metric.COST, period=QuotaPeriod.MONTH, name="api_usage_limits")
        return _Verdict(ErrorKind.QUOTA_EXHAUSTED, spend, _month_end(now))
    if provider is Provider.AZURE and status == HTTPStatus.FORBIDDEN and "quota" in message:
        return _Verdict(ErrorKind.QUOTA_EXHAUSTED)  # the API Management period-quota policy
    return _Verdict(ErrorKind.INVALID_REQUEST)


def _payment(provider: Provider, fields: _Fields) -> _Verdict:
    if provider is Provider.OPENROUTER:
        if fields.limit_source == "openrouter_in_flight_budget":
            return _Verdict(ErrorKind.RATE_LIMITED, NamedLimit(Metric.COST, name="in_flight"))
        if fields.reason == "weight_exceeds_budget":
            return _Verdict(ErrorKind.REQUEST_TOO_LARGE, NamedLimit(Metric.COST))
    source = fields.limit_source or fields.type or "credits"
    return _Verdict(ErrorKind.QUOTA_EXHAUSTED, NamedLimit(Metric.COST, name=source))


_OPENAI_BILLING_CODES: Final = frozenset(
    {
        "insufficient_quota",
        "credit_balance_exhausted",
        "organization_spend_limit_exceeded",
        "project_spend_limit_exceeded",
        "organization_usage_limit_exceeded",
    }
)
_MONTHLY_CODES: Final = _OPENAI_BILLING_CODES - {"insufficient_quota", "credit_balance_exhausted"}


def _too_many(provider: Provider, fields: _Fields, now: datetime | None) -> _Verdict:
    if provider is Provider.ANTHROPIC:
        if fields.detail_code == "enforced_spend_limit_reached":
            cap = NamedLimit(Metric.COST, period=QuotaPeriod.MONTH, name=fields.detail_code)
            return _Verdict(ErrorKind.QUOTA_EXHAUSTED, cap, _month_end(now))
        return _Verdict(ErrorKind.RATE_LIMITED, anthropic_limit(fields.message))
    if provider.google:
        return _google(fields, now)
    if fields.code in _OPENAI_BILLING_CODES or fields.type == "insufficient_quota":
        code = fields.code or fields.type or ""
        monthly = code in _MONTHLY_CODES
        cap = NamedLimit(Metric.COST, period=QuotaPeriod.MONTH if monthly else None, name=code)
        return _Verdict(ErrorKind.QUOTA_EXHAUSTED, cap, _month_end(now) if monthly else None)
    limit = openai_limit(fields.message) or azure_limit(fields.message)
    too_large = "request too large" in fields.message.lower() or (
        limit is not None and limit.limit is not None and (limit.requested or 0) > limit.limit
    )
    return _Verdict(ErrorKind.REQUEST_TOO_LARGE if too_large else ErrorKind.RATE_LIMITED, limit)


def _google(fields: _Fields, now: datetime | None) -> _Verdict:
    for violation in fields.violations:
        quota_id = as_str(violation.get("quotaId")) or ""
        metric_name = as_str(violation.get("quotaMetric")) or ""
        value = as_str(violation.get("quotaValue"))
        daily = "PerDay" in quota_id
        limit = NamedLimit(
            _google_metric(quota_id + " " + metric_name),
            limit=int(value)
            if value and value.isdigit() and len(value) <= _MAX_QUOTA_DIGITS
            else None,
            window=86_400.0 if daily else 60.0 if "PerMinute" in quota_id else None,
            period=QuotaPeriod.DAY if daily else None,
            name=quota_id or metric_name,
        )
        if limit.limit == 0:  # the model has no quota at all for this project or tier
            return _Verdict(ErrorKind.QUOTA_EXHAUSTED, limit)
        if daily:
            resets = None if now is None else next_reset(QuotaPeriod.DAY, now, PACIFIC)
            return _Verdict(ErrorKind.QUOTA_EXHAUSTED, limit, resets)
        return _Verdict(ErrorKind.RATE_LIMITED, limit)
    if "limit: 0," in fields.message or fields.message.endswith("limit: 0"):
        return _Verdict(ErrorKind.QUOTA_EXHAUSTED)
    return _Verdict(ErrorKind.RATE_LIMITED)


def _google_metric(text: str) -> Metric:
    lowered = text.lower()
    if "input" in lowered and "token" in lowered:
        return Metric.INPUT_TOKENS
    return Metric.TOKENS if "token" in lowered else Metric.REQUESTS


def _month_end(now: datetime | None) -> datetime | None:
    return None if now is None else next_reset(QuotaPeriod.MONTH, now)


_TIMEOUT_NAMES: Final = frozenset(
    {"TimeoutException", "APITimeoutError", "ReadTimeout", "ConnectTimeout", "WriteTimeout",
     "PoolTimeout", "ServerTimeoutError", "Timeout"}
)  # fmt: skip
_NETWORK_NAMES: Final = frozenset(
    {"TransportError", "NetworkError", "ConnectError", "ReadError", "WriteError",
     "RemoteProtocolError", "ProtocolError", "APIConnectionError", "ClientConnectionError",
     "ServerDisconnectedError", "ChunkedEncodingError", "IncompleteRead"}
)  # fmt: skip


def classify_exception(
    provider: Provider | str, exc: BaseException, *, now: datetime | None = None
) -> ErrorClass | None:
    """Classify an exception raised by an HTTP client or a provider SDK.

    SDK status errors (anything with an ``int`` ``status_code``, a ``response`` with headers
    and a ``body``) are classified like the response they carry. Timeouts and network failures
    are recognised by type: the standard library's, and by class name those of httpx, aiohttp,
    requests and the OpenAI and Anthropic SDKs, without importing them.

    Returns:
        The class, or ``None`` if ``exc`` is not a provider or transport failure (a bug to
        re-raise).
    """
    provider = Provider.parse(provider)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and _is_error_status(status):
        headers = getattr(getattr(exc, "response", None), "headers", None)
        headers = headers if isinstance(headers, Mapping) else None
        return classify_error(provider, status, headers, getattr(exc, "body", None), now=now)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, TimeoutError) or names & _TIMEOUT_NAMES:
        return ErrorClass(ErrorKind.TIMEOUT, provider, retryable=True, message=str(exc)[:200])
    if isinstance(exc, ConnectionError | socket.gaierror | ssl.SSLError) or names & _NETWORK_NAMES:
        return ErrorClass(ErrorKind.NETWORK, provider, retryable=True, message=str(exc)[:200])
    return None


_ANTHROPIC_TYPE_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_CODE_STATUS: Final = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
    "server_error": 500,
}


def classify_stream_error(
    provider: Provider | str, event: object, *, now: datetime | None = None
) -> ErrorClass:
    """Classify an error reported inside a stream, after the HTTP status was already 200.

    Accepts the decoded ``data`` of an Anthropic ``error`` event, an OpenAI Responses
    ``response.failed`` event, or a chunk carrying an ``error`` object (OpenAI Chat
    Completions, OpenRouter, Gemini). An error without a recognisable status counts as a
    server error.
    """
    provider = Provider.parse(provider)
    data = as_json(event)
    if get(data, "type") == "response.failed":
        data = {"error": get(data, "response", "error")}
    error = as_mapping(get(data, "error")) or {}
    code = error.get("code")
    status = 500
    if isinstance(code, int) and not isinstance(code, bool) and _is_error_status(code):
        status = code
    else:
        kind = as_str(error.get("type")) or ""
        status = _ANTHROPIC_TYPE_STATUS.get(kind) or _CODE_STATUS.get(as_str(code) or "", status)
    return classify_error(provider, status, None, data, now=now)
