"""The provider's class of an item's error (rate limit, bad request, quota...), if any."""

from __future__ import annotations

import httpx

from quotaflow._errors import ConfigurationError, QuotaExhaustedError
from quotaflow.client._routing import route_request
from quotaflow.providers import ErrorClass, ErrorKind, Provider, classify_error, classify_exception

__all__ = ["classify"]


def classify(error: BaseException, provider: Provider | None) -> ErrorClass | None:
    """The provider's class of an error, or ``None`` when it is not a provider failure.

    ``provider`` gives the error format (``None``: recognised from an HTTP error's URL).
    """
    if isinstance(error, httpx.HTTPStatusError):
        return _classify_response(error, provider)
    provider = provider or Provider.GENERIC
    if isinstance(error, QuotaExhaustedError):
        return ErrorClass(ErrorKind.QUOTA_EXHAUSTED, provider, message=str(error)[:200])
    if isinstance(error, ConfigurationError):
        return ErrorClass(ErrorKind.INVALID_REQUEST, provider, message=str(error)[:200])
    return classify_exception(provider, error)


def _classify_response(
    error: httpx.HTTPStatusError, provider: Provider | None
) -> ErrorClass | None:
    response = error.response
    if not 400 <= response.status_code <= 599:  # noqa: PLR2004 (HTTP error statuses)
        return None
    if provider is None:
        url = error.request.url
        route = route_request("POST", url.host, url.path, b"", None)
        provider = route.provider if route is not None else Provider.GENERIC
    try:
        body: bytes | None = response.content
    except httpx.ResponseNotRead:
        body = None
    return classify_error(provider, response.status_code, response.headers, body)
