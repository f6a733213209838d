r"""Input lines of ``quotaflow batch``: read one at a time, parsed into requests or problems.

Three formats per line:

- OpenAI batch: ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``
  (``/v1/responses`` and ``/v1/messages`` too);
- plain: ``{"messages": [...], "model"?, "custom_id" or "id"?, other body parameters}``;
- a bare list of messages: ``[{"role": ..., "content": ...}, ...]``.

A line's id is its ``custom_id`` (or ``id``), else ``line-<n>``. Plain lines and bare lists go
to the provider's chat endpoint. Every line also has a content hash (:func:`line_hash`), kept in
its record, so that a rerun notices a line that changed even when its id did not.

The file is read as bytes, one line at a time, and each line is decoded strictly as UTF-8 (a
byte-order mark before line 1 is dropped): a line that is not UTF-8 text, or whose JSON holds a
lone surrogate escape (a ``\uD800`` with no pair), is a bad line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from quotaflow.providers import Provider

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "InputDefaults",
    "InvalidLine",
    "RequestLine",
    "line_hash",
    "parse_line",
    "read_lines",
]

#: The output cap assumed (and, where a cap is needed, set) for bodies that have none and
#: were given no ``--max-tokens``: Anthropic requires one, and ``--max-cost`` needs one.
DEFAULT_MAX_TOKENS: Final = 1024

_CHAT: Final = "/v1/chat/completions"
_RESPONSES: Final = "/v1/responses"
_MESSAGES: Final = "/v1/messages"
#: The batch URLs each provider serves, and the path relative to its base URL.
_ENDPOINTS: Final[Mapping[Provider, Mapping[str, str]]] = {
    Provider.OPENAI: {_CHAT: "/chat/completions", _RESPONSES: "/responses"},
    Provider.OPENROUTER: {_CHAT: "/chat/completions"},
    Provider.ANTHROPIC: {_MESSAGES: "/messages"},
}
_CHAT_URL: Final = {
    Provider.OPENAI: _CHAT,
    Provider.OPENROUTER: _CHAT,
    Provider.ANTHROPIC: _MESSAGES,
}
#: Body keys that cap the output, per batch URL (the first one is set when a cap is added).
_CAP_KEYS: Final = {
    _CHAT: ("max_tokens", "max_completion_tokens"),
    _RESPONSES: ("max_output_tokens",),
    _MESSAGES: ("max_tokens",),
}
_BATCH_KEYS: Final = frozenset({"body", "method", "url"})
_MAX_SHOWN: Final = 60
_BOM: Final = b"\xef\xbb\xbf"
_HASH_CHARS: Final = 16
#: A JSON escape of a UTF-16 surrogate (a pair decodes to one character; a lone one does not).
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True, slots=True)
class InputDefaults:
    """What fills the gaps of input lines, and what they may use.

    Attributes:
        provider: where the requests go (decides the endpoints and the body shape).
        model: the model of lines that name none.
        max_tokens: the output cap of bodies that set none.
        models: the models lines may use (``None``: any).
        force_cap: give every body an output cap (``max_tokens``, else the default), so
            that its worst-case cost is bounded (set with ``--max-cost``).
    """

    provider: Provider
    model: str | None = None
    max_tokens: int | None = None
    models: frozenset[str] | None = None
    force_cap: bool = False


@dataclass(frozen=True, slots=True)
class RequestLine:
    """A valid input line: the request to send.

    Attributes:
        line: the line number (from 1).
        custom_id: the line's id.
        url: the batch URL (``/v1/chat/completions``...).
        path: the path relative to the provider's base URL.
        body: the JSON body to send.
        model: the body's model.
        line_hash: the hash of the line's text (:func:`line_hash`).
    """

    line: int
    custom_id: str
    url: str
    path: str
    body: dict[str, Any]
    model: str
    line_hash: str | None = None


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """A line that cannot be sent.

    Attributes:
        line: the line number (from 1).
        custom_id: its id, when the line was readable enough to have one.
        message: what is wrong, naming the line.
        line_hash: the hash of the line's text (:func:`line_hash`), when known.
    """

    line: int
    custom_id: str | None
    message: str
    line_hash: str | None = None


class _Invalid(Exception):  # noqa: N818 (a private signal, never seen outside this module)
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for every non-blank line, one at a time.

    Blank lines keep their number but yield nothing; the text is stripped of surrounding
    whitespace (and line 1 of a UTF-8 byte-order mark). Each line is decoded strictly as
    UTF-8: the bytes of a line that is not UTF-8 are kept as lone surrogates
    (``surrogateescape``), so that :func:`parse_line` reports it and :func:`line_hash`
    still hashes its bytes.
    """
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            data = raw[len(_BOM) :] if number == 1 and raw.startswith(_BOM) else raw
            text = data.decode("utf-8", errors="surrogateescape").strip()
            if text:
                yield number, text


def line_hash(text: str) -> str:
    """A short hash of a line's text (its first 16 hex digits of SHA-256), kept in its record.

    ``text`` is the line as :func:`read_lines` yields it (without its newline and surrounding
    whitespace); the bytes of a line that is not UTF-8 are hashed as they are.
    """
    try:
        data = text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from read_lines
        data = text.encode("utf-8", errors="surrogatepass")
    return _digest(data)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_HASH_CHARS]


