"""OUT's records (OpenAI's batch output format, plus the input line) and their writer.

Success::

    {
        "id": "batch_req_...",
        "custom_id": "a",
        "line": 3,
        "line_hash": "9f86d081884c7d65",
        "error": null,
        "response": {"status_code": 200, "request_id": "req_...", "body": {...}},
    }

Failure: ``"error": {"code": ..., "message": ...}`` and ``"response"`` holding the provider's
error response, if there was one (else ``null``).

``line_hash`` is the hash of the input line's text (:func:`~quotaflow.batch._input.line_hash`):
a rerun compares it with the line to notice an input that changed. Records written before it
existed have none (a rerun then compares ids only).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

import httpx

__all__ = [
    "FINAL_CODES",
    "INVALID_INPUT",
    "OutputWriter",
    "error_record",
    "is_final",
    "is_invalid_input",
    "response_part",
    "success_record",
]

#: The code of a line that could not be sent.
INVALID_INPUT: Final = "invalid_input"
#: Failures that a rerun would repeat: the line is done (``--retry-failed`` redoes them).
#: Every other code (rate limits, server errors, network, timeouts, exhausted quotas,
#: transport errors, unknown codes) is redone by a rerun.
FINAL_CODES: Final = frozenset(
    {INVALID_INPUT, "invalid_request", "request_too_large", "exceeds_capacity"}
)
#: Statuses classified ``invalid_request`` that are about the key, not the line: redone.
_ACCOUNT_STATUSES: Final = frozenset({401, 403})


def _request_id(response: httpx.Response) -> str | None:
    found: str | None = response.headers.get("x-request-id") or response.headers.get("request-id")
    return found


def response_part(response: httpx.Response, body: object) -> dict[str, Any]:
    """The ``response`` member of a record."""
    return {
        "status_code": response.status_code,
        "request_id": _request_id(response),
        "body": body,
    }


def success_record(
    line: int, custom_id: str, response: dict[str, Any], line_hash: str | None = None
) -> dict[str, Any]:
    """The record of a line that succeeded."""
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": response,
        "error": None,
        "line": line,
        "line_hash": line_hash,
    }


def error_record(
    line: int,
    custom_id: str | None,
    code: str,
    message: str,
    response: dict[str, Any] | None = None,
    line_hash: str | None = None,
) -> dict[str, Any]:
    """The record of a line that failed (or could not be sent)."""
    return {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": custom_id,
        "response": response,
        "error": {"code": code, "message": message},
        "line": line,
        "line_hash": line_hash,
    }


def is_final(record: dict[str, Any], *, retry_failed: bool = False) -> bool:
    """Whether ``record`` settles its line (a rerun skips it)."""
    error = record.get("error")
    if error is None:
        return True
    if retry_failed or not isinstance(error, dict):
        return False
    response = record.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    return error.get("code") in FINAL_CODES and status not in _ACCOUNT_STATUSES


def is_invalid_input(record: dict[str, Any]) -> bool:
    """Whether ``record`` is that of a bad line (never sent)."""
    error = record.get("error")
    return isinstance(error, dict) and error.get("code") == INVALID_INPUT


class OutputWriter:
    """Appends records to OUT, one JSON line each, flushed as it is written."""

    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = path.open("ab")

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` and flush it to the operating system.

        Text is written as UTF-8, except in a record holding a lone surrogate (a provider's
        body may escape one in a string), which is written with ASCII escapes instead.
        """
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            encoded = data.encode("utf-8")
        except UnicodeEncodeError:
            encoded = (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")
        self._file.write(encoded)
        self._file.flush()

    def close(self) -> None:
        """Flush to disk and close."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
