"""Sending one line through the governed client, and turning what happened into its record."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import httpx

from quotaflow._errors import QuotaflowError
from quotaflow.batch._input import RequestLine
from quotaflow.batch._output import error_record, response_part, success_record
from quotaflow.client import ChatLimiter
from quotaflow.providers import (
    Provider,
    ReportedUsage,
    classify_error,
    classify_exception,
    extract_usage,
)
from quotaflow.providers._bodies import MAX_BODY_BYTES, as_json

__all__ = ["TRANSPORT_ERROR", "Outcome", "send_line"]

#: The code of a failure without a response that is neither a network error nor a timeout.
TRANSPORT_ERROR = "transport_error"
_MESSAGE_CHARS = 500
_LOWEST_ERROR = 400


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a line.

    Attributes:
        record: its record for OUT.
        code: the error code (``None`` on success).
        usage: the usage the provider reported, on success.
        status: the HTTP status of the provider's answer (``None``: no answer was seen).
    """

    record: dict[str, Any]
    code: str | None
    usage: ReportedUsage | None
    status: int | None

    @property
    def error_answer(self) -> bool:
        """Whether the provider answered with an error status (4xx, 5xx): not billed.

        Any other outcome may have been billed: a 2xx answer (with or without a usage), a
        lost answer, a failure before or while sending.
        """
        return self.status is not None and self.status >= _LOWEST_ERROR


def _decoded(content: bytes) -> object:
    """The answer's body as ``as_json`` reads it: its JSON, its text, or ``None`` (not UTF-8).

    ``as_json`` does not parse a body above ``MAX_BODY_BYTES`` (an error body never is that
    big), but a record keeps a whole answer, whatever its size.
    """
    data = as_json(content)
    if data is None and len(content) > MAX_BODY_BYTES:
        with contextlib.suppress(ValueError, RecursionError):
            data = json.loads(content)
    return data


def _shown(data: object, content: bytes) -> object:
    """What a record keeps of a body: its JSON, else the start of its text."""
    if data is None:  # not UTF-8, or too big to be JSON
        data = content.decode("utf-8", errors="replace")
    return data[:_MESSAGE_CHARS] if isinstance(data, str) else data


async def send_line(
    chat: ChatLimiter, provider: Provider, item: RequestLine, headers: dict[str, str] | None
) -> Outcome:
    """Send ``item`` (retried by the client as its policy says); its outcome, never raising.

    Only a cancellation (and a bug) propagates.
    """
    try:
        response = await chat.request("POST", item.path, json=item.body, headers=headers)
    except QuotaflowError as error:  # an exhausted quota, a request that can never fit...
        message = f"{type(error).__name__}: {error}"[:_MESSAGE_CHARS]
        return _failure(item, error.reason, message)
    except httpx.HTTPError as error:
        found = classify_exception(provider, error)
        code = TRANSPORT_ERROR if found is None else found.kind.value
        message = f"{type(error).__name__}: {error}"[:_MESSAGE_CHARS]
        return _failure(item, code, message)
    data = _decoded(response.content)
    body = _shown(data, response.content)
    if response.is_success and isinstance(body, dict):
        part = response_part(response, body)
        record = success_record(item.line, item.custom_id, part, item.line_hash)
        usage = extract_usage(provider, body)
        return Outcome(record, None, usage, response.status_code)
    if response.status_code < _LOWEST_ERROR:
        message = f"HTTP {response.status_code}, and no JSON object in its body"
        return _failure(
            item, TRANSPORT_ERROR, message, response_part(response, body), response.status_code
        )
    found = classify_error(provider, response.status_code, response.headers, data)
    message = f"HTTP {response.status_code}: {found.message or response.reason_phrase}"
    part = response_part(response, body)
    return _failure(item, found.kind.value, message[:_MESSAGE_CHARS], part, response.status_code)


def _failure(
    item: RequestLine,
    code: str,
    message: str,
    response: dict[str, Any] | None = None,
    status: int | None = None,
) -> Outcome:
    record = error_record(item.line, item.custom_id, code, message, response, item.line_hash)
    return Outcome(record, code, None, status)