def parse_line(number: int, text: str, defaults: InputDefaults) -> RequestLine | InvalidLine:
    """Parse one line into the request to send, or the reason it cannot be sent."""
    try:
        digest = _digest(text.encode("utf-8"))
    except UnicodeEncodeError:  # bytes that were not UTF-8 (see read_lines)
        return InvalidLine(number, None, f"line {number}: not UTF-8 text", line_hash(text))
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        reason = getattr(error, "msg", "too deeply nested")
        return InvalidLine(number, None, f"line {number}: malformed JSON ({reason})", digest)
    if _SURROGATE_ESCAPE.search(text) and not _is_text(data):
        message = f"line {number}: not valid UTF-8 text: a lone surrogate"
        return InvalidLine(number, None, message, digest)
    custom_id = _custom_id(number, data)
    try:
        if isinstance(custom_id, _Invalid):
            raise custom_id
        return _request(number, custom_id, data, defaults, digest)
    except _Invalid as problem:
        known = custom_id if isinstance(custom_id, str) else None
        return InvalidLine(number, known, f"line {number}: {problem.message}", digest)


def _is_text(value: object) -> bool:
    """Whether ``value`` (text, or parsed JSON) has no lone surrogate: it encodes as UTF-8."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _custom_id(number: int, data: object) -> str | _Invalid:
    if not isinstance(data, dict):
        return f"line-{number}"
    for key in ("custom_id", "id"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            return _Invalid(f"{key} must be a non-empty string, got {_show(value)}")
        return str(value)
    return f"line-{number}"


def _request(
    number: int, custom_id: str, data: object, defaults: InputDefaults, digest: str
) -> RequestLine:
    provider = defaults.provider
    if isinstance(data, list):
        url, body = _CHAT_URL[provider], _chat_body({"messages": data}, provider)
    elif isinstance(data, dict) and _BATCH_KEYS & data.keys():
        url, body = _batch_request(data, provider)
    elif isinstance(data, dict):
        plain = {k: v for k, v in data.items() if k not in {"custom_id", "id"}}
        url, body = _CHAT_URL[provider], _chat_body(plain, provider)
    else:
        raise _Invalid(f"expected a JSON object or a list of messages, got {_show(data)}")
    model = _model(body, defaults)
    if body.get("stream") not in {None, False}:
        raise _Invalid("'stream' is not supported in a batch (remove it)")
    if url == _RESPONSES:
        _check_input(body.get("input"))
    else:
        _check_messages(body.get("messages"))
    _cap(body, url, defaults)
    path = _ENDPOINTS[provider][url]
    return RequestLine(number, custom_id, url, path, body, model, digest)


def _batch_request(data: dict[str, Any], provider: Provider) -> tuple[str, dict[str, Any]]:
    method, url, body = data.get("method"), data.get("url"), data.get("body")
    if not isinstance(method, str) or method.upper() != "POST":
        raise _Invalid(f"method must be 'POST', got {_show(method)}")
    served = _ENDPOINTS[provider]
    if not isinstance(url, str) or url not in served:
        raise _Invalid(
            f"url {_show(url)} is not served by {provider.value}; use {' or '.join(served)}"
        )
    if not isinstance(body, dict):
        raise _Invalid(f"body must be a JSON object, got {_show(body)}")
    return url, dict(body)


def _chat_body(body: dict[str, Any], provider: Provider) -> dict[str, Any]:
    """A plain body for the provider's chat endpoint (Anthropic: system messages moved)."""
    messages = body.get("messages")
    if provider is Provider.ANTHROPIC and isinstance(messages, list) and "system" not in body:
        system = [m for m in messages if isinstance(m, dict) and m.get("role") == "system"]
        if system:
            texts = [m.get("content") for m in system]
            if not all(isinstance(t, str) for t in texts):
                raise _Invalid("a system message's content must be text for Anthropic")
            body = {**body, "messages": [m for m in messages if m not in system]}
            body["system"] = "\n\n".join(str(t) for t in texts)
    return body


def _model(body: dict[str, Any], defaults: InputDefaults) -> str:
    model = body.get("model")
    if model is None:
        if defaults.model is None:
            raise _Invalid("no model (give the line a 'model', or pass --model)")
        model = body["model"] = defaults.model
    if not isinstance(model, str) or not model.strip():
        raise _Invalid(f"model must be a non-empty string, got {_show(model)}")
    if defaults.models is not None and model not in defaults.models:
        allowed = ", ".join(sorted(defaults.models))
        raise _Invalid(f"unknown model {model!r} (allowed: {allowed})")
    return model


def _check_messages(messages: object) -> None:
    if not isinstance(messages, list) or not messages:
        raise _Invalid(f"messages must be a non-empty list, got {_show(messages)}")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _Invalid(f"messages[{index}] must be an object, got {_show(message)}")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise _Invalid(f"messages[{index}] needs a 'role' string, got {_show(role)}")
        if "content" not in message and "tool_calls" not in message:
            raise _Invalid(f"messages[{index}] has no 'content'")


def _check_input(value: object) -> None:
    if not (isinstance(value, str | list) and value):
        raise _Invalid(f"input must be a non-empty string or list, got {_show(value)}")


def _cap(body: dict[str, Any], url: str, defaults: InputDefaults) -> None:
    """Check the body's output cap; set the default one where it is needed."""
    keys = _CAP_KEYS[url]
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _Invalid(f"{key} must be a positive integer, got {_show(value)}")
        return
    cap = defaults.max_tokens
    if cap is None and (url == _MESSAGES or defaults.force_cap):
        cap = DEFAULT_MAX_TOKENS
    if cap is not None:
        body[keys[0]] = cap


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    if not _is_text(text):  # never for a parsed line (lone surrogates are refused first)
        text = json.dumps(value, default=str)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
