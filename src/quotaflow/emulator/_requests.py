"""Reading and validating a generation request: its body and the emulator's control headers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from quotaflow.emulator._call import Api
from quotaflow.emulator._faults import FAULT_HEADER, Fault
from quotaflow.emulator._output import OUTPUT_HEADER

__all__ = ["BadRequestError", "ParsedRequest", "parse_request"]


class BadRequestError(Exception):
    """The request is malformed; the message is the provider-style explanation."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A valid generation request.

    Attributes:
        model: the model it names.
        body: the decoded body.
        stream: ``"stream": true``.
        include_usage: ``stream_options.include_usage`` (Chat Completions).
        max_tokens: its output cap, if any.
        fault: the fault forced by the ``x-emulator-fault`` header.
        forced_output: the output length forced by the ``x-emulator-output-tokens`` header.
    """

    model: str
    body: Mapping[str, object]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    fault: Fault | None
    forced_output: int | None


def _missing(api: Api, name: str) -> BadRequestError:
    if api is Api.MESSAGES:
        return BadRequestError(f"{name}: Field required", name)
    return BadRequestError(f"Missing required parameter: '{name}'.", name)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _max_tokens(api: Api, body: Mapping[str, object]) -> int | None:
    keys = {
        Api.CHAT: ("max_completion_tokens", "max_tokens"),
        Api.RESPONSES: ("max_output_tokens",),
        Api.MESSAGES: ("max_tokens",),
    }[api]
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if not _positive_int(value):
            raise BadRequestError(f"Invalid '{key}': expected an integer >= 1, got {value!r}.", key)
        return value  # type: ignore[return-value]  # checked by _positive_int
    if api is Api.MESSAGES:
        raise _missing(api, "max_tokens")
    return None


def _control(headers: Mapping[str, str]) -> tuple[Fault | None, int | None]:
    fault = None
    name = headers.get(FAULT_HEADER)
    if name is not None:
        try:
            fault = Fault(name.strip())
        except ValueError:
            known = ", ".join(f.value for f in Fault)
            raise BadRequestError(
                f"{FAULT_HEADER}: unknown fault {name!r}; expected one of: {known}"
            ) from None
    forced = None
    raw = headers.get(OUTPUT_HEADER)
    if raw is not None:
        text = raw.strip()
        if not (text.isascii() and text.isdigit()):
            raise BadRequestError(f"{OUTPUT_HEADER}: expected an integer >= 0, got {raw!r}")
        forced = int(text)
    return fault, forced


def parse_request(api: Api, headers: Mapping[str, str], raw: bytes) -> ParsedRequest:
    """Decode and check a request to ``api``.

    Raises:
        BadRequestError: the body is not a JSON object, lacks ``model`` (or ``messages``,
            ``input``, Anthropic's ``max_tokens``), has an invalid maximum, or a control header
            is invalid.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise BadRequestError("We could not parse the JSON body of your request.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing(api, "model")
    field = "input" if api is Api.RESPONSES else "messages"
    content = body.get(field)
    if not isinstance(content, list) and not (api is Api.RESPONSES and isinstance(content, str)):
        raise _missing(api, field)
    max_tokens = _max_tokens(api, body)
    fault, forced = _control(headers)
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    return ParsedRequest(model, body, stream, include_usage, max_tokens, fault, forced)
